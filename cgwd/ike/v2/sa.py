"""Configuration of one IKEv2 session and the runtime records of its IKE and Child SAs.

`IkeSessionConfig` is frozen policy (what to offer, whom to trust, timers); `IkeSa` and
`ChildSa` are the session's mutable state. Keys live in `Secret`s or in cipher objects whose
reprs hide them; nothing here renders key material.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from ipaddress import IPv4Address
from typing import Any

from cgwd.dataplane.base import SaId, SaParams, UdpEncap
from cgwd.esp.suites import EspSuite
from cgwd.ike.crypto.ikev2_sk import SkCipher
from cgwd.ike.crypto.suite import IkeSuite
from cgwd.ike.retransmit import (
    DEFAULT_POLICY,
    DPD_POLICY,
    ReconnectBackoff,
    RetransmitPolicy,
)
from cgwd.ike.v2.negotiation import ANY_IPV4, Proposal, Selector
from cgwd.ike.v2.states import ChildState, IkeState
from cgwd.ike.v2.task_manager import Nonces, TaskManager
from cgwd.secret import Secret

IKE_PORT = 500
NAT_T_PORT = 4500


@dataclass(frozen=True)
class IkeSessionConfig:
    """Policy for the IKEv2 session of one tunnel (one peer).

    Lifetimes are local policy in IKEv2 (aws-behaviour.md §4): we rekey at
    ``*_rekey_time`` minus up to ``rekey_jitter`` of it (downwards only, so we always
    rekey before AWS), and drop an SA that reaches ``*_lifetime`` unrekeyed.
    """

    tunnel: str
    """Dataplane tunnel name (used in `SaId`s and log lines)."""
    local_address: IPv4Address
    remote_address: IPv4Address
    psk: Secret
    ike_proposals: tuple[Proposal, ...]
    """IKE SA proposals, strongest first; their DH transforms are the groups we accept."""
    esp_proposals: tuple[Proposal, ...]
    """ESP proposals, strongest first; DH transforms are the PFS groups for rekeys (they are
    stripped in IKE_AUTH, RFC 7296 §1.2)."""
    local_id: IPv4Address | None = None
    """Our ID_IPV4_ADDR: the public address (also behind a NAT); default local_address."""
    remote_id: IPv4Address | None = None
    """The peer's expected ID_IPV4_ADDR; default remote_address."""
    local_ts: tuple[Selector, ...] = (ANY_IPV4,)
    remote_ts: tuple[Selector, ...] = (ANY_IPV4,)
    ike_lifetime: float = 28800.0
    ike_rekey_time: float = 27000.0
    child_lifetime: float = 3600.0
    child_rekey_time: float = 2880.0
    rekey_jitter: float = 0.1
    dpd_delay: float = 10.0
    """Probe the peer after this long without hearing from it (aws-behaviour.md §3)."""
    retransmit: RetransmitPolicy = DEFAULT_POLICY
    dpd_retransmit: RetransmitPolicy = DPD_POLICY
    reconnect: ReconnectBackoff = field(default_factory=ReconnectBackoff)
    auto_initiate: bool = True
    """Re-initiate after every loss (AWS startup action ``add``); False: wait for the peer."""
    replay_window: int = 1024
    force_encap: bool = False
    """Always move to port 4500 and UDP-encapsulate ESP (RFC 7296 §2.23 fake NAT-D)."""
    remote_port: int = IKE_PORT
    """The peer's IKE port before any NAT-T float."""
    ike_port: int = IKE_PORT
    nat_t_port: int = NAT_T_PORT
    """UDP ports of IKE and of NAT-T (RFC 3948) at both ends; only tests change them."""
    half_open_cookie_threshold: int = 8
    """Half-open responder SAs above which IKE_SA_INIT needs a COOKIE (RFC 7296 §2.6)."""
    half_open_limit: int = 64
    """Hard cap on half-open responder SAs (memory bound); requests beyond are dropped."""
    half_open_timeout: float = 30.0
    nonce_bytes: int = 32

    @property
    def our_id(self) -> IPv4Address:
        return self.local_id if self.local_id is not None else self.local_address

    @property
    def peer_id(self) -> IPv4Address:
        return self.remote_id if self.remote_id is not None else self.remote_address


