"""The control socket server: an asyncio Unix stream server dispatching to handlers.

The daemon registers one coroutine per method (`ControlServer.register`); the server does
the rest: it creates the socket with the right owner and mode, checks every client's
credentials (SO_PEERCRED: root, cgwd's own user, or a member of the configured group),
frames and parses requests (`cgwd.control.protocol`), and turns every failure into an error
reply. Nothing a client sends can raise out of the server or disturb another client: each
connection is its own task with bounded buffers and an idle timeout, and the number of
clients is capped.

Handlers get the request's ``params`` (a dict, unvalidated: check it, and raise
`ControlError(ErrorCode.INVALID_PARAMS, ...)` when it is wrong) and return anything JSON can
encode. A `CgwdError` becomes a ``FAILED`` reply with its message; any other exception is a
bug: it is logged with its traceback and the client gets ``internal error``.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import grp
import logging
import os
import socket
import stat
import struct
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cgwd.control.protocol import (
    MAX_REQUEST_BYTES,
    BadRequest,
    ControlError,
    ErrorCode,
    FrameTooLarge,
    LineFramer,
    Request,
    encode_error,
    encode_result,
    parse_request,
)
from cgwd.errors import CgwdError

log = logging.getLogger("cgwd.control")

Handler = Callable[[dict[str, Any]], Awaitable[Any]]

DEFAULT_SOCKET = Path("/run/cgwd/control.sock")
SO_PEERGROUPS = getattr(socket, "SO_PEERGROUPS", 59)  # <asm-generic/socket.h>, Linux 4.13
_UCRED = struct.Struct("3i")  # struct ucred { pid_t pid; uid_t uid; gid_t gid; }
_PEERGROUPS_BUFLEN = 1024  # the most Python's getsockopt() accepts: 256 groups


@dataclass(frozen=True)
class PeerCredentials:
    pid: int
    uid: int
    gid: int
    groups: frozenset[int]


def peer_credentials(sock: socket.socket) -> PeerCredentials:
    """The connecting process's credentials, as the kernel recorded them at connect(2).

    Raises:
        OSError: not a Unix socket, or the kernel refused.
    """
    pid, uid, gid = _UCRED.unpack(
        sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _UCRED.size)
    )
    try:
        raw = sock.getsockopt(socket.SOL_SOCKET, SO_PEERGROUPS, _PEERGROUPS_BUFLEN)
        groups = frozenset(struct.unpack(f"{len(raw) // 4}I", raw[: len(raw) // 4 * 4]))
    except OSError:  # more than 256 groups (ERANGE): ask /proc, which is racier but rare
        groups = _proc_groups(pid)
    return PeerCredentials(pid, uid, gid, groups)


def _proc_groups(pid: int) -> frozenset[int]:
    try:
        with open(f"/proc/{pid}/status", encoding="ascii", errors="replace") as f:
            for line in f:
                if line.startswith("Groups:"):
                    return frozenset(int(g) for g in line.split()[1:] if g.isdigit())
    except OSError:
        pass
    return frozenset()


def resolve_group(group: str | int | None) -> int | None:
    """A group name or id as a gid. Raises `CgwdError` for an unknown name."""
    if group is None or isinstance(group, int):
        return group
    try:
        return grp.getgrnam(group).gr_gid
    except KeyError:
        raise CgwdError(f"control socket group {group!r} does not exist") from None


class ControlServer:
    """Serves the control protocol on a Unix socket.

    Args:
        path: the socket path; its directory must exist (systemd's RuntimeDirectory=).
        group: a group (name or gid) whose members may use the socket; the socket is then
            mode 0660 and owned by that group, else 0600.
        max_clients: connections served at once; more are answered ``busy`` and closed.
        idle_timeout: seconds a client may stay silent (or not read its replies) before it
            is disconnected.
    """

    def __init__(
        self,
        path: str | Path = DEFAULT_SOCKET,
        *,
        group: str | int | None = None,
        max_clients: int = 16,
        idle_timeout: float = 60.0,
    ) -> None:
        self.path = Path(path)
        self._gid = resolve_group(group)
        self._max_clients = max_clients
        self._idle_timeout = idle_timeout
        self._handlers: dict[str, Handler] = {}
        self._server: asyncio.base_events.Server | None = None
        self._clients: set[asyncio.Task[None]] = set()
        self._uid = os.geteuid()

    def register(self, method: str, handler: Handler) -> None:
        """Serve ``method`` with ``handler`` (replacing an earlier registration)."""
        self._handlers[method] = handler

    # -- lifecycle --------------------------------------------------------------------------

    async def start(self) -> None:
        """Create the socket and start accepting.

        Raises:
            CgwdError: another process is serving on the path, the path is something else
                than a socket, or it cannot be created (message names the path).
        """
        self._remove_stale_socket()
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        # Bind under a temporary name, set owner and mode, then rename into place: the
        # socket is never reachable with a looser mode (and no process-wide umask games).
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}")
        try:
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
            sock.bind(str(tmp))
            if self._gid is not None:
                os.chown(tmp, -1, self._gid)
            os.chmod(tmp, 0o660 if self._gid is not None else 0o600)
            os.rename(tmp, self.path)
            sock.listen(self._max_clients)
            sock.setblocking(False)
            self._server = await asyncio.start_unix_server(
                self._accept, sock=sock, limit=MAX_REQUEST_BYTES
            )
        except OSError as exc:
            sock.close()
            with contextlib.suppress(OSError):
                tmp.unlink()
            raise CgwdError(
                f"cannot create control socket {self.path}: {exc.strerror or exc}"
            ) from None

    def _remove_stale_socket(self) -> None:
        try:
            mode = os.lstat(self.path).st_mode
        except FileNotFoundError:
            return
        except OSError as exc:
            raise CgwdError(f"cannot inspect {self.path}: {exc.strerror}") from None
        if not stat.S_ISSOCK(mode):
            raise CgwdError(f"{self.path} exists and is not a socket; refusing to replace it")
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            probe.settimeout(1.0)
            probe.connect(str(self.path))
        except OSError as exc:
            if exc.errno not in (errno.ECONNREFUSED, errno.ENOENT):
                raise CgwdError(f"cannot probe control socket {self.path}: {exc}") from None
        else:
            raise CgwdError(f"another cgwd is already serving {self.path}")
        finally:
            probe.close()
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()  # left behind by a crashed run

    async def close(self) -> None:
        """Stop accepting, disconnect every client, remove the socket. Never raises."""
        if self._server is not None:
            self._server.close()
            self._server = None
        for task in list(self._clients):
            task.cancel()
        if self._clients:
            await asyncio.gather(*self._clients, return_exceptions=True)
        with contextlib.suppress(OSError):
            self.path.unlink()

    async def __aenter__(self) -> ControlServer:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    # -- clients ----------------------------------------------------------------------------

    def authorised(self, creds: PeerCredentials) -> bool:
        """Root, cgwd's own user, or (when a group is configured) a member of it."""
        if creds.uid in (0, self._uid):
            return True
        return self._gid is not None and (creds.gid == self._gid or self._gid in creds.groups)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._clients.add(task)
        try:
            await self._serve(reader, writer)
        except asyncio.CancelledError:
            pass
        except (TimeoutError, ConnectionError) as exc:  # a client that stopped reading or left
            log.debug("control client dropped: %s", exc.__class__.__name__)
        except Exception:  # a bug here must never take the daemon down
            log.exception("control connection failed")
        finally:
            self._clients.discard(task)
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    async def _send(self, writer: asyncio.StreamWriter, line: bytes) -> None:
        writer.write(line)
        await asyncio.wait_for(writer.drain(), self._idle_timeout)

    async def _refuse(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, line: bytes
    ) -> None:
        """Answer ``line`` and hang up without a reset: closing a Unix socket with unread
        input makes the client's recv() fail with ECONNRESET before it sees the answer, so
        half-close and swallow (a bounded amount of) what the client sends first."""
        await self._send(writer, line)
        with contextlib.suppress(OSError, RuntimeError):
            writer.write_eof()
        with contextlib.suppress(TimeoutError, ConnectionError):
            async with asyncio.timeout(1.0):
                swallowed = 0
                while swallowed < MAX_REQUEST_BYTES and (data := await reader.read(4096)):
                    swallowed += len(data)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if len(self._clients) > self._max_clients:
            busy = encode_error(None, ErrorCode.BUSY, "too many control clients")
            await self._refuse(reader, writer, busy)
            return
        try:
            creds = peer_credentials(writer.get_extra_info("socket"))
        except OSError as exc:
            log.warning("control client refused: cannot read its credentials: %s", exc)
            return
        if not self.authorised(creds):
            log.warning(
                "control client refused: uid %d (pid %d) is not authorised", creds.uid, creds.pid
            )
            message = f"not authorised: uid {creds.uid} is neither root nor in the control group"
            await self._refuse(
                reader, writer, encode_error(None, ErrorCode.NOT_AUTHORISED, message)
            )
            return
        framer = LineFramer()
        while True:
            try:
                data = await asyncio.wait_for(reader.read(65536), self._idle_timeout)
            except (TimeoutError, ConnectionError):
                return
            if not data:
                return
            for frame in framer.feed(data):
                await self._send(writer, await self._answer(frame))

    async def _answer(self, frame: bytes | FrameTooLarge) -> bytes:
        if isinstance(frame, FrameTooLarge):
            message = f"request longer than {MAX_REQUEST_BYTES} bytes"
            return encode_error(None, ErrorCode.FRAME_TOO_LARGE, message)
        request = parse_request(frame)
        if isinstance(request, BadRequest):
            return request.encode()
        return await self.dispatch(request)

    async def dispatch(self, request: Request) -> bytes:
        """Run the handler of ``request`` and return the reply line. Never raises (except
        CancelledError)."""
        handler = self._handlers.get(request.method)
        if handler is None:
            message = f"unknown method {request.method[:40]!r}"
            return encode_error(request.id, ErrorCode.METHOD_NOT_FOUND, message)
        try:
            result = await handler(request.params)
            return encode_result(request.id, result)
        except ControlError as exc:
            return encode_error(request.id, exc.code, exc.message)
        except CgwdError as exc:
            return encode_error(request.id, ErrorCode.FAILED, str(exc))
        except Exception:
            log.exception("control method %s failed", request.method)
            message = "internal error (details in cgwd's log)"
            return encode_error(request.id, ErrorCode.INTERNAL_ERROR, message)
