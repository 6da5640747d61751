"""IKEv2 payloads as typed values, with strict body codecs (RFC 7296 §3.3-3.13).

Each payload class knows its type and encodes/decodes its body (what follows the
4-octet generic payload header); `cgwd.ike.v2.message` chains them. ``decode_body``
raises only `ParseError`. RESERVED fields are sent as zero and ignored on receipt (§3.2).
Numbers that may be unknown (transform ids, notify types, ...) stay plain ``int``.
"""

from __future__ import annotations

import ipaddress
import struct
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv6Address
from typing import ClassVar, Self

from cgwd.ike.buffer import Reader
from cgwd.ike.constants import (
    CHILD_SPI_LENGTH,
    IKE_SPI_LENGTH,
    NONCE_MAX_LENGTH,
    NONCE_MIN_LENGTH,
    IdType,
    PayloadType,
    ProtocolId,
    TransformAttributeType,
    TsType,
)
from cgwd.ike.decode_errors import ParseError

_LAST = 0  # RFC 7296 §3.3.1/3.3.2: "last substructure" value for the final one
_MORE_PROPOSALS = 2
_MORE_TRANSFORMS = 3
_ATTR_TV = 0x8000  # RFC 7296 §3.3.5: Attribute Format bit
# §3.3.1: SPI size 0 (IKE_SA_INIT) or 8 (IKE rekey) for IKE, 4 for ESP/AH.
_PROPOSAL_SPI_SIZES: dict[int, tuple[int, ...]] = {
    ProtocolId.IKE: (0, IKE_SPI_LENGTH),
    ProtocolId.ESP: (CHILD_SPI_LENGTH,),
    ProtocolId.AH: (CHILD_SPI_LENGTH,),
}
_ID_ADDRESS_SIZES: dict[int, int] = {IdType.IPV4_ADDR: 4, IdType.IPV6_ADDR: 16}  # §3.5
_TS_ADDRESS_SIZES: dict[int, int] = {TsType.IPV4_ADDR_RANGE: 4, TsType.IPV6_ADDR_RANGE: 16}


def _u8(value: int, what: str) -> bytes:
    if not 0 <= value <= 0xFF:
        raise ValueError(f"{what} {value} does not fit one octet")
    return bytes([value])


def _u16(value: int, what: str) -> bytes:
    if not 0 <= value <= 0xFFFF:
        raise ValueError(f"{what} {value} does not fit two octets")
    return struct.pack("!H", value)


# ---------------------------------------------------------------- SA (RFC 7296 §3.3)


@dataclass(frozen=True)
class Attribute:
    """A transform attribute: ``int`` value = TV format (16 bits), ``bytes`` = TLV (§3.3.5)."""

    type: int
    value: int | bytes

    def encode(self) -> bytes:
        if not 0 <= self.type < _ATTR_TV:
            raise ValueError(f"attribute type {self.type} overlaps the format bit")
        if isinstance(self.value, int):
            return _u16(_ATTR_TV | self.type, "attribute type") + _u16(self.value, "TV value")
        return _u16(self.type, "attribute type") + _u16(len(self.value), "TLV length") + self.value


@dataclass(frozen=True)
class Transform:
    """One transform (§3.3.2). Build ENCR with a key length as ``Transform.of(...)``."""

    type: int  # TransformType
    id: int
    attributes: tuple[Attribute, ...] = ()

    @classmethod
    def of(cls, transform_type: int, transform_id: int, key_length: int | None = None) -> Self:
        attrs = (
            ()
            if key_length is None
            else (Attribute(TransformAttributeType.KEY_LENGTH, key_length),)
        )
        return cls(transform_type, transform_id, attrs)

    @property
    def key_length(self) -> int | None:
        """The Key Length attribute in bits, if present."""
        for attr in self.attributes:
            if attr.type == TransformAttributeType.KEY_LENGTH and isinstance(attr.value, int):
                return attr.value
        return None

    def encode(self, last: bool) -> bytes:
        attrs = b"".join(a.encode() for a in self.attributes)
        return (
            bytes([_LAST if last else _MORE_TRANSFORMS, 0])
            + _u16(8 + len(attrs), "transform length")
            + _u8(self.type, "transform type")
            + b"\x00"
            + _u16(self.id, "transform id")
            + attrs
        )

    @classmethod
    def decode(cls, r: Reader) -> tuple[Self, bool]:
        """One transform from ``r``; returns it and whether it claimed to be the last."""
        flag = r.u8()
        r.u8()
        length = r.u16()
        if length < 8:
            raise ParseError(f"transform length {length} < 8")
        body = r.sub(length - 4, "transform")
        ttype = body.u8()
        body.u8()
        tid = body.u16()
        attrs: list[Attribute] = []
        while not body.at_end():
            af_type = body.u16()
            if af_type & _ATTR_TV:
                attrs.append(Attribute(af_type & ~_ATTR_TV, body.u16()))
            else:
                if af_type == TransformAttributeType.KEY_LENGTH:
                    raise ParseError("Key Length attribute must use the TV format")
                attrs.append(Attribute(af_type, body.take(body.u16())))
        if sum(a.type == TransformAttributeType.KEY_LENGTH for a in attrs) > 1:
            raise ParseError("transform carries more than one Key Length attribute")
        if flag not in (_LAST, _MORE_TRANSFORMS):
            raise ParseError(f"transform: bad last-substructure value {flag}")
        return cls(ttype, tid, tuple(attrs)), flag == _LAST


