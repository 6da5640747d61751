"""cgwd.toml -> `CgwdConfig`, and the whole configuration -> per-tunnel plans.

Every failure is a `ConfigError` (exit status 2) that names the file, the line of the
offending key, the key path and what is wrong, on one line, e.g.::

    /etc/cgwd/cgwd.toml:12: connection[0].dpd_intervall: unknown key (did you mean dpd_interval?)

`tomllib` keeps no positions, so lines come from `cgwd.config.toml_lines`. Messages never
carry a pre-shared key: pydantic's input echo is not used, and PSK validators describe the
problem without the value.

Files that hold a PSK (cgwd.toml with ``pre_shared_keys``, the AWS downloads) must not be
readable by group or others; the error says which ``chmod`` fixes it.
"""

from __future__ import annotations

import difflib
import os
import re
import stat
import tomllib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from cgwd.config.aws import AwsVpnConnection
from cgwd.config.model import CgwdConfig, ConnectionConfig, DaemonConfig, KeyedValueError, KeyPath
from cgwd.config.toml_lines import KeyLines
from cgwd.config.tunnel_plan import ConnectionPlan, PlanError, check_connections, plan_connection
from cgwd.errors import ConfigError

MAX_CONFIG_BYTES = 1 << 20  # a configuration file is small; refuse to slurp a disk image

AwsLoader = Callable[[Path, str | None], AwsVpnConnection]


@dataclass(frozen=True)
class LoadedConfiguration:
    """A validated cgwd.toml with every connection planned against its AWS download."""

    config: CgwdConfig
    connections: tuple[ConnectionPlan, ...]

    @property
    def warnings(self) -> tuple[str, ...]:
        return tuple(f"{c.name}: {w}" for c in self.connections for w in c.warnings)


# --- file access ---------------------------------------------------------------------------


def check_secret_file_mode(path: Path, mode: int, what: str = "pre-shared keys") -> None:
    """Refuse a file holding secrets that group or others can read.

    Raises:
        ConfigError: naming the ``chmod`` that fixes it.
    """
    readable = mode & (stat.S_IRGRP | stat.S_IROTH)
    if readable:
        who = {
            stat.S_IRGRP: "its group",
            stat.S_IROTH: "others",
            stat.S_IRGRP | stat.S_IROTH: "group and others",
        }[readable]
        raise ConfigError(
            f"holds {what} but is readable by {who} (mode {stat.S_IMODE(mode):04o}): "
            f"run `chmod 600 {path}`",
            source=path,
        )


def _read_text(path: Path) -> tuple[str, os.stat_result]:
    try:
        # O_NONBLOCK: a FIFO or device given by mistake must not hang the open.
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            os.close(fd)
            raise ConfigError("not a regular file", source=path)
        with os.fdopen(fd, "rb") as handle:
            data = handle.read(MAX_CONFIG_BYTES + 1)
    except OSError as exc:
        raise ConfigError(f"cannot read: {exc.strerror or exc}", source=path) from None
    if len(data) > MAX_CONFIG_BYTES:
        raise ConfigError(f"larger than {MAX_CONFIG_BYTES} bytes", source=path)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise ConfigError("not UTF-8 text", source=path, line=line) from None
    return text.removeprefix("\ufeff"), info


# --- TOML and validation -------------------------------------------------------------------

_TOML_POSITION = re.compile(r"\s*\(at line (\d+), column \d+\)|\s*\(at end of document\)")


def parse_config_text(text: str, *, source: Path) -> CgwdConfig:
    """Validate cgwd.toml's text. Relative paths are taken relative to ``source``'s folder.

    Raises:
        ConfigError: a syntax error, an unknown key, a bad value (file, line, key, why).
    """
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        message = str(exc)
        match = re.search(r"\(at line (\d+), column \d+\)", message)
        line = int(match.group(1)) if match else None
        if line is None and "end of document" in message:
            line = text.count("\n") + 1
        detail = _TOML_POSITION.sub("", message).strip() or "invalid TOML"
        raise ConfigError(f"TOML syntax: {detail}", source=source, line=line) from None
    lines = KeyLines(text)
    if "source" in raw:  # a model field set by the loader, not a key of the file
        raise ConfigError(
            "unknown key", source=source, line=lines.line_of(("source",)), element="source"
        )
    _resolve_paths(raw, source.parent)
    try:
        config = CgwdConfig.model_validate(raw)
    except ValidationError as exc:
        raise _validation_error(exc, source, lines) from None
    return config.model_copy(update={"source": source})


