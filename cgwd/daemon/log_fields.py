"""Journald fields for the IKE engines' log lines.

`cgwd.ike.host.IkeHost` logs every session event as ``"<tunnel> <event>: <message>"``. So
that ``journalctl CGWD_TUNNEL=vpc01-t1`` and ``journalctl CGWD_EVENT=dpd_timeout`` find
them (docs/operations.md), `EngineFields` moves the tunnel and the event name into the
record's ``tunnel``/``event`` attributes, which the handlers of `cgwd.daemon.logging` turn
into fields (and into ``[tunnel] event:`` on a terminal). Lines of other shapes pass as they
are.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Collection

_EVENT = re.compile(r"^([a-z][a-z0-9_]*): ")


class EngineFields(logging.Filter):
    """Recognise ``tunnel event: message`` records of a tunnel in ``tunnels()``."""

    def __init__(self, tunnels: Callable[[], Collection[str]]) -> None:
        super().__init__()
        self._tunnels = tunnels

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if (
            not isinstance(record.msg, str)
            or not record.msg.startswith("%s ")
            or not isinstance(args, tuple)
            or not args
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


def install(tunnels: Callable[[], Collection[str]], logger: str = "cgwd.ike") -> EngineFields:
    """Attach the filter to the engines' logger; returns it (to remove it again)."""
    flt = EngineFields(tunnels)
    logging.getLogger(logger).addFilter(flt)
    return flt
