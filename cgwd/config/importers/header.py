"""The ``Your VPN Connection ID : vpn-…`` block that opens every text download.

Generic, strongSwan and Openswan files write it as plain lines, Cisco IOS inside ``!``
comments; the padding mixes spaces and TABs. 2009 files say ``VPN Gateway`` where later
ones say ``Virtual Private Gateway``; for a Transit Gateway the gateway id is empty.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from cgwd.config.importers.assemble import Origin, Reporter
from cgwd.config.importers.text import Line, split_label

LABELS = {
    "your vpn connection id": "vpn",
    "your virtual private gateway id": "vgw",
    "your vpn gateway id": "vgw",
    "your customer gateway id": "cgw",
    "your transit gateway id": "tgw",
}
HEX_DIGITS = frozenset("0123456789abcdef")
ID_LENGTHS = (8, 17)  # EC2 ids: old short form and the 2016+ long form


@dataclass(frozen=True)
class Ids:
    vpn_connection_id: str
    customer_gateway_id: str
    vpn_gateway_id: str | None  # None: empty (Transit Gateway) or not given
    transit_gateway_id: str | None


def id_problem(prefix: str, value: str) -> str | None:
    """Why ``value`` is not an EC2 id with ``prefix`` (``vpn``, ``cgw`` ...), or None."""
    kind, dash, digits = value.partition("-")
    if kind != prefix or not dash or len(digits) not in ID_LENGTHS or set(digits) - HEX_DIGITS:
        # A value without a dash could be a pre-shared key pasted here: do not quote it.
        shown = repr(value[:40]) if dash else f"a {len(value)}-character value"
        return f"{shown} is not a {prefix}-… id ({prefix}- and 8 or 17 hex digits)"
    return None


def read_ids(reporter: Reporter, lines: Iterable[Line]) -> Ids:
    """The ids in ``lines`` (the part of the file before the first tunnel).

    Raises ConfigError when the VPN connection or customer gateway id is missing or malformed.
    """
    found: dict[str, str] = {}
    for line in lines:
        parts = split_label(line.text.lstrip("!# "))
        if parts is None:
            continue
        label, value = parts
        prefix = LABELS.get(label.lower())
        if prefix is None:
            continue
        if value and (problem := id_problem(prefix, value)):
            raise reporter.error(f"{label}: {problem}", origin=Origin(label, line.number))
        found[prefix] = value
    for prefix, label in (("vpn", "Your VPN Connection ID"), ("cgw", "Your Customer Gateway ID")):
        if not found.get(prefix):
            raise reporter.error(f"no '{label}' line before the first tunnel")
    return Ids(
        vpn_connection_id=found["vpn"],
        customer_gateway_id=found["cgw"],
        vpn_gateway_id=found.get("vgw") or None,
        transit_gateway_id=found.get("tgw") or None,
    )
