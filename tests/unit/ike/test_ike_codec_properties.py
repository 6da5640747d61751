"""Generated valid messages round-trip exactly (plain and inside SK); SK bodies fuzzed."""

from __future__ import annotations

import struct
from ipaddress import IPv4Address, IPv6Address

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from ike_messages import SUITES

from cgwd.ike.constants import PayloadType, ProtocolId
from cgwd.ike.crypto import IkeSuite, SkCipher, derive_ike_keys
from cgwd.ike.decode_errors import IkeDecodeError, IntegrityError
from cgwd.ike.rng import SeededRng
from cgwd.ike.v2.message import Message, decode_message, encode_message
from cgwd.ike.v2.payloads import (
    Attribute,
    AuthPayload,
    CertReqPayload,
    DeletePayload,
    IdiPayload,
    IdrPayload,
    KePayload,
    NoncePayload,
    NotifyPayload,
    Payload,
    Proposal,
    SaPayload,
    TrafficSelector,
    Transform,
    TsiPayload,
    TsrPayload,
    UnknownPayload,
    VendorIdPayload,
)

PROPS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
u8, u16, u32 = st.integers(0, 0xFF), st.integers(0, 0xFFFF), st.integers(0, 0xFFFFFFFF)

attribute = st.one_of(
    st.builds(Attribute, st.integers(1, 0x7FFF).filter(lambda t: t != 14), u16),
    st.builds(Attribute, st.integers(1, 0x7FFF).filter(lambda t: t != 14), st.binary(max_size=12)),
)
transform = st.builds(
    lambda t, i, kl, extra: Transform(t, i, (() if kl is None else (Attribute(14, kl),)) + extra),
    st.integers(1, 5), u16, st.none() | st.sampled_from([128, 192, 256]) | u16,
    st.lists(attribute, max_size=2).map(tuple),
)  # fmt: skip


@st.composite
def proposal_parts(draw: st.DrawFn) -> tuple[int, bytes, tuple[Transform, ...]]:
    protocol = draw(st.sampled_from([ProtocolId.IKE, ProtocolId.AH, ProtocolId.ESP, 7]))
    if protocol == ProtocolId.IKE:
        spi = draw(st.sampled_from([b"", b"\x01" * 8]))
    elif protocol in (ProtocolId.AH, ProtocolId.ESP):
        spi = draw(st.binary(min_size=4, max_size=4))
    else:
        spi = draw(st.binary(max_size=16))
    return protocol, spi, tuple(draw(st.lists(transform, min_size=1, max_size=6)))


@st.composite
def sa_payload(draw: st.DrawFn) -> SaPayload:
    parts = draw(st.lists(proposal_parts(), min_size=1, max_size=4))
    if len(parts) == 1:
        number = draw(st.integers(1, 255))
        return SaPayload((Proposal(number, *parts[0]),))
    return SaPayload(tuple(Proposal(i + 1, *p) for i, p in enumerate(parts)))


address4 = st.builds(IPv4Address, u32)
address6 = st.builds(IPv6Address, st.integers(0, 2**128 - 1))
selector = st.one_of(
    st.builds(TrafficSelector, address4, address4, u8, u16, u16),
    st.builds(TrafficSelector, address6, address6, u8, u16, u16),
)
selectors = st.lists(selector, min_size=1, max_size=3).map(tuple)
id_args = st.one_of(
    st.tuples(st.just(1), st.binary(min_size=4, max_size=4)),
    st.tuples(st.just(5), st.binary(min_size=16, max_size=16)),
    st.tuples(st.sampled_from([2, 3, 9, 11, 200]), st.binary(min_size=1, max_size=40)),
)
unknown_type = st.one_of(st.integers(1, 32), st.integers(49, 255), st.sampled_from([37, 47, 48]))

payload: st.SearchStrategy[Payload] = st.one_of(
    sa_payload(),
    st.builds(KePayload, u16, st.binary(min_size=1, max_size=300)),
    st.builds(NoncePayload, st.binary(min_size=16, max_size=256)),
    id_args.map(lambda a: IdiPayload(*a)),
    id_args.map(lambda a: IdrPayload(*a)),
    st.builds(AuthPayload, u8, st.binary(min_size=1, max_size=64)),
    st.builds(
        NotifyPayload, u16, st.binary(max_size=64), u8, st.sampled_from([b"", b"abcd", b"12345678"])
    ),
    st.just(DeletePayload(ProtocolId.IKE)),
    st.builds(
        DeletePayload, st.sampled_from([ProtocolId.ESP, ProtocolId.AH]),
        st.lists(st.binary(min_size=4, max_size=4), min_size=1, max_size=5).map(tuple),
    ),
    st.builds(TsiPayload, selectors),
    st.builds(TsrPayload, selectors),
    st.builds(VendorIdPayload, st.binary(max_size=32)),
    st.builds(CertReqPayload, u8, st.binary(max_size=40)),
    st.builds(
        UnknownPayload, unknown_type, st.booleans(), st.binary(max_size=40)
    ).filter(lambda p: p.payload_type in (37, 47, 48) or not p.critical),
)  # fmt: skip

message = st.builds(
    Message,
    exchange_type=u8, message_id=u32,
    spi_i=st.integers(0, 2**64 - 1), spi_r=st.integers(0, 2**64 - 1),
    initiator=st.booleans(), response=st.booleans(), payloads=st.lists(payload, max_size=8),
    minor_version=st.integers(0, 15), version_flag=st.booleans(),
)  # fmt: skip


@PROPS
@given(message)
def test_generated_messages_round_trip_exactly(msg: Message) -> None:
    wire = encode_message(msg, None, SeededRng(0))
    assert len(wire) == struct.unpack_from("!I", wire, 24)[0]
    decoded = decode_message(wire, None)
    assert decoded == msg
    assert encode_message(decoded, None, SeededRng(0)) == wire


def _ciphers(suite: IkeSuite) -> tuple[SkCipher, SkCipher]:
    keys = derive_ike_keys(suite, b"i" * 16, b"r" * 16, b"s" * 32, 1, 2)
    return keys.sk_ciphers(suite, initiator=True)[0], keys.sk_ciphers(suite, initiator=False)[1]


CIPHERS = [_ciphers(s) for s in SUITES]


@PROPS
@given(message, st.integers(0, len(SUITES) - 1), st.integers(0, 2**32))
def test_generated_messages_round_trip_in_sk(msg: Message, index: int, seed: int) -> None:
    out, inbound = CIPHERS[index]
    wire = encode_message(msg, out, SeededRng(seed))
    decoded = decode_message(wire, inbound)
    assert decoded.encrypted and decoded.payloads == msg.payloads


@PROPS
@given(st.integers(0, len(SUITES) - 1), st.binary(max_size=300), u8)
def test_fuzz_sk_bodies(index: int, body: bytes, first: int) -> None:
    """Random SK bodies behind a well-formed header: only IntegrityError (or ParseError)."""
    _, inbound = CIPHERS[index]
    total = 28 + 4 + len(body)
    wire = (
        struct.pack("!QQBBBBII", 1, 2, PayloadType.SK, 0x20, 37, 0x08, 1, total)
        + struct.pack("!BBH", first, 0, 4 + len(body))
        + body
    )
    try:
        decode_message(wire, inbound)
    except IntegrityError:
        pass
    except IkeDecodeError as exc:
        assert "short" in str(exc) or "blocks" in str(exc)
    else:
        raise AssertionError("a random SK body authenticated")
