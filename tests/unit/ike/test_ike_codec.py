"""IKEv2 codec: exact round trips, strict rejection tables, SK tampering, fuzzing."""

from __future__ import annotations

import struct

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from ike_messages import SUITES, all_messages, ike_auth_request, ike_sa_init_request

from cgwd.ike.constants import ExchangeType, NotifyType, PayloadType
from cgwd.ike.crypto import IkeKeys, IkeSuite, SkCipher, derive_ike_keys
from cgwd.ike.decode_errors import (
    IkeDecodeError,
    IntegrityError,
    InvalidMajorVersion,
    ParseError,
    UnsupportedCritical,
)
from cgwd.ike.rng import SeededRng
from cgwd.ike.v2.message import Message, decode_header, decode_message, encode_message
from cgwd.ike.v2.payloads import (
    PAYLOAD_CLASSES,
    NoncePayload,
    NotifyPayload,
    SaPayload,
    UnknownPayload,
)


def raw_message(
    chain: list[tuple[int, int, bytes]], *, version: int = 0x20, length: int | None = None
) -> bytes:
    """A datagram built by hand: (payload type, flags octet, body) entries, no encoder."""
    out = b""
    for i, (_, flags, body) in enumerate(chain):
        nxt = chain[i + 1][0] if i + 1 < len(chain) else 0
        out += struct.pack("!BBH", nxt, flags, 4 + len(body)) + body
    first = chain[0][0] if chain else 0
    total = 28 + len(out) if length is None else length
    return struct.pack("!QQBBBBII", 1, 0, first, version, 34, 0x08, 0, total) + out


def keys_for(suite: IkeSuite) -> IkeKeys:
    return derive_ike_keys(suite, b"i" * 32, b"r" * 32, b"g" * 32, 0x0102030405060708, 0x1112)


# ---------------------------------------------------------------- round trips


@pytest.mark.parametrize("msg", all_messages(), ids=lambda m: f"{m.exchange_type}-{m.message_id}")
def test_plain_round_trip_is_exact(msg: Message) -> None:
    wire = encode_message(msg, None, SeededRng(0))
    assert decode_message(wire, None) == msg
    assert encode_message(decode_message(wire, None), None, SeededRng(1)) == wire


@pytest.mark.parametrize("suite", SUITES, ids=str)
@pytest.mark.parametrize("msg", all_messages(), ids=lambda m: f"{m.exchange_type}-{m.message_id}")
def test_sk_round_trip(suite: IkeSuite, msg: Message) -> None:
    out, inbound = keys_for(suite).sk_ciphers(suite, initiator=True)
    peer_out, peer_in = keys_for(suite).sk_ciphers(suite, initiator=False)
    wire = encode_message(msg, out, SeededRng(3))
    decoded = decode_message(wire, peer_in)
    assert decoded.encrypted and decoded.payloads == msg.payloads
    assert decoded.spi_i == msg.spi_i and decoded.message_id == msg.message_id
    # Same keys and IV source -> same bytes: the encoding is a function of message, keys, IV.
    fresh_out, _ = keys_for(suite).sk_ciphers(suite, initiator=True)
    assert encode_message(decoded, fresh_out, SeededRng(3)) == wire
    # The other direction's keys cannot open it.
    with pytest.raises(IntegrityError):
        decode_message(wire, inbound)
    assert decode_message(encode_message(msg, peer_out, SeededRng(4)), inbound).payloads == (
        msg.payloads
    )


def test_iv_choice() -> None:
    gcm, cbc = SUITES[4], SUITES[0]
    out, _ = keys_for(gcm).sk_ciphers(gcm, initiator=True)
    msg = Message(37, 1, 1, 2, initiator=True, response=False)
    ivs = [encode_message(msg, out, SeededRng(i))[32:40] for i in range(3)]
    # GCM: a counter from a random start, so never a repeat under one key (RFC 5282 §3.1)
    start = int.from_bytes(ivs[0], "big")
    assert [int.from_bytes(iv, "big") for iv in ivs] == [start, start + 1, start + 2]
    out, _ = keys_for(cbc).sk_ciphers(cbc, initiator=True)
    rng = SeededRng(7)
    expected = SeededRng(7).bytes(16)
    assert encode_message(msg, out, rng)[32:48] == expected  # CBC: fresh random IV


