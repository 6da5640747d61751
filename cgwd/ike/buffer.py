"""Bounds-checked reading of network octets for the IKE codecs.

`Reader` raises only `ParseError`, so a decoder built on it cannot leak ``IndexError`` or
``struct.error``.
"""

from __future__ import annotations

from cgwd.ike.decode_errors import ParseError


class Reader:
    """Consumes a byte string front to back; every read is checked against what is left."""

    __slots__ = ("_data", "_end", "_pos", "what")

    def __init__(self, data: bytes | memoryview, what: str = "message") -> None:
        self._data = bytes(data)
        self._pos = 0
        self._end = len(self._data)
        self.what = what

    @property
    def offset(self) -> int:
        return self._pos

    @property
    def remaining(self) -> int:
        return self._end - self._pos

    def at_end(self) -> bool:
        return self._pos >= self._end

    def take(self, n: int) -> bytes:
        if n < 0 or n > self.remaining:
            raise ParseError(
                f"{self.what}: needs {n} octets at offset {self._pos}, {self.remaining} left"
            )
        out = self._data[self._pos : self._pos + n]
        self._pos += n
        return out

    def rest(self) -> bytes:
        return self.take(self.remaining)

    def u8(self) -> int:
        return self.take(1)[0]

    def u16(self) -> int:
        return int.from_bytes(self.take(2), "big")

    def u32(self) -> int:
        return int.from_bytes(self.take(4), "big")

    def u64(self) -> int:
        return int.from_bytes(self.take(8), "big")

    def sub(self, n: int, what: str) -> Reader:
        """A reader over the next ``n`` octets, which this reader skips."""
        return Reader(self.take(n), what)

    def expect_end(self) -> None:
        if self.remaining:
            raise ParseError(f"{self.what}: {self.remaining} trailing octets")
