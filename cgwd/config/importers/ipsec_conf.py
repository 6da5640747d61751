"""What the strongSwan and Openswan downloads share (reference §6).

Both are prose around an ``ipsec.conf`` ``conn TunnelN`` block (``key=value`` lines,
indented, ``left`` = customer gateway, ``right`` = AWS) and an ``ipsec.secrets`` line
``CGW AWS : PSK "key"``, once per ``IPSEC Tunnel #N`` section.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

from cgwd.config.importers import assemble as a
from cgwd.config.importers import normalise as norm
from cgwd.config.importers.text import Line


@dataclass(frozen=True)
class Setting:
    """One ``key=value`` line of a conn block (``commented`` for ``#key=value``)."""

    key: str
    value: str
    line: Line
    commented: bool


@dataclass
class Section:
    number: int
    banner: Line
    lines: list[Line]


def _banner(line: Line) -> int | None:
    words = line.text.split()
    if len(words) == 3 and [w.lower() for w in words[:2]] == ["ipsec", "tunnel"]:
        number = words[2].removeprefix("#")
        if words[2].startswith("#") and number.isascii() and number.isdigit():
            return int(number)
    return None


def split_sections(reporter: a.Reporter, lines: Iterable[Line]) -> tuple[list[Line], list[Section]]:
    """The lines before the first ``IPSEC Tunnel #N`` banner, and each tunnel's section.

    Every ``: PSK "…"`` value is registered with ``reporter`` first, so that no error
    raised while reading the sections can quote a key pasted into another field.
    """
    header: list[Line] = []
    sections: list[Section] = []
    for line in lines:
        _, colon, rest = line.text.partition(":")
        if colon and rest.split()[:1] == ["PSK"]:
            reporter.secrets.add(rest.split(maxsplit=1)[-1].strip().strip('"'))
        number = _banner(line)
        if number is not None:
            sections.append(Section(number, line, []))
        elif sections:
            sections[-1].lines.append(line)
        else:
            header.append(line)
    return header, sections


def check_numbering(reporter: a.Reporter, sections: list[Section]) -> None:
    for expected, section in enumerate(sections, start=1):
        if section.number != expected or expected > 2:
            raise reporter.error(
                f"banner 'IPSEC Tunnel #{section.number}' where tunnel #{expected} was expected",
                origin=a.Origin("banner", section.banner.number),
            )


def conn_settings(lines: list[Line], name: str) -> Iterator[Setting]:
    """The ``key=value`` lines of ``conn NAME``: the indented lines right below it.

    ``#key=value`` lines are yielded as commented (AWS ships ``#leftupdown=…`` for users
    to uncomment); ``##`` prose and other comments are skipped.
    """
    inside = False
    for line in lines:
        if line.text.split() == ["conn", name]:
            inside = True
            continue
        if not inside:
            continue
        if not line.text.startswith(" "):
            return
        text = line.text.strip()
        commented = text.startswith("#")
        if text.startswith("##"):
            continue
        key, equals, value = text.lstrip("#").partition("=")
        if equals and key.strip() and " " not in key.strip():
            yield Setting(key.strip(), value.strip(), line, commented)


@dataclass(frozen=True)
class SecretsLine:
    """An ``ipsec.secrets`` line: ``CGW AWS : PSK "key"`` (Openswan: ``CGW AWS: PSK …``)."""

    left: str
    right: str
    psk: str
    line: Line


def secrets_line(draft: a.TunnelDraft, lines: list[Line]) -> SecretsLine | None:
    """The tunnel's secrets line, or None. A malformed one is a ConfigError (without the key)."""
    for line in lines:
        selectors, colon, rest = line.text.partition(":")
        words = rest.split(maxsplit=1)
        if not colon or not words or words[0] != "PSK":
            continue
        ids = selectors.split()
        quoted = words[1].strip() if len(words) == 2 else ""
        origin = a.Origin("PSK line", line.number)
        if len(ids) != 2:
            raise draft.error("PSK line: expected 'CGW-IP AWS-IP : PSK \"key\"'", origin)
        if len(quoted) < 2 or quoted[0] != '"' or quoted[-1] != '"' or '"' in quoted[1:-1]:
            raise draft.error("PSK line: the key must be written in double quotes", origin)
        return SecretsLine(ids[0], ids[1], quoted[1:-1], line)
    return None


def put_secret(draft: a.TunnelDraft, secret: SecretsLine) -> None:
    origin = a.Origin("PSK line", secret.line.number)
    draft.put(a.CGW_OUTSIDE, secret.left, origin)
    draft.put(a.AWS_OUTSIDE, secret.right, origin)
    draft.put(a.PSK, secret.psk, origin)


def put_proposals(
    draft: a.TunnelDraft,
    setting: Setting,
    keys: tuple[str, str, str],
    *,
    separators: str = "-",
) -> None:
    """Split ``ike=``/``esp=`` proposals (``aes128-sha1-modp1024,aes256-…``) into the
    encryption, integrity and DH keys given in ``keys``, as lists of allowed tokens."""
    kinds: list[tuple[Callable[[str], object], list[str]]] = [
        (norm.encryption, []),
        (norm.integrity, []),
        (norm.dh_group, []),
    ]
    origin = a.Origin(f"'{setting.key}='", setting.line.number)
    for proposal in setting.value.rstrip("!").split(","):
        for token in proposal.translate({ord(c): " " for c in separators}).split():
            for convert, found in kinds:
                try:
                    convert(token)
                except ValueError:
                    continue
                if token not in found:
                    found.append(token)
                break
            else:
                raise draft.error(f"'{setting.key}=': unknown algorithm {token[:40]!r}", origin)
    for key, (_, found) in zip(keys, kinds, strict=True):
        if found:
            draft.put(key, found, origin)
