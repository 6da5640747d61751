"""Inbound ESP SPIs the session has allocated but not (yet) installed an SA with.

An initiator allocates its inbound SPI when it builds a CREATE_CHILD_SA or IKE_AUTH
request (RFC 7296 §1.3, §3.3.1: the SPI goes into its proposals), before it knows whether
the exchange will succeed. The dataplane keeps such an SPI reserved (for the kernel: a
larval SA from XFRM_MSG_ALLOCSPI). When the exchange fails, is retried with a fresh SPI, or
its IKE SA goes away, nothing else would ever free it, so the session sweeps after every
input: an allocated SPI that is neither installed nor held by a queued or active exchange
is released.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

SpiAllocator = Callable[[], int]


class SpiReservations:
    """Tracks allocated, not yet installed inbound SPIs. No I/O: it returns what to release."""

    def __init__(self, allocator: SpiAllocator) -> None:
        self._allocator = allocator
        self._pending: set[int] = set()

    def allocate(self) -> int:
        """A fresh SPI from the dataplane, pending until `installed` or released.

        Raises whatever the allocator raises (the dataplane's errors).
        """
        spi = self._allocator()
        self._pending.add(spi)
        return spi

    def installed(self, spi: int) -> None:
        """An SA now uses ``spi``: the dataplane owns it from here on."""
        self._pending.discard(spi)

    def sweep(self, held: Iterable[int | None]) -> list[int]:
        """Forget and return the pending SPIs not in ``held`` (sorted, for stable output)."""
        keep = {spi for spi in held if spi is not None}
        gone = sorted(self._pending - keep)
        self._pending.intersection_update(keep)
        return gone

    @property
    def pending(self) -> frozenset[int]:
        return frozenset(self._pending)
