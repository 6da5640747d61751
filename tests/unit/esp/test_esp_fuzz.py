"""Hypothesis: whatever arrives, `decapsulate` returns bytes or a DropReason, never raises,
counts exactly one outcome per packet, and only ever delivers what a sender encapsulated.

Three depths: random datagrams (stopped by length/SPI/replay/ICV checks), mutated valid
packets, and authentic packets around random plaintext (reaching the trailer and inner
header checks that only run after the ICV verified).
"""

from __future__ import annotations

import struct

import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cgwd.esp import (
    ALL_SUITES,
    DropReason,
    EspSuite,
    InboundSa,
    OutboundSa,
    UdpPayloadKind,
    classify,
)
from cgwd.secret import Secret

SPI = 0x00C0FFEE
SETTINGS = settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
SUITES = pytest.mark.parametrize("suite", [ALL_SUITES[0], ALL_SUITES[2], ALL_SUITES[9]], ids=str)


def _keymat(suite: EspSuite) -> Secret:
    return Secret(bytes((5 * i + 2) % 256 for i in range(suite.keymat_bytes)))


def _consistent(sa: InboundSa, calls: int) -> None:
    counters = sa.counters
    assert counters.packets + counters.dropped == calls
    assert DropReason.INTERNAL_ERROR not in counters.drops


@SUITES
@SETTINGS
@given(
    datagrams=st.lists(
        st.one_of(
            st.binary(max_size=200),
            # right SPI, fresh sequence numbers: gets as far as the ICV check
            st.tuples(st.integers(1, 0xFFFFFFFF), st.binary(max_size=300)).map(
                lambda t: struct.pack(">II", SPI, t[0]) + t[1]
            ),
        ),
        max_size=20,
    ),
    esn=st.booleans(),
)
def test_random_datagrams(suite: EspSuite, datagrams: list[bytes], esn: bool) -> None:
    sa = InboundSa(SPI, suite, _keymat(suite), esn=esn, replay_window=64)
    out = bytearray(400)
    for datagram in datagrams:
        assert isinstance(sa.decapsulate(datagram), DropReason)
        assert isinstance(sa.decapsulate_into(datagram, out), DropReason)
    _consistent(sa, 2 * len(datagrams))
    assert sa.window.top == 0  # nothing authenticated, so the window never moved


INNERS = [
    bytes.fromhex("4500001c0000000040010000c0000201c0000202") + bytes(8),
    bytes.fromhex("6000000000001140") + bytes(32),
]


@SUITES
@SETTINGS
@given(
    mutations=st.lists(
        st.tuples(
            st.sampled_from(["flip", "truncate", "extend", "splice", "none"]),
            st.integers(0, 10_000),
            st.integers(0, 255),
        ),
        min_size=1,
        max_size=12,
    ),
    esn=st.booleans(),
)
def test_mutated_valid_packets(
    suite: EspSuite, mutations: list[tuple[str, int, int]], esn: bool
) -> None:
    sender = OutboundSa(SPI, suite, _keymat(suite), esn=esn, last_seq=0xFFFFFFF0 if esn else 0)
    sa = InboundSa(SPI, suite, _keymat(suite), esn=esn, replay_window=64)
    sa.window.top = sender.last_seq
    originals = [sender.encapsulate(INNERS[i % 2]) or b"" for i in range(len(mutations))]
    delivered: list[bytes] = []
    for (kind, where, value), original in zip(mutations, originals, strict=True):
        packet = bytearray(original)
        if kind == "flip":
            packet[where % len(packet)] ^= value or 1
        elif kind == "truncate":
            del packet[where % len(packet) :]
        elif kind == "extend":
            packet += bytes([value]) * (where % 40 + 1)
        elif kind == "splice":
            packet[8:] = originals[where % len(originals)][8:]
        result = sa.decapsulate(bytes(packet))
        if isinstance(result, bytes):
            delivered.append(result)
            assert result in INNERS
            # delivered only if the packet is an unmodified original (or a splice that
            # happens to recreate one)
            assert bytes(packet) in originals
    _consistent(sa, len(mutations))
    assert len(delivered) == sa.counters.packets


