"""Bounded holding of ESP packets that arrive for an inbound SPI before its SA is installed.

When we initiate a Child SA rekey, the responder may send on the new SA as soon as it has
sent its CREATE_CHILD_SA response (RFC 7296 §2.8 allows it: it has installed both SAs);
our side still has to finish the exchange (PFS Diffie-Hellman, key derivation) before the
inbound SA exists. A packet for that SPI arriving in between would be lost. The dataplane
allocated the SPI (`Dataplane.allocate_spi`), so it knows the packet is *probably* for an
SA about to be added, and holds it briefly instead of dropping it.

Nothing here trusts a held packet: they are unauthenticated copies, decapsulated through
the SA's normal ICV and replay checks once it is added. Memory is strictly bounded: only
SPIs the caller has reserved (`reserve`) may hold packets, at most `max_spis` of them per tunnel,
each at most `max_packets` packets and `max_bytes` octets, each packet at most `max_age`
seconds. An attacker guessing SPIs can at most fill these few queues.

Thread safety: every method takes the object's lock. The rx worker holds and expires; the
control side reserves, installs (takes the held packets and publishes the SA in one step
under the lock, so a packet is either held and handed over, or finds the SA) and releases.
Drops are counted here, under the lock, by reason (`DROP_*`).
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

HOLD_MAX_PACKETS = 32
HOLD_MAX_BYTES = 64 * 1024
HOLD_MAX_SPIS = 4
HOLD_MAX_AGE = 0.2  # seconds; an IKE host finishes a CREATE_CHILD_SA in milliseconds

DROP_EXPIRED = "early_expired"
"""Held longer than the maximum age: the SA was not added in time (or never will be)."""
DROP_OVERFLOW = "early_overflow"
"""The SPI's queue was full, or too many reserved SPIs already held packets."""
DROP_RELEASED = "early_released"
"""The SPI was released (or its reservation lapsed) with packets still held."""
NOT_RESERVED = "not_reserved"
"""`hold` refused: the SPI is not reserved (never was, released, or installed). Not counted
here: the caller decides (unknown SPI, or look again for the SA that was just installed)."""


@dataclass
class _Queue:
    packets: deque[tuple[float, bytes]] = field(default_factory=deque)
    nbytes: int = 0


class EarlyPackets:
    """Per-tunnel holding queues, keyed by inbound SPI.

    Args:
        max_packets / max_bytes: per-SPI limits.
        max_spis: how many SPIs may hold packets at once.
        max_age: seconds a packet may be held.
    """

    def __init__(
        self,
        *,
        max_packets: int = HOLD_MAX_PACKETS,
        max_bytes: int = HOLD_MAX_BYTES,
        max_spis: int = HOLD_MAX_SPIS,
        max_age: float = HOLD_MAX_AGE,
    ) -> None:
        self._lock = threading.Lock()
        self._queues: dict[int, _Queue] = {}
        self._max_packets = max_packets
        self._max_bytes = max_bytes
        self._max_spis = max_spis
        self._max_age = max_age
        self._reserved: set[int] = set()
        self._drops: dict[str, int] = {}
        self._held_total = 0

    def reserve(self, spi: int) -> None:
        """Allow packets for ``spi`` to be held (the SPI was just allocated)."""
        with self._lock:
            self._reserved.add(spi)

    def release(self, spi: int) -> int:
        """Stop holding for ``spi`` (released, or its reservation lapsed): what is held is
        dropped and counted. Returns how many packets were dropped."""
        with self._lock:
            self._reserved.discard(spi)
            queue = self._queues.pop(spi, None)
            if queue is None:
                return 0
            self._count(DROP_RELEASED, len(queue.packets))
            return len(queue.packets)

    def hold(self, spi: int, packet: bytes | memoryview, now: float) -> str | None:
        """Hold a copy of ``packet`` for ``spi`` (copied only if held: the caller's buffer
        may be reused as soon as this returns).

        Returns None if held; `NOT_RESERVED` (not counted); or the drop reason, counted.
        """
        with self._lock:
            if spi not in self._reserved:
                return NOT_RESERVED
            self._expire_locked(now)
            queue = self._queues.get(spi)
            if queue is None:
                if len(self._queues) >= self._max_spis:
                    return self._count(DROP_OVERFLOW)
                queue = self._queues[spi] = _Queue()
            if (
                len(queue.packets) >= self._max_packets
                or queue.nbytes + len(packet) > self._max_bytes
            ):
                return self._count(DROP_OVERFLOW)
            queue.packets.append((now, bytes(packet)))
            queue.nbytes += len(packet)
            self._held_total += 1
            return None

    def install(self, spi: int, now: float, publish: Callable[[list[bytes]], None]) -> int:
        """The SA for ``spi`` is being added: end its reservation and, under the lock, call
        ``publish`` with the packets held for it, oldest first (expired ones dropped and
        counted). ``publish`` must make the SA visible to the rx worker and must not raise.
        Returns how many packets were handed over."""
        with self._lock:
            self._reserved.discard(spi)
            self._expire_locked(now)
            queue = self._queues.pop(spi, None)
            packets = [p for _at, p in queue.packets] if queue is not None else []
            publish(packets)
            return len(packets)

    def expire(self, now: float) -> int:
        """Drop packets held longer than the maximum age; returns how many."""
        if not self._queues:  # unlocked fast path: a stale answer only delays expiry
            return 0
        with self._lock:
            return self._expire_locked(now)

    def drops(self) -> dict[str, int]:
        """A snapshot of the drop counts by reason."""
        with self._lock:
            return dict(self._drops)

    def held(self) -> int:
        """Packets held right now."""
        with self._lock:
            return sum(len(q.packets) for q in self._queues.values())

    def held_total(self) -> int:
        """Packets ever accepted for holding (since handed over, or dropped)."""
        with self._lock:
            return self._held_total

    def _expire_locked(self, now: float) -> int:
        expired = 0
        for spi in list(self._queues):
            queue = self._queues[spi]
            while queue.packets and now - queue.packets[0][0] > self._max_age:
                _at, packet = queue.packets.popleft()
                queue.nbytes -= len(packet)
                expired += 1
            if not queue.packets:
                del self._queues[spi]
        if expired:
            self._count(DROP_EXPIRED, expired)
        return expired

    def _count(self, reason: str, n: int = 1) -> str:
        self._drops[reason] = self._drops.get(reason, 0) + n
        return reason
