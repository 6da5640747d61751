"""Rate-limited logging of per-packet events (drops), so a flood cannot flood the log.

Each key (e.g. ``"tun0 unknown_spi"``) logs at most once per interval; the next message
says how many were suppressed in between. Thread-safe enough for counters read by humans:
the worst race loses one suppressed count.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable


class RateLimitedLog:
    """``log(key, message)``: emit at most one line per key every ``interval`` seconds."""

    def __init__(
        self,
        logger: logging.Logger,
        *,
        interval: float = 10.0,
        level: int = logging.WARNING,
        clock: Callable[[], float] = time.monotonic,
        max_keys: int = 256,
    ) -> None:
        self._logger = logger
        self._interval = interval
        self._level = level
        self._clock = clock
        self._max_keys = max_keys
        self._next: dict[str, float] = {}
        self._suppressed: dict[str, int] = {}

    @property
    def tracked_keys(self) -> int:
        """How many keys have a pending deadline (bounded by ``max_keys``)."""
        return len(self._next)

    def log(self, key: str, message: str) -> bool:
        """Log ``message`` unless ``key`` logged within the interval; True if it was logged."""
        now = self._clock()
        if now < self._next.get(key, 0.0):
            self._suppressed[key] = self._suppressed.get(key, 0) + 1
            return False
        if key not in self._next and len(self._next) >= self._max_keys:
            # Bounded memory even if keys were attacker-chosen: forget the oldest deadlines.
            self._next.clear()
            self._suppressed.clear()
        suppressed = self._suppressed.pop(key, 0)
        self._next[key] = now + self._interval
        if suppressed:
            message = f"{message} ({suppressed} similar suppressed)"
        self._logger.log(self._level, "%s", message)
        return True