@SETTINGS
@given(
    plaintext=st.binary(min_size=2, max_size=120).filter(lambda p: len(p) % 4 == 0),
    seqs=st.integers(1, 1000),
)
def test_authentic_random_plaintext(plaintext: bytes, seqs: int) -> None:
    """GCM-sealed random plaintext: authentic, so trailer and inner checks decide."""
    suite = ALL_SUITES[0]
    keymat = _keymat(suite).reveal()
    key, salt = keymat[:16], keymat[16:]
    header = struct.pack(">II", SPI, seqs)
    iv = seqs.to_bytes(8, "big")
    packet = header + iv + AESGCM(key).encrypt(salt + iv, plaintext, header)
    sa = InboundSa(SPI, suite, _keymat(suite))
    result = sa.decapsulate(packet)
    out = bytearray(len(packet))
    sa2 = InboundSa(SPI, suite, _keymat(suite))
    result_into = sa2.decapsulate_into(packet, out)
    assert sa.window.top == seqs  # authentic packets always move the window
    _consistent(sa, 1)
    _consistent(sa2, 1)
    if isinstance(result, bytes):
        # what came out is a prefix of the plaintext before a valid trailer
        assert plaintext.startswith(result)
        pad, nh = plaintext[-2], plaintext[-1]
        assert nh in (4, 41)
        assert plaintext[-2 - pad : -2] == bytes(range(1, pad + 1))
        assert result_into == len(result)
        assert bytes(out[: len(result)]) == result
    else:
        assert result_into is result


@SETTINGS
@given(datagram=st.binary(max_size=64))
def test_classify_never_raises(datagram: bytes) -> None:
    kind, payload = classify(datagram)
    if kind is UdpPayloadKind.IKE:
        assert datagram[:4] == bytes(4) and bytes(payload) == datagram[4:]
    elif kind is UdpPayloadKind.ESP:
        assert len(datagram) >= 8 and datagram[:4] != bytes(4)
        assert bytes(payload) == datagram
    elif kind is UdpPayloadKind.KEEPALIVE:
        assert datagram == b"\xff"
    else:
        assert len(datagram) < 8 and datagram != b"\xff"


@SETTINGS
@given(
    suite=st.sampled_from(ALL_SUITES),
    esn=st.booleans(),
    start=st.one_of(st.just(0), st.integers(0, 0xFFFFFFFF - 20), st.integers(0, (1 << 63))),
    bodies=st.lists(st.tuples(st.booleans(), st.binary(max_size=300)), min_size=1, max_size=8),
)
def test_roundtrip_any_inner_packet(
    suite: EspSuite, esn: bool, start: int, bodies: list[tuple[bool, bytes]]
) -> None:
    if not esn:
        start %= 0xFFFFFFFF - 20
    sender = OutboundSa(SPI, suite, _keymat(suite), esn=esn, last_seq=start)
    receiver = InboundSa(SPI, suite, _keymat(suite), esn=esn, replay_window=64)
    receiver.window.top = start
    for v6, body in bodies:
        if v6:
            inner = bytes([0x60]) + bytes(3) + len(body).to_bytes(2, "big") + bytes(34) + body
        else:
            inner = bytes([0x45, 0]) + (20 + len(body)).to_bytes(2, "big") + bytes(16) + body
        packet = sender.encapsulate(inner)
        assert packet is not None
        assert receiver.decapsulate(packet) == inner
        assert receiver.decapsulate(packet) is DropReason.REPLAY
    assert receiver.counters.packets == len(bodies)
    assert receiver.counters.as_dict()["drops"] == ({"replay": len(bodies)} if bodies else {})
