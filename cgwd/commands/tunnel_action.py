"""`cgwd initiate|terminate|rekey CONNECTION [--tunnel N]`: act on tunnels of the running
daemon. Each command module below re-exports these with its method name bound."""

from __future__ import annotations

import argparse
from typing import Any

from cgwd.control.cli_support import add_socket_arguments, client_for, print_result


def add_tunnel_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("connection", metavar="CONNECTION", help="the connection's name")
    parser.add_argument(
        "--tunnel", type=int, choices=(1, 2), help="only this tunnel (default: both)"
    )
    add_socket_arguments(parser)


def run_action(method: str, args: argparse.Namespace, **extra: Any) -> int:
    params: dict[str, Any] = {"connection": args.connection, **extra}
    if args.tunnel is not None:
        params["tunnel"] = args.tunnel
    print_result(client_for(args).call(method, params, timeout=args.timeout))
    return 0