@dataclass
class IkeSa:
    """One IKE SA (RFC 7296 §2): SPIs, keys, endpoints and its own message-ID space."""

    spi_i: bytes
    spi_r: bytes
    initiator: bool
    """True if we are the original initiator of *this* IKE SA (the I flag, §3.1)."""
    created_at: float
    state: IkeState = IkeState.CONNECTING
    tm: TaskManager[Any] = field(default_factory=TaskManager)
    local_port: int = IKE_PORT
    remote_ip: str = ""
    remote_port: int = IKE_PORT
    nat_t: bool = False  # moved to the NAT-T port (§2.23): ESP goes in UDP
    nat_local: bool = False  # we are behind a NAT (our NAT_DETECTION_DESTINATION mismatched)
    nat_remote: bool = False  # the peer is behind a NAT (or fakes it, as strongSwan's encap)
    suite: IkeSuite | None = None  # once negotiated
    suite_name: str = ""
    prf_id: int = 0
    sk_d: Secret | None = None
    sk_pi: Secret | None = None
    sk_pr: Secret | None = None
    sk_out: SkCipher | None = None  # protects what we send
    sk_in: SkCipher | None = None  # checks what we receive
    ni: bytes = b""
    nr: bytes = b""
    init_request: bytes = b""  # IKE_SA_INIT messages as sent, signed by AUTH (§2.15)
    init_response: bytes = b""
    established_at: float | None = None
    rekey_at: float | None = None
    expire_at: float | None = None
    last_heard: float = 0.0
    delete_deadline: float | None = None  # half-open timeout / forced cleanup
    created_by: Nonces | None = None  # (Ni, Nr) of the CREATE_CHILD_SA that made it (§2.18)
    rekeyed_from: bytes | None = None  # spi_i of the predecessor
    initial_contact: bool = False
    close_after_response: str | None = None  # peer deleted it: gone once we have answered
    peer_rekey: IkeSa | None = None  # successor the peer created while ours was in flight
    successor: IkeSa | None = None

    @property
    def spi_i_int(self) -> int:
        return int.from_bytes(self.spi_i, "big")

    @property
    def spi_r_int(self) -> int:
        return int.from_bytes(self.spi_r, "big")

    @property
    def key(self) -> tuple[bytes, bytes]:
        return (self.spi_i, self.spi_r)

    @property
    def encapsulated(self) -> bool:
        return self.nat_t

    def udp_encap(self) -> UdpEncap | None:
        """How ESP of this IKE SA's Child SAs is carried (RFC 3948 when on port 4500)."""
        if not self.encapsulated:
            return None
        return UdpEncap(local_port=self.local_port, remote_port=self.remote_port)


@dataclass
class ChildSa:
    """One ESP SA pair (RFC 7296 §2.17) as the session tracks it."""

    child_id: int
    spi_in: int
    spi_out: int
    suite: EspSuite
    created_at: float
    initiated_by_us: bool
    created_by: Nonces
    ts_local: tuple[Selector, ...]
    ts_remote: tuple[Selector, ...]
    in_sa: SaId
    out_sa: SaId
    out_params: SaParams
    in_params: SaParams
    pfs_group: int | None = None
    state: ChildState = ChildState.INSTALLED
    out_installed: bool = True
    rekey_at: float | None = None
    expire_at: float | None = None
    rekeyed_from: int | None = None
    successor: int | None = None
    delete_deadline: float | None = None
    outbound_at: float | None = None  # responder of a rekey: switch outbound by then
    ike_spi_i: bytes = b""  # the IKE SA it belongs to (moves on IKE rekey)

    def installed_sa_ids(self) -> tuple[SaId, ...]:
        return (self.in_sa, self.out_sa) if self.out_installed else (self.in_sa,)
