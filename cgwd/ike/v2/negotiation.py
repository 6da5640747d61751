"""IKEv2 proposal selection and traffic-selector narrowing (RFC 7296 §2.7, §2.9, §3.3).

Pure functions over small value types, independent of the wire codec: the exchange tasks
convert payloads to `Proposal`/`Selector` and back.

Proposal rules (RFC 7296 §3.3.6): a proposal is acceptable when, for every transform type
present in either side's proposal, the two share a transform (same id and, for encryption,
same key length). A missing integrity or DH type counts as NONE (id 0, §3.3.2), so an AEAD
proposal without INTEG matches one that lists INTEG NONE. The responder answers with
exactly one transform per type, and the initiator checks that the answer is a choice from
one of its own proposals.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from ipaddress import IPv4Address

# RFC 7296 §3.3.2 transform types.
ENCR = 1
PRF = 2
INTEG = 3
DH = 4
ESN = 5
_NONE_MEANS_ABSENT = (INTEG, DH)  # §3.3.2: "NONE" transform ids are 0

# RFC 7296 §3.3.1 protocol ids.
PROTO_IKE = 1
PROTO_ESP = 3


@dataclass(frozen=True)
class Transform:
    """One transform: type, IANA id and the key length attribute (§3.3.5) if any."""

    type: int
    id: int
    key_bits: int | None = None


@dataclass(frozen=True)
class Proposal:
    """One proposal of an SA payload, in the offering side's preference order."""

    number: int
    protocol: int
    spi: bytes
    transforms: tuple[Transform, ...]

    def of_type(self, ttype: int) -> tuple[Transform, ...]:
        found = tuple(t for t in self.transforms if t.type == ttype)
        if not found and ttype in _NONE_MEANS_ABSENT:
            return (Transform(ttype, 0),)
        return found

    def types(self) -> set[int]:
        return {t.type for t in self.transforms}

    def without(self, ttype: int) -> Proposal:
        return Proposal(
            self.number,
            self.protocol,
            self.spi,
            tuple(t for t in self.transforms if t.type != ttype),
        )

    def single(self, ttype: int) -> Transform | None:
        """The one transform of this type in a chosen proposal, None if absent or NONE."""
        for t in self.transforms:
            if t.type == ttype and not (ttype in _NONE_MEANS_ABSENT and t.id == 0):
                return t
        return None


def _match(ours: Proposal, theirs: Proposal) -> tuple[Transform, ...] | None:
    if ours.protocol != theirs.protocol:
        return None
    chosen: list[Transform] = []
    for ttype in sorted(ours.types() | theirs.types() | set(_NONE_MEANS_ABSENT)):
        offered = set(theirs.of_type(ttype))
        pick = next((t for t in ours.of_type(ttype) if t in offered), None)
        if pick is None:
            return None
        if not (ttype in _NONE_MEANS_ABSENT and pick.id == 0):
            chosen.append(pick)
    return tuple(chosen)


def select_proposal(
    offered: Sequence[Proposal], ours: Sequence[Proposal], *, strip_dh: bool = False
) -> Proposal | None:
    """The responder's choice: the first of *our* proposals (strongest first) that one of
    the peer's proposals can satisfy, carrying the peer's proposal number and SPI.

    ``strip_dh`` drops DH transforms from both sides first (the Child SA created inside
    IKE_AUTH has no key exchange, RFC 7296 §1.2). Returns None when nothing matches
    (NO_PROPOSAL_CHOSEN).
    """
    for mine in ours:
        m = mine.without(DH) if strip_dh else mine
        for theirs in offered:
            t = theirs.without(DH) if strip_dh else theirs
            chosen = _match(m, t)
            if chosen is not None:
                return Proposal(theirs.number, theirs.protocol, theirs.spi, chosen)
    return None


def accept_choice(
    chosen: Sequence[Proposal], offered: Sequence[Proposal], *, strip_dh: bool = False
) -> Proposal | None:
    """Validate the responder's answer against what we offered (RFC 7296 §2.7).

    It must be exactly one proposal, numbered like one of ours, holding one transform per
    type, each of which we offered in that proposal. Returns the answer or None.
    """
    if len(chosen) != 1:
        return None
    answer = chosen[0]
    for mine in offered:
        if mine.number != answer.number or mine.protocol != answer.protocol:
            continue
        m = mine.without(DH) if strip_dh else mine
        a = answer.without(DH) if strip_dh else answer
        for ttype in m.types() | a.types() | set(_NONE_MEANS_ABSENT):
            got = a.of_type(ttype)
            if len(got) != 1 or got[0] not in m.of_type(ttype):
                return None
        return answer
    return None


def dh_groups(proposals: Sequence[Proposal]) -> list[int]:
    """DH groups in preference order across proposals, without duplicates or NONE."""
    out: list[int] = []
    for p in proposals:
        for t in p.transforms:
            if t.type == DH and t.id != 0 and t.id not in out:
                out.append(t.id)
    return out


def offers_group(proposals: Sequence[Proposal], group: int) -> bool:
    return group in dh_groups(proposals)


# -- traffic selectors (RFC 7296 §2.9, §3.13.1) -----------------------------------------

TS_IPV4_ADDR_RANGE = 7


@dataclass(frozen=True)
class Selector:
    """An IPv4 traffic selector: protocol 0 = any, ports inclusive."""

    start: IPv4Address
    end: IPv4Address
    ip_protocol: int = 0
    start_port: int = 0
    end_port: int = 65535

    def __str__(self) -> str:
        if self.start == IPv4Address(0) and self.end == IPv4Address(0xFFFFFFFF):
            addr = "0.0.0.0/0"
        elif self.start == self.end:
            addr = str(self.start)
        else:
            addr = f"{self.start}-{self.end}"
        if self.ip_protocol or (self.start_port, self.end_port) != (0, 65535):
            return f"{addr}[{self.ip_protocol}/{self.start_port}-{self.end_port}]"
        return addr


ANY_IPV4 = Selector(IPv4Address(0), IPv4Address(0xFFFFFFFF))


def intersect(a: Selector, b: Selector) -> Selector | None:
    """The selector both allow, None if disjoint."""
    if a.ip_protocol and b.ip_protocol and a.ip_protocol != b.ip_protocol:
        return None
    start, end = max(a.start, b.start), min(a.end, b.end)
    sport, eport = max(a.start_port, b.start_port), min(a.end_port, b.end_port)
    if start > end or sport > eport:
        return None
    return Selector(start, end, a.ip_protocol or b.ip_protocol, sport, eport)


def narrow(proposed: Sequence[Selector], policy: Sequence[Selector]) -> list[Selector]:
    """What the responder may accept of ``proposed`` under ``policy`` (§2.9).

    Every non-empty pairwise intersection, in the proposer's order, without duplicates. An
    empty result means TS_UNACCEPTABLE. (The first selector may be the packet that
    triggered the request, §2.9; it is treated like the others.)
    """
    out: list[Selector] = []
    for p in proposed:
        for q in policy:
            s = intersect(p, q)
            if s is not None and s not in out:
                out.append(s)
    return out


def within(narrowed: Sequence[Selector], proposed: Sequence[Selector]) -> bool:
    """True if every selector of the answer lies inside one we proposed (initiator check)."""
    return bool(narrowed) and all(any(intersect(n, p) == n for p in proposed) for n in narrowed)
