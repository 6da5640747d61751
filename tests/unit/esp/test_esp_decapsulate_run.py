"""`InboundSa.decapsulate_run` (a UDP GRO receive of back-to-back ESP datagrams) against
the per-packet path it must equal: the same packets delivered in the same order, the same
drops counted, the same window, and it never reads past ``stop``."""

from __future__ import annotations

import struct

import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from hypothesis import given, settings
from hypothesis import strategies as st

from cgwd.esp import DropReason, InboundSa, OutboundSa, suite_by_name
from cgwd.secret import Secret

SPI = 0x00C0FFEE
OTHER_SPI = 0x00BEEF00
SUITES = ["aes128gcm16", "aes256-sha256", "aes128-sha1"]


def _keymat(suite_name: str) -> Secret:
    suite = suite_by_name(suite_name)
    return Secret(bytes((7 * i + 3) % 256 for i in range(suite.keymat_bytes)))


def _inner(size: int, tag: int) -> bytes:
    header = struct.pack("!BBHHHBBH4s4s", 0x45, 0, size, tag, 0x4000, 64, 17, 0,
                         b"\x0a\x00\x00\x01", b"\x0a\x00\x00\x02")  # fmt: skip
    return header + bytes((tag + i) % 256 for i in range(size - 20))


def _pair(suite_name: str, *, esn: bool = False) -> tuple[OutboundSa, InboundSa, InboundSa]:
    suite, keymat = suite_by_name(suite_name), _keymat(suite_name)
    out = OutboundSa(SPI, suite, keymat, esn=esn, udp_encap=True)
    return out, InboundSa(SPI, suite, keymat, esn=esn), InboundSa(SPI, suite, keymat, esn=esn)


def _run(
    sa: InboundSa, data: bytes, segment: int, *, stale: bytes = b""
) -> tuple[list[bytes], int]:
    """decapsulate_run over ``data`` lying in a larger buffer (``stale`` octets after it,
    as in a receive buffer reused from a longer receive)."""
    buffer = memoryview(bytearray(data + stale))
    out = memoryview(bytearray(max(segment, 1)))
    delivered: list[bytes] = []
    end = sa.decapsulate_run(
        buffer, 0, len(data), segment, out=out, deliver=lambda n: delivered.append(bytes(out[:n]))
    )
    return delivered, end


def _per_packet(sa: InboundSa, datagrams: list[bytes]) -> list[bytes]:
    delivered = []
    for d in datagrams:
        result = sa.decapsulate(d)
        if isinstance(result, bytes):
            delivered.append(result)
    return delivered


def _same_state(a: InboundSa, b: InboundSa) -> None:
    assert (a.counters.packets, a.counters.bytes) == (b.counters.packets, b.counters.bytes)
    assert a.counters.drops == b.counters.drops
    assert a.window.top == b.window.top
    assert all(
        a.window.seen(s) == b.window.seen(s)
        for s in range(max(1, a.window.top - 70), a.window.top + 1)
    )


@pytest.mark.parametrize("suite_name", SUITES)
def test_a_gro_run_with_a_shorter_last_datagram_is_delivered_in_order(suite_name: str) -> None:
    out, run_sa, _ = _pair(suite_name)
    inners = [_inner(1000, i) for i in range(5)] + [_inner(300, 9)]
    packets = [out.encapsulate(p) for p in inners]
    assert all(p is not None for p in packets)
    segment = len(packets[0])  # type: ignore[arg-type]
    data = b"".join(packets)  # type: ignore[arg-type]
    # Stale octets that would pass for more ESP of this SA if the run read past ``stop``.
    stale = out.encapsulate(_inner(1000, 42)) or b""
    delivered, end = _run(run_sa, data, segment, stale=stale)
    assert end == len(data)
    assert delivered == inners
    assert run_sa.counters.packets == 6 and not run_sa.counters.drops


@pytest.mark.parametrize(
    ("tail", "kind"),
    [(b"\xff", "keepalive"), (b"\x00\x00\x00\x00" + b"ike" * 10, "ike"), (b"", "other spi")],
)
def test_the_run_stops_at_the_first_datagram_that_is_not_this_sas_esp(
    tail: bytes, kind: str
) -> None:
    out, run_sa, _ = _pair("aes128gcm16")
    packets = [out.encapsulate(_inner(600, i)) or b"" for i in range(3)]
    segment = len(packets[0])
    if kind == "other spi":
        other = OutboundSa(OTHER_SPI, suite_by_name("aes128gcm16"), _keymat("aes128gcm16"))
        tail = other.encapsulate(_inner(600, 7)) or b""
        packets.insert(1, tail)  # a different SA in the middle of the run
        expected_end, expected_count = segment, 1
    else:
        packets.append(tail)  # the short last datagram of the run
        expected_end, expected_count = 3 * segment, 3
    delivered, end = _run(run_sa, b"".join(packets), segment)
    assert end == expected_end
    assert len(delivered) == expected_count == run_sa.counters.packets


def test_an_output_buffer_shorter_than_a_segment_is_refused() -> None:
    _, run_sa, _ = _pair("aes128gcm16")
    with pytest.raises(ValueError, match="segment"):
        run_sa.decapsulate_run(
            memoryview(bytearray(3000)), 0, 3000, 1500, out=memoryview(bytearray(100)),
            deliver=lambda n: None,
        )  # fmt: skip


