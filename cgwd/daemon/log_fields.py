"""Journald fields for the IKE engines' and the dataplanes' log lines.

`cgwd.ike.host.IkeHost` logs every session event as ``"<tunnel> <event>: <message>"``; the
dataplanes log ``"tunnel <tunnel>: ..."`` and ``"SA <tunnel>/<dir>/<spi> ..."``. So that
``journalctl CGWD_TUNNEL=vpc01-t1`` and ``journalctl CGWD_EVENT=dpd_timeout`` find them
(docs/operations.md), `EngineFields` moves the tunnel (and the event name) into the
record's ``tunnel``/``event`` attributes, which the handlers of `cgwd.daemon.logging` turn
into fields (and into ``[tunnel] event:`` on a terminal). Lines of other shapes pass as they
are.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Collection

from cgwd.dataplane.base import SaId

_EVENT = re.compile(r"^([a-z][a-z0-9_]*): ")


class EngineFields(logging.Filter):
    """Recognise ``tunnel event: message`` records of a tunnel in ``tunnels()``."""

    def __init__(self, tunnels: Callable[[], Collection[str]]) -> None:
        super().__init__()
        self._tunnels = tunnels

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if not isinstance(record.msg, str) or not isinstance(args, tuple) or not args:
            return True
        if record.msg.startswith("tunnel %s: ") and args[0] in self._tunnels():
            record.tunnel = args[0]
            record.msg = record.msg[len("tunnel %s: ") :]
            record.args = args[1:]
            return True
        sa = next((a for a in args if isinstance(a, SaId)), None)
        if sa is not None:
            record.tunnel = sa.tunnel
            return True
        if (
            not record.msg.startswith("%s ")
            or not isinstance(args[0], str)
            or args[0] not in self._tunnels()
        ):
            return True
        rest = record.msg[3:]
        record.tunnel = args[0]
        record.args = args[1:]
        if rest.startswith("%s: ") and len(args) > 1 and isinstance(args[1], str):
            record.event = args[1]
            record.msg, record.args = rest[4:], args[2:]
        else:
            match = _EVENT.match(rest)
            if match:
                record.event = match.group(1)
                rest = rest[match.end() :]
            record.msg = rest
        return True


LOGGERS = ("cgwd.ike", "cgwd.dataplane.userspace", "cgwd.dataplane.kernel")


def install(tunnels: Callable[[], Collection[str]]) -> EngineFields:
    """Attach the filter to the engines' and dataplanes' loggers; returns it."""
    flt = EngineFields(tunnels)
    for name in LOGGERS:
        logging.getLogger(name).addFilter(flt)
    return flt


def uninstall(flt: EngineFields) -> None:
    for name in LOGGERS:
        logging.getLogger(name).removeFilter(flt)
