"""Secrets (pre-shared keys, key material) that never render.

A `Secret` prints as ``<redacted>`` in ``repr``, ``str``, f-strings, logs, exceptions and
JSON, refuses pickling, and compares in constant time. Code that truly needs the bytes
calls `reveal`, which makes every use of secret material easy to find.
"""

from __future__ import annotations

import hmac
from typing import NoReturn

REDACTED = "<redacted>"


class Secret:
    """Opaque holder of secret bytes."""

    __slots__ = ("_value",)

    def __init__(self, value: bytes | str) -> None:
        self._value = value.encode() if isinstance(value, str) else bytes(value)

    def reveal(self) -> bytes:
        """The secret bytes. Call only where the secret is used, never to display it."""
        return self._value

    def __len__(self) -> int:
        return len(self._value)

    def __repr__(self) -> str:
        return f"Secret({REDACTED})"

    def __str__(self) -> str:
        return REDACTED

    def __format__(self, spec: str) -> str:
        return REDACTED

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Secret):
            return NotImplemented
        return hmac.compare_digest(self._value, other._value)

    def __hash__(self) -> int:
        # Hashing would leak a function of the secret through dict ordering and timing.
        raise TypeError("Secret is not hashable")

    def __reduce__(self) -> NoReturn:
        raise TypeError("Secret cannot be pickled")
