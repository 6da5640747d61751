"""`cgwd check --config FILE`: validate everything and print the plan of every tunnel.

Reads cgwd.toml and every AWS download it names, runs every check the daemon would run at
start-up, and prints per tunnel: the interface, addresses, MTU and MSS, routes, lifetimes and
rekey times with the reason, DPD, the proposals that will be offered and the dataplane.
Exit status 0 when the configuration is usable (warnings included), 2 when it is not.
"""

from __future__ import annotations

import argparse
import errno
import json
import socket
import sys
import textwrap
from collections.abc import Callable
from ipaddress import IPv4Address
from pathlib import Path
from typing import Any

from cgwd.config.load import LoadedConfiguration, load_configuration
from cgwd.config.proposals import STRONGSWAN_DH, esp_suite_name
from cgwd.config.tunnel_plan import RekeyPlan, TunnelPlan
from cgwd.dataplane.select import KernelCapabilities, choose_dataplane, probe_kernel

DEFAULT_CONFIG = Path("/etc/cgwd/cgwd.toml")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--config",
        type=Path,
        default=DEFAULT_CONFIG,
        metavar="FILE",
        help=f"the configuration file (default {DEFAULT_CONFIG})",
    )
    parser.add_argument("--json", action="store_true", help="print the plan as JSON")