# What happens to the i-th packet of a run on its way: arrives as sent, forged, replayed
# (a copy of an earlier one), swapped with the next (reordered), or lost.
OPS = st.sampled_from(["ok", "ok", "ok", "forged", "replayed", "swapped", "lost"])


@pytest.mark.parametrize("esn", [False, True], ids=["seq32", "esn"])
@pytest.mark.parametrize("suite_name", SUITES)
@settings(max_examples=60, deadline=None)
@given(ops=st.lists(OPS, min_size=1, max_size=24), garbage=st.binary(max_size=40))
def test_a_run_equals_decapsulating_each_datagram_on_its_own(
    suite_name: str, esn: bool, ops: list[str], garbage: bytes
) -> None:
    out, run_sa, reference_sa = _pair(suite_name, esn=esn)
    packets = [out.encapsulate(_inner(200, i)) or b"" for i in range(len(ops) + 1)]
    datagrams: list[bytes] = []
    for i, op in enumerate(ops):
        packet = packets[i]
        if op == "forged":
            packet = packet[:-1] + bytes([packet[-1] ^ 1])
        elif op == "replayed" and datagrams:
            packet = datagrams[len(datagrams) // 2]
        elif op == "swapped":
            packets[i], packets[i + 1] = packets[i + 1], packets[i]
            packet = packets[i]
        elif op == "lost":
            continue
        datagrams.append(packet)
    if garbage:  # a short, random last datagram (what a peer could append to a GSO send)
        datagrams.append(struct.pack("!I", SPI) + garbage)
    if not datagrams:
        return
    segment = len(datagrams[0])
    assert all(len(d) == segment for d in datagrams[:-1])
    delivered, end = _run(run_sa, b"".join(datagrams), segment)
    reference = _per_packet(reference_sa, datagrams)
    tail = datagrams[-1]
    if len(tail) < 8:  # the run stops at a datagram too short for ESP: the caller's to handle
        assert end == len(b"".join(datagrams)) - len(tail)
        reference = _per_packet(
            InboundSa(SPI, suite_by_name(suite_name), _keymat(suite_name), esn=esn),
            datagrams[:-1],
        )
        reference_sa = InboundSa(SPI, suite_by_name(suite_name), _keymat(suite_name), esn=esn)
        _per_packet(reference_sa, datagrams[:-1])
    else:
        assert end == len(b"".join(datagrams))
    assert delivered == reference
    _same_state(run_sa, reference_sa)
    assert DropReason.INTERNAL_ERROR not in run_sa.counters.drops


PLAINTEXT_SIZE = 64  # one size for the whole run (a GRO run), a multiple of GCM's 4


@st.composite
def _plaintexts(draw: st.DrawFn) -> bytes:
    """Sealed content near the short path's edges: IPv4-ish headers claiming any length,
    any pad length with right or wrong padding, any next header."""
    version_ihl = draw(st.sampled_from([0x45, 0x46, 0x60, 0x35]))
    pad = draw(st.one_of(st.integers(0, 6), st.integers(38, 62)))  # inner_end above/below 20
    inner_end = PLAINTEXT_SIZE - 2 - pad
    total = draw(st.one_of(st.integers(0, 80), st.sampled_from([19, 20, inner_end, inner_end + 1])))
    padding = (
        bytes(range(1, pad + 1))
        if draw(st.booleans())
        else draw(st.binary(min_size=pad, max_size=pad))
    )
    nh = draw(st.sampled_from([4, 4, 41, 59, 0, 255]))
    body_len = PLAINTEXT_SIZE - 2 - pad
    header = struct.pack("!BBH", version_ihl, 0, total)
    body = (header + draw(st.binary(min_size=body_len, max_size=body_len)))[:body_len]
    return body + padding + bytes([pad, nh])


@settings(max_examples=300, deadline=None)
@given(plaintexts=st.lists(_plaintexts(), min_size=1, max_size=12))
def test_authentic_odd_content_is_judged_as_the_per_packet_path_judges_it(
    plaintexts: list[bytes],
) -> None:
    """GCM-sealed in order (the short path), so the trailer and inner checks decide."""
    keymat = _keymat("aes128gcm16").reveal()
    key, salt = keymat[:16], keymat[16:]
    datagrams = []
    for seq, plaintext in enumerate(plaintexts, start=1):
        header = struct.pack(">II", SPI, seq)
        iv = seq.to_bytes(8, "big")
        datagrams.append(header + iv + AESGCM(key).encrypt(salt + iv, plaintext, header))
    _, run_sa, reference_sa = _pair("aes128gcm16")
    delivered, end = _run(run_sa, b"".join(datagrams), len(datagrams[0]))
    assert end == sum(map(len, datagrams))
    assert delivered == _per_packet(reference_sa, datagrams)
    _same_state(run_sa, reference_sa)


def test_a_failing_sink_is_the_callers_error_not_a_drop_of_the_sa() -> None:
    out, run_sa, _ = _pair("aes128gcm16")
    packets = [out.encapsulate(_inner(300, i)) or b"" for i in range(3)]

    def sink(_length: int) -> None:
        raise RuntimeError("a bug in the caller")

    data = memoryview(bytearray(b"".join(packets)))
    with pytest.raises(RuntimeError, match="caller"):
        run_sa.decapsulate_run(
            data, 0, len(data), len(packets[0]), out=memoryview(bytearray(2000)), deliver=sink
        )
    assert run_sa.counters.packets == 1 and not run_sa.counters.drops
