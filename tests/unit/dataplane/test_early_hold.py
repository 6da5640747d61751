"""The bounded holding of ESP packets for reserved SPIs (`cgwd.dataplane.early_hold`).

Pure: a fake clock (numbers passed as ``now``), no I/O. Every limit is exercised at its
edge: what fits is kept in order, one more is dropped and counted under its reason.
"""

from __future__ import annotations

import threading
import time

from cgwd.dataplane.early_hold import (
    DROP_EXPIRED,
    DROP_OVERFLOW,
    DROP_RELEASED,
    NOT_RESERVED,
    EarlyPackets,
)

SPI = 0x1000_0001


def _taken(early: EarlyPackets, spi: int, now: float) -> list[bytes]:
    got: list[list[bytes]] = []
    early.install(spi, now, got.append)
    assert len(got) == 1, "publish must be called exactly once"
    return got[0]


def test_an_unreserved_spi_is_refused_and_not_counted() -> None:
    early = EarlyPackets()
    assert early.hold(SPI, b"x", 0.0) == NOT_RESERVED
    assert early.drops() == {} and early.held() == 0


def test_held_packets_are_handed_over_in_arrival_order_once() -> None:
    early = EarlyPackets()
    early.reserve(SPI)
    packets = [bytes([i]) * (10 + i) for i in range(5)]
    for i, p in enumerate(packets):
        assert early.hold(SPI, p, 0.01 * i) is None
    assert early.held() == 5
    assert _taken(early, SPI, 0.05) == packets
    assert early.held() == 0 and early.held_total() == 5
    # Installed: no longer reserved, so later packets are not held.
    assert early.hold(SPI, b"late", 0.06) == NOT_RESERVED
    assert _taken(early, SPI, 0.07) == []
    assert early.drops() == {}


def test_install_publishes_even_with_nothing_held() -> None:
    early = EarlyPackets()
    early.reserve(SPI)
    assert _taken(early, SPI, 0.0) == []


def test_packets_older_than_max_age_expire_and_are_counted() -> None:
    early = EarlyPackets(max_age=0.2)
    early.reserve(SPI)
    early.hold(SPI, b"old", 0.0)
    early.hold(SPI, b"new", 0.15)
    assert early.expire(0.2) == 0  # exactly max_age: still held
    assert early.expire(0.25) == 1
    assert _taken(early, SPI, 0.3) == [b"new"]
    assert early.drops() == {DROP_EXPIRED: 1}


def test_install_drops_what_expired_before_the_sa_came() -> None:
    early = EarlyPackets(max_age=0.2)
    early.reserve(SPI)
    early.hold(SPI, b"a", 0.0)
    early.hold(SPI, b"b", 0.0)
    assert _taken(early, SPI, 1.0) == []
    assert early.drops() == {DROP_EXPIRED: 2}


def test_per_spi_packet_limit() -> None:
    early = EarlyPackets(max_packets=3, max_bytes=10_000)
    early.reserve(SPI)
    assert [early.hold(SPI, bytes([i]), 0.0) for i in range(4)] == [None, None, None, DROP_OVERFLOW]
    assert _taken(early, SPI, 0.0) == [b"\x00", b"\x01", b"\x02"]
    assert early.drops() == {DROP_OVERFLOW: 1}


def test_per_spi_byte_limit() -> None:
    early = EarlyPackets(max_packets=100, max_bytes=1000)
    early.reserve(SPI)
    assert early.hold(SPI, bytes(600), 0.0) is None
    assert early.hold(SPI, bytes(401), 0.0) == DROP_OVERFLOW  # 1001 > 1000
    assert early.hold(SPI, bytes(400), 0.0) is None  # exactly 1000
    assert early.hold(SPI, b"x", 0.0) == DROP_OVERFLOW
    assert [len(p) for p in _taken(early, SPI, 0.0)] == [600, 400]
    assert early.drops() == {DROP_OVERFLOW: 2}


