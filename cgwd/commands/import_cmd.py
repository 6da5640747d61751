"""`cgwd import FILE`: read an AWS VPN download and show what cgwd understood.

The summary is for people; ``--json`` prints `AwsVpnConnection.to_json` for tools. The
pre-shared keys are shown as ``***`` unless ``--show-secrets`` is given. A download holding
PSKs that group or others can read is refused (exit status 2), as everywhere in cgwd.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from cgwd.config.aws import AwsTunnel, AwsVpnConnection, PhaseSettings
from cgwd.config.load import load_aws_file

FORMAT_NAMES = {
    "aws-generic-text": "Generic (vendor agnostic) text download",
    "aws-customer-gateway-xml": "CustomerGatewayConfiguration XML",
    "aws-cli-json": "aws ec2 describe-vpn-connections JSON",
    "aws-cisco-ios": "Cisco IOS download",
    "aws-strongswan": "strongSwan download",
    "aws-openswan": "Openswan download",
}
ABSENT = "-"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("file", type=Path, metavar="FILE", help="the file downloaded from AWS")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a summary")
    parser.add_argument(
        "--show-secrets", action="store_true", help="print the pre-shared keys instead of ***"
    )
    parser.add_argument(
        "--connection-id",
        metavar="ID",
        help="the VPN connection to take from a describe-vpn-connections JSON holding several",
    )


def run(args: argparse.Namespace) -> int:
    aws = load_aws_file(args.file, args.connection_id)
    if args.json:
        json.dump(aws.to_json(show_secrets=args.show_secrets), sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        sys.stdout.write(summary(aws, show_secrets=args.show_secrets))
    return 0


def _v(value: object | None, unit: str = "") -> str:
    return ABSENT if value is None else f"{value}{unit}"


def _phase(phase: PhaseSettings, dh_label: str) -> str:
    enc = ", ".join(phase.encryption_allowed) or _v(phase.encryption)
    integ = ", ".join(phase.integrity_allowed) or _v(phase.integrity)
    dh = ", ".join(str(g) for g in phase.dh_groups_allowed) or _v(phase.dh_group)
    return f"{enc} / {integ} / {dh_label} {dh}, lifetime {_v(phase.lifetime_seconds, ' s')}"


def _psk(tunnel: AwsTunnel, show_secrets: bool) -> str:
    if tunnel.pre_shared_key is None:
        return "not in the file (set pre_shared_keys in cgwd.toml)"
    if show_secrets:
        return tunnel.pre_shared_key.reveal().decode()
    return f"*** ({len(tunnel.pre_shared_key)} characters)"


def _row(label: str, value: str) -> str:
    return f"  {label:<24} {value}\n"


def summary(aws: AwsVpnConnection, *, show_secrets: bool = False) -> str:
    """The human-readable summary printed by `cgwd import`."""
    out = [f"AWS VPN connection {_v(aws.vpn_connection_id)}\n"]
    out.append(_row("format", FORMAT_NAMES.get(aws.format, aws.format)))
    if aws.transit_gateway_id is not None:
        out.append(_row("transit gateway", aws.transit_gateway_id))
    else:
        out.append(_row("virtual private gateway", _v(aws.vpn_gateway_id)))
    out.append(_row("customer gateway", _v(aws.customer_gateway_id)))
    out.append(_row("routing", aws.routing))
    for t in aws.tunnels:
        out.append(f"\nTunnel {t.index}\n")
        out.append(_row("AWS endpoint", str(t.vpn_gateway_outside_ip)))
        out.append(_row("customer gateway IP", _v(t.customer_gateway_outside_ip)))
        if t.inside_cidr is not None:
            inside = (
                f"{_v(t.customer_gateway_inside_ip)} (us) <-> {_v(t.vpn_gateway_inside_ip)} "
                f"(AWS) in {t.inside_cidr}"
            )
        else:
            inside = "not in the file"
        out.append(_row("inside addresses", inside))
        if t.inside_ipv6_cidr is not None:
            out.append(_row("inside IPv6", str(t.inside_ipv6_cidr)))
        out.append(_row("pre-shared key", _psk(t, show_secrets)))
        versions = ", ".join(t.ike_versions_allowed) or _v(t.ike_version)
        out.append(_row("IKE version", versions))
        out.append(_row("phase 1", _phase(t.phase1, "DH")))
        out.append(_row("phase 2", _phase(t.phase2, "PFS")))
        dpd = f"every {_v(t.dpd.interval_seconds, ' s')}, {_v(t.dpd.retries)} retries"
        if t.dpd.timeout_seconds is not None:
            dpd += f", timeout {t.dpd.timeout_seconds} s"
        if t.dpd.action is not None:
            dpd += f", action {t.dpd.action}"
        out.append(_row("DPD", dpd))
        out.append(
            _row(
                "MTU / TCP MSS (file)",
                f"{_v(t.tunnel_mtu)} / {_v(t.tcp_mss_adjustment)}",
            )
        )
        if t.rekey_margin_seconds is not None or t.rekey_fuzz_percentage is not None:
            out.append(
                _row(
                    "rekey margin / fuzz",
                    f"{_v(t.rekey_margin_seconds, ' s')} / {_v(t.rekey_fuzz_percentage, ' %')}",
                )
            )
        if t.replay_window_size is not None:
            out.append(_row("replay window", str(t.replay_window_size)))
        if t.startup_action is not None:
            out.append(_row("startup action", t.startup_action))
        if t.bgp is not None:
            hold = _v(t.bgp.hold_time_seconds, " s")
            out.append(
                _row(
                    "BGP",
                    f"AS {t.bgp.customer_gateway_asn} (us) <-> AS {t.bgp.neighbor_asn} at "
                    f"{t.bgp.neighbor_ip}, hold time {hold}",
                )
            )
        elif t.static_route_next_hop is not None:
            out.append(_row("static next hop", str(t.static_route_next_hop)))
    out.append(
        "\nDownloads print AWS's minimum algorithms even for customised tunnels: cgwd offers "
        'every suite AWS supports unless cgwd.toml says proposals = "file".\n'
    )
    for warning in aws.warnings:
        out.append(f"warning: {warning}\n")
    return "".join(out)
