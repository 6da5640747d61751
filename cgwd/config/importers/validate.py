"""AWS's rules for a VPN connection (reference §8, aws-behaviour §1), checked on the model.

The checks run on the typed `AwsVpnConnection`, after a format has been parsed, so every
importer (and the runtime config loader, which re-validates user overrides) applies the
same rules. `tunnel_problems` and `connection_problems` list what is wrong as `Problem`s
naming the model field; importers turn the first one into a located ConfigError. The
``validate_*`` functions raise ConfigError themselves, for callers without a file.

No message ever contains a pre-shared key: PSK problems give its length or the position
of the offending character.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network, IPv6Network

from cgwd.config.aws import (
    ENCRYPTION_ALGORITHMS,
    INTEGRITY_ALGORITHMS,
    PHASE1_DH_GROUPS,
    PHASE2_DH_GROUPS,
    AwsTunnel,
    AwsVpnConnection,
    PhaseSettings,
)
from cgwd.errors import ConfigError
from cgwd.secret import Secret

PSK_LENGTHS = range(8, 65)
PSK_ALPHABET = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._")

PHASE1_LIFETIMES = range(900, 28800 + 1)
PHASE2_LIFETIMES = range(900, 3600 + 1)
MIN_DPD_TIMEOUT = 30
MIN_REKEY_MARGIN = 60
FUZZ_PERCENTAGES = range(0, 101)
REPLAY_WINDOW_SIZES = range(64, 2048 + 1)
BGP_ASNS = range(1, 2**32)  # RFC 6793 four-octet ASNs, 0 is reserved (RFC 7607)
BGP_HOLD_TIMES = range(1, 65536)  # RFC 4271 4.2: two octets (0 is legal in BGP, not at AWS)

LINK_LOCAL = IPv4Network("169.254.0.0/16")  # RFC 3927; AWS inside addresses live here
INSIDE_PREFIX = 30
# AWS refuses these inside CIDRs (169.254.169.252/30 holds the instance metadata service).
RESERVED_INSIDE_CIDRS = (
    *(IPv4Network(f"169.254.{n}.0/30") for n in range(6)),
    IPv4Network("169.254.169.252/30"),
)
ULA = IPv6Network("fd00::/8")  # RFC 4193 locally assigned unique local addresses
INSIDE_IPV6_PREFIX = 126

SIXTEEN_BITS = range(1, 65536)  # sanity bound for MTU, MSS and counts; AWS's own caps are
# lower (MTU 1446, MSS 1406) but other values are the user's choice, not an error.


@dataclass(frozen=True)
class Problem:
    """One broken rule: the model field it concerns (``phase1.lifetime_seconds``) and why."""

    field: str
    message: str
    tunnel: int | None = None


def psk_problem(psk: Secret | str | bytes) -> str | None:
    """Why ``psk`` is not a valid AWS pre-shared key, or None. Never includes the key."""
    raw = psk.reveal() if isinstance(psk, Secret) else psk
    text = raw.decode("latin-1") if isinstance(raw, bytes) else raw
    if len(text) not in PSK_LENGTHS:
        return f"pre-shared key must be 8-64 characters long, this one has {len(text)}"
    for position, char in enumerate(text, start=1):
        if char not in PSK_ALPHABET:
            return (
                f"pre-shared key character {position} of {len(text)} is not one of A-Z a-z 0-9 . _"
            )
    if text.startswith("0"):
        return "pre-shared key must not start with 0"
    return None


def _range_problem(what: str, value: int, allowed: range, unit: str = "") -> str | None:
    if value in allowed:
        return None
    return f"{what} {value}{unit} is outside {allowed.start}-{allowed.stop - 1}{unit}"


def lifetime_problems(phase1: int | None, phase2: int | None) -> list[Problem]:
    """Phase 1 lifetime 900-28800 s, phase 2 900-3600 s and shorter than phase 1."""
    problems = []
    if phase1 is not None and (bad := _range_problem("lifetime", phase1, PHASE1_LIFETIMES, " s")):
        problems.append(Problem("phase1.lifetime_seconds", f"phase 1 {bad}"))
    if phase2 is not None:
        if bad := _range_problem("lifetime", phase2, PHASE2_LIFETIMES, " s"):
            problems.append(Problem("phase2.lifetime_seconds", f"phase 2 {bad}"))
        elif phase1 is not None and phase2 >= phase1:
            problems.append(
                Problem(
                    "phase2.lifetime_seconds",
                    f"phase 2 lifetime {phase2} s must be shorter than phase 1 lifetime {phase1} s",
                )
            )
    return problems


def inside_cidr_problem(cidr: IPv4Network) -> str | None:
    """Why ``cidr`` cannot be a tunnel's inside network, or None."""
    if cidr.prefixlen != INSIDE_PREFIX:
        return f"inside CIDR {cidr} must be a /30 (255.255.255.252)"
    if not cidr.subnet_of(LINK_LOCAL):
        return f"inside CIDR {cidr} must be inside 169.254.0.0/16"
    if cidr in RESERVED_INSIDE_CIDRS:
        return f"inside CIDR {cidr} is reserved by AWS"
    return None


