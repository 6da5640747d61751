"""`cgwd lab up|down|status`: the emulated AWS side, for rehearsing a configuration.

``up`` builds `cgwd.lab.aws_side.AwsLab` from an AWS download and leaves it running (the
endpoints' charons are detached); what it built is recorded in ``STATE_DIR/lab.json`` so
that ``down`` and ``status`` work from any later process. Nothing outside the lab's own
namespaces and state directory is touched. Needs root and strongSwan.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

from cgwd.config.load import load_aws_file
from cgwd.errors import CgwdError
from cgwd.lab.aws_side import AwsLab, LabOptions, teardown
from cgwd.lab.strongswan import CHARON_BINARY, parse_list_sas

DEFAULT_STATE_DIR = Path("/run/cgwd-lab")
STATE_FILE = "lab.json"
CGWD_CONFIG = "cgwd.toml"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("action", choices=("up", "down", "status"))
    parser.add_argument("--aws-config", type=Path, metavar="FILE", help="the AWS download (up)")
    parser.add_argument(
        "--connection-id", metavar="ID", help="which connection of a JSON holding several"
    )
    parser.add_argument(
        "--state-dir",
        type=Path,
        default=DEFAULT_STATE_DIR,
        metavar="DIR",
        help=f"where the lab's state, configs and logs live (default {DEFAULT_STATE_DIR})",
    )
    parser.add_argument("--nat", action="store_true", help="put the customer gateway behind a NAT")
    parser.add_argument("--no-lan", action="store_true", help="no LAN host behind the gateway")
    parser.add_argument(
        "--ike-version",
        choices=("ikev1", "ikev2", "any"),
        help="IKE versions the AWS endpoints answer (default: from the file, else both)",
    )
    parser.add_argument(
        "--startup-action",
        choices=("add", "start"),
        help="add: the gateway initiates (AWS default); start: AWS initiates (IKEv2)",
    )
    parser.add_argument("--dpd-delay", type=int, metavar="S", help="AWS DPD interval (10)")
    parser.add_argument(
        "--fast",
        action="store_true",
        help="short DPD and retransmit timers (dead peer noticed in seconds, as in the tests)",
    )
    parser.add_argument("--json", action="store_true", help="print the lab description as JSON")


def run(args: argparse.Namespace) -> int:
    if os.geteuid() != 0:
        raise CgwdError("cgwd lab needs root (network namespaces)")
    state_dir: Path = args.state_dir
    if args.action == "up":
        return _up(args, state_dir)
    if args.action == "down":
        return _down(state_dir)
    return _status(args, state_dir)


def _read_state(state_dir: Path) -> dict[str, Any] | None:
    try:
        data = json.loads((state_dir / STATE_FILE).read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise CgwdError(f"{state_dir / STATE_FILE}: unreadable lab state: {exc}") from None
    if not isinstance(data, dict):
        raise CgwdError(f"{state_dir / STATE_FILE}: not a lab state")
    return data


def _up(args: argparse.Namespace, state_dir: Path) -> int:
    if args.aws_config is None:
        raise CgwdError("cgwd lab up needs --aws-config FILE")
    if not CHARON_BINARY.exists():
        raise CgwdError(f"{CHARON_BINARY} not found: install strongswan-charon (make deps)")
    if _read_state(state_dir) is not None:
        raise CgwdError(f"a lab is already up (state in {state_dir}); run `cgwd lab down` first")
    connection = load_aws_file(args.aws_config, args.connection_id)
    overrides: dict[str, Any] = {
        "nat": args.nat,
        "lan": not args.no_lan,
        "ike_version": args.ike_version,
        "startup_action": args.startup_action,
        "workdir": state_dir / "lab",
        "detach": True,
    }
    if args.dpd_delay is not None:
        overrides["dpd_delay"] = args.dpd_delay
    options = LabOptions.for_tests(**overrides) if args.fast else LabOptions(**overrides)
    state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    lab = AwsLab(connection, options)
    lab.start()  # tears itself down and raises on failure
    state = lab.describe()
    state["owns_workdir"] = True  # `down` removes state_dir/lab
    state["cgwd_config"] = str(state_dir / CGWD_CONFIG)
    (state_dir / CGWD_CONFIG).write_text(
        cgwd_config_for(state, args.aws_config.resolve(), state_dir, fast=args.fast)
    )
    (state_dir / STATE_FILE).write_text(json.dumps(state, indent=2) + "\n")
    if args.json:
        json.dump(state, sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        sys.stdout.write(_describe(state, state_dir))
    return 0


def cgwd_config_for(state: dict[str, Any], aws_config: Path, state_dir: Path, *, fast: bool) -> str:
    """A cgwd.toml that makes cgwd, run in the lab's ``cgw`` namespace, its gateway.

    Its control socket lives in the state directory, away from a real daemon's.
    """
    lines = [
        "# generated by `cgwd lab up`: cgwd as the customer gateway of the lab",
        "[daemon]",
        f'control_socket = "{state_dir / "cgwd.sock"}"',
        "",
        "[[connection]]",
        'name = "lab"',
        f'aws_config = "{aws_config}"',
        f'routes = ["{state["vpc_cidr"]}"]',
    ]
    if state["nat"]:
        lines.append(f'local_address = "{state["cgw"]["local_ip"]}"')
    if fast:
        lines += ["dpd_interval = 2", "dpd_retries = 2"]
    return "\n".join(lines) + "\n"


def _describe(state: dict[str, Any], state_dir: Path) -> str:
    ns = state["namespaces"]
    cgw = state["cgw"]
    lines = [
        "The emulated AWS side is up. Namespaces:",
        *(f"  {role:<5} {name}" for role, name in ns.items()),
        "",
        f"Customer gateway namespace {cgw['namespace']}:",
        f"  outside address (what AWS sees)  {cgw['outside_ip']}"
        + ("  (via the NAT)" if state["nat"] else ""),
        f"  local address to use for IKE     {cgw['local_ip']} (default via {cgw['wan_gateway']})",
    ]
    if cgw.get("lan_gateway"):
        lines.append(
            f"  LAN interface 'lan'              {cgw['lan_gateway']}, LAN host {state['lan_host']}"
        )
    lines += ["", "Tunnels (AWS endpoints):"]
    for t in state["tunnels"]:
        lines.append(
            f"  {t['index']}: AWS {t['aws_outside_ip']} in {t['namespace']}, inside "
            f"AWS {t['aws_inside_ip']} / you {t['cgw_inside_ip']}, charon log {t['log']}"
        )
    lines += [
        "",
        f"VPC host {state['vpc_host']} (VPC {state['vpc_cidr']}) routes back to "
        + ", ".join(state["lan_prefixes"])
        + " through the tunnels that are up.",
        "",
        "Run cgwd as the customer gateway:",
        f"  ip netns exec {cgw['namespace']} cgwd run --config {state['cgwd_config']}",
        f"  (cgwd status --config {state['cgwd_config']} from any namespace)",
        "Then try:",
        f"  ip netns exec {ns.get('lan', cgw['namespace'])} ping {state['vpc_host']}",
        f"  cgwd lab status{_dir_arg(state_dir)}",
        f"  cgwd lab down{_dir_arg(state_dir)}",
        "",
    ]
    return "\n".join(lines)


def _dir_arg(state_dir: Path) -> str:
    return "" if state_dir == DEFAULT_STATE_DIR else f" --state-dir {state_dir}"


def _down(state_dir: Path) -> int:
    state = _read_state(state_dir)
    if state is None:
        print(f"no lab is up (no state in {state_dir})")
        return 0
    for line in teardown(state):
        print(line)
    (state_dir / STATE_FILE).unlink(missing_ok=True)
    (state_dir / CGWD_CONFIG).unlink(missing_ok=True)
    shutil.rmtree(state_dir / "lab", ignore_errors=True)
    if state_dir == DEFAULT_STATE_DIR or not any(state_dir.iterdir()):
        shutil.rmtree(state_dir, ignore_errors=True)
    return 0


def _status(args: argparse.Namespace, state_dir: Path) -> int:
    state = _read_state(state_dir)
    if state is None:
        print(f"no lab is up (no state in {state_dir})")
        return 1
    report: list[dict[str, Any]] = []
    for t in state["tunnels"]:
        proc = subprocess.run(
            ["swanctl", "--list-sas", "--pretty", "--uri", str(t["vici"])],
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
        sas = parse_list_sas(proc.stdout) if proc.returncode == 0 else []
        report.append(
            {
                "index": t["index"],
                "aws_outside_ip": t["aws_outside_ip"],
                "charon": "running" if proc.returncode == 0 else "not answering",
                "ike_sas": [
                    {
                        "state": sa.state,
                        "version": sa.version,
                        "remote": f"{sa.remote_host}:{sa.remote_port}",
                        "suite": f"{sa.encr_alg}-{sa.encr_keysize}/{sa.integ_alg or sa.prf_alg}"
                        f"/{sa.dh_group}",
                        "children": [
                            {
                                "state": c.state,
                                "spi_in": c.spi_in,
                                "spi_out": c.spi_out,
                                "packets_in": c.packets_in,
                                "packets_out": c.packets_out,
                            }
                            for c in sa.children
                        ],
                    }
                    for sa in sas
                ],
            }
        )
    if args.json:
        json.dump({"tunnels": report}, sys.stdout, indent=2)
        sys.stdout.write("\n")
        return 0
    for t in report:
        print(f"tunnel {t['index']} (AWS {t['aws_outside_ip']}): charon {t['charon']}")
        if not t["ike_sas"]:
            print("  no IKE SA")
        for sa in t["ike_sas"]:
            print(f"  IKEv{sa['version']} {sa['state']} with {sa['remote']}, {sa['suite']}")
            for c in sa["children"]:
                print(
                    f"    CHILD {c['state']} SPIs {c['spi_in']}/{c['spi_out']}, packets "
                    f"in {c['packets_in']} out {c['packets_out']}"
                )
    return 0