@dataclass(frozen=True)
class Proposal:
    """One proposal (§3.3.1). ``spi`` is empty in IKE_SA_INIT, 8 octets for an IKE rekey,
    4 octets for ESP/AH."""

    number: int
    protocol: int  # ProtocolId
    spi: bytes
    transforms: tuple[Transform, ...]

    def encode(self, last: bool) -> bytes:
        n = len(self.transforms)
        body = b"".join(t.encode(i == n - 1) for i, t in enumerate(self.transforms))
        return (
            bytes([_LAST if last else _MORE_PROPOSALS, 0])
            + _u16(8 + len(self.spi) + len(body), "proposal length")
            + _u8(self.number, "proposal number")
            + _u8(self.protocol, "protocol id")
            + _u8(len(self.spi), "SPI size")
            + _u8(n, "transform count")
            + self.spi
            + body
        )

    @classmethod
    def decode(cls, r: Reader) -> tuple[Self, bool]:
        flag = r.u8()
        r.u8()
        length = r.u16()
        if length < 8:
            raise ParseError(f"proposal length {length} < 8")
        body = r.sub(length - 4, "proposal")
        number = body.u8()
        protocol = body.u8()
        spi_size = body.u8()
        count = body.u8()
        expected_spi = _PROPOSAL_SPI_SIZES.get(protocol)
        if expected_spi is not None and spi_size not in expected_spi:
            raise ParseError(f"proposal: SPI size {spi_size} invalid for protocol {protocol}")
        spi = body.take(spi_size)
        transforms: list[Transform] = []
        last = False
        while not body.at_end():
            if last:
                raise ParseError("proposal: transform after the one marked last")
            transform, last = Transform.decode(body)
            transforms.append(transform)
        if transforms and not last:
            raise ParseError("proposal: final transform not marked last")
        if count != len(transforms):
            raise ParseError(f"proposal: {count} transforms announced, {len(transforms)} found")
        if not transforms:
            raise ParseError("proposal without transforms")
        if flag not in (_LAST, _MORE_PROPOSALS):
            raise ParseError(f"proposal: bad last-substructure value {flag}")
        return cls(number, protocol, spi, tuple(transforms)), flag == _LAST

    def transforms_of(self, transform_type: int) -> tuple[Transform, ...]:
        return tuple(t for t in self.transforms if t.type == transform_type)


@dataclass(frozen=True)
class SaPayload:
    """Security Association payload (§3.3)."""

    proposals: tuple[Proposal, ...]
    payload_type: ClassVar[int] = PayloadType.SA

    def encode_body(self) -> bytes:
        n = len(self.proposals)
        return b"".join(p.encode(i == n - 1) for i, p in enumerate(self.proposals))

    @classmethod
    def decode_body(cls, data: bytes) -> Self:
        r = Reader(data, "SA payload")
        proposals: list[Proposal] = []
        last = False
        while not r.at_end():
            if last:
                raise ParseError("SA: proposal after the one marked last")
            proposal, last = Proposal.decode(r)
            proposals.append(proposal)
        if not proposals:
            raise ParseError("SA payload without proposals")
        if not last:
            raise ParseError("SA: final proposal not marked last")
        # §3.3.1: the first proposal is number 1, each next one is one more. A response
        # carries the single accepted proposal with its original number.
        if proposals[0].number == 0:
            raise ParseError("SA: proposal number 0")
        if len(proposals) > 1:
            for i, p in enumerate(proposals):
                if p.number != i + 1:
                    raise ParseError(f"SA: proposal {i + 1} is numbered {p.number}")
        return cls(tuple(proposals))


