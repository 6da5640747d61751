"""Anti-replay window and sequence-number edge cases (RFC 4303 3.3.3, 3.4.3, Appendix A).

Table-driven: each row is an action and the outcome the RFC prescribes, worked out by hand
in the row's comment. A set-based model (accept iff new and within W of the highest
accepted) checks the bitmap under random sequences with hypothesis.
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cgwd.esp import DropReason, InboundSa, OutboundSa, ReplayWindow, suite_by_name
from cgwd.esp.replay import DEFAULT_WINDOW
from cgwd.esp.sa import DEFAULT_REKEY_MARGIN, RESYNC_TRIGGER
from cgwd.secret import Secret

U32 = 0xFFFFFFFF
U64 = 0xFFFFFFFFFFFFFFFF

# (sequence number, accepted?) fed in order to one 64-packet window (32-bit numbers);
# an accepted number is recorded (update) before the next row.
WINDOW_64_ROWS = [
    (0, False),  # 0 is never sent (RFC 4303 3.3.3: the first packet carries 1)
    (1, True),
    (1, False),  # duplicate
    (64, True),  # top = 64, window covers 1..64
    (1, False),  # offset 63: inside, already seen
    (2, True),  # offset 62: inside, not seen
    (2, False),
    (65, True),  # top = 65, window 2..65: 1 fell out
    (1, False),  # offset 64: left of the window
    (3, True),  # offset 62
    (66, True),  # top = 66, window 3..66
    (65, False),
    (40, True),
    (1_000_000, True),  # far jump: bitmap reset, no huge integer
    (66, False),  # now far left
    (1_000_000 - 63, True),  # left edge of the new window
    (1_000_000 - 64, False),  # just outside
    (999_999, True),
    (999_999, False),
    (U32, True),  # highest 32-bit number
    (U32 - 63, True),
    (U32 - 64, False),
    (U32, False),
]


def test_window_64_table() -> None:
    window = ReplayWindow(64)
    for index, (seq, accepted) in enumerate(WINDOW_64_ROWS):
        assert window.check(seq) is accepted, f"row {index}: seq {seq}"
        if accepted:
            window.update(seq)
            assert window.seen(seq)


@pytest.mark.parametrize(
    ("size", "ok"), [(63, False), (64, True), (1024, True), (2048, True), (2049, False), (0, False)]
)
def test_window_sizes(size: int, ok: bool) -> None:
    if ok:
        assert ReplayWindow(size).size == size
    else:
        with pytest.raises(ValueError, match="replay window"):
            ReplayWindow(size)


def test_default_window_is_1024_like_aws() -> None:
    assert DEFAULT_WINDOW == 1024
    sa = InboundSa(0x1000, suite_by_name("aes128gcm16"), Secret(bytes(20)))
    assert sa.window.size == 1024


def test_window_2048_edges() -> None:
    window = ReplayWindow(2048)
    window.update(5000)
    assert window.check(5000 - 2047)
    assert not window.check(5000 - 2048)
    window.update(5000 - 2047)
    window.update(5000 + 2047)  # slide by 2047: the old left edge is now bit 4094 -> gone
    assert not window.check(5000 - 2047)
    assert window.check(5000 + 1)
    assert not window.check(5000)  # still inside (offset 2047) and seen


# ESN (RFC 4303 Appendix A2.2), window 64. (top T, received low 32 bits, inferred 64-bit
# number or -1 for "impossible"). Tl = T mod 2^32, Th = T >> 32.
ESN_ROWS = [
    # Case A, Tl >= W - 1: window inside one subspace
    ((1 << 32) | 0x80000000, 0x80000005, (1 << 32) | 0x80000005),  # ahead, same subspace
    ((1 << 32) | 0x80000000, 0x7FFFFFC1, (1 << 32) | 0x7FFFFFC1),  # Tl - W + 1: left edge
    ((1 << 32) | 0x80000000, 0x7FFFFFC0, (2 << 32) | 0x7FFFFFC0),  # below: next subspace
    ((1 << 32) | 0xFFFFFFF0, 0x00000003, (2 << 32) | 0x00000003),  # wrapped ahead
    ((0 << 32) | 63, 0, 0),  # Tl = W - 1 is case A with Tl - W + 1 = 0: low 0 stays in
    # subspace 0, where number 0 is never sent (check refuses it)
    # Case B, Tl < W - 1: window straddles the 2^32 boundary
    ((1 << 32) | 0x10, 0xFFFFFFF0, 0xFFFFFFF0),  # previous subspace, inside the window
    ((1 << 32) | 0x10, 0xFFFFFFD1, 0xFFFFFFD1),  # Tl - W + 1 mod 2^32: the left edge
    ((1 << 32) | 0x10, 0xFFFFFFD0, (1 << 32) | 0xFFFFFFD0),  # just left: taken as ahead
    ((1 << 32) | 0x10, 0x00000005, (1 << 32) | 0x00000005),  # same subspace, behind T
    ((1 << 32) | 0x10, 0x80000000, (1 << 32) | 0x80000000),  # ahead
    ((0 << 32) | 0, 1, 1),  # fresh SA
    ((0 << 32) | 0, 0xFFFFFFFF, -1),  # fresh SA: "previous subspace" does not exist
    ((0 << 32) | 5, 0xFFFFFFF0, -1),
    # the top of the 64-bit space: no subspace after 2^32 - 1
    ((U32 << 32) | 0xFFFFFFF0, 0x00000003, -1),
    ((U32 << 32) | 0xFFFFFFF0, 0xFFFFFFFF, U64),
]


@pytest.mark.parametrize(("top", "low", "expected"), ESN_ROWS)
def test_esn_estimate(top: int, low: int, expected: int) -> None:
    window = ReplayWindow(64, esn=True)
    window.top = top
    assert window.estimate(low) == expected
    if expected == -1:
        assert not window.check(expected)


def test_esn_estimate_without_esn_is_identity() -> None:
    window = ReplayWindow(64)
    window.top = (5 << 32) | 7  # unreachable without ESN, but the low bits stay the number
    assert window.estimate(0xFFFFFFF0) == 0xFFFFFFF0


class _Model:
    """Specification of the window by sets: accept iff new and within W of the highest."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.seen: set[int] = set()
        self.top = 0

    def accept(self, seq: int) -> bool:
        if seq <= 0 or seq in self.seen or seq <= self.top - self.size:
            return False
        self.seen.add(seq)
        self.top = max(self.top, seq)
        return True