def _resolve_paths(raw: dict[str, Any], base: Path) -> None:
    # aws_config and control_socket are relative to the configuration file.
    connections = raw.get("connection")
    if isinstance(connections, list):
        for conn in connections:
            if isinstance(conn, dict) and isinstance(conn.get("aws_config"), str):
                conn["aws_config"] = _absolute(conn["aws_config"], base)
    daemon = raw.get("daemon")
    if isinstance(daemon, dict) and isinstance(daemon.get("control_socket"), str):
        daemon["control_socket"] = _absolute(daemon["control_socket"], base)


def _absolute(value: str, base: Path) -> str:
    if not value or "\x00" in value:
        return value  # let validation or opening report it
    return str(Path(os.path.normpath(base / Path(value).expanduser())))


def _holds_secret(raw: Mapping[str, Any]) -> bool:
    connections = raw.get("connection")
    return isinstance(connections, list) and any(
        isinstance(c, dict) and "pre_shared_keys" in c for c in connections
    )


def load_config(path: Path) -> CgwdConfig:
    """Read and validate cgwd.toml (without reading the AWS files it names).

    Raises:
        ConfigError: unreadable, not TOML, invalid, or holding PSKs with loose permissions.
    """
    path = Path(os.path.abspath(path))
    text, info = _read_text(path)
    config = parse_config_text(text, source=path)
    if any(c.pre_shared_keys is not None for c in config.connections):
        check_secret_file_mode(path, info.st_mode)
    return config


# Fields by model, for "did you mean" suggestions.
_FIELDS: dict[str, type[BaseModel]] = {"daemon": DaemonConfig, "connection": ConnectionConfig}


def _suggest(loc: KeyPath) -> str:
    key = loc[-1]
    if not isinstance(key, str):
        return ""
    parent = next((p for p in reversed(loc[:-1]) if isinstance(p, str)), None)
    if parent in _FIELDS:
        names = list(_FIELDS[parent].model_fields)
    elif len(loc) == 1:
        names = ["daemon", "connection"]
    else:
        return ""
    close = difflib.get_close_matches(key, names, n=1, cutoff=0.7)
    return f" (did you mean {close[0]}?)" if close else ""


_LITERAL = re.compile(r"^Input should be (.*)$")


def _describe(error: Mapping[str, Any], loc: KeyPath) -> str:
    kind = error["type"]
    ctx = error.get("ctx") or {}
    if kind == "extra_forbidden":
        return "unknown key" + _suggest(loc)
    if kind == "missing":
        return "required key is missing"
    if kind == "value_error":
        cause = ctx.get("error")
        return str(getattr(cause, "message", None) or cause or error["msg"])
    if kind == "literal_error":
        return "must be " + str(ctx.get("expected", "one of the listed values"))
    if kind in {"int_type", "int_parsing"}:
        return "must be an integer"
    if kind in {"greater_than_equal", "less_than_equal", "greater_than", "less_than"}:
        limits = {
            "greater_than_equal": ">=",
            "less_than_equal": "<=",
            "greater_than": ">",
            "less_than": "<",
        }
        bound = next(iter(ctx.values()), "?")
        return f"must be {limits[kind]} {bound}"
    if kind == "too_short" and loc == ("connection",):
        return "at least one [[connection]] table is required"
    if kind in {"too_short", "too_long"} and ctx.get("field_type") == "Tuple":
        return f"must be a list of {ctx.get('max_length', ctx.get('min_length'))} values"
    if kind in {"tuple_type", "list_type"}:
        return "must be a list"
    if kind in {"model_type", "model_attributes_type", "dict_type"}:
        return "must be a table"
    message = str(error["msg"])
    match = _LITERAL.match(message)
    return ("must be " + match.group(1)) if match else message


def render_key(loc: Iterable[str | int]) -> str:
    """``("connection", 0, "routes", 1)`` -> ``connection[0].routes[1]``."""
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _clean_loc(loc: Iterable[str | int]) -> KeyPath:
    # Drop pydantic's internal markers (e.g. "function-before[...]", union member tags).
    return tuple(p for p in loc if isinstance(p, int) or re.fullmatch(r"[A-Za-z0-9_-]+", p))