# ---------------------------------------------------------------- KE, Nonce


@dataclass(frozen=True)
class KePayload:
    """Key Exchange payload (§3.4): the DH group number and our public value."""

    group: int
    data: bytes
    payload_type: ClassVar[int] = PayloadType.KE

    def __repr__(self) -> str:
        return f"KePayload(group={self.group}, data=<{len(self.data)} octets>)"

    def encode_body(self) -> bytes:
        return _u16(self.group, "DH group") + b"\x00\x00" + self.data

    @classmethod
    def decode_body(cls, data: bytes) -> Self:
        r = Reader(data, "KE payload")
        group = r.u16()
        r.u16()
        value = r.rest()
        if not value:
            raise ParseError("KE payload without key exchange data")
        return cls(group, value)


@dataclass(frozen=True)
class NoncePayload:
    """Nonce payload (§3.9): 16 to 256 octets."""

    nonce: bytes
    payload_type: ClassVar[int] = PayloadType.NONCE

    def encode_body(self) -> bytes:
        return self.nonce

    @classmethod
    def decode_body(cls, data: bytes) -> Self:
        if not NONCE_MIN_LENGTH <= len(data) <= NONCE_MAX_LENGTH:
            raise ParseError(f"nonce of {len(data)} octets (16-256 allowed)")
        return cls(bytes(data))


# ---------------------------------------------------------------- ID, AUTH


@dataclass(frozen=True)
class IdPayload:
    """Identification payload body (§3.5); use `IdiPayload` or `IdrPayload`."""

    id_type: int  # IdType
    data: bytes
    # Kept as received: AUTH signs the payload body octet for octet (§2.15), and a peer
    # that puts something other than zeros here still signed what it sent.
    reserved: bytes = b"\x00\x00\x00"
    payload_type: ClassVar[int] = 0

    @classmethod
    def ipv4(cls, address: IPv4Address | str) -> Self:
        return cls(IdType.IPV4_ADDR, IPv4Address(address).packed)

    @property
    def body(self) -> bytes:
        """ID type | RESERVED | data: the IDx' that AUTH signs (§2.15)."""
        if len(self.reserved) != 3:
            raise ValueError("ID payload RESERVED is three octets")
        return _u8(self.id_type, "ID type") + self.reserved + self.data

    def encode_body(self) -> bytes:
        return self.body

    @classmethod
    def decode_body(cls, data: bytes) -> Self:
        r = Reader(data, "ID payload")
        id_type = r.u8()
        reserved = r.take(3)
        value = r.rest()
        expected = _ID_ADDRESS_SIZES.get(id_type)
        if expected is not None and len(value) != expected:
            raise ParseError(f"ID type {id_type} with {len(value)} octets of data")
        if not value:
            raise ParseError("empty identification data")
        return cls(id_type, value, reserved)

    def __str__(self) -> str:
        if self.id_type == IdType.IPV4_ADDR and len(self.data) == 4:
            return str(IPv4Address(self.data))
        if self.id_type == IdType.IPV6_ADDR and len(self.data) == 16:
            return str(IPv6Address(self.data))
        if self.id_type in (IdType.FQDN, IdType.RFC822_ADDR):
            return self.data.decode("ascii", "replace")
        return f"{self.id_type}:{self.data.hex()}"


@dataclass(frozen=True)
class IdiPayload(IdPayload):
    payload_type: ClassVar[int] = PayloadType.IDI


@dataclass(frozen=True)
class IdrPayload(IdPayload):
    payload_type: ClassVar[int] = PayloadType.IDR


