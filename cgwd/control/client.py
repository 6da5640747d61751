"""The control socket client used by the CLI and tests.

``ControlClient(path).call(method, params, timeout)`` sends one request and returns the
reply's result. Every failure is a `CgwdError` with a message an admin can act on:

- `DaemonNotRunning`: no socket at the path, or nobody listening on it;
- `ControlError` (with ``code``): the daemon answered with an error;
- `CgwdError`: permission denied, timeout, or a reply that is not the protocol.
"""

from __future__ import annotations

import asyncio
import itertools
import socket
import time
from pathlib import Path
from typing import Any

from cgwd.control.protocol import (
    MAX_REPLY_BYTES,
    FrameTooLarge,
    LineFramer,
    encode_request,
    parse_reply,
)
from cgwd.control.server import DEFAULT_SOCKET
from cgwd.errors import CgwdError

DEFAULT_TIMEOUT = 10.0  # seconds; a reload may take a few


class DaemonNotRunning(CgwdError):
    """Nothing serves the control socket."""


_ids = itertools.count(1)


class ControlClient:
    """A client of one control socket. Each call uses its own short connection."""

    def __init__(self, path: str | Path = DEFAULT_SOCKET) -> None:
        self.path = Path(path)

    def _connect_error(self, exc: OSError) -> CgwdError:
        if isinstance(exc, FileNotFoundError):
            return DaemonNotRunning(f"cgwd is not running (no socket at {self.path})")
        if isinstance(exc, ConnectionRefusedError):
            return DaemonNotRunning(
                f"cgwd is not running (nothing listens on {self.path}; a stale socket)"
            )
        if isinstance(exc, PermissionError):
            return CgwdError(
                f"permission denied on {self.path}: run as root or as a member of cgwd's "
                "control group"
            )
        return CgwdError(f"cannot connect to {self.path}: {exc.strerror or exc}")

    def _result(self, method: str, request_id: int, line: bytes | FrameTooLarge) -> Any:
        if isinstance(line, FrameTooLarge):
            raise CgwdError(f"the reply to {method} is larger than {MAX_REPLY_BYTES} bytes")
        try:
            reply = parse_reply(line)
        except ValueError as exc:
            raise CgwdError(f"unexpected reply from cgwd to {method}: {exc}") from None
        if reply.error is not None:
            raise reply.error
        if reply.id != request_id:
            raise CgwdError(f"unexpected reply from cgwd to {method}: id {reply.id!r}")
        return reply.result

    def call(
        self, method: str, params: dict[str, Any] | None = None, timeout: float = DEFAULT_TIMEOUT
    ) -> Any:
        """Send ``method`` with ``params``; return the result. Blocks up to ``timeout`` s."""
        request_id = next(_ids)
        request = encode_request(request_id, method, params)
        deadline = time.monotonic() + timeout
        framer = LineFramer(MAX_REPLY_BYTES)
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            try:
                sock.settimeout(timeout)
                sock.connect(str(self.path))
                sock.sendall(request)
                while True:
                    sock.settimeout(max(deadline - time.monotonic(), 0.001))
                    data = sock.recv(65536)
                    if not data:
                        raise CgwdError(f"cgwd closed the connection without answering {method}")
                    lines = framer.feed(data)
                    if lines:
                        return self._result(method, request_id, lines[0])
            except TimeoutError:
                raise CgwdError(f"cgwd did not answer {method} within {timeout:g} s") from None
            except (BrokenPipeError, ConnectionResetError):
                # The daemon may refuse (e.g. not authorised) and close before reading.
                raise CgwdError(f"cgwd closed the connection during {method}") from None
            except OSError as exc:
                raise self._connect_error(exc) from None

    async def call_async(
        self, method: str, params: dict[str, Any] | None = None, timeout: float = DEFAULT_TIMEOUT
    ) -> Any:
        """`call` for asyncio code (tests, a metrics exporter in the daemon's loop)."""
        request_id = next(_ids)
        request = encode_request(request_id, method, params)
        framer = LineFramer(MAX_REPLY_BYTES)
        try:
            async with asyncio.timeout(timeout):
                try:
                    reader, writer = await asyncio.open_unix_connection(str(self.path))
                except OSError as exc:
                    raise self._connect_error(exc) from None
                try:
                    writer.write(request)
                    await writer.drain()
                    while True:
                        data = await reader.read(65536)
                        if not data:
                            raise CgwdError(
                                f"cgwd closed the connection without answering {method}"
                            )
                        lines = framer.feed(data)
                        if lines:
                            return self._result(method, request_id, lines[0])
                except ConnectionError:
                    raise CgwdError(f"cgwd closed the connection during {method}") from None
                finally:
                    writer.close()
        except TimeoutError:
            raise CgwdError(f"cgwd did not answer {method} within {timeout:g} s") from None