def test_cbc_padding_and_lengths() -> None:
    suite = SUITES[0]
    out, _ = keys_for(suite).sk_ciphers(suite, initiator=True)
    _, peer_in = keys_for(suite).sk_ciphers(suite, initiator=False)
    for n in range(40):
        msg = Message(37, 2, 1, 2, initiator=True, response=False)
        if n:
            msg.add(NotifyPayload(40000, b"x" * n))
        wire = encode_message(msg, out, SeededRng(n))
        header = decode_header(wire)
        assert header.length == len(wire)
        body = len(wire) - 28 - 4 - 16 - 12  # header, SK header, IV, ICV
        assert body % 16 == 0
        assert decode_message(wire, peer_in).payloads == msg.payloads


def test_header_fields() -> None:
    wire = encode_message(ike_sa_init_request(), None, SeededRng(0))
    h = decode_header(wire)
    assert (h.major_version, h.minor_version, h.exchange_type) == (2, 0, ExchangeType.IKE_SA_INIT)
    assert h.initiator and not h.response and not h.version_flag
    assert h.next_payload == PayloadType.SA and h.length == len(wire)


# ---------------------------------------------------------------- strict rejections

NONCE = (PayloadType.NONCE, 0, b"n" * 16)


def sa_body(*proposals: bytes) -> bytes:
    return b"".join(proposals)


def proposal(
    *transforms: bytes,
    last: int = 0,
    num: int = 1,
    proto: int = 1,
    spi: bytes = b"",
    count: int | None = None,
) -> bytes:
    body = b"".join(transforms)
    n = len(transforms) if count is None else count
    return (
        struct.pack("!BBHBBBB", last, 0, 8 + len(spi) + len(body), num, proto, len(spi), n)
        + spi
        + body
    )


def transform(ttype: int, tid: int, attrs: bytes = b"", last: int = 0) -> bytes:
    return struct.pack("!BBHBBH", last, 0, 8 + len(attrs), ttype, 0, tid) + attrs


KEYLEN_128 = struct.pack("!HH", 0x800E, 128)

