"""The console's "Generic / Vendor Agnostic" text download (reference §2), every generation.

The file is prose with field lines in it (``  - Label   : value``). Labels repeat between
sections and sub-headings, so the tokenizer files each field under
**(section, sub-heading, label)**: ``("#1", None, "lifetime")`` is the IKE lifetime,
``("#3", "inside ip addresses", "customer gateway")`` the CGW inside address. Everything
that is not a field line, a tunnel banner or a section heading is prose and is only looked
at to end a sub-heading, so numbers in prose ("UDP port 4500", "DH groups like 2, 14-18")
can never be taken for values, and no value is read from a column position.

Generations handled: 2009 (``VPN Gateway`` labels, ``Customer Gateway:   :``, DH group on
a ``Perfect Forward Secrecy`` line in #1, no IKE version or MTU), 2013-17 (TAB padding),
2018-21 (``IKE version``, ``Diffie-Hellman``) and 2021+ (TGW with an empty gateway id).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from cgwd.config.aws import AwsVpnConnection, FormatName, Routing
from cgwd.config.importers import assemble as a
from cgwd.config.importers.header import read_ids
from cgwd.config.importers.text import Line, clean_lines, split_label

FORMAT: FormatName = "aws-generic-text"
FOOTER = "Additional Notes and Questions"
OUTSIDE = "outside ip addresses"
INSIDE = "inside ip addresses"
SUB_HEADINGS = (OUTSIDE, INSIDE)

# (section, sub-heading, label) -> draft key; looked up in lower case, inner blanks collapsed.
FIELDS: dict[tuple[str, str | None, str], str] = {
    ("#1", None, "ike version"): a.IKE_VERSION,
    ("#1", None, "authentication method"): a.AUTH_METHOD,
    ("#1", None, "pre-shared key"): a.PSK,
    ("#1", None, "authentication algorithm"): a.P1_INTEGRITY,
    ("#1", None, "encryption algorithm"): a.P1_ENCRYPTION,
    ("#1", None, "lifetime"): a.P1_LIFETIME,
    ("#1", None, "phase 1 negotiation mode"): a.P1_MODE,
    ("#1", None, "diffie-hellman"): a.P1_DH,
    ("#1", None, "perfect forward secrecy"): a.P1_DH,  # up to 2017 the phase 1 group sat here
    ("#2", None, "protocol"): a.P2_PROTOCOL,
    ("#2", None, "authentication algorithm"): a.P2_INTEGRITY,
    ("#2", None, "encryption algorithm"): a.P2_ENCRYPTION,
    ("#2", None, "lifetime"): a.P2_LIFETIME,
    ("#2", None, "mode"): a.P2_MODE,
    ("#2", None, "perfect forward secrecy"): a.P2_DH,
    ("#2", None, "dpd interval"): a.DPD_INTERVAL,
    ("#2", None, "dpd retries"): a.DPD_RETRIES,
    ("#2", None, "tcp mss adjustment"): a.MSS,
    ("#2", None, "clear don't fragment bit"): a.CLEAR_DF,
    ("#2", None, "fragmentation"): a.FRAGMENT_BEFORE,
    ("#3", OUTSIDE, "customer gateway"): a.CGW_OUTSIDE,
    ("#3", OUTSIDE, "virtual private gateway"): a.AWS_OUTSIDE,
    ("#3", OUTSIDE, "vpn gateway"): a.AWS_OUTSIDE,  # 2009
    ("#3", INSIDE, "customer gateway"): a.CGW_INSIDE,
    ("#3", INSIDE, "virtual private gateway"): a.AWS_INSIDE,
    ("#3", INSIDE, "vpn gateway"): a.AWS_INSIDE,
    ("#3", None, "tunnel interface mtu"): a.MTU,
    ("#4", None, "next hop"): a.NEXT_HOP,
    ("#4", None, "customer gateway asn"): a.BGP_CGW_ASN,
    ("#4", None, "virtual private gateway asn"): a.BGP_AWS_ASN,
    ("#4", None, "vpn gateway asn"): a.BGP_AWS_ASN,
    ("#4", None, "neighbor ip address"): a.BGP_NEIGHBOR,
    ("#4", None, "neighbor hold time"): a.BGP_HOLD,
}

# Present in every generation; IKE version (2018+) and MTU (2013+) are not.
REQUIRED = (
    a.PSK,
    a.P1_ENCRYPTION,
    a.P1_INTEGRITY,
    a.P1_DH,
    a.P1_LIFETIME,
    a.P2_ENCRYPTION,
    a.P2_INTEGRITY,
    a.P2_DH,
    a.P2_LIFETIME,
    a.DPD_INTERVAL,
    a.DPD_RETRIES,
    a.MSS,
    a.CLEAR_DF,
    a.FRAGMENT_BEFORE,
    a.CGW_OUTSIDE,
    a.AWS_OUTSIDE,
    a.CGW_INSIDE,
    a.AWS_INSIDE,
)
REQUIRED_BY_ROUTING: dict[Routing, tuple[str, ...]] = {
    "static": (a.NEXT_HOP,),
    "bgp": (a.BGP_CGW_ASN, a.BGP_AWS_ASN, a.BGP_NEIGHBOR, a.BGP_HOLD),
}


@dataclass(frozen=True)
class Field:
    """One ``- label : value`` line and where it sits."""

    section: str | None  # "#1" .. "#4"
    heading: str | None  # "Outside IP Addresses", "Inside IP Addresses" (as written) or None
    label: str  # as written, inner blanks collapsed
    value: str
    line: Line


@dataclass
class TunnelBlock:
    number: int
    banner: Line
    lines: list[Line]


def _tunnel_number(line: Line) -> int | None:
    """N for an ``IPSec Tunnel #N`` banner line, else None."""
    words = line.text.split()
    if len(words) == 3 and words[:2] == ["IPSec", "Tunnel"] and words[2].startswith("#"):
        number = words[2][1:]
        if number.isascii() and number.isdigit():
            return int(number)
    return None