def inside_ipv6_problem(cidr: IPv6Network) -> str | None:
    if cidr.prefixlen != INSIDE_IPV6_PREFIX:
        return f"inside IPv6 CIDR {cidr} must be a /126"
    if not cidr.subnet_of(ULA):
        return f"inside IPv6 CIDR {cidr} must be inside fd00::/8"
    return None


def _phase_problems(number: int, phase: PhaseSettings, dh_groups: tuple[int, ...]) -> list[Problem]:
    prefix = f"phase{number}"
    problems = []
    for name in phase.encryption_allowed or (phase.encryption,):
        if name is not None and name not in ENCRYPTION_ALGORITHMS:
            problems.append(
                Problem(
                    f"{prefix}.encryption",
                    f"phase {number} encryption {name} is not one AWS offers "
                    f"({', '.join(ENCRYPTION_ALGORITHMS)})",
                )
            )
    for name in phase.integrity_allowed or (phase.integrity,):
        if name is not None and name not in INTEGRITY_ALGORITHMS:
            problems.append(
                Problem(
                    f"{prefix}.integrity",
                    f"phase {number} integrity {name} is not one AWS offers "
                    f"({', '.join(INTEGRITY_ALGORITHMS)})",
                )
            )
    for group in phase.dh_groups_allowed or (phase.dh_group,):
        if group is not None and group not in dh_groups:
            problems.append(
                Problem(
                    f"{prefix}.dh_group",
                    f"DH group {group} is not allowed in phase {number} "
                    f"(AWS allows {', '.join(map(str, dh_groups))})",
                )
            )
    return problems


def _host_problem(what: str, address: IPv4Address | None, cidr: IPv4Network) -> str | None:
    if address is None:
        return None
    if address not in cidr:
        return f"{what} {address} is not in the tunnel's inside CIDR {cidr}"
    if address in (cidr.network_address, cidr.broadcast_address):
        return f"{what} {address} is not a host address of {cidr}"
    return None


def _address_problems(t: AwsTunnel) -> Iterator[tuple[str, str | None]]:
    if t.inside_cidr is not None:
        yield "inside_cidr", inside_cidr_problem(t.inside_cidr)
        yield (
            "customer_gateway_inside_ip",
            _host_problem(
                "customer gateway inside IP", t.customer_gateway_inside_ip, t.inside_cidr
            ),
        )
        yield (
            "vpn_gateway_inside_ip",
            _host_problem("AWS inside IP", t.vpn_gateway_inside_ip, t.inside_cidr),
        )
    aws_inside = t.vpn_gateway_inside_ip
    if t.customer_gateway_inside_ip is not None and t.customer_gateway_inside_ip == aws_inside:
        yield "vpn_gateway_inside_ip", f"the CGW and AWS inside IPs are the same ({aws_inside})"
    if t.inside_ipv6_cidr is not None:
        yield "inside_ipv6_cidr", inside_ipv6_problem(t.inside_ipv6_cidr)
    hop = t.static_route_next_hop
    if hop is not None and aws_inside is not None and hop != aws_inside:
        yield "static_route_next_hop", f"next hop {hop} is not the AWS inside IP {aws_inside}"
    if t.bgp is not None and aws_inside is not None and t.bgp.neighbor_ip != aws_inside:
        yield (
            "bgp.neighbor_ip",
            f"BGP neighbour {t.bgp.neighbor_ip} is not the AWS inside IP {aws_inside}",
        )