REJECTED: list[tuple[str, bytes, type[IkeDecodeError]]] = [
    ("short header", b"\x00" * 27, ParseError),
    ("IKEv1 version", raw_message([NONCE], version=0x10), InvalidMajorVersion),
    ("version 3", raw_message([NONCE], version=0x30), InvalidMajorVersion),
    ("length too long", raw_message([NONCE], length=28 + 20 + 1), ParseError),
    ("length too short", raw_message([NONCE], length=28 + 19), ParseError),
    ("payload length < 4", raw_message([NONCE])[:30] + b"\x00\x03" + b"n" * 16, ParseError),
    ("payload overruns", raw_message([NONCE])[:30] + b"\x00\x15" + b"n" * 16, ParseError),
    ("trailing octets", raw_message([NONCE], length=28 + 21) + b"\x00", ParseError),
    ("nonce 15", raw_message([(PayloadType.NONCE, 0, b"n" * 15)]), ParseError),
    ("nonce 257", raw_message([(PayloadType.NONCE, 0, b"n" * 257)]), ParseError),
    ("empty SA", raw_message([(PayloadType.SA, 0, b"")]), ParseError),
    (
        "transform count",
        raw_message([(PayloadType.SA, 0, proposal(transform(1, 12, KEYLEN_128), count=2))]),
        ParseError,
    ),
    (
        "transform not marked last",
        raw_message([(PayloadType.SA, 0, proposal(transform(1, 12, KEYLEN_128, last=3)))]),
        ParseError,
    ),
    (
        "transform after last",
        raw_message([(PayloadType.SA, 0, proposal(transform(2, 2), transform(3, 2, last=3)))]),
        ParseError,
    ),
    (
        "proposal not marked last",
        raw_message([(PayloadType.SA, 0, proposal(transform(2, 2), last=2))]),
        ParseError,
    ),
    (
        "proposal numbers 1, 3",
        raw_message(
            [
                (
                    PayloadType.SA,
                    0,
                    proposal(transform(2, 2), last=2) + proposal(transform(2, 2), num=3),
                )
            ]
        ),
        ParseError,
    ),
    (
        "proposal number 0",
        raw_message([(PayloadType.SA, 0, proposal(transform(2, 2), num=0))]),
        ParseError,
    ),
    (
        "ESP SPI of 3 octets",
        raw_message([(PayloadType.SA, 0, proposal(transform(2, 2), proto=3, spi=b"abc"))]),
        ParseError,
    ),
    (
        "two key lengths",
        raw_message([(PayloadType.SA, 0, proposal(transform(1, 12, KEYLEN_128 + KEYLEN_128)))]),
        ParseError,
    ),
    (
        "key length as TLV",
        raw_message(
            [
                (
                    PayloadType.SA,
                    0,
                    proposal(transform(1, 12, struct.pack("!HH", 14, 2) + b"\x00\x80")),
                )
            ]
        ),
        ParseError,
    ),
    (
        "attribute overruns transform",
        raw_message(
            [(PayloadType.SA, 0, proposal(transform(1, 12, struct.pack("!HH", 15, 9) + b"x")))]
        ),
        ParseError,
    ),
    (
        "transform length 7",
        raw_message([(PayloadType.SA, 0, proposal(b"\x00\x00\x00\x07" + b"\x01\x00\x00"))]),
        ParseError,
    ),
    ("empty KE data", raw_message([(PayloadType.KE, 0, b"\x00\x0e\x00\x00")]), ParseError),
    (
        "IPv4 ID of 5",
        raw_message([(PayloadType.IDI, 0, b"\x01\x00\x00\x00" + b"x" * 5)]),
        ParseError,
    ),
    ("empty ID", raw_message([(PayloadType.IDR, 0, b"\x02\x00\x00\x00")]), ParseError),
    ("empty AUTH", raw_message([(PayloadType.AUTH, 0, b"\x02\x00\x00\x00")]), ParseError),
    (
        "notify SPI overruns",
        raw_message([(PayloadType.NOTIFY, 0, b"\x03\x04\x40\x09ab")]),
        ParseError,
    ),
    (
        "notify SPI size 3",
        raw_message([(PayloadType.NOTIFY, 0, b"\x03\x03\x40\x09abc")]),
        ParseError,
    ),
    (
        "delete IKE with SPI",
        raw_message([(PayloadType.DELETE, 0, b"\x01\x08\x00\x01" + b"s" * 8)]),
        ParseError,
    ),
    (
        "delete ESP count",
        raw_message([(PayloadType.DELETE, 0, b"\x03\x04\x00\x02" + b"s" * 4)]),
        ParseError,
    ),
    ("delete ESP none", raw_message([(PayloadType.DELETE, 0, b"\x03\x04\x00\x00")]), ParseError),
    ("TS count 0", raw_message([(PayloadType.TSI, 0, b"\x00\x00\x00\x00")]), ParseError),
    (
        "TS count 2, one present",
        raw_message(
            [(PayloadType.TSI, 0, b"\x02\x00\x00\x00" + b"\x07\x00\x00\x10" + b"\x00" * 12)]
        ),
        ParseError,
    ),
    (
        "TS IPv4 length 40",
        raw_message(
            [(PayloadType.TSR, 0, b"\x01\x00\x00\x00" + b"\x07\x00\x00\x28" + b"\x00" * 36)]
        ),
        ParseError,
    ),
    (
        "TS unknown type",
        raw_message(
            [(PayloadType.TSR, 0, b"\x01\x00\x00\x00" + b"\x09\x00\x00\x10" + b"\x00" * 12)]
        ),
        ParseError,
    ),
    ("SK without keys", raw_message([(PayloadType.SK, 0, b"x" * 40)]), ParseError),
    ("SK not last", raw_message([(PayloadType.SK, 0, b"x" * 40), NONCE]), ParseError),
    ("unknown critical", raw_message([NONCE, (99, 0x80, b"x")]), UnsupportedCritical),
]


@pytest.mark.parametrize(
    ("data", "error"), [(d, e) for _, d, e in REJECTED], ids=[n for n, _, _ in REJECTED]
)
def test_rejects(data: bytes, error: type[IkeDecodeError]) -> None:
    with pytest.raises(error):
        decode_message(data, None)