def _split(lines: Iterable[Line]) -> tuple[list[Line], list[TunnelBlock], Line | None]:
    """Header lines, the tunnel blocks in file order, and the footer line (None if absent)."""
    header: list[Line] = []
    blocks: list[TunnelBlock] = []
    for line in lines:
        if line.text.strip().startswith(FOOTER):
            return header, blocks, line
        number = _tunnel_number(line)
        if number is not None:
            blocks.append(TunnelBlock(number, line, []))
        elif blocks:
            blocks[-1].lines.append(line)
        else:
            header.append(line)
    return header, blocks, None


def _section(text: str) -> str | None:
    """``#1`` for a ``#1: Internet Key Exchange Configuration`` heading, else None."""
    head, colon, _ = text.strip().partition(":")
    if colon and len(head) == 2 and head[0] == "#" and head[1] in "1234":
        return head
    return None


def tokenize(lines: Iterable[Line]) -> Iterator[Field]:
    """The field lines of one tunnel block, each with its section and sub-heading."""
    section: str | None = None
    heading: str | None = None
    for line in lines:
        stripped = line.text.strip()
        if (number := _section(stripped)) is not None:
            section, heading = number, None
            continue
        if stripped.startswith("- "):
            parts = split_label(stripped[2:])
            if parts is not None:
                label, value = parts
                yield Field(section, heading, label, value, line)
                continue
        # Prose (or a sub-heading): a sub-heading only lasts until the next prose line.
        candidate = " ".join(stripped.rstrip(":").split())
        heading = candidate if candidate.lower() in SUB_HEADINGS else None


def _routing(block: TunnelBlock) -> tuple[Routing, Line] | None:
    for line in block.lines:
        if _section(line.text) == "#4":
            words = line.text.lower()
            if "bgp" in words or "border gateway protocol" in words:
                return "bgp", line
            if "static" in words:
                return "static", line
    return None


def _draft(reporter: a.Reporter, index: int, block: TunnelBlock) -> a.TunnelDraft:
    draft = a.TunnelDraft(
        reporter, index, a.Origin(f"IPSec Tunnel #{block.number}", block.banner.number)
    )
    for field in tokenize(block.lines):
        if field.section is None:
            continue
        label = field.label.lower()
        heading = None if field.heading is None else field.heading.lower()
        key = FIELDS.get((field.section, heading, label))
        if key is None and heading is not None:
            key = FIELDS.get((field.section, None, label))
        if key is not None:
            shown = field.label if field.heading is None else f"{field.heading}: {field.label}"
            origin = a.Origin(f"'{field.section} {shown}'", field.line.number)
            draft.put(key, field.value, origin)
    return draft


def parse(text: str, *, source: str) -> AwsVpnConnection:
    """The connection in a generic text download. Raises ConfigError only."""
    reporter = a.Reporter(FORMAT, source)
    header, blocks, footer = _split(clean_lines(text))
    reporter.secrets.update(
        field.value
        for block in blocks
        for field in tokenize(block.lines)
        if field.label.lower() == "pre-shared key" and field.value
    )
    ids = read_ids(reporter, header)
    for expected, block in enumerate(blocks, start=1):
        if block.number != expected or expected > 2:
            raise reporter.error(
                f"tunnel banner 'IPSec Tunnel #{block.number}' where tunnel #{expected} was "
                "expected (an AWS VPN connection has exactly two tunnels)",
                origin=a.Origin("banner", block.banner.number),
            )
    if len(blocks) == 2 and footer is None:
        last = blocks[-1]
        end = last.lines[-1] if last.lines else last.banner
        raise reporter.error(
            f"the file ends at line {end.number} without the '{FOOTER}' footer (is it truncated?)",
            origin=a.Origin("end of file", end.number),
            tunnel=2,
        )
    routings = []
    for block in blocks:
        found = _routing(block)
        if found is None:
            raise reporter.error(
                "no '#4: Static Routing' or '#4: Border Gateway Protocol (BGP)' section",
                origin=a.Origin("banner", block.banner.number),
                tunnel=block.number,
            )
        routings.append(found)
    routing: Routing = routings[0][0] if routings else "static"
    for (other, line), block in zip(routings, blocks, strict=True):
        if other != routing:
            raise reporter.error(
                f"section #4 says {other} routing but tunnel 1 uses {routing}",
                origin=a.Origin("#4", line.number),
                tunnel=block.number,
            )
    drafts = [_draft(reporter, block.number, block) for block in blocks]
    return a.build_connection(
        reporter,
        drafts,
        routing=routing,
        required=REQUIRED + REQUIRED_BY_ROUTING[routing],
        vpn_connection_id=ids.vpn_connection_id,
        vpn_gateway_id=ids.vpn_gateway_id,
        customer_gateway_id=ids.customer_gateway_id,
    )