def _number_problems(t: AwsTunnel) -> Iterator[tuple[str, str | None]]:
    ranges: list[tuple[str, str, int | None, range, str]] = [
        ("tcp_mss_adjustment", "TCP MSS", t.tcp_mss_adjustment, SIXTEEN_BITS, ""),
        ("tunnel_mtu", "MTU", t.tunnel_mtu, SIXTEEN_BITS, ""),
        ("dpd.interval_seconds", "DPD interval", t.dpd.interval_seconds, SIXTEEN_BITS, " s"),
        ("dpd.retries", "DPD retries", t.dpd.retries, SIXTEEN_BITS, ""),
        ("rekey_fuzz_percentage", "rekey fuzz", t.rekey_fuzz_percentage, FUZZ_PERCENTAGES, " %"),
        ("replay_window_size", "replay window", t.replay_window_size, REPLAY_WINDOW_SIZES, ""),
    ]
    if t.bgp is not None:
        ranges += [
            ("bgp.customer_gateway_asn", "BGP ASN", t.bgp.customer_gateway_asn, BGP_ASNS, ""),
            ("bgp.neighbor_asn", "BGP ASN", t.bgp.neighbor_asn, BGP_ASNS, ""),
            (
                "bgp.hold_time_seconds",
                "BGP hold time",
                t.bgp.hold_time_seconds,
                BGP_HOLD_TIMES,
                " s",
            ),
        ]
    for field, what, value, allowed, unit in ranges:
        if value is not None:
            yield field, _range_problem(what, value, allowed, unit)
    timeout = t.dpd.timeout_seconds
    if timeout is not None and timeout < MIN_DPD_TIMEOUT:
        yield "dpd.timeout_seconds", f"DPD timeout {timeout} s is below {MIN_DPD_TIMEOUT} s"
    margin, phase2 = t.rekey_margin_seconds, t.phase2.lifetime_seconds
    if margin is not None and (
        margin < MIN_REKEY_MARGIN or (phase2 is not None and margin > phase2 // 2)
    ):
        upper = "half the phase 2 lifetime" if phase2 is None else f"{phase2 // 2} s"
        yield (
            "rekey_margin_seconds",
            f"rekey margin {margin} s is outside {MIN_REKEY_MARGIN} s to {upper}",
        )


def tunnel_problems(t: AwsTunnel) -> list[Problem]:
    """Everything wrong with one tunnel on its own (see the module docstring)."""
    problems = []
    if t.pre_shared_key is not None and (bad := psk_problem(t.pre_shared_key)):
        problems.append(Problem("pre_shared_key", bad))
    for field, message in (*_address_problems(t), *_number_problems(t)):
        if message:
            problems.append(Problem(field, message))
    problems += _phase_problems(1, t.phase1, PHASE1_DH_GROUPS)
    problems += _phase_problems(2, t.phase2, PHASE2_DH_GROUPS)
    problems += lifetime_problems(t.phase1.lifetime_seconds, t.phase2.lifetime_seconds)
    return [Problem(p.field, p.message, t.index) for p in problems]


def connection_problems(conn: AwsVpnConnection) -> list[Problem]:
    """Every tunnel's problems, then the rules that relate the two tunnels."""
    if len(conn.tunnels) != 2:
        return [
            Problem(
                "tunnels", f"a VPN connection has exactly two tunnels, found {len(conn.tunnels)}"
            )
        ]
    problems = [p for t in conn.tunnels for p in tunnel_problems(t)]
    first, second = conn.tunnels
    if first.vpn_gateway_outside_ip == second.vpn_gateway_outside_ip:
        problems.append(
            Problem(
                "vpn_gateway_outside_ip",
                f"both tunnels use the same AWS outside IP {second.vpn_gateway_outside_ip}",
                second.index,
            )
        )
    if first.inside_cidr is not None and first.inside_cidr == second.inside_cidr:
        problems.append(
            Problem(
                "inside_cidr",
                f"both tunnels use the same inside CIDR {second.inside_cidr}",
                second.index,
            )
        )
    if first.inside_ipv6_cidr is not None and first.inside_ipv6_cidr == second.inside_ipv6_cidr:
        problems.append(
            Problem(
                "inside_ipv6_cidr",
                f"both tunnels use the same inside IPv6 CIDR {second.inside_ipv6_cidr}",
                second.index,
            )
        )
    for t in conn.tunnels:
        if (conn.routing == "bgp") != (t.bgp is not None):
            problems.append(
                Problem(
                    "bgp",
                    f"the connection uses {conn.routing} routing but this tunnel "
                    f"{'has no' if t.bgp is None else 'has'} BGP settings",
                    t.index,
                )
            )
    return problems


def connection_warnings(conn: AwsVpnConnection) -> list[str]:
    """Findings worth telling the user that do not make the file unusable."""
    warnings = []
    first, second = conn.tunnels
    if (
        first.customer_gateway_outside_ip is not None
        and second.customer_gateway_outside_ip is not None
        and first.customer_gateway_outside_ip != second.customer_gateway_outside_ip
    ):
        warnings.append(
            f"the tunnels use different customer gateway outside IPs "
            f"({first.customer_gateway_outside_ip}, {second.customer_gateway_outside_ip})"
        )
    for t in conn.tunnels:
        if t.pre_shared_key is None:
            warnings.append(
                f"tunnel {t.index}: PSK not available in the file (kept in AWS Secrets Manager?)"
            )
    return warnings


def _raise_first(problems: Iterable[Problem]) -> None:
    for problem in problems:
        where = f"tunnel {problem.tunnel}: " if problem.tunnel is not None else ""
        raise ConfigError(f"{where}{problem.message}", element=problem.field)


def validate_psk(psk: Secret | str | bytes) -> None:
    """Raise ConfigError (giving length or position, never the key) unless ``psk`` is valid."""
    if problem := psk_problem(psk):
        raise ConfigError(problem)


def validate_lifetimes(phase1: int | None, phase2: int | None) -> None:
    """Raise ConfigError unless phase 1 is 900-28800 s, phase 2 900-3600 s and shorter."""
    _raise_first(lifetime_problems(phase1, phase2))


def validate_inside_cidr(cidr: IPv4Network) -> None:
    """Raise ConfigError unless ``cidr`` is a non-reserved /30 in 169.254.0.0/16."""
    if problem := inside_cidr_problem(cidr):
        raise ConfigError(problem)


def validate_tunnel(tunnel: AwsTunnel) -> None:
    """Raise ConfigError for the first rule ``tunnel`` breaks."""
    _raise_first(tunnel_problems(tunnel))


def validate_connection(conn: AwsVpnConnection) -> None:
    """Raise ConfigError for the first rule ``conn`` breaks (both tunnels and between them)."""
    _raise_first(connection_problems(conn))