@settings(max_examples=300, deadline=None)
@given(
    size=st.sampled_from([64, 65, 100, 1024, 2048]),
    steps=st.lists(
        st.one_of(
            st.integers(min_value=-3, max_value=40),  # small moves around the top
            st.integers(min_value=-3000, max_value=3000),
            st.integers(min_value=0, max_value=U64),  # anywhere
        ),
        max_size=200,
    ),
)
def test_window_matches_set_model(size: int, steps: list[int]) -> None:
    window = ReplayWindow(size)
    model = _Model(size)
    base = 1
    for step in steps:
        seq = step if step > 10_000 else max(base + step, 0)
        seq = min(seq, U64)
        expected = model.accept(seq)
        assert window.check(seq) is expected, (seq, window.top)
        if expected:
            window.update(seq)
        base = window.top or 1
        assert window.top == model.top


def _pair(
    name: str, esn: bool, last_seq: int, rekey_margin: int = DEFAULT_REKEY_MARGIN
) -> tuple[OutboundSa, InboundSa]:
    suite = suite_by_name(name)
    keymat = Secret(bytes(range(suite.keymat_bytes)))
    return (
        OutboundSa(0x4242, suite, keymat, esn=esn, last_seq=last_seq, rekey_margin=rekey_margin),
        InboundSa(0x4242, suite, keymat, esn=esn, replay_window=64),
    )


PING = bytes.fromhex("4500001c00010000400100000a0000010a000002") + bytes(8)


@pytest.mark.parametrize("name", ["aes128gcm16", "aes256-sha256"])
def test_esn_wrap_of_the_low_32_bits(name: str) -> None:
    """Across 2^32 the header's low half wraps to 0 while the ICV covers the high half."""
    out, inb = _pair(name, True, U32 - 2)
    packets = [out.encapsulate(PING) for _ in range(4)]  # seq 2^32-2 .. 2^32+1
    assert all(p is not None for p in packets)
    lows = [int.from_bytes(p[4:8], "big") for p in packets if p]
    assert lows == [U32 - 1, U32, 0, 1]
    order = [1, 0, 3, 2]  # out of order across the boundary
    inb.window.top = U32 - 3  # as if packets up to there had arrived
    for index in order:
        assert inb.decapsulate(packets[index] or b"") == PING, index
    assert inb.window.top == (1 << 32) | 1
    assert all(inb.decapsulate(p or b"") is DropReason.REPLAY for p in packets)


