"""`cgwd run --config FILE [--foreground]`: the daemon (systemd runs it; see
docs/operations.md).

Exit status: 0 after SIGTERM/SIGINT, 2 when the configuration is invalid (one line on
stderr naming the file, line and key), 1 when start-up fails otherwise.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
from pathlib import Path

from cgwd.control.cli_support import DEFAULT_CONFIG
from cgwd.daemon.logging import configure_logging


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--config",
        type=Path,
        default=DEFAULT_CONFIG,
        metavar="FILE",
        help=f"the configuration (default {DEFAULT_CONFIG})",
    )
    parser.add_argument(
        "--foreground",
        action="store_true",
        help="run in the foreground (the only mode: systemd supervises cgwd; accepted so "
        "that scripts can say so)",
    )
    parser.add_argument(
        "--log-level",
        default=os.environ.get("CGWD_LOG_LEVEL", "info"),
        choices=("debug", "info", "warning", "error"),
        help="least severe messages logged (default info)",
    )


def run(args: argparse.Namespace) -> int:
    from cgwd.daemon.app import Daemon  # noqa: PLC0415 - keeps `cgwd --help` light

    configure_logging(args.log_level)
    logging.getLogger("pyroute2").setLevel(logging.WARNING)
    return asyncio.run(Daemon(args.config).run())
