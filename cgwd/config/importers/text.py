"""Text hygiene shared by every importer (reference §1).

AWS downloads reach users through browsers, e-mail and Windows editors: they may carry a
UTF-8 byte order mark, CRLF line ends, TAB padding, trailing blanks and lines made only of
blanks. `decode` turns bytes into text once; `clean_lines` gives the line-oriented parsers
numbered lines with TABs turned into spaces and trailing blanks stripped, so no parser ever
depends on columns or on the exact padding.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from cgwd.errors import ConfigError

BOM = "\ufeff"


def decode(data: str | bytes, *, source: str) -> str:
    """The text of ``data`` without a leading BOM.

    Raises ConfigError when bytes are not UTF-8 (naming the offset of the first bad byte).
    """
    if isinstance(data, str):
        return data.removeprefix(BOM)
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ConfigError(
            f"not UTF-8 text: undecodable byte 0x{data[exc.start]:02x} at offset {exc.start}",
            source=source,
        ) from None


@dataclass(frozen=True)
class Line:
    """One non-blank line: its 1-based number in the file and its cleaned text."""

    number: int
    text: str


def clean_lines(text: str) -> Iterator[Line]:
    """The non-blank lines of ``text``, TABs as spaces, trailing whitespace stripped.

    Line numbers count LF, CRLF and lone CR line ends alike, as editors do.
    """
    normalised = text.replace("\r\n", "\n").replace("\r", "\n")
    for number, raw in enumerate(normalised.split("\n"), start=1):
        line = raw.replace("\t", " ").rstrip()
        if line.strip():
            yield Line(number, line)


def split_label(text: str) -> tuple[str, str] | None:
    """``label : value`` split at the first colon, the label's inner blanks collapsed.

    AWS pads labels with spaces and TABs (and in 2009 files wrote ``Customer Gateway:   :``
    with a doubled colon), so a second colon right after the padding is part of the
    separator. Returns None when the line has no colon or an empty label.
    """
    label, colon, value = text.partition(":")
    if not colon:
        return None
    value = value.strip()
    if value.startswith(":"):
        value = value[1:].strip()
    label = " ".join(label.split())
    if not label:
        return None
    return label, value
