"""ISAKMP payloads (RFC 2408 §3, RFC 2407 §4, RFC 3947 §3): dataclasses and their bodies.

Each payload class encodes its *body* (what follows the 4-octet generic header) with
``body()`` and is decoded from one by `decode_body`. Decoding raises only `ParseError`.
SA payloads hold proposals and transforms (RFC 2408 §3.4-3.6) whose data attributes
(§3.3) are kept as ``(type, value)`` with integer values: TV when the value fits 16 bits,
TLV otherwise (RFC 2408 §3.3, "variable" attributes such as life durations).
"""

from __future__ import annotations

from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network

from cgwd.ike.buffer import Reader
from cgwd.ike.decode_errors import ParseError
from cgwd.ike.v1.constants import (
    DOI_IPSEC,
    SIT_IDENTITY_ONLY,
    IdType,
    Payload,
    ProtocolId,
)

MAX_ATTR_BYTES = 8  # longest integer TLV attribute we accept (life durations are 4)


@dataclass(frozen=True)
class Attribute:
    type: int
    value: int

    def encode(self) -> bytes:
        if 0 <= self.value <= 0xFFFF:
            return (0x8000 | self.type).to_bytes(2, "big") + self.value.to_bytes(2, "big")
        size = max(4, (self.value.bit_length() + 7) // 8)
        return (
            self.type.to_bytes(2, "big")
            + size.to_bytes(2, "big")
            + self.value.to_bytes(size, "big")
        )


def encode_attributes(attrs: tuple[Attribute, ...]) -> bytes:
    return b"".join(a.encode() for a in attrs)


def decode_attributes(r: Reader) -> tuple[Attribute, ...]:
    out = []
    while not r.at_end():
        word = r.u16()
        attr_type = word & 0x7FFF
        if word & 0x8000:
            out.append(Attribute(attr_type, r.u16()))
            continue
        length = r.u16()
        if length == 0 or length > MAX_ATTR_BYTES:
            raise ParseError(f"attribute {attr_type}: unsupported TLV length {length}")
        out.append(Attribute(attr_type, int.from_bytes(r.take(length), "big")))
    return tuple(out)


def attr_map(attrs: tuple[Attribute, ...]) -> dict[int, int]:
    """Attributes by type; a repeated type raises `ParseError` (life type/duration pairs
    are handled separately by `lifetimes`)."""
    out: dict[int, int] = {}
    for a in attrs:
        if a.type in out:
            raise ParseError(f"attribute {a.type} repeated")
        out[a.type] = a.value
    return out


@dataclass(frozen=True)
class Transform:
    number: int
    transform_id: int
    attributes: tuple[Attribute, ...]


@dataclass(frozen=True)
class Proposal:
    number: int
    protocol: int
    spi: bytes
    transforms: tuple[Transform, ...]


@dataclass(frozen=True)
class SaPayload:
    """RFC 2408 §3.4 with the IPsec DOI (RFC 2407 §4.6.1)."""

    proposals: tuple[Proposal, ...]
    doi: int = DOI_IPSEC
    situation: int = SIT_IDENTITY_ONLY
    type: int = Payload.SA

    def body(self) -> bytes:
        out = bytearray(self.doi.to_bytes(4, "big") + self.situation.to_bytes(4, "big"))
        for i, p in enumerate(self.proposals):
            tbytes = bytearray()
            for j, t in enumerate(p.transforms):
                tb = bytes([t.number, t.transform_id, 0, 0]) + encode_attributes(t.attributes)
                nxt = Payload.TRANSFORM if j + 1 < len(p.transforms) else 0
                tbytes += bytes([nxt, 0]) + (len(tb) + 4).to_bytes(2, "big") + tb
            pb = bytes([p.number, p.protocol, len(p.spi), len(p.transforms)]) + p.spi + tbytes
            nxt = Payload.PROPOSAL if i + 1 < len(self.proposals) else 0
            out += bytes([nxt, 0]) + (len(pb) + 4).to_bytes(2, "big") + pb
        return bytes(out)


def _decode_sa(r: Reader) -> SaPayload:
    doi = r.u32()
    if doi != DOI_IPSEC:
        raise ParseError(f"SA: DOI {doi} is not IPsec")
    situation = r.u32()
    proposals = []
    nxt: int = Payload.PROPOSAL
    while nxt == Payload.PROPOSAL:
        nxt = r.u8()
        r.u8()
        length = r.u16()
        if length < 8:
            raise ParseError(f"proposal length {length}")
        pr = r.sub(length - 4, "proposal")
        number, protocol, spi_size, count = pr.u8(), pr.u8(), pr.u8(), pr.u8()
        spi = pr.take(spi_size)
        transforms = []
        tnext: int = Payload.TRANSFORM if count else 0
        while tnext == Payload.TRANSFORM:
            tnext = pr.u8()
            pr.u8()
            tlen = pr.u16()
            if tlen < 8:
                raise ParseError(f"transform length {tlen}")
            tr = pr.sub(tlen - 4, "transform")
            tnum, tid = tr.u8(), tr.u8()
            tr.take(2)
            transforms.append(Transform(tnum, tid, decode_attributes(tr)))
        if tnext != 0 or len(transforms) != count:
            raise ParseError("proposal: transform count or chain mismatch")
        pr.expect_end()
        proposals.append(Proposal(number, protocol, spi, tuple(transforms)))
    if nxt != 0:
        raise ParseError(f"SA: unexpected payload {nxt} inside")
    r.expect_end()
    if not proposals:
        raise ParseError("SA without proposals")
    return SaPayload(tuple(proposals), doi, situation)


@dataclass(frozen=True)
class KePayload:
    data: bytes
    type: int = Payload.KE

    def body(self) -> bytes:
        return self.data


@dataclass(frozen=True)
class NoncePayload:
    data: bytes
    type: int = Payload.NONCE

    def body(self) -> bytes:
        return self.data


@dataclass(frozen=True)
class HashPayload:
    data: bytes
    type: int = Payload.HASH

    def body(self) -> bytes:
        return self.data


@dataclass(frozen=True)
class VendorIdPayload:
    data: bytes
    type: int = Payload.VENDOR

    def body(self) -> bytes:
        return self.data


@dataclass(frozen=True)
class NatDPayload:
    """RFC 3947 §3.2: HASH(CKY-I | CKY-R | IP | Port); type 20 or the draft's 130."""

    data: bytes
    type: int = Payload.NAT_D

    def body(self) -> bytes:
        return self.data


@dataclass(frozen=True)
class IdPayload:
    """RFC 2407 §4.6.2: type, protocol, port, identification data."""

    id_type: int
    data: bytes
    protocol: int = 0
    port: int = 0
    type: int = Payload.ID

    def body(self) -> bytes:
        return bytes([self.id_type, self.protocol]) + self.port.to_bytes(2, "big") + self.data

    @classmethod
    def ipv4(cls, addr: IPv4Address) -> IdPayload:
        return cls(IdType.IPV4_ADDR, addr.packed)

    @classmethod
    def subnet(cls, net: IPv4Network) -> IdPayload:
        return cls(IdType.IPV4_ADDR_SUBNET, net.network_address.packed + net.netmask.packed)

    def as_network(self) -> IPv4Network | None:
        """The IPv4 selector this ID names (address, subnet or range collapsed), or None."""
        try:
            if self.id_type == IdType.IPV4_ADDR and len(self.data) == 4:
                return IPv4Network(IPv4Address(self.data))
            if self.id_type == IdType.IPV4_ADDR_SUBNET and len(self.data) == 8:
                return IPv4Network(
                    f"{IPv4Address(self.data[:4])}/{IPv4Address(self.data[4:])}", strict=False
                )
        except ValueError:
            return None
        return None


@dataclass(frozen=True)
class NotifyPayload:
    """RFC 2408 §3.14 (DOI, protocol, SPI, type, data)."""

    notify_type: int
    protocol: int = ProtocolId.ISAKMP
    spi: bytes = b""
    data: bytes = b""
    doi: int = DOI_IPSEC
    type: int = Payload.NOTIFY

    def body(self) -> bytes:
        return (
            self.doi.to_bytes(4, "big")
            + bytes([self.protocol, len(self.spi)])
            + self.notify_type.to_bytes(2, "big")
            + self.spi
            + self.data
        )


@dataclass(frozen=True)
class DeletePayload:
    """RFC 2408 §3.15: ISAKMP SAs by their 16-octet cookie pair, ESP SAs by 4-octet SPIs."""

    protocol: int
    spis: tuple[bytes, ...]
    doi: int = DOI_IPSEC
    type: int = Payload.DELETE

    def body(self) -> bytes:
        size = len(self.spis[0]) if self.spis else 0
        return (
            self.doi.to_bytes(4, "big")
            + bytes([self.protocol, size])
            + len(self.spis).to_bytes(2, "big")
            + b"".join(self.spis)
        )


@dataclass(frozen=True)
class UnknownPayload:
    """A payload we do not interpret (CERT, CR, NAT-OA, ...), kept as octets."""

    type: int
    data: bytes

    def body(self) -> bytes:
        return self.data


AnyPayload = (
    SaPayload
    | KePayload
    | NoncePayload
    | HashPayload
    | VendorIdPayload
    | NatDPayload
    | IdPayload
    | NotifyPayload
    | DeletePayload
    | UnknownPayload
)


def decode_body(ptype: int, body: bytes) -> AnyPayload:
    """One payload from its body. Raises `ParseError`."""
    r = Reader(body, f"payload {ptype}")
    if ptype == Payload.SA:
        return _decode_sa(r)
    if ptype == Payload.KE:
        if not body:
            raise ParseError("empty KE payload")
        return KePayload(body)
    if ptype == Payload.NONCE:
        return NoncePayload(body)
    if ptype == Payload.HASH:
        if not body:
            raise ParseError("empty HASH payload")
        return HashPayload(body)
    if ptype == Payload.VENDOR:
        return VendorIdPayload(body)
    if ptype in (Payload.NAT_D, Payload.NAT_D_DRAFT):
        return NatDPayload(body, ptype)
    if ptype == Payload.ID:
        id_type, proto, port = r.u8(), r.u8(), r.u16()
        return IdPayload(id_type, r.rest(), proto, port)
    if ptype == Payload.NOTIFY:
        doi, proto, spi_size, ntype = r.u32(), r.u8(), r.u8(), r.u16()
        spi = r.take(spi_size)
        return NotifyPayload(ntype, proto, spi, r.rest(), doi)
    if ptype == Payload.DELETE:
        doi, proto, spi_size, count = r.u32(), r.u8(), r.u8(), r.u16()
        if spi_size == 0 and count:
            raise ParseError("DELETE: SPIs of size 0")
        spis = tuple(r.take(spi_size) for _ in range(count))
        r.expect_end()
        return DeletePayload(proto, spis, doi)
    if ptype in (Payload.PROPOSAL, Payload.TRANSFORM) or ptype == Payload.NONE:
        raise ParseError(f"payload type {ptype} outside an SA")
    return UnknownPayload(ptype, body)
