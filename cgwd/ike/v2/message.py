"""IKEv2 messages: header (RFC 7296 §3.1), payload chain (§3.2) and Encrypted payload (§3.14).

`encode_message` builds the datagram payload (no NAT-T non-ESP marker: that is the
transport's); with an `SkCipher` every payload goes inside one SK payload, the only form
we send. `decode_header` checks the header alone (to pick the IKE SA and its keys), then
`decode_message` decodes the rest. Decoding raises only `IkeDecodeError` subclasses:
`ParseError` (`InvalidMajorVersion` for a non-2 major version), `IntegrityError` and
`UnsupportedCritical`.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from typing import TypeVar

from cgwd.ike.buffer import Reader
from cgwd.ike.constants import (
    GENERIC_PAYLOAD_HEADER_LENGTH,
    IKE_HEADER_LENGTH,
    IKE_VERSION_MAJOR,
    IKE_VERSION_MINOR,
    RFC7296_PAYLOAD_TYPES,
    ExchangeType,
    HeaderFlag,
    NotifyType,
    PayloadType,
    name_of,
)
from cgwd.ike.crypto.ikev2_sk import SkCipher
from cgwd.ike.decode_errors import InvalidMajorVersion, ParseError, UnsupportedCritical
from cgwd.ike.rng import Rng
from cgwd.ike.v2.payloads import PAYLOAD_CLASSES, NotifyPayload, Payload, UnknownPayload

_HEADER = struct.Struct("!QQBBBBII")  # SPIi SPIr next version exchange flags msgid length
_CRITICAL = 0x80  # §3.2 generic payload header
MAX_MESSAGE_LENGTH = 0xFFFF  # one UDP datagram

P = TypeVar("P", bound=Payload)


@dataclass(frozen=True)
class Header:
    """The fixed IKE header (§3.1) as received."""

    spi_i: int
    spi_r: int
    next_payload: int
    major_version: int
    minor_version: int
    exchange_type: int
    flags: int
    message_id: int
    length: int

    @property
    def initiator(self) -> bool:
        """I flag: sent by the original initiator of the IKE SA."""
        return bool(self.flags & HeaderFlag.INITIATOR)

    @property
    def response(self) -> bool:
        """R flag."""
        return bool(self.flags & HeaderFlag.RESPONSE)

    @property
    def version_flag(self) -> bool:
        return bool(self.flags & HeaderFlag.VERSION)


@dataclass
class Message:
    """An IKEv2 message. ``payloads`` are the decrypted inner payloads when ``encrypted``."""

    exchange_type: int
    message_id: int
    spi_i: int
    spi_r: int
    initiator: bool  # I flag
    response: bool  # R flag
    payloads: list[Payload] = field(default_factory=list)
    encrypted: bool = False  # decode: the payloads came out of an SK payload
    minor_version: int = IKE_VERSION_MINOR
    version_flag: bool = False

    def add(self, *payloads: Payload) -> None:
        self.payloads.extend(payloads)

    def get(self, cls: type[P]) -> P | None:
        """The first payload of class ``cls`` (e.g. ``msg.get(NoncePayload)``), or ``None``."""
        for p in self.payloads:
            if type(p) is cls:
                return p
        return None

    def get_all(self, cls: type[P]) -> list[P]:
        return [p for p in self.payloads if type(p) is cls]

    def notify(self, notify_type: int) -> NotifyPayload | None:
        """The first Notify of ``notify_type``, or ``None``."""
        for p in self.payloads:
            if isinstance(p, NotifyPayload) and p.type == notify_type:
                return p
        return None

    def notifies(self) -> list[NotifyPayload]:
        return [p for p in self.payloads if isinstance(p, NotifyPayload)]

    def summary(self) -> str:
        """strongSwan-style one-liner for logs, e.g. ``IKE_AUTH request 1 [ IDi AUTH SA ]``.

        Shows payload types and notify names only, never payload contents.
        """
        exchange = name_of(ExchangeType, self.exchange_type)
        kind = "response" if self.response else "request"
        parts = " ".join(_payload_label(p) for p in self.payloads)
        return f"{exchange} {kind} {self.message_id} [ {parts} ]".replace("[  ]", "[ ]")

    @property
    def flags(self) -> int:
        return (
            (HeaderFlag.INITIATOR if self.initiator else 0)
            | (HeaderFlag.RESPONSE if self.response else 0)
            | (HeaderFlag.VERSION if self.version_flag else 0)
        )


_LABELS: dict[int, str] = {
    PayloadType.SA: "SA",
    PayloadType.KE: "KE",
    PayloadType.IDI: "IDi",
    PayloadType.IDR: "IDr",
    PayloadType.CERT: "CERT",
    PayloadType.CERTREQ: "CERTREQ",
    PayloadType.AUTH: "AUTH",
    PayloadType.NONCE: "No",
    PayloadType.DELETE: "D",
    PayloadType.VENDOR_ID: "V",
    PayloadType.TSI: "TSi",
    PayloadType.TSR: "TSr",
    PayloadType.CP: "CP",
    PayloadType.EAP: "EAP",
}


def _payload_label(p: Payload) -> str:
    if isinstance(p, NotifyPayload):
        return f"N({name_of(NotifyType, p.type)})"
    return _LABELS.get(p.payload_type, f"UNKNOWN({p.payload_type})")


# ---------------------------------------------------------------- encoding


def _chain(payloads: list[Payload]) -> tuple[int, bytes]:
    """(type of the first payload, the payloads chained with generic headers)."""
    out = bytearray()
    n = len(payloads)
    for i, p in enumerate(payloads):
        if not 0 < p.payload_type <= 0xFF or p.payload_type == PayloadType.SK:
            raise ValueError(f"cannot encode a payload of type {p.payload_type}")
        body = p.encode_body()
        next_type = payloads[i + 1].payload_type if i + 1 < n else PayloadType.NONE
        critical = _CRITICAL if isinstance(p, UnknownPayload) and p.critical else 0
        length = GENERIC_PAYLOAD_HEADER_LENGTH + len(body)
        if length > MAX_MESSAGE_LENGTH:
            raise ValueError(f"payload {p.payload_type} too long")
        out += struct.pack("!BBH", next_type, critical, length) + body
    return (payloads[0].payload_type if payloads else PayloadType.NONE), bytes(out)


def _header(msg: Message, next_payload: int, length: int) -> bytes:
    if length > MAX_MESSAGE_LENGTH:
        raise ValueError(f"message of {length} octets does not fit a datagram")
    return _HEADER.pack(
        msg.spi_i,
        msg.spi_r,
        next_payload,
        (IKE_VERSION_MAJOR << 4) | msg.minor_version,
        msg.exchange_type,
        msg.flags,
        msg.message_id,
        length,
    )


def encode_message(msg: Message, sk: SkCipher | None, rng: Rng) -> bytes:
    """The message as sent. With ``sk``, all payloads are protected in one SK payload
    (an empty one for an empty INFORMATIONAL); ``rng`` supplies the IV (see
    `SkCipher.encrypt`).

    Raises ``ValueError`` for values that cannot be encoded (local error).
    """
    first, inner = _chain(msg.payloads)
    if sk is None:
        return _header(msg, first, IKE_HEADER_LENGTH + len(inner)) + inner
    body_len = sk.body_length(len(inner))
    sk_len = GENERIC_PAYLOAD_HEADER_LENGTH + body_len
    total = IKE_HEADER_LENGTH + sk_len
    aad = _header(msg, PayloadType.SK, total) + struct.pack("!BBH", first, 0, sk_len)
    body = sk.encrypt(inner, aad, rng)
    assert len(body) == body_len
    return aad + body


# ---------------------------------------------------------------- decoding


def decode_header(data: bytes | memoryview) -> Header:
    """The IKE header of a datagram, checked against the datagram's length.

    Raises `InvalidMajorVersion` (answer INVALID_MAJOR_VERSION, §2.5) or `ParseError`.
    """
    if len(data) < IKE_HEADER_LENGTH:
        raise ParseError(f"datagram of {len(data)} octets is shorter than an IKE header")
    spi_i, spi_r, next_payload, version, exchange, flags, msg_id, length = _HEADER.unpack_from(data)
    major, minor = version >> 4, version & 0x0F
    if major != IKE_VERSION_MAJOR:
        raise InvalidMajorVersion(
            major, minor, spi_i=spi_i, spi_r=spi_r, exchange_type=exchange, message_id=msg_id
        )
    if length != len(data):
        raise ParseError(f"header length {length} but datagram of {len(data)} octets")
    return Header(spi_i, spi_r, next_payload, major, minor, exchange, flags, msg_id, length)


def _decode_payload(ptype: int, critical: bool, body: bytes) -> Payload:
    cls = PAYLOAD_CLASSES.get(ptype)
    if cls is not None:
        return cls.decode_body(body)
    if ptype not in RFC7296_PAYLOAD_TYPES and critical:
        raise UnsupportedCritical(ptype)
    # §2.5: an unrecognized non-critical payload is skipped; we keep it so the message
    # round-trips, and the exchanges ignore UnknownPayload.
    return UnknownPayload(ptype, critical, body)


_RawPayload = tuple[int, bool, bytes]  # type, critical bit, body


def _walk_chain(r: Reader, first: int, *, allow_sk: bool) -> tuple[list[_RawPayload], int, int]:
    """Split the chain from ``first`` on into raw payloads, bodies not yet decoded.

    Stops at an SK payload (if allowed) and returns (payloads before it, SK's next-payload
    field, offset of the SK body), else (payloads, -1, -1).
    """
    raw: list[_RawPayload] = []
    ptype = first
    while ptype != PayloadType.NONE:
        next_type = r.u8()
        critical = bool(r.u8() & _CRITICAL)
        length = r.u16()
        if length < GENERIC_PAYLOAD_HEADER_LENGTH:
            raise ParseError(f"payload {ptype} with length {length}")
        if ptype == PayloadType.SK:
            if not allow_sk:
                raise ParseError("Encrypted payload inside an Encrypted payload")
            if length != GENERIC_PAYLOAD_HEADER_LENGTH + r.remaining:
                raise ParseError("Encrypted payload is not the last payload")  # §3.14
            return raw, next_type, r.offset
        raw.append((ptype, critical, r.take(length - GENERIC_PAYLOAD_HEADER_LENGTH)))
        ptype = next_type
    r.expect_end()
    return raw, -1, -1


def decode_message(data: bytes | memoryview, sk: SkCipher | None) -> Message:
    """Decode and, with ``sk``, verify and decrypt a whole message.

    ``sk`` is the inbound cipher of the IKE SA (``None`` for IKE_SA_INIT). An SK payload
    without ``sk``, or unprotected payloads next to an SK payload, are `ParseError`s.
    Payload bodies of a protected message are only looked at after its ICV verified, so
    `UnsupportedCritical` never comes from unauthenticated octets of such a message.
    Raises only `ParseError`, `IntegrityError` and `UnsupportedCritical`.
    """
    raw = bytes(data)
    header = decode_header(raw)
    r = Reader(raw, "IKE message")
    r.take(IKE_HEADER_LENGTH)
    chain, inner_first, body_offset = _walk_chain(r, header.next_payload, allow_sk=True)
    encrypted = body_offset >= 0
    if encrypted:
        if sk is None:
            raise ParseError("Encrypted payload but no keys for it")
        if chain:
            raise ParseError("unprotected payloads before the Encrypted payload")
        plaintext = sk.decrypt(raw[body_offset:], raw[:body_offset])
        chain, _, _ = _walk_chain(
            Reader(plaintext, "Encrypted payload contents"), inner_first, allow_sk=False
        )
    payloads = [_decode_payload(ptype, critical, body) for ptype, critical, body in chain]
    return Message(
        exchange_type=header.exchange_type,
        message_id=header.message_id,
        spi_i=header.spi_i,
        spi_r=header.spi_r,
        initiator=header.initiator,
        response=header.response,
        payloads=payloads,
        encrypted=encrypted,
        minor_version=header.minor_version,
        version_flag=header.version_flag,
    )