def test_invalid_major_version_carries_the_header_fields() -> None:
    data = raw_message([NONCE], version=0x31)
    with pytest.raises(InvalidMajorVersion) as info:
        decode_header(data)
    err = info.value
    assert (err.major, err.minor, err.spi_i, err.spi_r) == (3, 1, 1, 0)
    assert (err.exchange_type, err.message_id) == (34, 0)


def test_no_unsupported_critical_from_unauthenticated_octets() -> None:
    # A critical unknown payload in clear in front of an SK payload: rejected as
    # malformed before anything is decoded, never answered as UNSUPPORTED_CRITICAL.
    data = raw_message([(99, 0x80, b"x"), (PayloadType.SK, 0, b"\x00" * 40)])
    suite = SUITES[0]
    _, peer_in = keys_for(suite).sk_ciphers(suite, initiator=False)
    with pytest.raises(ParseError):
        decode_message(data, peer_in)


def test_unsupported_critical_names_the_type() -> None:
    with pytest.raises(UnsupportedCritical) as info:
        decode_message(raw_message([(150, 0x80, b"")]), None)
    assert info.value.payload_type == 150


def test_unknown_non_critical_is_kept_and_skipped() -> None:
    msg = decode_message(raw_message([NONCE, (99, 0x00, b"xyz"), NONCE]), None)
    assert msg.payloads == [
        NoncePayload(b"n" * 16),
        UnknownPayload(99, False, b"xyz"),
        NoncePayload(b"n" * 16),
    ]


def test_critical_bit_ignored_on_rfc7296_types() -> None:
    # §3.2: CERT (37) is defined by RFC 7296, so its critical bit does not reject the message.
    msg = decode_message(
        raw_message([(PayloadType.CERT, 0x80, b"\x04cert"), (PayloadType.NONCE, 0x80, b"n" * 16)]),
        None,
    )
    assert msg.payloads == [UnknownPayload(37, True, b"\x04cert"), NoncePayload(b"n" * 16)]


def test_sk_in_sk_and_unprotected_payloads_are_rejected() -> None:
    suite = SUITES[0]
    out, _ = keys_for(suite).sk_ciphers(suite, initiator=True)
    _, peer_in = keys_for(suite).sk_ciphers(suite, initiator=False)
    inner = struct.pack("!BBH", 0, 0, 8) + b"abcd"  # a nested SK payload as plaintext
    aad_len = 28 + 4
    body_len = out.body_length(len(inner))
    header = struct.pack("!QQBBBBII", 1, 2, PayloadType.SK, 0x20, 37, 0x08, 1, aad_len + body_len)
    aad = header + struct.pack("!BBH", PayloadType.SK, 0, 4 + body_len)
    wire = aad + out.encrypt(inner, aad, SeededRng(0))
    with pytest.raises(ParseError):
        decode_message(wire, peer_in)
    # a Nonce in clear followed by SK
    good = encode_message(Message(37, 1, 1, 2, initiator=True, response=False), out, SeededRng(0))
    nonce = struct.pack("!BBH", PayloadType.SK, 0, 20) + b"n" * 16
    mixed = (
        good[:16]
        + bytes([PayloadType.NONCE])
        + good[17:24]
        + struct.pack("!I", len(good) + 20)
        + nonce
        + good[28:]
    )
    with pytest.raises(ParseError):
        decode_message(mixed, peer_in)


# ---------------------------------------------------------------- SK tampering

STRUCTURAL = {16, 17, 24, 25, 26, 27, 30, 31}  # next payload, version, lengths


@pytest.mark.parametrize("suite", SUITES, ids=str)
def test_any_flipped_octet_fails_integrity(suite: IkeSuite) -> None:
    out, _ = keys_for(suite).sk_ciphers(suite, initiator=True)
    _, peer_in = keys_for(suite).sk_ciphers(suite, initiator=False)
    wire = encode_message(ike_auth_request(), out, SeededRng(9))
    for i in range(len(wire)):
        for flip in (0x01, 0x80):
            bad = bytearray(wire)
            bad[i] ^= flip
            expected = IkeDecodeError if i in STRUCTURAL else IntegrityError
            with pytest.raises(expected):
                decode_message(bytes(bad), peer_in)
    for cut in (1, 12, 16, len(wire) - 28):
        with pytest.raises(IkeDecodeError):
            decode_message(wire[:-cut], peer_in)


