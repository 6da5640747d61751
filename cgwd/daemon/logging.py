"""Logging for journald and terminals: one line per event, the tunnel and event in each.

Conventions (the daemon follows them everywhere):

- Log through `tunnel_logger(tunnel)` for anything about one tunnel, so every line names it
  (``vpc01-t1``, the interface name, which admins also see in ``ip link``).
- Give an ``event`` for things an admin may search or alert on, using AWS's names where AWS
  logs the same thing (aws-behaviour §11, `AwsEvent`) so AWS's tunnel logs and cgwd's can
  be read side by side.
- One line per event: messages never contain newlines (they are folded).

Output:

- Under systemd (``$JOURNAL_STREAM`` names our stderr), `JournalHandler` writes natively to
  journald, with ``CGWD_TUNNEL=`` and ``CGWD_EVENT=`` as structured fields (``journalctl
  CGWD_EVENT=dpd_timeout``), the priority, and the code location.
- Elsewhere, `TextFormatter` writes ``time LEVEL [tunnel] event: message`` lines to stderr.

Redaction: `RedactionFilter` is installed on every handler as a last line of defence
behind `cgwd.secret.Secret`: a `Secret` argument renders as ``<redacted>``, and any known
secret value (registered with `register_secret`) that appears in a message, an argument or
a traceback, as text, hex or base64, is replaced by ``<redacted>``.

`RateLimitedLogger` keeps per-packet problems (drops of malformed ESP, replays, unknown
SPIs) from flooding the journal: a few lines per interval per key, then a count.
"""

from __future__ import annotations

import base64
import collections
import contextlib
import enum
import logging
import os
import socket
import sys
import time
import traceback
from collections.abc import Callable, Mapping, MutableMapping
from typing import Any, TextIO

from cgwd.secret import REDACTED, Secret

JOURNAL_SOCKET = "/run/systemd/journal/socket"
MIN_SECRET_MATCH = 6  # shorter values would redact ordinary words; AWS PSKs are 8-64 chars
MAX_KNOWN_SECRETS = 1024
_HANDLER_NAME = "cgwd"  # marks the handler configure_logging installed


class AwsEvent(enum.StrEnum):
    """Event names for what AWS's tunnel logs report (aws-behaviour §11)."""

    AUTH_FAILED = "auth_failed"  # pre-shared key mismatch
    NO_PROPOSAL_CHOSEN = "no_proposal_chosen"  # "No Proposal Match Found"
    TS_UNACCEPTABLE = "ts_unacceptable"
    DPD_TIMEOUT = "dpd_timeout"  # "DPD timed out after {n} retransmits"
    CHILD_REKEY_COLLISION = "child_rekey_collision"  # "(CHILD_REKEY) collision as CHILD_DELETE"
    REDUNDANT_CHILD_DELETED = "redundant_child_deleted"  # "redundant SA is being deleted"
    IKE_HALF_OPEN_TIMEOUT = "ike_half_open_timeout"  # "deleting un-established Phase 1 IKE_SA"
    CHILD_CREATE_FAILED = "child_create_failed"  # "Phase 2 was unable to establish"


# -- redaction -------------------------------------------------------------------------------

_known: collections.OrderedDict[int, tuple[str, ...]] = collections.OrderedDict()


def _forms(value: bytes) -> tuple[str, ...]:
    forms = {value.hex(), value.hex().upper(), base64.b64encode(value).decode()}
    with contextlib.suppress(UnicodeDecodeError):
        forms.add(value.decode("utf-8"))
    return tuple(sorted((f for f in forms if len(f) >= MIN_SECRET_MATCH), key=len, reverse=True))


def register_secret(secret: Secret) -> None:
    """Remember ``secret`` so the redaction filter recognises its value in log output.

    Call it for every PSK when a configuration is loaded. Values shorter than
    `MIN_SECRET_MATCH` are not matched. At most `MAX_KNOWN_SECRETS` are kept (oldest go).
    """
    forms = _forms(secret.reveal())
    if not forms:
        return
    key = hash(forms)
    _known[key] = forms
    _known.move_to_end(key)
    while len(_known) > MAX_KNOWN_SECRETS:
        _known.popitem(last=False)


def forget_secrets() -> None:
    """Drop every registered secret (after a reload removed them; and for tests)."""
    _known.clear()


def redact(text: str) -> str:
    """``text`` with every known secret value replaced by ``<redacted>``."""
    for forms in _known.values():
        for form in forms:
            if form in text:
                text = text.replace(form, REDACTED)
    return text