def test_only_a_few_reserved_spis_may_hold_packets_at_once() -> None:
    early = EarlyPackets(max_spis=2)
    spis = [SPI + i for i in range(3)]
    for spi in spis:
        early.reserve(spi)
    assert early.hold(spis[0], b"a", 0.0) is None
    assert early.hold(spis[1], b"b", 0.0) is None
    assert early.hold(spis[2], b"c", 0.0) == DROP_OVERFLOW
    # A queue freed (installed, or emptied by expiry) makes room for another SPI.
    assert _taken(early, spis[0], 0.0) == [b"a"]
    assert early.hold(spis[2], b"c", 0.0) is None
    assert early.drops() == {DROP_OVERFLOW: 1}


def test_a_released_spi_drops_what_it_held_and_holds_no_more() -> None:
    early = EarlyPackets()
    early.reserve(SPI)
    early.hold(SPI, b"a", 0.0)
    early.hold(SPI, b"b", 0.0)
    assert early.release(SPI) == 2
    assert early.hold(SPI, b"c", 0.0) == NOT_RESERVED
    assert early.drops() == {DROP_RELEASED: 2} and early.held() == 0


def test_memory_stays_bounded_under_a_flood_of_guessed_spis() -> None:
    early = EarlyPackets(max_packets=32, max_bytes=64 * 1024, max_spis=4)
    reserved = [SPI + i for i in range(6)]
    for spi in reserved:
        early.reserve(spi)
    refused = 0
    for i in range(20_000):
        spi = reserved[(i // 2) % 6] if i % 2 else 0x2000_0000 + i  # half guesses, half reserved
        refused += early.hold(spi, bytes(1400), 0.0) == NOT_RESERVED
    assert refused == 10_000
    # 4 SPIs x min(32 packets, 46 x 1400 octets within 64 KiB) = 4 x 32.
    assert early.held() == 4 * 32


def test_a_held_packet_is_a_copy_of_the_receive_buffer() -> None:
    early = EarlyPackets()
    early.reserve(SPI)
    buf = bytearray(b"first")
    assert early.hold(SPI, memoryview(buf), 0.0) is None
    buf[:] = b"reuse"  # the rx worker receives the next datagram into the same buffer
    assert _taken(early, SPI, 0.0) == [b"first"]


def test_a_packet_racing_the_install_is_either_handed_over_or_finds_the_sa() -> None:
    """The rx worker holds while the control side installs: a hold refused as NOT_RESERVED
    must come after the SA was published (so the worker's second lookup finds it), and
    every packet held before that must be in what was handed over."""
    for round_ in range(50):
        _race_hold_against_install(round_)


def _race_hold_against_install(round_: int) -> None:
    early = EarlyPackets(max_packets=10**6, max_bytes=10**9)
    early.reserve(SPI)
    published: list[list[bytes]] = []
    outcome: dict[int, str] = {}
    start = threading.Event()

    def rx() -> None:
        start.wait()
        deadline = time.monotonic() + 5
        i = 0
        while time.monotonic() < deadline:  # until refused: the install came
            if early.hold(SPI, i.to_bytes(4, "big"), 0.0) == NOT_RESERVED:
                outcome[i] = "found the SA" if published else "LOST"
                return
            outcome[i] = "held"
            i += 1

    worker = threading.Thread(target=rx)
    worker.start()
    start.set()
    deadline = time.monotonic() + 5
    while early.held_total() < 1 + round_ and time.monotonic() < deadline:
        pass  # install mid-stream: some packets held before, later ones refused
    early.install(SPI, 0.0, published.append)
    worker.join()
    assert "LOST" not in outcome.values()
    assert "found the SA" in outcome.values(), "the install did not land mid-stream"
    held = [i for i, what in outcome.items() if what == "held"]
    assert published == [[i.to_bytes(4, "big") for i in held]]
