"""ISAKMP messages (RFC 2408 §3.1): header, payload chain, and CBC encryption (RFC 2409 App. B).

Encrypted messages carry every payload after the header encrypted with the phase 1 cipher
(AES-CBC) under an IV the caller tracks (`cgwd.ike.v1.keys`); the plaintext is padded with
zeros to whole blocks and the header length covers the padding. After decryption the chain
is parsed and whatever follows its end is padding.

`decode_message` raises only `cgwd.ike.decode_errors.IkeDecodeError` subclasses.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from cgwd.ike.buffer import Reader
from cgwd.ike.crypto.cipher import AES_BLOCK, aes_cbc_decrypt, aes_cbc_encrypt
from cgwd.ike.decode_errors import IntegrityError, InvalidMajorVersion, ParseError
from cgwd.ike.v1.constants import HEADER_LENGTH, ISAKMP_VERSION, Flag, Payload
from cgwd.ike.v1.payloads import AnyPayload, decode_body
from cgwd.secret import Secret

MAX_PAYLOADS = 64


@dataclass(frozen=True)
class Header:
    spi_i: bytes
    spi_r: bytes
    next_payload: int
    exchange: int
    flags: int
    message_id: int
    length: int

    @property
    def encrypted(self) -> bool:
        return bool(self.flags & Flag.ENCRYPTION)


@dataclass
class Message:
    """A decoded or to-be-encoded ISAKMP message.

    ``chain`` (decoded messages) is the plaintext payload chain as received, and
    ``offsets`` the start of each payload in it: Quick Mode hashes cover raw payloads.
    """

    spi_i: bytes
    spi_r: bytes
    exchange: int
    message_id: int
    payloads: list[AnyPayload]
    flags: int = 0
    chain: bytes = b""
    offsets: list[int] = field(default_factory=list)

    def first(self, cls: type[AnyPayload]) -> AnyPayload | None:
        for p in self.payloads:
            if isinstance(p, cls):
                return p
        return None

    def all(self, cls: type[AnyPayload]) -> list[AnyPayload]:
        return [p for p in self.payloads if isinstance(p, cls)]

    def raw_after(self, index: int) -> bytes:
        """The payload chain octets from payload ``index + 1`` to the end of the chain."""
        if index + 1 >= len(self.offsets):
            return b""
        return self.chain[self.offsets[index + 1] :]

    def summary(self) -> str:
        names = []
        for p in self.payloads:
            try:
                names.append(Payload(p.type).name)
            except ValueError:
                names.append(str(p.type))
        return f"exchange {self.exchange} mid {self.message_id:08x} [{' '.join(names)}]"


def encode_chain(payloads: list[AnyPayload]) -> bytes:
    """The payloads with generic headers linked by Next Payload (last one 0)."""
    out = bytearray()
    for i, p in enumerate(payloads):
        body = p.body()
        nxt = payloads[i + 1].type if i + 1 < len(payloads) else 0
        out += bytes([nxt, 0]) + (len(body) + 4).to_bytes(2, "big") + body
    return bytes(out)


def _header(  # noqa: PLR0917
    spi_i: bytes, spi_r: bytes, first: int, exchange: int, flags: int, mid: int, length: int
) -> bytes:
    return (
        spi_i
        + spi_r
        + bytes([first, ISAKMP_VERSION, exchange, flags])
        + mid.to_bytes(4, "big")
        + length.to_bytes(4, "big")
    )


def encode_message(
    msg: Message, key: Secret | None = None, iv: bytes | None = None
) -> tuple[bytes, bytes]:
    """(datagram, last ciphertext block) for ``msg``; encrypted when ``key`` is given.

    The last block is the next IV of the exchange (RFC 2409 Appendix B); b"" unencrypted.
    """
    chain = encode_chain(msg.payloads)
    first = msg.payloads[0].type if msg.payloads else 0
    flags = msg.flags & ~Flag.ENCRYPTION
    if key is None:
        raw = (
            _header(
                msg.spi_i,
                msg.spi_r,
                first,
                msg.exchange,
                flags,
                msg.message_id,
                HEADER_LENGTH + len(chain),
            )
            + chain
        )
        return raw, b""
    if iv is None:
        raise ValueError("encryption needs an IV")
    padded = chain + bytes(-len(chain) % AES_BLOCK)
    cipher = aes_cbc_encrypt(key, iv, padded)
    header = _header(
        msg.spi_i,
        msg.spi_r,
        first,
        msg.exchange,
        flags | Flag.ENCRYPTION,
        msg.message_id,
        HEADER_LENGTH + len(cipher),
    )
    return header + cipher, cipher[-AES_BLOCK:]


def decode_header(data: bytes) -> Header:
    """The fixed header; checks the version and that the length matches the datagram."""
    if len(data) < HEADER_LENGTH:
        raise ParseError(f"datagram of {len(data)} octets is shorter than an ISAKMP header")
    r = Reader(data[:HEADER_LENGTH], "ISAKMP header")
    spi_i, spi_r = r.take(8), r.take(8)
    first, version, exchange, flags = r.u8(), r.u8(), r.u8(), r.u8()
    mid, length = r.u32(), r.u32()
    if version >> 4 != 1:
        raise InvalidMajorVersion(
            version >> 4, version & 0xF, exchange_type=exchange, message_id=mid
        )
    if length != len(data):
        raise ParseError(f"header length {length} but {len(data)} octets received")
    return Header(spi_i, spi_r, first, exchange, flags, mid, length)


def decode_chain(first: int, chain: bytes, *, padded: bool) -> tuple[list[AnyPayload], list[int]]:
    """Payloads and their offsets; trailing octets after the chain only when ``padded``."""
    r = Reader(chain, "payload chain")
    payloads: list[AnyPayload] = []
    offsets: list[int] = []
    nxt = first
    while nxt != Payload.NONE:
        if len(payloads) >= MAX_PAYLOADS:
            raise ParseError("too many payloads")
        offsets.append(r.offset)
        ptype = nxt
        nxt = r.u8()
        if r.u8() != 0:
            raise ParseError(f"payload {ptype}: reserved octet not zero")
        length = r.u16()
        if length < 4:
            raise ParseError(f"payload {ptype}: length {length}")
        payloads.append(decode_body(ptype, r.take(length - 4)))
    if not padded:
        r.expect_end()
    elif r.remaining > 255:
        raise ParseError(f"{r.remaining} octets after the payload chain")
    return payloads, offsets


def decode_message(
    data: bytes, key: Secret | None = None, iv: bytes | None = None
) -> tuple[Message, bytes]:
    """(message, last ciphertext block) of a datagram.

    An encrypted message needs ``key`` and ``iv``; without them (or with a plaintext
    message) the payloads are parsed as they are. Raises `ParseError` for malformed input
    and `IntegrityError` when an encrypted body does not decrypt to a well-formed chain
    (IKEv1 has no ICV in phase 1 messages: a wrong key shows up this way).
    """
    hdr = decode_header(data)
    body = data[HEADER_LENGTH:]
    last = b""
    if hdr.encrypted:
        if key is None or iv is None:
            raise ParseError("encrypted message without keys")
        if not body or len(body) % AES_BLOCK:
            raise ParseError("encrypted body is not whole AES blocks")
        try:
            chain = aes_cbc_decrypt(key, iv, body)
        except ValueError:
            raise ParseError("cannot decrypt") from None
        last = body[-AES_BLOCK:]
        try:
            payloads, offsets = decode_chain(hdr.next_payload, chain, padded=True)
        except ParseError as exc:
            raise IntegrityError(f"decrypted body is not a payload chain: {exc}") from None
        chain = chain[: offsets[-1] + _payload_len(chain, offsets[-1])] if offsets else b""
    else:
        payloads, offsets = decode_chain(hdr.next_payload, body, padded=False)
        chain = body
    msg = Message(
        hdr.spi_i, hdr.spi_r, hdr.exchange, hdr.message_id, payloads, hdr.flags, chain, offsets
    )
    return msg, last


def _payload_len(chain: bytes, offset: int) -> int:
    return int.from_bytes(chain[offset + 2 : offset + 4], "big")