@dataclass(frozen=True)
class AuthPayload:
    """Authentication payload (§3.8)."""

    method: int  # AuthMethod
    data: bytes
    payload_type: ClassVar[int] = PayloadType.AUTH

    def __repr__(self) -> str:
        return f"AuthPayload(method={self.method}, data=<{len(self.data)} octets>)"

    def encode_body(self) -> bytes:
        return _u8(self.method, "auth method") + b"\x00\x00\x00" + self.data

    @classmethod
    def decode_body(cls, data: bytes) -> Self:
        r = Reader(data, "AUTH payload")
        method = r.u8()
        r.take(3)
        value = r.rest()
        if not value:
            raise ParseError("AUTH payload without authentication data")
        return cls(method, value)


# ---------------------------------------------------------------- Notify, Delete


@dataclass(frozen=True)
class NotifyPayload:
    """Notify payload (§3.10). ``protocol`` is 0 when ``spi`` is empty."""

    type: int  # NotifyType (kept as int: unknown types are legal)
    data: bytes = b""
    protocol: int = 0
    spi: bytes = b""
    payload_type: ClassVar[int] = PayloadType.NOTIFY

    def encode_body(self) -> bytes:
        return (
            _u8(self.protocol, "protocol id")
            + _u8(len(self.spi), "SPI size")
            + _u16(self.type, "notify type")
            + self.spi
            + self.data
        )

    @classmethod
    def decode_body(cls, data: bytes) -> Self:
        r = Reader(data, "Notify payload")
        protocol = r.u8()
        spi_size = r.u8()
        notify_type = r.u16()
        if spi_size not in (0, CHILD_SPI_LENGTH, IKE_SPI_LENGTH):
            raise ParseError(f"Notify: SPI size {spi_size}")
        spi = r.take(spi_size)
        return cls(notify_type, r.rest(), protocol, spi)


@dataclass(frozen=True)
class DeletePayload:
    """Delete payload (§3.11): no SPIs for the IKE SA, 4-octet SPIs for ESP/AH."""

    protocol: int
    spis: tuple[bytes, ...] = ()
    payload_type: ClassVar[int] = PayloadType.DELETE

    def encode_body(self) -> bytes:
        size = 0 if self.protocol == ProtocolId.IKE else CHILD_SPI_LENGTH
        if any(len(s) != size for s in self.spis):
            raise ValueError(f"Delete: SPIs for protocol {self.protocol} must be {size} octets")
        return (
            _u8(self.protocol, "protocol id")
            + _u8(size, "SPI size")
            + _u16(len(self.spis), "SPI count")
            + b"".join(self.spis)
        )

    @classmethod
    def decode_body(cls, data: bytes) -> Self:
        r = Reader(data, "Delete payload")
        protocol = r.u8()
        spi_size = r.u8()
        count = r.u16()
        if protocol == ProtocolId.IKE:
            if spi_size != 0 or count != 0:
                raise ParseError("Delete of the IKE SA carries no SPIs")
        elif protocol in (ProtocolId.ESP, ProtocolId.AH):
            if spi_size != CHILD_SPI_LENGTH or count == 0:
                raise ParseError(f"Delete: SPI size {spi_size}, count {count} for ESP/AH")
        else:
            raise ParseError(f"Delete: unknown protocol {protocol}")
        if r.remaining != count * spi_size:
            raise ParseError(f"Delete: {count} SPIs announced, {r.remaining} octets follow")
        spis = tuple(r.take(spi_size) for _ in range(count))
        return cls(protocol, spis)


# ---------------------------------------------------------------- Traffic selectors (§3.13)


@dataclass(frozen=True)
class TrafficSelector:
    """One IPv4 or IPv6 address range with a protocol and port range (§3.13.1)."""

    start_address: IPv4Address | IPv6Address
    end_address: IPv4Address | IPv6Address
    ip_protocol: int = 0  # 0 = any
    start_port: int = 0
    end_port: int = 65535

    @classmethod
    def any_ipv4(cls) -> Self:
        """0.0.0.0-255.255.255.255, all protocols and ports: AWS's 0/0 selector."""
        return cls(IPv4Address("0.0.0.0"), IPv4Address("255.255.255.255"))

    @classmethod
    def from_network(cls, network: str, ip_protocol: int = 0) -> Self:
        net = ipaddress.ip_network(network, strict=False)
        return cls(net.network_address, net.broadcast_address, ip_protocol)

    @property
    def ts_type(self) -> int:
        return TsType.IPV4_ADDR_RANGE if self.start_address.version == 4 else TsType.IPV6_ADDR_RANGE

    def encode(self) -> bytes:
        if self.start_address.version != self.end_address.version:
            raise ValueError("traffic selector mixes address families")
        addresses = self.start_address.packed + self.end_address.packed
        return (
            _u8(self.ts_type, "TS type")
            + _u8(self.ip_protocol, "IP protocol")
            + _u16(8 + len(addresses), "selector length")
            + _u16(self.start_port, "start port")
            + _u16(self.end_port, "end port")
            + addresses
        )

    @classmethod
    def decode(cls, r: Reader) -> Self:
        ts_type = r.u8()
        proto = r.u8()
        length = r.u16()
        size = _TS_ADDRESS_SIZES.get(ts_type)
        if size is None:
            raise ParseError(f"traffic selector type {ts_type} not supported")
        if length != 8 + 2 * size:
            raise ParseError(f"traffic selector type {ts_type} with length {length}")
        start_port = r.u16()
        end_port = r.u16()
        make = IPv4Address if size == 4 else IPv6Address
        return cls(make(r.take(size)), make(r.take(size)), proto, start_port, end_port)


