"""What the control-client commands (status, reload, initiate, terminate, rekey) share:
the ``--config FILE | --socket PATH`` options and finding the socket from them."""

from __future__ import annotations

import argparse
import os
import tomllib
from pathlib import Path
from typing import Any

from cgwd.control.client import DEFAULT_TIMEOUT, ControlClient
from cgwd.control.server import DEFAULT_SOCKET
from cgwd.errors import ConfigError

DEFAULT_CONFIG = Path("/etc/cgwd/cgwd.toml")


def add_socket_arguments(parser: argparse.ArgumentParser) -> None:
    """``--config FILE`` / ``--socket PATH`` (exclusive) and ``--timeout``."""
    where = parser.add_mutually_exclusive_group()
    where.add_argument(
        "--config",
        type=Path,
        metavar="FILE",
        help="find the daemon through this configuration's [daemon] control_socket",
    )
    where.add_argument(
        "--socket",
        type=Path,
        metavar="PATH",
        help=f"the daemon's control socket (default {DEFAULT_SOCKET}, or the one named in "
        f"{DEFAULT_CONFIG} when that file exists)",
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=DEFAULT_TIMEOUT,
        metavar="SECONDS",
        help=f"how long to wait for the daemon (default {DEFAULT_TIMEOUT:g})",
    )


def _socket_from_toml(path: Path) -> Path:
    """[daemon] control_socket read with nothing but tomllib: works while the rest of the
    file is invalid (an admin's pending edit must not make `cgwd status` useless)."""
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"cannot read: {exc.strerror}", source=path) from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"not TOML: {exc}", source=path) from None
    daemon = raw.get("daemon", {})
    value: Any = daemon.get("control_socket") if isinstance(daemon, dict) else None
    if value is None:
        return DEFAULT_SOCKET
    if not isinstance(value, str) or not value:
        raise ConfigError("must be a path", source=path, element="daemon.control_socket")
    return Path(os.path.normpath(path.parent / Path(value).expanduser()))


def socket_from_config(path: Path) -> Path:
    """The control socket a configuration file names (default `DEFAULT_SOCKET`).

    Raises:
        ConfigError: the file cannot be read or its [daemon] table is unusable.
    """
    path = Path(os.path.abspath(path))
    try:
        from cgwd.config.load import load_config  # noqa: PLC0415 - only when --config is used

        return Path(load_config(path).daemon.control_socket)
    except ConfigError:
        return _socket_from_toml(path)


def resolve_socket(args: argparse.Namespace) -> Path:
    """``--socket``, else ``--config``'s socket, else /etc/cgwd/cgwd.toml's if it is there and
    readable, else `DEFAULT_SOCKET`."""
    if args.socket is not None:
        return Path(args.socket)
    if args.config is not None:
        return socket_from_config(args.config)
    if os.access(DEFAULT_CONFIG, os.R_OK):
        try:
            return socket_from_config(DEFAULT_CONFIG)
        except ConfigError:
            return DEFAULT_SOCKET
    return DEFAULT_SOCKET


def client_for(args: argparse.Namespace) -> ControlClient:
    return ControlClient(resolve_socket(args))


def print_result(result: Any) -> None:
    """Print a command's result: its ``message`` when it has one."""
    if isinstance(result, dict) and isinstance(result.get("message"), str):
        print(result["message"])
    elif result is not None:
        print(result)
