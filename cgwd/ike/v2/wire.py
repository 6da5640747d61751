"""Glue between the IKEv2 codec (`payloads`, `message`) and the exchange logic.

Converts SA payload proposals to and from `negotiation.Proposal`, traffic selector payloads
to `negotiation.Selector`, and computes the NAT detection hashes; `Received` wraps a decoded
message with the accessors the tasks need. Accessors return None (never raise) when a
payload is missing or unusable, so handlers decide what a gap means.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from ipaddress import IPv4Address
from typing import Protocol

from cgwd.esp.suites import EspSuite, suite_from_ike
from cgwd.ike.constants import (
    NOTIFY_STATUS_MIN,
    IdType,
    NotifyType,
    TransformType,
)
from cgwd.ike.crypto.suite import IkeSuite
from cgwd.ike.v2 import negotiation as neg
from cgwd.ike.v2.message import Message
from cgwd.ike.v2.payloads import (
    AuthPayload,
    DeletePayload,
    IdiPayload,
    IdPayload,
    IdrPayload,
    KePayload,
    NoncePayload,
    NotifyPayload,
    SaPayload,
    TrafficSelector,
    Transform,
    TsiPayload,
    TsPayload,
    TsrPayload,
)
from cgwd.ike.v2.payloads import Proposal as WireProposal

NONCE_MIN = 16  # RFC 7296 §2.10 / §3.9
NONCE_MAX = 256


def to_wire(p: neg.Proposal) -> WireProposal:
    return WireProposal(
        p.number,
        p.protocol,
        p.spi,
        tuple(Transform.of(t.type, t.id, t.key_bits) for t in p.transforms),
    )


def from_wire(p: WireProposal) -> neg.Proposal:
    return neg.Proposal(
        p.number,
        p.protocol,
        p.spi,
        tuple(neg.Transform(t.type, t.id, t.key_length) for t in p.transforms),
    )


def sa_payload(proposals: Sequence[neg.Proposal]) -> SaPayload:
    return SaPayload(tuple(to_wire(p) for p in proposals))


def numbered(
    proposals: Sequence[neg.Proposal], spi: bytes, *, strip_dh: bool = False
) -> list[neg.Proposal]:
    """Our proposals numbered 1.. (§3.3.1) with ``spi``; DH removed for IKE_AUTH (§1.2)."""
    out = []
    for i, p in enumerate(proposals, start=1):
        ts = tuple(t for t in p.transforms if not (strip_dh and t.type == TransformType.DH))
        out.append(neg.Proposal(i, p.protocol, spi, ts))
    return out


def ike_suite_of(p: neg.Proposal) -> IkeSuite:
    """The IkeSuite of a chosen IKE proposal. Raises ValueError if incomplete/unsupported."""
    encr, prf, dh = p.single(neg.ENCR), p.single(neg.PRF), p.single(neg.DH)
    integ = p.single(neg.INTEG)
    if encr is None or prf is None or dh is None or encr.key_bits is None:
        raise ValueError("IKE proposal lacks ENCR (with key length), PRF or DH")
    return IkeSuite(encr.id, encr.key_bits, None if integ is None else integ.id, prf.id, dh.id)


def esp_suite_of(p: neg.Proposal) -> EspSuite:
    """The ESP suite of a chosen ESP proposal. Raises ValueError if unsupported."""
    encr = p.single(neg.ENCR)
    if encr is None:
        raise ValueError("ESP proposal lacks ENCR")
    integ = p.single(neg.INTEG)
    esn = p.single(neg.ESN)
    if esn is not None and esn.id != 0:
        raise ValueError("extended sequence numbers are not offered")
    return suite_from_ike(encr.id, encr.key_bits, None if integ is None else integ.id)


def dh_of(p: neg.Proposal) -> int | None:
    t = p.single(neg.DH)
    return None if t is None else t.id


def nat_hash(spi_i: bytes, spi_r: bytes, ip: str, port: int) -> bytes:
    """NAT_DETECTION_*_IP data: SHA-1(SPIi | SPIr | IP | Port) (RFC 7296 §2.23)."""
    data = spi_i + spi_r + IPv4Address(ip).packed + port.to_bytes(2, "big")
    return hashlib.sha1(data, usedforsecurity=False).digest()


def selectors_to_wire(selectors: Sequence[neg.Selector]) -> tuple[TrafficSelector, ...]:
    return tuple(
        TrafficSelector(s.start, s.end, s.ip_protocol, s.start_port, s.end_port) for s in selectors
    )


def ts_payloads(
    tsi: Sequence[neg.Selector], tsr: Sequence[neg.Selector]
) -> tuple[TsiPayload, TsrPayload]:
    return TsiPayload(selectors_to_wire(tsi)), TsrPayload(selectors_to_wire(tsr))


def notify(ntype: int, data: bytes = b"", protocol: int = 0, spi: bytes = b"") -> NotifyPayload:
    return NotifyPayload(ntype, data, protocol, spi)


def id_payload(initiator: bool, address: IPv4Address) -> IdPayload:
    return IdiPayload.ipv4(address) if initiator else IdrPayload.ipv4(address)


@dataclass
class Received:
    """A decoded message plus the exact octets it came in (AUTH signs IKE_SA_INIT's)."""

    msg: Message
    raw: bytes

    @property
    def mid(self) -> int:
        return self.msg.message_id

    @property
    def spi_i(self) -> bytes:
        return self.msg.spi_i.to_bytes(8, "big")

    @property
    def spi_r(self) -> bytes:
        return self.msg.spi_r.to_bytes(8, "big")

    def notify(self, ntype: int) -> NotifyPayload | None:
        return self.msg.notify(ntype)

    def error_notify(self) -> int | None:
        """The first error Notify type (§3.10.1: types below 16384), or None."""
        for n in self.msg.notifies():
            if n.type < NOTIFY_STATUS_MIN:
                return n.type
        return None

    def proposals(self) -> list[neg.Proposal] | None:
        sa = self.msg.get(SaPayload)
        return None if sa is None else [from_wire(p) for p in sa.proposals]

    def ke(self) -> KePayload | None:
        return self.msg.get(KePayload)

    def nonce(self) -> bytes | None:
        n = self.msg.get(NoncePayload)
        if n is None or not NONCE_MIN <= len(n.nonce) <= NONCE_MAX:
            return None
        return n.nonce

    def identity(self, initiator: bool) -> IdPayload | None:
        return self.msg.get(IdiPayload) if initiator else self.msg.get(IdrPayload)

    def auth(self) -> AuthPayload | None:
        return self.msg.get(AuthPayload)

    def selectors(self, initiator: bool) -> list[neg.Selector] | None:
        """IPv4 selectors of TSi (``initiator``) or TSr; None if the payload is missing.
        IPv6 selectors are ignored (our tunnels are IPv4, aws-behaviour.md §1)."""
        ts: TsPayload | None = self.msg.get(TsiPayload) if initiator else self.msg.get(TsrPayload)
        if ts is None:
            return None
        out = []
        for s in ts.selectors:
            if isinstance(s.start_address, IPv4Address) and isinstance(s.end_address, IPv4Address):
                out.append(
                    neg.Selector(
                        s.start_address, s.end_address, s.ip_protocol, s.start_port, s.end_port
                    )
                )
        return out

    def deletes(self) -> list[DeletePayload]:
        return self.msg.get_all(DeletePayload)


def peer_id_matches(payload: IdPayload | None, expected: IPv4Address) -> bool:
    """True if the ID payload is ID_IPV4_ADDR ``expected`` (RFC 7296 §3.5)."""
    return (
        payload is not None
        and payload.id_type == IdType.IPV4_ADDR
        and payload.data == expected.packed
    )


__all__ = ["NotifyType", "Received"]


class _IanaProposal(Protocol):
    def iana_transforms(self) -> tuple[tuple[int, int, int | None], ...]: ...


def proposals_from_config(
    proposals: Sequence[_IanaProposal], protocol: int
) -> tuple[neg.Proposal, ...]:
    """`cgwd.config.proposals` Ikev2Proposal/EspProposal records as negotiation proposals."""
    return tuple(
        neg.Proposal(
            i,
            protocol,
            b"",
            tuple(neg.Transform(t, tid, bits) for t, tid, bits in p.iana_transforms()),
        )
        for i, p in enumerate(proposals, start=1)
    )
