"""`cgwd status [--json] [--config FILE | --socket PATH]`: ask the running daemon.

Prints the tunnels, their SAs and counters as a table (`cgwd.control.render`), or with
``--json`` the status document exactly as the daemon sent it (schema:
`cgwd.control.status`). Exit status 1 when the daemon is not running or not reachable.
"""

from __future__ import annotations

import argparse
import json
import sys

from pydantic import ValidationError

from cgwd.control.cli_support import add_socket_arguments, client_for
from cgwd.control.render import render_status_text
from cgwd.control.status import parse_status
from cgwd.errors import CgwdError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print the status document as JSON")
    add_socket_arguments(parser)


def run(args: argparse.Namespace) -> int:
    doc = client_for(args).call("status", {}, timeout=args.timeout)
    if args.json:
        json.dump(doc, sys.stdout, indent=2, sort_keys=False)
        sys.stdout.write("\n")
        return 0
    try:
        status = parse_status(doc)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise CgwdError(
            f"the daemon's status document does not match this cgwd ({where}: {first['msg']}); "
            "try --json"
        ) from None
    sys.stdout.write(render_status_text(status))
    return 0
