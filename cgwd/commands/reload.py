"""`cgwd reload`: make the running daemon apply its configuration file again (like SIGHUP,
but the answer says whether the new configuration was accepted and what changed)."""

from __future__ import annotations

import argparse

from cgwd.control.cli_support import add_socket_arguments, client_for, print_result


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_socket_arguments(parser)


def run(args: argparse.Namespace) -> int:
    print_result(client_for(args).call("reload", {}, timeout=args.timeout))
    return 0
