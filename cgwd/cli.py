"""The `cgwd` command line.

Each subcommand lives in its own module exposing ``add_arguments(parser)`` and
``run(args) -> int``; this file only wires them together and turns `CgwdError` into one
clear line on stderr with the right exit status, never a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence
from typing import Protocol

from cgwd import __version__
from cgwd.errors import EXIT_USAGE_OR_CONFIG, CgwdError


class _Command(Protocol):
    def add_arguments(self, parser: argparse.ArgumentParser) -> None: ...
    def run(self, args: argparse.Namespace) -> int: ...


# name -> (module, one-line help). Modules are imported only when their command runs.
COMMANDS: dict[str, tuple[str, str]] = {
    "run": ("cgwd.commands.run", "run the daemon (what systemd starts)"),
    "import": ("cgwd.commands.import_cmd", "read an AWS VPN download and summarise it"),
    "check": ("cgwd.commands.check", "validate a configuration and print the plan"),
    "status": ("cgwd.commands.status", "show the running daemon's tunnels, SAs and counters"),
    "reload": ("cgwd.commands.reload", "make the running daemon apply its configuration again"),
    "initiate": ("cgwd.commands.initiate", "bring a connection's tunnels up now"),
    "terminate": ("cgwd.commands.terminate", "take a connection's tunnels down until initiate"),
    "rekey": ("cgwd.commands.rekey", "rekey a connection's SAs now"),
    "lab": ("cgwd.commands.lab", "build or remove the emulated AWS side (strongSwan, namespaces)"),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="cgwd", description="Customer gateway for AWS Site-to-Site VPN."
    )
    parser.add_argument("--version", action="version", version=f"cgwd {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, (_module, help_text) in COMMANDS.items():
        # add_help=False: `cgwd CMD --help` must reach the command's own parser in main().
        sub.add_parser(name, help=help_text, description=help_text, add_help=False)
    return parser


def _load(name: str) -> _Command:
    module: _Command = importlib.import_module(COMMANDS[name][0])  # a module satisfies the protocol
    return module


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    # Parse the command name first, then let the command module add its own arguments.
    known, _rest = parser.parse_known_args(argv)
    command = _load(known.command)
    sub_parser = argparse.ArgumentParser(
        prog=f"cgwd {known.command}", description=COMMANDS[known.command][1]
    )
    command.add_arguments(sub_parser)
    args = sub_parser.parse_args(argv[argv.index(known.command) + 1 :])
    try:
        return command.run(args)
    except CgwdError as exc:
        print(f"cgwd: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return 0
    except OSError as exc:
        print(f"cgwd: {exc}", file=sys.stderr)
        return EXIT_USAGE_OR_CONFIG if exc.filename else 1
