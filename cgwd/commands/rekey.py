"""`cgwd rekey CONNECTION [--tunnel N] [--ike]`: rekey the CHILD_SA now (or the IKE SA with
``--ike``), make-before-break, without waiting for the lifetime."""

from __future__ import annotations

import argparse

from cgwd.commands.tunnel_action import add_tunnel_arguments, run_action


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_tunnel_arguments(parser)
    parser.add_argument("--ike", action="store_true", help="rekey the IKE SA instead")


def run(args: argparse.Namespace) -> int:
    return run_action("rekey", args, sa="ike" if args.ike else "child")
