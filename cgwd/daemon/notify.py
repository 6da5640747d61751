"""systemd's notify protocol (sd_notify(3)) and watchdog, without libsystemd.

A notification is one datagram of newline-separated ``KEY=VALUE`` assignments sent to the
Unix socket named by ``$NOTIFY_SOCKET``: a path, or ``@name`` for a socket in the abstract
namespace. With ``Type=notify`` systemd waits for ``READY=1`` before it considers cgwd
started; ``STATUS=`` is the line ``systemctl status`` shows; ``WATCHDOG=1`` must arrive
within ``WatchdogSec=`` (systemd passes it as ``$WATCHDOG_USEC``) or systemd restarts cgwd;
``RELOADING=1`` with ``MONOTONIC_USEC=`` brackets a reload, which ends with ``READY=1``;
``STOPPING=1`` announces shutdown.

Without ``$NOTIFY_SOCKET`` (run by hand, in tests, under another supervisor) every call is
a cheap no-op. Sending never raises: a lost notification must not take the daemon down,
so failures are logged (once) and reported as False.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
from collections.abc import Callable, Mapping

log = logging.getLogger("cgwd.notify")

MAX_STATUS_CHARS = 200  # systemctl shows one line; keep it readable


def _address(value: str) -> str | None:
    """The socket address for ``$NOTIFY_SOCKET``: a path, or "\\0name" for "@name"."""
    if value.startswith("/"):
        return value
    if value.startswith("@") and len(value) > 1:
        return "\0" + value[1:]
    return None  # e.g. "vsock:..." (systemd 254+, VMs): not for a router daemon


class Notifier:
    """Sends notifications to systemd.

    Args:
        notify_socket: the ``$NOTIFY_SOCKET`` value; None or "" disables notifications.
        monotonic_ns: CLOCK_MONOTONIC in ns, for ``MONOTONIC_USEC`` (a test passes a fake).
    """

    def __init__(
        self,
        notify_socket: str | None,
        *,
        monotonic_ns: Callable[[], int] = time.monotonic_ns,
    ) -> None:
        self._monotonic_ns = monotonic_ns
        self._address = _address(notify_socket) if notify_socket else None
        self._sock: socket.socket | None = None
        self._warned = False
        if notify_socket and self._address is None:
            log.warning(
                "NOTIFY_SOCKET=%s is not a Unix socket address; not notifying", notify_socket
            )

    @classmethod
    def from_environment(cls, environ: Mapping[str, str] | None = None) -> Notifier:
        """A notifier for ``$NOTIFY_SOCKET`` (disabled when it is unset)."""
        env = os.environ if environ is None else environ
        return cls(env.get("NOTIFY_SOCKET"))

    @property
    def enabled(self) -> bool:
        return self._address is not None

    def send(self, *assignments: str) -> bool:
        """Send ``KEY=VALUE`` assignments in one datagram. True if it was sent."""
        if self._address is None:
            return False
        for item in assignments:
            if "=" not in item or "\n" in item:
                raise ValueError(f"not a single KEY=VALUE assignment: {item!r}")
        try:
            if self._sock is None:
                self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
                self._sock.setblocking(False)
            self._sock.sendto("\n".join(assignments).encode(), self._address)
        except OSError as exc:
            if not self._warned:  # once: the watchdog would repeat it every few seconds
                log.warning("cannot notify systemd at %s: %s", self._address.lstrip("\0"), exc)
                self._warned = True
            return False
        return True

    def ready(self, status: str | None = None) -> bool:
        """``READY=1``: start-up (or a reload) is complete."""
        return self.send("READY=1", *([_status(status)] if status is not None else []))

    def status(self, text: str) -> bool:
        """``STATUS=...``: e.g. "2/2 tunnels up"."""
        return self.send(_status(text))

    def watchdog(self) -> bool:
        """``WATCHDOG=1``: cgwd is alive."""
        return self.send("WATCHDOG=1")

    def reloading(self) -> bool:
        """``RELOADING=1`` with ``MONOTONIC_USEC`` (systemd 253+ needs both to match the
        reload to its request); end the reload with `ready`."""
        return self.send("RELOADING=1", f"MONOTONIC_USEC={self._monotonic_ns() // 1000}")

    def stopping(self) -> bool:
        """``STOPPING=1``: shutting down."""
        return self.send("STOPPING=1")

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None


def _status(text: str) -> str:
    line = " ".join(text.split())  # one line, no control characters' layout
    if len(line) > MAX_STATUS_CHARS:
        line = line[: MAX_STATUS_CHARS - 3] + "..."
    return f"STATUS={line}"


def watchdog_timeout(
    environ: Mapping[str, str] | None = None, pid: int | None = None
) -> float | None:
    """The watchdog timeout in seconds from ``$WATCHDOG_USEC``, or None when there is no
    watchdog for this process (unset, invalid, zero, or ``$WATCHDOG_PID`` names another
    process, as sd_watchdog_enabled(3) specifies)."""
    env = os.environ if environ is None else environ
    raw = env.get("WATCHDOG_USEC")
    if not raw:
        return None
    owner = env.get("WATCHDOG_PID")
    if owner and (not owner.isdigit() or int(owner) != (os.getpid() if pid is None else pid)):
        return None
    if not raw.isdigit() or int(raw) == 0:
        return None
    return int(raw) / 1_000_000


async def watchdog_loop(
    notifier: Notifier, timeout: float, healthy: Callable[[], bool] = lambda: True
) -> None:
    """Send ``WATCHDOG=1`` every ``timeout / 2`` seconds (sd_watchdog_enabled(3)'s advice)
    while ``healthy()`` holds; run it as a task and cancel it at shutdown.

    When ``healthy()`` returns False the ping is skipped, so a wedged daemon is restarted
    by systemd instead of limping on. ``healthy`` must not raise.
    """
    interval = max(timeout / 2, 0.01)
    while True:
        if healthy():
            notifier.watchdog()
        await asyncio.sleep(interval)


__all__ = ["Notifier", "watchdog_loop", "watchdog_timeout"]