def is_local_address(address: IPv4Address) -> bool:
    """Whether ``address`` is configured on this host (binding to it succeeds)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.bind((str(address), 0))
        except OSError as exc:
            if exc.errno == errno.EADDRNOTAVAIL:
                return False
            raise
    return True


def host_notes(
    loaded: LoadedConfiguration, is_local: Callable[[IPv4Address], bool] = is_local_address
) -> list[str]:
    """Findings about this host: a ``local_address`` it lacks, or NAT in front of it."""
    notes: list[str] = []
    for c in loaded.connections:
        t = c.tunnels[0]
        if t.local_address is not None:
            if not is_local(t.local_address):
                notes.append(
                    f"{c.name}: local_address {t.local_address} is not configured on this "
                    "host (yet): IKE cannot start until it is"
                )
        elif t.identity is not None and not is_local(t.identity):
            notes.append(
                f"{c.name}: the customer gateway address {t.identity} is not on this host: "
                "behind NAT the route to each AWS endpoint picks the source, and the IKE "
                f"identity stays {t.identity}"
            )
    return notes


def run(args: argparse.Namespace) -> int:
    loaded = load_configuration(args.config)
    # The kernel is probed (for real, as the daemon does) only when a tunnel may use it.
    wants_kernel = any(t.dataplane != "userspace" for c in loaded.connections for t in c.tunnels)
    capabilities = probe_kernel() if wants_kernel else None
    notes = host_notes(loaded)
    if args.json:
        doc = plan_json(loaded, capabilities)
        doc["host_notes"] = notes
        json.dump(doc, sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        sys.stdout.write(plan_text(loaded, capabilities))
        sys.stdout.writelines(f"note: {note}\n" for note in notes)
    return 0


def _rekey_json(plan: RekeyPlan) -> dict[str, Any]:
    return {
        "lifetime_seconds": plan.lifetime,
        "rekey_seconds": [plan.rekey_min, plan.rekey_max],
        "aws_rekey_margin_seconds": plan.aws_margin,
        "aws_rekey_fuzz_percent": plan.aws_fuzz_percent,
        "aws_earliest_rekey_seconds": plan.aws_earliest,
        "reason": plan.reason,
    }


def _tunnel_json(t: TunnelPlan, capabilities: KernelCapabilities | None) -> dict[str, Any]:
    dataplane, dataplane_reason = choose_dataplane(t.dataplane, capabilities)
    p = t.proposals
    return {
        "index": t.index,
        "interface": t.interface,
        "local_inside": str(t.local_inside),
        "remote_inside": str(t.remote_inside),
        "local_address": None if t.local_address is None else str(t.local_address),
        "identity": None if t.identity is None else str(t.identity),
        "remote_address": str(t.remote_address),
        "ike_version": t.ike_version,
        "ike_version_reason": t.ike_version_reason,
        "mtu": t.mtu,
        "mss": t.mss,
        "mss_ipv6": t.mss_ipv6,
        "mtu_reason": t.mtu_reason,
        "nat_traversal": t.nat_traversal,
        "routes": [
            {"network": str(r.network), "metric": r.metric, "multipath": r.multipath}
            for r in t.routes
        ],
        "phase1": _rekey_json(t.phase1),
        "phase2": _rekey_json(t.phase2),
        "dpd": {
            "interval_seconds": t.dpd.interval,
            "retries": t.dpd.retries,
            "dead_after_seconds": t.dpd.dead_after,
            "reason": t.dpd.reason,
        },
        "replay_window": t.replay_window,
        "bgp": None
        if t.bgp is None
        else {
            "customer_gateway_asn": t.bgp.customer_gateway_asn,
            "neighbor_asn": t.bgp.neighbor_asn,
            "neighbor_ip": str(t.bgp.neighbor_ip),
            "hold_time_seconds": t.bgp.hold_time_seconds,
        },
        "proposals": {
            "origin": p.origin,
            "ike": p.ike_strongswan().split(","),
            "esp": p.esp_strongswan().split(","),
        },
        "dataplane": {"configured": t.dataplane, "chosen": dataplane, "reason": dataplane_reason},
    }


def plan_json(
    loaded: LoadedConfiguration, capabilities: KernelCapabilities | None
) -> dict[str, Any]:
    """The `cgwd check --json` document. It never contains a pre-shared key."""
    return {
        "config": str(loaded.config.source),
        "control_socket": str(loaded.config.daemon.control_socket),
        "connections": [
            {
                "name": c.name,
                "aws_config": str(c.config.aws_config),
                "vpn_connection_id": c.aws.vpn_connection_id,
                "routing": c.aws.routing,
                "tunnel_preference": c.config.tunnel_preference,
                "proposals": c.config.proposals,
                "tunnels": [_tunnel_json(t, capabilities) for t in c.tunnels],
                "warnings": list(c.warnings),
            }
            for c in loaded.connections
        ],
    }


WIDTH = 100  # wrap explanations; proposal strings stay whole for copy and paste


def _row(label: str, value: str, indent: int = 4) -> str:
    return f"{' ' * indent}{label:<18} {value}\n"


def _why(text: str, indent: int = 4) -> str:
    prefix = " " * (indent + 19)
    return (
        textwrap.fill(f"({text})", WIDTH, initial_indent=prefix, subsequent_indent=prefix + " ")
        + "\n"
    )


def _rekey_text(label: str, plan: RekeyPlan) -> str:
    return _row(
        label,
        f"lifetime {plan.lifetime} s, rekey at {plan.rekey_min}-{plan.rekey_max} s",
    ) + _why(plan.reason)


def _ikev1_lines(t: TunnelPlan) -> list[str]:
    # One line per cipher/hash pair with its DH groups: 26 transforms stay readable.
    groups: dict[str, list[str]] = {}
    for transform in t.proposals.ikev1:
        cipher, hash_, group = transform.strongswan().split("-", 2)
        groups.setdefault(f"{cipher}-{hash_}", []).append(group)
    return [f"{pair}-{{{','.join(dh)}}}" for pair, dh in groups.items()]


def plan_text(loaded: LoadedConfiguration, capabilities: KernelCapabilities | None) -> str:
    """The human-readable plan printed by `cgwd check`."""
    out = [f"{loaded.config.source}: OK, {len(loaded.connections)} connection(s)\n"]
    out.append(f"control socket {loaded.config.daemon.control_socket}\n")
    for c in loaded.connections:
        out.append(
            f"\nconnection {c.name}: {c.aws.vpn_connection_id or '(no id)'}, {c.aws.routing} "
            f"routing, from {c.config.aws_config}\n"
        )
        for t in c.tunnels:
            dataplane, why = choose_dataplane(t.dataplane, capabilities)
            local = str(t.local_address) if t.local_address else "route to the endpoint decides"
            out.append(f"  tunnel {t.index}: interface {t.interface}\n")
            out.append(_row("AWS endpoint", f"{t.remote_address} (IKE ID {t.identity or '-'})"))
            out.append(_row("local address", local))
            out.append(_row("inside", f"{t.local_inside} <-> {t.remote_inside}"))
            out.append(_row("MTU / MSS", f"{t.mtu} / {t.mss} (IPv6 {t.mss_ipv6})"))
            out.append(_why(t.mtu_reason))
            routes = ", ".join(
                f"{r.network} metric {r.metric}{' multipath' if r.multipath else ''}"
                for r in t.routes
            )
            out.append(_row("routes", f"{routes or 'none'} via {t.remote_inside}"))
            if t.bgp is not None:
                out.append(
                    _row(
                        "BGP (FRR/BIRD)",
                        f"AS {t.bgp.customer_gateway_asn} -> neighbour {t.bgp.neighbor_ip} "
                        f"AS {t.bgp.neighbor_asn}, hold time "
                        f"{t.bgp.hold_time_seconds or '-'} s, over {t.interface}",
                    )
                )
            out.append(_row("IKE", f"{t.ike_version} ({t.ike_version_reason})"))
            out.append(_rekey_text("phase 1", t.phase1))
            out.append(_rekey_text("phase 2", t.phase2))
            out.append(
                _row(
                    "DPD",
                    f"probe after {t.dpd.interval} s of silence, dead after "
                    f"{t.dpd.dead_after} s ({t.dpd.reason})",
                )
            )
            out.append(_row("replay window", str(t.replay_window)))
            out.append(_row("NAT traversal", t.nat_traversal))
            out.append(_row("proposals", t.proposals.origin))
            if t.ike_version == "ikev2":
                ike_lines = t.proposals.ike_strongswan().split(",")
                label = "IKE proposals"
            else:
                ike_lines = _ikev1_lines(t)
                label = f"IKEv1 ({len(t.proposals.ikev1)})"
            for i, text in enumerate(ike_lines):
                out.append(_row(label if i == 0 else "", text))
            if t.ike_version == "ikev2":
                esp_lines = t.proposals.esp_strongswan().split(",")
            else:
                suites = [esp_suite_name(*suite) for suite in t.proposals.esp_suites()]
                groups = "-".join(STRONGSWAN_DH[g] for g in t.proposals.esp[0].dh_groups)
                esp_lines = [
                    ", ".join(suites),
                    f"PFS: phase 1's group if one of {groups}, else the first",
                ]
            for i, text in enumerate(esp_lines):
                out.append(_row("ESP proposals" if i == 0 else "", text))
            out.append(_row("dataplane", f"{dataplane} ({why})"))
        for warning in c.warnings:
            out.append(f"  warning: {warning}\n")
    return "".join(out)
