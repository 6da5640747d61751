"""Configuration of one IKEv1 session and the records of its ISAKMP SAs, Quick Modes and
IPsec SAs. Keys live in `Secret`s; nothing here renders key material.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv4Network

from cgwd.dataplane.base import SaId, SaParams, UdpEncap
from cgwd.esp.suites import EspSuite
from cgwd.ike.crypto.kex import DhPrivate
from cgwd.ike.retransmit import DEFAULT_POLICY, DPD_POLICY, ReconnectBackoff, RetransmitPolicy
from cgwd.ike.v1.keys import Phase1Keys, Phase1Suite
from cgwd.secret import Secret

IKE_PORT = 500
NAT_T_PORT = 4500
ANY = IPv4Network("0.0.0.0/0")
OLD_ISAKMP_GRACE = 5.0  # after our phase 1 rekey, delete the old ISAKMP SA this much later
OLD_CHILD_GRACE = 5.0  # after a phase 2 rekey, delete the old ESP SAs this much later
PEER_DELETE_GRACE = 30.0  # the peer rekeyed: it should delete the old SAs, else we do
OUTBOUND_SWITCH_DELAY = 1.0  # our rekey: let the peer install its inbound SA first
CHILD_RETRY_DELAY = 2.0
MAX_REMEMBERED_MIDS = 4096


@dataclass(frozen=True)
class Ikev1SessionConfig:
    """Policy for the IKEv1 session of one tunnel (one peer).

    IKEv1 negotiates lifetimes: we propose ``ike_lifetime``/``child_lifetime`` exactly
    (AWS expects its values, aws-behaviour.md §4), honour a shorter one from the peer
    (also RESPONDER-LIFETIME), and rekey at ``*_rekey_time`` (scaled down if the
    negotiated lifetime is shorter) minus up to ``rekey_jitter`` of it.
    """

    tunnel: str
    local_address: IPv4Address
    remote_address: IPv4Address
    psk: Secret
    phase1_suites: tuple[Phase1Suite, ...]
    """Main Mode transforms, strongest first (kept short: MM message 1 must not fragment)."""
    esp_suites: tuple[EspSuite, ...]
    pfs_groups: tuple[int, ...]
    """Acceptable Quick Mode PFS groups, strongest first; we offer the phase 1 group when
    it is one of them, else the first (a Quick Mode carries one KE payload)."""
    local_id: IPv4Address | None = None
    remote_id: IPv4Address | None = None
    local_ts: IPv4Network = ANY
    remote_ts: IPv4Network = ANY
    ike_lifetime: int = 28800
    ike_rekey_time: float = 27000.0
    child_lifetime: int = 3600
    child_rekey_time: float = 2880.0
    rekey_jitter: float = 0.1
    dpd_delay: float = 10.0
    retransmit: RetransmitPolicy = DEFAULT_POLICY
    dpd_retransmit: RetransmitPolicy = DPD_POLICY
    reconnect: ReconnectBackoff = field(default_factory=ReconnectBackoff)
    auto_initiate: bool = True
    replay_window: int = 1024
    force_encap: bool = False
    remote_port: int = IKE_PORT
    ike_port: int = IKE_PORT
    """Our IKE port (500); tests bind others."""
    nat_t_port: int = NAT_T_PORT
    """The NAT-T port (4500) on both sides; tests use others."""
    half_open_limit: int = 16
    half_open_timeout: float = 30.0
    nonce_bytes: int = 32

    @property
    def our_id(self) -> IPv4Address:
        return self.local_id if self.local_id is not None else self.local_address

    @property
    def peer_id(self) -> IPv4Address:
        return self.remote_id if self.remote_id is not None else self.remote_address


@dataclass
class Flight:
    """Retransmission state of one exchange (RFC 2408 §5: both sides retransmit).

    ``last_sent`` goes out again on timeout (while we wait for an answer) and whenever
    ``peer_last`` (the peer's previous message, octet for octet) arrives again.
    """

    last_sent: bytes = b""
    peer_last: bytes = b""
    sent_count: int = 0
    next_at: float | None = None  # None: not waiting for anything
    answered_at: float | None = None  # when a duplicate was last answered

    def sent(self, raw: bytes, now: float, wait: float | None) -> None:
        self.last_sent = raw
        self.sent_count = 1
        self.next_at = None if wait is None else now + wait


@dataclass
class IsakmpSa:
    """One ISAKMP SA (phase 1) and its Main Mode state."""

    cky_i: bytes
    cky_r: bytes
    initiator: bool
    created_at: float
    remote_ip: str
    remote_port: int = IKE_PORT
    local_port: int = IKE_PORT
    state: str = "mm1"  # mm1 mm3 mm5 (what we expect/sent next), established, dead
    suite: Phase1Suite | None = None
    keys: Phase1Keys | None = None
    lifetime: int = 0
    dh: DhPrivate | None = None
    g_xi: bytes = b""
    g_xr: bytes = b""
    ni: bytes = b""
    nr: bytes = b""
    sai_b: bytes = b""
    iv: bytes = b""  # phase 1 CBC chain; after MM6 the last phase 1 block
    nat_t: str | None = None  # "rfc" | "draft" | None (peer's NAT-T vendor ID)
    dpd_peer: bool = False
    nat_local: bool = False
    nat_remote: bool = False
    initial_contact: bool = False  # we send it (initiator) / the peer sent it (responder)
    peer_notified: list[int] = field(default_factory=list)  # unprotected notifies seen
    flight: Flight = field(default_factory=Flight)
    established_at: float | None = None
    rekey_at: float | None = None
    expire_at: float | None = None
    delete_at: float | None = None
    last_heard: float = 0.0
    dpd_seq: int = 0
    dpd_outstanding: set[int] = field(default_factory=set)
    dpd_sent: int = 0
    dpd_next: float | None = None
    rekey_of: bytes | None = None  # cky_i of the SA this one replaces (our phase 1 rekey)
    seen_mids: set[int] = field(default_factory=set)  # Quick Mode/Informational IDs used
    mid_order: list[int] = field(default_factory=list)

    def remember_mid(self, mid: int) -> None:
        """Message IDs are never reused on an ISAKMP SA: a repeat is a replay (bounded)."""
        if mid in self.seen_mids:
            return
        self.seen_mids.add(mid)
        self.mid_order.append(mid)
        if len(self.mid_order) > MAX_REMEMBERED_MIDS:
            self.seen_mids.discard(self.mid_order.pop(0))

    @property
    def cookies(self) -> bytes:
        return self.cky_i + self.cky_r

    floated: bool = False  # moved to the NAT-T port: ESP goes in UDP (RFC 3948)

    @property
    def encapsulated(self) -> bool:
        return self.floated

    def udp_encap(self) -> UdpEncap | None:
        if not self.encapsulated:
            return None
        return UdpEncap(local_port=self.local_port, remote_port=self.remote_port)


@dataclass
class QuickMode:
    """One Quick Mode exchange in progress (or recently finished, for retransmissions)."""

    mid: int
    cky_i: bytes  # the ISAKMP SA it runs under
    initiator: bool
    created_at: float
    iv: bytes
    spi_in: int
    ni: bytes = b""
    nr: bytes = b""
    dh: DhPrivate | None = None
    group: int | None = None
    encap_mode: int = 1
    spi_out: int = 0
    suite: EspSuite | None = None
    lifetime: int = 0
    rekey_of: int | None = None
    child_id: int | None = None  # responder: the child installed at QM2
    state: str = "sent1"  # sent1 (initiator), sent2 (responder), done
    flight: Flight = field(default_factory=Flight)
    forget_at: float = 0.0


@dataclass
class ChildSa:
    """One ESP SA pair."""

    child_id: int
    spi_in: int
    spi_out: int
    suite: EspSuite
    created_at: float
    initiated_by_us: bool
    in_sa: SaId
    out_sa: SaId
    in_params: SaParams
    out_params: SaParams
    pfs_group: int | None
    lifetime: int
    nonces: tuple[bytes, bytes] = (b"", b"")  # Ni, Nr of the Quick Mode that made it
    replaces: int | None = None  # the child it was made to replace (rekey collisions)
    state: str = "installed"  # installed, rekeying, rekeyed, gone
    out_installed: bool = False
    outbound_at: float | None = None
    rekey_at: float | None = None
    expire_at: float | None = None
    delete_at: float | None = None
    successor: int | None = None

    def installed_sa_ids(self) -> tuple[SaId, ...]:
        return (self.in_sa, self.out_sa) if self.out_installed else (self.in_sa,)
