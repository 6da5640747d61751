"""Where each key of a TOML document is written, for error messages.

`tomllib` returns values without positions, so error messages that must name a line find it
here: a small scanner that follows table headers (``[a]``, ``[[a]]``, ``[a.b]``) and key
lines (``k = v``, ``a.b = v``, quoted keys), skips strings, comments and multi-line values,
and records the line of every key path, with array-of-tables indexes as ints:
``("connection", 1, "routes")``.

It only has to be right for documents `tomllib` accepted; on anything else it degrades to
fewer known lines, never to an exception.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence

KeyPath = tuple[str | int, ...]

_BARE = re.compile(r"[A-Za-z0-9_-]+")


def _parse_key(text: str, pos: int) -> tuple[list[str], int] | None:
    """A dotted key starting at ``pos``: its parts and the position after it."""
    parts: list[str] = []
    while True:
        while pos < len(text) and text[pos] in " \t":
            pos += 1
        if pos >= len(text):
            return None
        char = text[pos]
        if char == '"':
            end = pos + 1
            value = []
            while end < len(text) and text[end] != '"':
                if text[end] == "\\" and end + 1 < len(text):
                    value.append(text[end : end + 2])
                    end += 2
                    continue
                value.append(text[end])
                end += 1
            if end >= len(text):
                return None
            raw = "".join(value)
            try:  # TOML basic-string escapes are JSON's, bar \UXXXXXXXX (rare in keys)
                parts.append(json.loads(f'"{raw}"') if "\\" in raw else raw)
            except ValueError:
                parts.append(raw)
            pos = end + 1
        elif char == "'":
            end = text.find("'", pos + 1)
            if end < 0:
                return None
            parts.append(text[pos + 1 : end])
            pos = end + 1
        else:
            match = _BARE.match(text, pos)
            if not match:
                return None
            parts.append(match.group())
            pos = match.end()
        while pos < len(text) and text[pos] in " \t":
            pos += 1
        if pos < len(text) and text[pos] == ".":
            pos += 1
            continue
        return parts, pos


class _ValueScanner:
    """Tracks strings and bracket depth across lines of a value."""

    def __init__(self) -> None:
        self.depth = 0
        self.multiline: str | None = None  # '"""' or "'''" while inside one

    def busy(self) -> bool:
        return self.depth > 0 or self.multiline is not None

    def feed(self, text: str) -> None:
        pos = 0
        while pos < len(text):
            if self.multiline is not None:
                end = self._find_close(text, pos, self.multiline)
                if end < 0:
                    return
                pos = end + 3
                self.multiline = None
                continue
            char = text[pos]
            if char == "#":
                return
            if text.startswith('"""', pos) or text.startswith("'''", pos):
                self.multiline = text[pos : pos + 3]
                pos += 3
                continue
            if char == '"':
                pos += 1
                while pos < len(text) and text[pos] != '"':
                    pos += 2 if text[pos] == "\\" else 1
                pos += 1
                continue
            if char == "'":
                end = text.find("'", pos + 1)
                pos = len(text) if end < 0 else end + 1
                continue
            if char in "[{":
                self.depth += 1
            elif char in "]}":
                self.depth = max(0, self.depth - 1)
            pos += 1

    @staticmethod
    def _find_close(text: str, pos: int, delimiter: str) -> int:
        while True:
            end = text.find(delimiter, pos)
            if end < 0:
                return -1
            if delimiter == '"""':
                backslashes = 0
                while end - backslashes - 1 >= pos and text[end - backslashes - 1] == "\\":
                    backslashes += 1
                if backslashes % 2:
                    pos = end + 1
                    continue
            return end


class KeyLines:
    """Line numbers (1-based) of the keys and tables of one TOML document."""

    def __init__(self, text: str) -> None:
        self._lines: dict[KeyPath, int] = {}
        self._scan(text)

    def line_of(self, path: Sequence[str | int]) -> int | None:
        """The line of ``path``, or of its nearest enclosing key or table that is written."""
        path = tuple(path)
        while path:
            line = self._lines.get(path)
            if line is not None:
                return line
            path = path[:-1]
        return None

    def exact(self, path: Sequence[str | int]) -> int | None:
        """The line of exactly ``path``, if it is written in the document."""
        return self._lines.get(tuple(path))

    def _scan(self, text: str) -> None:
        arrays: dict[tuple[str, ...], int] = {}  # array-of-tables path -> last index
        table: KeyPath = ()
        value = _ValueScanner()
        for number, line in enumerate(text.splitlines(), 1):
            if value.busy():
                value.feed(line)
                continue
            stripped = line.lstrip(" \t")
            if not stripped or stripped.startswith("#"):
                continue
            if stripped.startswith("[["):
                parsed = _parse_key(stripped, 2)
                if parsed and stripped[parsed[1] :].startswith("]]"):
                    names = tuple(parsed[0])
                    arrays[names] = arrays.get(names, -1) + 1
                    table = (*self._resolve(names[:-1], arrays), names[-1], arrays[names])
                    self._lines.setdefault(table, number)
                    self._lines.setdefault(table[:-1], number)
                continue
            if stripped.startswith("["):
                parsed = _parse_key(stripped, 1)
                if parsed and stripped[parsed[1] :].startswith("]"):
                    table = self._resolve(tuple(parsed[0]), arrays)
                    self._lines.setdefault(table, number)
                continue
            parsed = _parse_key(stripped, 0)
            if parsed is None or not stripped[parsed[1] :].startswith("="):
                continue
            parts, end = parsed
            for depth in range(1, len(parts) + 1):
                self._lines.setdefault((*table, *parts[:depth]), number)
            value.feed(stripped[end + 1 :])

    @staticmethod
    def _resolve(names: tuple[str, ...], arrays: dict[tuple[str, ...], int]) -> KeyPath:
        # [a.b] after [[a]] means the last element of the array a.
        path: list[str | int] = []
        for depth in range(1, len(names) + 1):
            path.append(names[depth - 1])
            if names[:depth] in arrays:
                path.append(arrays[names[:depth]])
        return tuple(path)
