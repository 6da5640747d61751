"""The IKEv1 codec: layouts checked against scapy (an independent ISAKMP implementation),
round trips, encryption, and fuzzing (malformed input raises only IkeDecodeError)."""

from __future__ import annotations

import contextlib

from hypothesis import given, settings
from hypothesis import strategies as st
from scapy.layers.isakmp import (
    ISAKMP,
    ISAKMP_payload_Proposal,
    ISAKMP_payload_SA,
    ISAKMP_payload_Transform,
)

from cgwd.ike.decode_errors import IkeDecodeError, IntegrityError, InvalidMajorVersion
from cgwd.ike.v1.constants import (
    VID_DPD,
    VID_NAT_T_RFC,
    Exchange,
    Notify,
    P1Hash,
    Payload,
    ProtocolId,
)
from cgwd.ike.v1.keys import Phase1Suite
from cgwd.ike.v1.message import Message, decode_header, decode_message, encode_message
from cgwd.ike.v1.payloads import (
    Attribute,
    DeletePayload,
    HashPayload,
    IdPayload,
    KePayload,
    NatDPayload,
    NoncePayload,
    NotifyPayload,
    SaPayload,
    UnknownPayload,
    VendorIdPayload,
)
from cgwd.ike.v1.proposals import parse_phase1_transform, phase1_offer
from cgwd.secret import Secret

CKY_I, CKY_R = bytes.fromhex("0102030405060708"), bytes.fromhex("1112131415161718")
AWS_SUITE = Phase1Suite(128, P1Hash.SHA1, 2)


def _scapy_mm1() -> bytes:
    transform = ISAKMP_payload_Transform(
        transform_count=1,
        transform_id=1,
        transforms=[
            ("Encryption", "AES-CBC"),
            ("KeyLength", 128),
            ("Hash", "SHA"),
            ("Authentication", "PSK"),
            ("GroupDesc", "1024MODPgr"),
            ("LifeType", "Seconds"),
            ("LifeDuration", 28800),
        ],
    )
    sa = ISAKMP_payload_SA(prop=ISAKMP_payload_Proposal(proto=1, trans_nb=1, trans=transform))
    return bytes(ISAKMP(init_cookie=CKY_I, resp_cookie=bytes(8), exch_type=2) / sa)


def test_scapy_main_mode_sa_decodes_and_equals_our_encoding() -> None:
    raw = _scapy_mm1()
    msg, _ = decode_message(raw)
    assert msg.exchange == Exchange.MAIN_MODE and msg.spi_i == CKY_I
    (sa,) = msg.payloads
    assert isinstance(sa, SaPayload)
    (proposal,) = sa.proposals
    parsed = parse_phase1_transform(proposal.transforms[0])
    assert parsed == (AWS_SUITE, 28800)
    ours, _ = encode_message(
        Message(CKY_I, bytes(8), Exchange.MAIN_MODE, 0, [phase1_offer((AWS_SUITE,), 28800)])
    )
    assert ours == raw


def test_scapy_parses_our_messages() -> None:
    payloads = [
        phase1_offer((AWS_SUITE, Phase1Suite(256, P1Hash.SHA2_256, 14)), 28800),
        VendorIdPayload(VID_NAT_T_RFC),
        VendorIdPayload(VID_DPD),
    ]
    raw, _ = encode_message(Message(CKY_I, bytes(8), Exchange.MAIN_MODE, 0, payloads))
    pkt = ISAKMP(raw)
    assert pkt.init_cookie == CKY_I and pkt.exch_type == 2 and pkt.length == len(raw)
    sa = pkt[ISAKMP_payload_SA]
    assert sa.prop.trans_nb == 2
    assert bytes(pkt) == raw  # scapy re-encodes it octet for octet


def test_attributes_tv_and_tlv() -> None:
    assert Attribute(12, 28800).encode() == bytes.fromhex("800c7080")
    assert Attribute(12, 86400 * 4).encode() == bytes.fromhex("000c000400054600")


def test_every_payload_round_trips() -> None:
    payloads = [
        HashPayload(b"h" * 20),
        phase1_offer((AWS_SUITE,), 3600),
        KePayload(b"k" * 128),
        NoncePayload(b"n" * 32),
        IdPayload.ipv4(__import__("ipaddress").IPv4Address("192.0.2.1")),
        NatDPayload(b"d" * 20),
        NatDPayload(b"e" * 20, Payload.NAT_D_DRAFT),
        NotifyPayload(Notify.R_U_THERE, ProtocolId.ISAKMP, CKY_I + CKY_R, b"\0\0\0\7"),
        DeletePayload(ProtocolId.ESP, (b"\1\2\3\4", b"\5\6\7\x08")),
        VendorIdPayload(b"v" * 16),
        UnknownPayload(21, b"natoa"),
    ]
    raw, _ = encode_message(Message(CKY_I, CKY_R, Exchange.INFORMATIONAL, 7, payloads))
    msg, _ = decode_message(raw)
    assert msg.payloads == payloads
    assert msg.raw_after(0) == raw[28 + 4 + 20 :]


def test_encrypted_round_trip_and_wrong_key() -> None:
    key, iv = Secret(b"K" * 16), b"I" * 16
    payloads = [HashPayload(b"h" * 20), NoncePayload(b"n" * 17)]
    raw, last = encode_message(Message(CKY_I, CKY_R, Exchange.QUICK_MODE, 9, payloads), key, iv)
    assert len(raw) % 16 == 28 % 16 and last == raw[-16:]
    msg, last2 = decode_message(raw, key, iv)
    assert msg.payloads == payloads and last2 == last
    try:
        decode_message(raw, Secret(b"X" * 16), iv)
    except IntegrityError:
        pass
    else:  # a wrong key yields garbage that may, rarely, still parse: never silently
        raise AssertionError("a wrong key must not decode")


def test_header_checks() -> None:
    raw, _ = encode_message(Message(CKY_I, CKY_R, 5, 1, [HashPayload(b"x")]))
    assert decode_header(raw).length == len(raw)
    bad_version = raw[:17] + b"\x20" + raw[18:]
    try:
        decode_header(bad_version)
    except InvalidMajorVersion as exc:
        assert exc.major == 2
    else:
        raise AssertionError("version 2 accepted")
    for broken in (raw[:-1], raw + b"\0", raw[:27]):
        try:
            decode_message(broken)
        except IkeDecodeError:
            continue
        raise AssertionError("length mismatch accepted")


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=300))
def test_fuzz_random_bytes(data: bytes) -> None:
    with contextlib.suppress(IkeDecodeError):
        decode_message(data)
    with contextlib.suppress(IkeDecodeError):
        decode_message(data, Secret(b"K" * 16), b"I" * 16)


MM1 = _scapy_mm1()


@settings(max_examples=400, deadline=None)
@given(st.data())
def test_fuzz_mutated_valid_messages(data: st.DataObject) -> None:
    raw = bytearray(MM1)
    n = data.draw(st.integers(min_value=1, max_value=6))
    for _ in range(n):
        pos = data.draw(st.integers(min_value=0, max_value=len(raw) - 1))
        raw[pos] = data.draw(st.integers(min_value=0, max_value=255))
    cut = data.draw(st.integers(min_value=0, max_value=len(raw)))
    for candidate in (bytes(raw), bytes(raw[:cut])):
        fixed = candidate[:24] + len(candidate).to_bytes(4, "big") + candidate[28:]
        for blob in (candidate, fixed if len(candidate) >= 28 else candidate):
            try:
                msg, _ = decode_message(blob)
            except IkeDecodeError:
                continue
            for p in msg.payloads:  # whatever decodes must re-encode
                p.body()