@dataclass(frozen=True)
class TsPayload:
    """Traffic Selector payload body; use `TsiPayload` or `TsrPayload`."""

    selectors: tuple[TrafficSelector, ...]
    payload_type: ClassVar[int] = 0

    def encode_body(self) -> bytes:
        return (
            _u8(len(self.selectors), "TS count")
            + b"\x00\x00\x00"
            + b"".join(s.encode() for s in self.selectors)
        )

    @classmethod
    def decode_body(cls, data: bytes) -> Self:
        r = Reader(data, "TS payload")
        count = r.u8()
        r.take(3)
        if count == 0:
            raise ParseError("TS payload without selectors")
        selectors = tuple(TrafficSelector.decode(r) for _ in range(count))
        r.expect_end()
        return cls(selectors)


@dataclass(frozen=True)
class TsiPayload(TsPayload):
    payload_type: ClassVar[int] = PayloadType.TSI


@dataclass(frozen=True)
class TsrPayload(TsPayload):
    payload_type: ClassVar[int] = PayloadType.TSR


# ---------------------------------------------------------------- Vendor ID, CERTREQ, unknown


@dataclass(frozen=True)
class VendorIdPayload:
    """Vendor ID payload (§3.12)."""

    data: bytes
    payload_type: ClassVar[int] = PayloadType.VENDOR_ID

    def encode_body(self) -> bytes:
        return self.data

    @classmethod
    def decode_body(cls, data: bytes) -> Self:
        return cls(bytes(data))


@dataclass(frozen=True)
class CertReqPayload:
    """Certificate Request (§3.7): kept raw, ignored (PSK only)."""

    encoding: int
    data: bytes
    payload_type: ClassVar[int] = PayloadType.CERTREQ

    def encode_body(self) -> bytes:
        return _u8(self.encoding, "cert encoding") + self.data

    @classmethod
    def decode_body(cls, data: bytes) -> Self:
        r = Reader(data, "CERTREQ payload")
        return cls(r.u8(), r.rest())


@dataclass(frozen=True)
class UnknownPayload:
    """A payload we do not interpret (unrecognized, or CERT/CP/EAP which we do not use).

    Only non-critical unrecognized payloads and RFC 7296 types reach this class; a
    critical unrecognized one makes the message fail with `UnsupportedCritical`.
    """

    payload_type: int
    critical: bool
    data: bytes

    def encode_body(self) -> bytes:
        return self.data


KnownPayload = (
    SaPayload
    | KePayload
    | NoncePayload
    | IdiPayload
    | IdrPayload
    | AuthPayload
    | NotifyPayload
    | DeletePayload
    | TsiPayload
    | TsrPayload
    | VendorIdPayload
    | CertReqPayload
)
"""A payload with its own body codec (``decode_body``/``encode_body``)."""

Payload = KnownPayload | UnknownPayload
"""Anything `cgwd.ike.v2.message.Message.payloads` may hold."""

PAYLOAD_CLASSES: dict[int, type[KnownPayload]] = {
    cls.payload_type: cls
    for cls in (
        SaPayload,
        KePayload,
        NoncePayload,
        IdiPayload,
        IdrPayload,
        AuthPayload,
        NotifyPayload,
        DeletePayload,
        TsiPayload,
        TsrPayload,
        VendorIdPayload,
        CertReqPayload,
    )
}