def _safe_arg(arg: object) -> object:
    # Secret renders redacted anyway; this also covers "%d"-style specs it cannot serve.
    # Revealed bytes are caught in the formatted message (text, hex and base64 forms).
    return REDACTED if isinstance(arg, Secret) else arg


class RedactionFilter(logging.Filter):
    """Formats the record's message itself, with secrets removed; never drops a record."""

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if isinstance(args, Mapping):
            record.args = {k: _safe_arg(v) for k, v in args.items()}
        elif args:
            record.args = tuple(_safe_arg(a) for a in args)
        try:
            message = record.getMessage()
        except Exception:  # a bad format string must not lose the event or raise
            message = f"{record.msg!s} (unformattable arguments)"
        record.msg = redact(_one_line(message))
        record.args = None
        if record.exc_info and not record.exc_text:
            record.exc_text = "".join(traceback.format_exception(*record.exc_info)).rstrip()
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        for name in ("tunnel", "event"):
            value = getattr(record, name, None)
            if value is not None:
                setattr(record, name, redact(_one_line(str(value))))
        return True


def _one_line(text: str) -> str:
    return " ".join(text.splitlines()) if "\n" in text or "\r" in text else text


# -- tunnel and event fields ------------------------------------------------------------------


class TunnelLogger(logging.LoggerAdapter[logging.Logger]):
    """A logger whose lines all name one tunnel; ``event=`` adds the event name."""

    def __init__(self, logger: logging.Logger, tunnel: str) -> None:
        super().__init__(logger, {"tunnel": tunnel})

    def process(
        self, msg: Any, kwargs: MutableMapping[str, Any]
    ) -> tuple[Any, MutableMapping[str, Any]]:
        extra = dict(kwargs.get("extra") or {})
        extra["tunnel"] = self.extra["tunnel"] if self.extra else None
        if "event" in kwargs:
            extra["event"] = str(kwargs.pop("event"))
        kwargs["extra"] = extra
        return msg, kwargs

    def event(self, level: int, event: str, msg: str, *args: object) -> None:
        """Log ``msg`` at ``level`` with ``event`` (an `AwsEvent` or cgwd's own name)."""
        self.log(level, msg, *args, event=event)


def tunnel_logger(tunnel: str, name: str = "cgwd.tunnel") -> TunnelLogger:
    """The logger for one tunnel (``tunnel``: its interface name, e.g. ``vpc01-t1``)."""
    return TunnelLogger(logging.getLogger(name), tunnel)


def _prefix(record: logging.LogRecord) -> str:
    tunnel = getattr(record, "tunnel", None)
    event = getattr(record, "event", None)
    return (f"[{tunnel}] " if tunnel else "") + (f"{event}: " if event else "")


class TextFormatter(logging.Formatter):
    """``2026-11-28T11:00:00.123Z WARNING [vpc01-t1] dpd_timeout: message`` (a terminal)."""

    def format(self, record: logging.LogRecord) -> str:
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
        head = f"{stamp}.{int(record.msecs):03d}Z {record.levelname}"
        line = f"{head} {_prefix(record)}{record.getMessage()}"
        if record.exc_text:
            line += " | " + " | ".join(record.exc_text.splitlines())
        return line


# syslog priorities (RFC 5424 §6.2.1), as journald's PRIORITY= expects.
_PRIORITY = {
    logging.CRITICAL: 2,
    logging.ERROR: 3,
    logging.WARNING: 4,
    logging.INFO: 6,
    logging.DEBUG: 7,
}


def syslog_priority(levelno: int) -> int:
    for level in sorted(_PRIORITY, reverse=True):
        if levelno >= level:
            return _PRIORITY[level]
    return 7


def _journal_field(name: str, value: str) -> bytes:
    data = value.encode("utf-8", "replace")
    if b"\n" in data:  # journald's binary-safe form: NAME\n<le64 length><data>\n
        return name.encode() + b"\n" + len(data).to_bytes(8, "little") + data + b"\n"
    return name.encode() + b"=" + data + b"\n"