def test_esn_high_half_is_authenticated() -> None:
    """A receiver that infers the wrong high half fails the ICV (counted), no delivery."""
    out, inb = _pair("aes128-sha1", True, (7 << 32) | 10)
    packet = out.encapsulate(PING)
    assert packet is not None
    inb.window.top = (6 << 32) | 20  # the receiver thinks the high half is 6
    assert inb.decapsulate(packet) is DropReason.AUTH_FAILED
    inb.window.top = (7 << 32) | 5
    assert inb.decapsulate(packet) == PING


@pytest.mark.parametrize(
    ("esn", "limit"), [(False, U32), (True, U64)], ids=["seq32-at-2^32-1", "esn-at-2^64-1"]
)
@pytest.mark.parametrize("name", ["aes128gcm16", "aes128-sha1"])
def test_sequence_exhaustion_refuses_and_never_wraps(name: str, esn: bool, limit: int) -> None:
    out, inb = _pair(name, esn, limit - 2, rekey_margin=0)
    inb.window.top = limit - 3
    assert not out.needs_rekey
    first = out.encapsulate(PING)  # limit - 1
    assert first is not None and not out.needs_rekey
    last = out.encapsulate(PING)  # the limit itself is still a valid number
    assert last is not None
    assert out.needs_rekey and out.exhausted
    assert out.last_seq == limit
    assert int.from_bytes(last[4:8], "big") == U32
    for _ in range(3):
        assert out.encapsulate(PING) is None
    buf = bytearray(out.buffer_size(len(PING)))
    assert out.encapsulate_into(buf, PING) == 0
    assert out.last_seq == limit  # no wrap to 0
    assert out.counters.drops == {DropReason.SEQUENCE_EXHAUSTED: 4}
    assert out.counters.packets == 2
    assert inb.decapsulate(first) == PING
    assert inb.decapsulate(last) == PING
    assert inb.window.top == limit


def test_needs_rekey_raised_before_the_end() -> None:
    out, _ = _pair("aes128gcm16", False, U32 - 101, rekey_margin=100)
    assert not out.needs_rekey
    assert out.encapsulate(PING) is not None  # U32 - 100: reaches the soft limit
    assert out.needs_rekey and not out.exhausted


def test_forged_packets_never_move_the_window() -> None:
    out, inb = _pair("aes128gcm16", False, 0)
    good = [out.encapsulate(PING) for _ in range(3)]
    forged = bytearray(good[2] or b"")
    forged[4:8] = (10_000).to_bytes(4, "big")  # far ahead, ICV now wrong
    assert inb.decapsulate(bytes(forged)) is DropReason.AUTH_FAILED
    assert inb.window.top == 0
    for packet in good:
        assert inb.decapsulate(packet or b"") == PING
    assert inb.counters.drops == {DropReason.AUTH_FAILED: 1}


def test_out_of_order_within_a_1024_window() -> None:
    suite = suite_by_name("aes128gcm16")
    keymat = Secret(bytes(20))
    out = OutboundSa(0x777, suite, keymat)
    inb = InboundSa(0x777, suite, keymat)  # 1024
    packets = [out.encapsulate(PING) for _ in range(3000)]
    # blocks of 500 delivered newest first: everything stays inside the window
    order = [i for start in range(0, 3000, 500) for i in reversed(range(start, start + 500))]
    for index in order:
        assert inb.decapsulate(packets[index] or b"") == PING
    assert inb.counters.packets == 3000
    # older than the window now; the last 1024 are duplicates
    assert inb.decapsulate(packets[0] or b"") is DropReason.REPLAY
    assert inb.decapsulate(packets[-1] or b"") is DropReason.REPLAY
    assert inb.counters.drops == {DropReason.REPLAY: 2}


