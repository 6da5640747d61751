"""The ESP anti-replay window (RFC 4303 3.4.3, Appendix A for extended sequence numbers).

The window remembers the highest authenticated sequence number T and one bit for each of
the ``size`` numbers ending at T (bit i is set once T - i was received). The bitmap is a
Python int: shifting and masking it is a handful of C operations even at 2048 bits.

Contract: call `check` BEFORE verifying the ICV (cheap rejection of duplicates and of
packets left of the window) and `update` only AFTER the ICV verified, so that forged
packets can never move the window (RFC 4303 3.4.3). Not thread-safe: one window is used by
one thread at a time. Nothing here raises for any integer input.
"""

from __future__ import annotations

# RFC 4303 3.4.3: receivers MUST support a window of 32 and SHOULD default to 64; cgwd
# accepts 64..2048 and defaults to 1024, AWS's size, which tolerates the reordering of
# multi-queue paths at high packet rates.
MIN_WINDOW = 64
MAX_WINDOW = 2048
DEFAULT_WINDOW = 1024

_LOW32 = 0xFFFFFFFF
_HIGH32_MAX = 0xFFFFFFFF  # the high half of a 64-bit ESN cannot go beyond this


class ReplayWindow:
    """Sliding anti-replay window of ``size`` packets, for 32-bit or 64-bit (ESN) numbers."""

    __slots__ = ("bitmap", "esn", "mask", "size", "top")

    def __init__(self, size: int = DEFAULT_WINDOW, *, esn: bool = False) -> None:
        """Raises ValueError for a size outside 64..2048."""
        if not MIN_WINDOW <= size <= MAX_WINDOW:
            raise ValueError(f"replay window must be {MIN_WINDOW}..{MAX_WINDOW}, not {size}")
        self.size = size
        self.esn = esn
        self.top = 0  # T: the highest sequence number seen and authenticated; 0 = none yet
        # Bit i <=> sequence number top - i was received. Public (with ``mask``) for one
        # reader: `InboundSa.decapsulate_run` slides it inline for in-order packets.
        self.bitmap = 0
        self.mask = (1 << size) - 1

    def estimate(self, seq_low: int) -> int:
        """The full 64-bit sequence number of a packet whose header carries ``seq_low``.

        Without ESN this is ``seq_low`` itself. With ESN it infers the high 32 bits from the
        window as in RFC 4303 Appendix A2.2 (the two cases: window inside one 2^32
        subspace, or straddling two). Returns -1 when the guess falls outside 0..2^64-1,
        which `check` rejects.
        """
        if not self.esn:
            return seq_low
        top = self.top
        top_low = top & _LOW32
        top_high = top >> 32
        bottom = top_low - self.size + 1  # Tl - W + 1
        if bottom >= 0:  # Case A: the window lies within one subspace
            high = top_high if seq_low >= bottom else top_high + 1
        else:  # Case B: the window spans two subspaces; compare modulo 2^32
            high = top_high - 1 if seq_low >= (bottom & _LOW32) else top_high
        if high < 0 or high > _HIGH32_MAX:
            return -1
        return (high << 32) | seq_low

    def check(self, seq: int) -> bool:
        """True if ``seq`` (a full sequence number) is new: right of the window, or inside
        it and not yet received. Sequence number 0 is never sent (RFC 4303 3.3.3: the
        first packet carries 1), so it is always refused."""
        if seq <= 0:
            return False
        top = self.top
        if seq > top:
            return True
        offset = top - seq
        if offset >= self.size:
            return False  # left of the window: too old to tell, RFC 4303 3.4.3 drops it
        return not (self.bitmap >> offset) & 1

    def update(self, seq: int) -> None:
        """Record ``seq`` as received after its ICV verified, sliding the window when it is
        the new highest number. A jump of a window or more resets the bitmap, so a far-ahead
        number never builds a huge integer."""
        top = self.top
        if seq > top:
            shift = seq - top
            self.bitmap = ((self.bitmap << shift) | 1) & self.mask if shift < self.size else 1
            self.top = seq
        elif seq > 0 and top - seq < self.size:
            self.bitmap |= 1 << (top - seq)

    def seen(self, seq: int) -> bool:
        """True if ``seq`` lies inside the window and was received (for tests and status)."""
        offset = self.top - seq
        return 0 <= offset < self.size and seq > 0 and bool((self.bitmap >> offset) & 1)