class JournalHandler(logging.Handler):
    """Writes records to journald's native socket with structured fields.

    Fields: MESSAGE, PRIORITY, SYSLOG_IDENTIFIER, CGWD_TUNNEL, CGWD_EVENT, CODE_FILE,
    CODE_LINE, CODE_FUNC, LOGGER; a traceback goes into MESSAGE after the first line (journald
    keeps the record whole). A failed send falls back to stderr, so nothing is lost silently.
    """

    def __init__(self, address: str = JOURNAL_SOCKET, identifier: str = "cgwd") -> None:
        super().__init__()
        self._address = address
        self._identifier = identifier
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)

    def emit(self, record: logging.LogRecord) -> None:
        try:
            message = record.getMessage()
            if record.exc_text:
                message += "\n" + record.exc_text
            fields = [
                _journal_field("MESSAGE", _prefix(record) + message),
                _journal_field("PRIORITY", str(syslog_priority(record.levelno))),
                _journal_field("SYSLOG_IDENTIFIER", self._identifier),
                _journal_field("LOGGER", record.name),
                _journal_field("CODE_FILE", record.pathname),
                _journal_field("CODE_LINE", str(record.lineno)),
                _journal_field("CODE_FUNC", record.funcName),
            ]
            for attr, field in (("tunnel", "CGWD_TUNNEL"), ("event", "CGWD_EVENT")):
                value = getattr(record, attr, None)
                if value:
                    fields.append(_journal_field(field, str(value)))
            self._sock.sendto(b"".join(fields), self._address)
        except OSError:
            sys.stderr.write(TextFormatter().format(record) + "\n")
        except Exception:
            self.handleError(record)

    def close(self) -> None:
        self._sock.close()
        super().close()


def under_journald(stream: TextIO, environ: Mapping[str, str]) -> bool:
    """Whether ``stream`` is the journal stream systemd connected (``$JOURNAL_STREAM`` is
    "device:inode" of it, systemd.exec(5))."""
    value = environ.get("JOURNAL_STREAM", "")
    try:
        info = os.fstat(stream.fileno())
        device, inode = (int(x) for x in value.split(":"))
    except (ValueError, OSError, AttributeError):
        return False
    return (info.st_dev, info.st_ino) == (device, inode)


def configure_logging(
    level: int | str = logging.INFO,
    *,
    stream: TextIO | None = None,
    environ: Mapping[str, str] | None = None,
    journal_socket: str = JOURNAL_SOCKET,
) -> logging.Handler:
    """Set up the ``cgwd`` logger: journald natively under systemd, else text on ``stream``
    (stderr). Replaces handlers an earlier call installed. Returns the handler."""
    env = os.environ if environ is None else environ
    out = sys.stderr if stream is None else stream
    handler: logging.Handler
    if under_journald(out, env) and os.path.exists(journal_socket):
        handler = JournalHandler(journal_socket)
    else:
        handler = logging.StreamHandler(out)
        handler.setFormatter(TextFormatter())
    handler.addFilter(RedactionFilter())
    logger = logging.getLogger("cgwd")
    for old in list(logger.handlers):
        if old.get_name() == _HANDLER_NAME:
            logger.removeHandler(old)
            old.close()
    handler.set_name(_HANDLER_NAME)
    logger.addHandler(handler)
    logger.setLevel(level.upper() if isinstance(level, str) else level)
    logger.propagate = False
    return handler


# -- rate limiting ------------------------------------------------------------------------------


class RateLimitedLogger:
    """Logs at most ``burst`` lines per ``interval`` seconds per key, then counts.

    For per-packet conditions: ``limiter.log(("vpc01-t1", "replay"), logging.WARNING, ...)``.
    The first line after a quiet period reports how many were suppressed. At most
    ``max_keys`` keys are tracked (least recently used forgotten), so hostile traffic cannot
    grow it.

    Args:
        logger: where lines go (a `TunnelLogger` keeps the tunnel field).
        clock: monotonic seconds (a test passes a fake).
    """

    def __init__(
        self,
        logger: logging.Logger | logging.LoggerAdapter[Any],
        *,
        interval: float = 10.0,
        burst: int = 5,
        max_keys: int = 1024,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._logger = logger
        self._interval = interval
        self._burst = burst
        self._max_keys = max_keys
        self._clock = clock
        # key -> [window start, lines logged in the window, suppressed since last line]
        self._state: collections.OrderedDict[object, list[float]] = collections.OrderedDict()

    def log(self, key: object, level: int, msg: str, *args: object, **kwargs: Any) -> bool:
        """Log unless ``key`` is over its budget; True if a line was written."""
        now = self._clock()
        state = self._state.get(key)
        if state is None or now - state[0] >= self._interval:
            suppressed = int(state[2]) if state is not None else 0
            state = [now, 0, 0]
            self._state[key] = state
            while len(self._state) > self._max_keys:
                self._state.popitem(last=False)
            if suppressed:
                msg = f"{msg} ({suppressed} similar suppressed)"
        self._state.move_to_end(key)
        if state[1] >= self._burst:
            state[2] += 1
            return False
        state[1] += 1
        self._logger.log(level, msg, *args, **kwargs)
        return True

    def suppressed(self, key: object) -> int:
        """Lines suppressed for ``key`` since its last line."""
        state = self._state.get(key)
        return int(state[2]) if state is not None else 0