def test_authenticated_bad_pad_length_is_a_parse_error() -> None:
    suite = SUITES[4]  # GCM: block size 1, so any pad length byte can be forged by the key holder
    out, _ = keys_for(suite).sk_ciphers(suite, initiator=True)
    _, peer_in = keys_for(suite).sk_ciphers(suite, initiator=False)
    sk: SkCipher = out
    plaintext = b"\x00" * 5 + b"\x09"  # pad length 9 > 5 octets before it
    aad_len = 28 + 4
    body_len = sk.iv_bytes + len(plaintext) + sk.icv_bytes
    header = struct.pack("!QQBBBBII", 1, 2, PayloadType.SK, 0x20, 37, 0x08, 1, aad_len + body_len)
    aad = header + struct.pack("!BBH", 0, 0, 4 + body_len)
    iv = b"\x00" * 8
    assert sk._gcm is not None
    sealed = sk._gcm.seal(sk._salt + iv, plaintext, aad)
    with pytest.raises(ParseError):
        decode_message(aad + iv + sealed, peer_in)


# ---------------------------------------------------------------- fuzzing

FUZZ = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
VALID_WIRES = [encode_message(m, None, SeededRng(0)) for m in all_messages()]
SK_SUITE = SUITES[0]
SK_IN = keys_for(SK_SUITE).sk_ciphers(SK_SUITE, initiator=False)[1]


def decode_or_reject(data: bytes, sk: SkCipher | None) -> Message | None:
    try:
        return decode_message(data, sk)
    except IkeDecodeError:
        return None


@FUZZ
@given(st.binary(max_size=600))
def test_fuzz_arbitrary_bytes(data: bytes) -> None:
    decode_or_reject(data, None)
    decode_or_reject(data, SK_IN)
    if len(data) >= 28:
        # a consistent header in front of the noise reaches the payload parsers
        fixed = data[:17] + b"\x20" + data[18:24] + struct.pack("!I", len(data)) + data[28:]
        decode_or_reject(fixed, None)


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    data = bytearray(draw(st.sampled_from(VALID_WIRES)))
    for _ in range(draw(st.integers(1, 6))):
        op = draw(st.sampled_from(["flip", "set", "insert", "delete"]))
        pos = draw(st.integers(28, len(data) - 1)) if len(data) > 28 else 28
        if op == "flip" and pos < len(data):
            data[pos] ^= 1 << draw(st.integers(0, 7))
        elif op == "set" and pos < len(data):
            data[pos] = draw(st.integers(0, 255))
        elif op == "insert":
            data[pos:pos] = draw(st.binary(min_size=1, max_size=8))
        elif op == "delete" and pos < len(data):
            del data[pos : pos + draw(st.integers(1, 8))]
    if draw(st.booleans()):
        data[24:28] = struct.pack("!I", len(data))  # keep the header length consistent
    return bytes(data)


@FUZZ
@given(mutated())
def test_fuzz_mutations_of_valid_messages(data: bytes) -> None:
    msg = decode_or_reject(data, None)
    if msg is not None:
        # Whatever decodes re-encodes, and that encoding decodes to the same message.
        again = encode_message(msg, None, SeededRng(0))
        assert decode_message(again, None) == msg


@FUZZ
@given(st.sampled_from(sorted(PAYLOAD_CLASSES)), st.binary(max_size=200))
def test_fuzz_payload_bodies(payload_type: int, body: bytes) -> None:
    cls = PAYLOAD_CLASSES[payload_type]
    try:
        payload = cls.decode_body(body)
    except ParseError:
        return
    assert type(payload).decode_body(payload.encode_body()) == payload


def test_sa_payload_examples() -> None:
    sa = ike_sa_init_request().payloads[0]
    assert isinstance(sa, SaPayload)
    first = sa.proposals[0]
    assert [t.key_length for t in first.transforms] == [128, 256, None, None, None, None]
    assert NotifyType.COOKIE == 16390
