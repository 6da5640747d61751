"""Shared helpers for the IKE codec/crypto tests."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

VECTORS = Path(__file__).resolve().parents[2] / "vectors" / "ike"


def load_vectors(name: str) -> list[dict[str, Any]]:
    data = json.loads((VECTORS / name).read_text())
    vectors: list[dict[str, Any]] = data["vectors"]
    return vectors


class ScriptedRng:
    """Hands out exactly the bytes it was given, in order; fails loudly when it runs dry."""

    def __init__(self, *chunks: bytes) -> None:
        self._data = b"".join(chunks)

    def bytes(self, n: int) -> bytes:
        if n > len(self._data):
            raise AssertionError(f"ScriptedRng: {n} octets asked, {len(self._data)} left")
        out, self._data = self._data[:n], self._data[n:]
        return out

    @property
    def left(self) -> int:
        return len(self._data)
