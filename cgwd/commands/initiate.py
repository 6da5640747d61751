"""`cgwd initiate CONNECTION [--tunnel N]`: (re)start negotiating the tunnels now (after a
`terminate`, or to skip the re-initiation backoff)."""

from __future__ import annotations

import argparse

from cgwd.commands.tunnel_action import add_tunnel_arguments, run_action


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_tunnel_arguments(parser)


def run(args: argparse.Namespace) -> int:
    return run_action("initiate", args)