def _validation_error(exc: ValidationError, source: Path, lines: KeyLines) -> ConfigError:
    found: list[tuple[int, KeyPath, str]] = []
    errors = exc.errors(include_url=False, include_input=False)
    if any(len(e["loc"]) > 1 for e in errors):
        # pydantic also reports the connection list as empty when its elements failed.
        errors = [e for e in errors if not (e["type"] == "too_short" and len(e["loc"]) == 1)]
    for error in errors:
        loc = _clean_loc(error["loc"])
        cause = (error.get("ctx") or {}).get("error")
        if isinstance(cause, KeyedValueError):
            loc = (*loc, *cause.key)
        missing_key = error["type"] == "missing" and loc and not isinstance(loc[-1], int)
        if error["type"] == "missing" and loc and isinstance(loc[-1], int):
            # A fixed-length list (one value per tunnel) that is too short.
            loc = loc[:-1]
            message = "must be a list of 2 values, for tunnel 1 and tunnel 2"
        else:
            message = _describe(error, loc)
        # A missing key has no line of its own: point at its table.
        line = lines.line_of(loc[:-1] if missing_key else loc)
        found.append((line or 0, loc, message))
    # By line; problems without a line (a missing table) last: they are often the echo of
    # a misspelt one, which has a line and a suggestion.
    found.sort(key=lambda item: item[0] or 1 << 30)
    line, loc, message = found[0]
    if len(found) > 1:
        message += f" (and {len(found) - 1} more problem{'s' if len(found) > 2 else ''})"
    return ConfigError(message, source=source, line=line or None, element=render_key(loc) or None)


# --- the whole configuration ---------------------------------------------------------------


def _default_aws_loader(path: Path, connection_id: str | None) -> AwsVpnConnection:
    from cgwd.config.importers import load_aws_config  # noqa: PLC0415 - only when needed

    return load_aws_config(path, connection_id=connection_id)


def load_aws_file(
    path: Path, connection_id: str | None = None, *, loader: AwsLoader | None = None
) -> AwsVpnConnection:
    """Import an AWS download, refusing it when it holds PSKs others can read.

    Raises:
        ConfigError: unreadable, not a supported format, invalid, or loose permissions.
    """
    try:
        info = path.stat()
    except OSError as exc:
        raise ConfigError(f"cannot read: {exc.strerror or exc}", source=path) from None
    if not stat.S_ISREG(info.st_mode):
        raise ConfigError("not a regular file", source=path)
    aws = (loader or _default_aws_loader)(path, connection_id)
    if any(t.pre_shared_key is not None for t in aws.tunnels):
        check_secret_file_mode(path, info.st_mode)
    return aws


def load_configuration(path: Path, *, aws_loader: AwsLoader | None = None) -> LoadedConfiguration:
    """cgwd.toml, the AWS files it names, and the plan of every tunnel.

    Raises:
        ConfigError: anything wrong, in cgwd.toml (file:line: key: why) or in an AWS file
            (that file's own location).
    """
    path = Path(os.path.abspath(path))
    text, info = _read_text(path)
    config = parse_config_text(text, source=path)
    if any(c.pre_shared_keys is not None for c in config.connections):
        check_secret_file_mode(path, info.st_mode)
    lines = KeyLines(text)
    plans: list[ConnectionPlan] = []
    for index, conn in enumerate(config.connections):
        aws = load_aws_file(conn.aws_config, conn.connection_id, loader=aws_loader)
        try:
            plans.append(plan_connection(conn, aws, config.daemon))
        except PlanError as exc:
            raise _located(exc, ("connection", index, *exc.key), path, lines) from None
    try:
        check_connections(plans)
    except PlanError as exc:
        raise _located(exc, exc.key, path, lines) from None
    return LoadedConfiguration(config, tuple(plans))


def _located(exc: PlanError, key: KeyPath, source: Path, lines: KeyLines) -> ConfigError:
    line = lines.exact(key) or lines.line_of(key)
    return ConfigError(exc.message, source=source, line=line, element=render_key(key))
