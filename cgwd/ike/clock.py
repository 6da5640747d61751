"""Time as seen by the IKE core: a number of seconds on a monotonic scale.

The core never calls a clock itself; the host reads one of these and passes ``now``.
"""

from __future__ import annotations

import time
from typing import Protocol


class Clock(Protocol):
    """A monotonic clock in seconds."""

    def now(self) -> float:
        """Current time; only differences between two readings are meaningful."""
        ...


class MonotonicClock:
    """The host's clock (`time.monotonic`)."""

    def now(self) -> float:
        return time.monotonic()


class FakeClock:
    """A clock tests move by hand."""

    def __init__(self, start: float = 1000.0) -> None:
        self._now = float(start)

    def now(self) -> float:
        return self._now

    def advance(self, seconds: float) -> float:
        """Move forward by ``seconds`` (never backwards) and return the new time."""
        if seconds < 0:
            raise ValueError("a monotonic clock does not go backwards")
        self._now += seconds
        return self._now

    def __repr__(self) -> str:
        return f"FakeClock(now={self._now})"