@settings(max_examples=500, deadline=None)
@given(
    size=st.integers(64, 2048),
    top=st.one_of(
        st.integers(0, U64),
        st.integers(0, 4096),  # a young SA
        st.integers(0, 8).map(lambda h: (h << 32) + 5),  # just past a 2^32 boundary
    ),
    data=st.data(),
)
def test_esn_estimate_is_exact_over_its_range(size: int, top: int, data: st.DataObject) -> None:
    """RFC 4303 Appendix A2.2's defining property: for any true number s from the window's
    left edge T-W+1 up to T-W+2^32, the low 32 bits alone are enough to recover s."""
    low_end = max(1, top - size + 1)
    high_end = min(U64, top - size + (1 << 32))
    true = data.draw(st.integers(low_end, high_end))
    window = ReplayWindow(size, esn=True)
    window.top = top
    assert window.estimate(true & U32) == true


def _esn_pair_with_gap(name: str) -> tuple[OutboundSa, OutboundSa, InboundSa]:
    """An in-sync sender (high half 4), the same SA after more than 2^32 lost packets
    (high half 5), and a receiver whose window still sits at high half 4."""
    suite = suite_by_name(name)
    keymat = Secret(bytes(range(suite.keymat_bytes)))
    in_sync = OutboundSa(0x4242, suite, keymat, esn=True, last_seq=(4 << 32) | 5)
    ahead = OutboundSa(0x4242, suite, keymat, esn=True, last_seq=(5 << 32) | 10)
    receiver = InboundSa(0x4242, suite, keymat, esn=True, replay_window=64)
    receiver.window.top = (4 << 32) | 5
    return in_sync, ahead, receiver


@pytest.mark.parametrize("into", [False, True], ids=["bytes", "into"])
@pytest.mark.parametrize("name", ["aes128gcm16", "aes128-sha256"])
def test_esn_resynchronises_after_2_32_lost_packets(name: str, into: bool) -> None:
    """RFC 4303 A3: after RESYNC_TRIGGER consecutive failures the failing packet is retried
    with higher high halves; success moves T to it and traffic flows again."""
    _, ahead, receiver = _esn_pair_with_gap(name)
    out = bytearray(2000)

    def receive(packet: bytes) -> bytes | DropReason:
        if not into:
            return receiver.decapsulate(packet)
        result = receiver.decapsulate_into(packet, out)
        return result if isinstance(result, DropReason) else bytes(out[:result])

    packets = [ahead.encapsulate(PING) or b"" for _ in range(RESYNC_TRIGGER + 3)]
    for packet in packets[: RESYNC_TRIGGER - 1]:
        assert receive(packet) is DropReason.AUTH_FAILED
    assert receiver.window.top == (4 << 32) | 5
    assert receive(packets[RESYNC_TRIGGER - 1]) == PING  # the trigger, recovered
    assert receiver.window.top == (5 << 32) | (10 + RESYNC_TRIGGER)
    for packet in packets[RESYNC_TRIGGER:]:
        assert receive(packet) == PING
    assert receiver.counters.drops == {DropReason.AUTH_FAILED: RESYNC_TRIGGER - 1}


def test_esn_resync_counts_only_consecutive_failures() -> None:
    in_sync, ahead, receiver = _esn_pair_with_gap("aes128gcm16")
    lost = [ahead.encapsulate(PING) or b"" for _ in range(2 * RESYNC_TRIGGER)]
    for packet in lost[: RESYNC_TRIGGER - 1]:
        assert receiver.decapsulate(packet) is DropReason.AUTH_FAILED
    assert receiver.decapsulate(in_sync.encapsulate(PING) or b"") == PING  # resets the count
    for packet in lost[RESYNC_TRIGGER - 1 : 2 * RESYNC_TRIGGER - 2]:
        assert receiver.decapsulate(packet) is DropReason.AUTH_FAILED
    assert receiver.decapsulate(lost[2 * RESYNC_TRIGGER - 2]) == PING


@pytest.mark.parametrize("esn", [False, True])
def test_forged_floods_never_resynchronise(esn: bool) -> None:
    suite = suite_by_name("aes128gcm16")
    receiver = InboundSa(0x4242, suite, Secret(bytes(20)), esn=esn, replay_window=64)
    forger = OutboundSa(0x4242, suite, Secret(bytes(range(20))), esn=esn)  # wrong key
    for _ in range(5 * RESYNC_TRIGGER):
        assert receiver.decapsulate(forger.encapsulate(PING) or b"") is DropReason.AUTH_FAILED
    assert receiver.window.top == 0
    assert receiver.counters.drops == {DropReason.AUTH_FAILED: 5 * RESYNC_TRIGGER}
