"""`cgwd terminate CONNECTION [--tunnel N]`: delete the SAs and keep the tunnel down until
`cgwd initiate` (or a restart or reload)."""

from __future__ import annotations

import argparse

from cgwd.commands.tunnel_action import add_tunnel_arguments, run_action


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_tunnel_arguments(parser)


def run(args: argparse.Namespace) -> int:
    return run_action("terminate", args)
