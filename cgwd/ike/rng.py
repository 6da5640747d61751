"""Randomness injected into the IKE core (SPIs, nonces, DH private values, IVs).

`SystemRng` is what the daemon uses; `SeededRng` makes exchange tests reproducible.
"""

from __future__ import annotations

import hashlib
import secrets
from typing import Protocol


class Rng(Protocol):
    """A source of random bytes."""

    def bytes(self, n: int) -> bytes:
        """Return ``n`` random bytes (``n >= 0``)."""
        ...


class SystemRng:
    """The operating system's CSPRNG (``getrandom`` through `secrets`)."""

    def bytes(self, n: int) -> bytes:
        if n < 0:
            raise ValueError("negative byte count")
        return secrets.token_bytes(n)

    def __repr__(self) -> str:
        return "SystemRng()"


class SeededRng:
    """Deterministic stream for tests: SHA-256(seed | counter) blocks. Never for real keys."""

    def __init__(self, seed: int | bytes | str = 0) -> None:
        if isinstance(seed, int):
            seed = seed.to_bytes(16, "big", signed=True)
        elif isinstance(seed, str):
            seed = seed.encode()
        self._seed = bytes(seed)
        self._counter = 0
        self._pool = b""

    def bytes(self, n: int) -> bytes:
        if n < 0:
            raise ValueError("negative byte count")
        while len(self._pool) < n:
            block = hashlib.sha256(self._seed + self._counter.to_bytes(8, "big")).digest()
            self._counter += 1
            self._pool += block
        out, self._pool = self._pool[:n], self._pool[n:]
        return out

    def __repr__(self) -> str:
        return "SeededRng(<seeded>)"
