"""A NETLINK_XFRM socket: requests with acknowledgement, dumps, and EXPIRE events.

Plain ``socket.AF_NETLINK`` I/O around the messages of `cgwd.net.xfrm.messages`; one
request is in flight at a time (a lock serialises callers from any thread). The socket
asks for extended acknowledgements (NETLINK_EXT_ACK) so that a refusal carries the
kernel's own explanation ("Requested AEAD algorithm not found", ...), which `XfrmError`
keeps next to the errno.

The socket belongs to the network namespace of the thread that creates it.
"""

from __future__ import annotations

import contextlib
import errno
import os
import socket
import struct
import threading
from collections.abc import Callable

from pyroute2.netlink import NLM_F_ACK, NLM_F_DUMP

from cgwd.errors import CgwdError
from cgwd.net.xfrm import messages as m

NETLINK_XFRM = 6
SOL_NETLINK = 270
NETLINK_EXT_ACK = 11  # <linux/netlink.h>
NLM_F_CAPPED = 0x100  # the error message does not repeat the request's payload
NLM_F_ACK_TLVS = 0x200  # extended ACK attributes follow
NLMSGERR_ATTR_MSG = 1
RECV_BUFFER = 1 << 20
DEFAULT_TIMEOUT = 5.0


class XfrmError(CgwdError):
    """The kernel refused an XFRM request (``errno`` set), or the socket failed."""

    def __init__(self, message: str, errno_: int = 0, kernel_message: str = "") -> None:
        super().__init__(message)
        self.errno = errno_
        self.kernel_message = kernel_message


def _ext_ack_message(data: bytes, flags: int) -> str:
    """The NLMSGERR_ATTR_MSG text of an extended ACK, or ''."""
    if not flags & NLM_F_ACK_TLVS or len(data) < 36:
        return ""
    (orig_len,) = struct.unpack_from("=I", data, 20)
    offset = 36 if flags & NLM_F_CAPPED else 20 + ((orig_len + 3) & ~3)
    while offset + 4 <= len(data):
        length, kind = struct.unpack_from("=HH", data, offset)
        if length < 4:
            break
        if kind & 0x3FFF == NLMSGERR_ATTR_MSG:
            return data[offset + 4 : offset + length].split(b"\0", 1)[0].decode("utf-8", "replace")
        offset += (length + 3) & ~3
    return ""


class XfrmSocket:
    """Request/response on NETLINK_XFRM. Raises `XfrmError` only.

    Args:
        groups: multicast groups to join (bit mask, e.g. ``1 << (XFRMNLGRP_EXPIRE - 1)``);
            0 for a request socket. An event socket is read with `read_events`.
        timeout: seconds to wait for any answer.
    """

    def __init__(self, *, groups: int = 0, timeout: float = DEFAULT_TIMEOUT) -> None:
        try:
            self._sock = socket.socket(
                socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC, NETLINK_XFRM
            )
        except OSError as exc:
            raise XfrmError(
                f"cannot open an XFRM netlink socket: {exc.strerror} (the kernel needs "
                "CONFIG_XFRM_USER, module xfrm_user)",
                exc.errno or 0,
            ) from None
        try:
            self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RECV_BUFFER)
            # Old kernels lack it: errors then come without the kernel's text.
            with contextlib.suppress(OSError):
                self._sock.setsockopt(SOL_NETLINK, NETLINK_EXT_ACK, 1)
            self._sock.bind((0, groups))
            self._sock.settimeout(timeout)
        except OSError as exc:
            self._sock.close()
            raise XfrmError(f"cannot bind the XFRM netlink socket: {exc.strerror}") from None
        self._lock = threading.Lock()
        self._seq = int.from_bytes(os.urandom(2), "big") << 8

    def fileno(self) -> int:
        return self._sock.fileno()

    def close(self) -> None:
        self._sock.close()

    def __enter__(self) -> XfrmSocket:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _next_seq(self) -> int:
        self._seq = (self._seq + 1) & 0xFFFFFFFF or 1
        return self._seq

    def _recv(self, what: str) -> bytes:
        try:
            return self._sock.recv(RECV_BUFFER)
        except TimeoutError:
            raise XfrmError(f"{what}: no answer from the kernel", errno.ETIMEDOUT) from None
        except OSError as exc:
            raise XfrmError(f"{what}: {exc.strerror}", exc.errno or 0) from None

    def _send(self, data: bytes, what: str) -> None:
        try:
            self._sock.sendto(data, (0, 0))
        except OSError as exc:
            raise XfrmError(f"{what}: {exc.strerror}", exc.errno or 0) from None

    def request(self, build: Callable[[int], bytes], what: str) -> list[m.Message]:
        """Send ``build(seq)`` and collect the answer.

        Returns the messages that answer it: none for an acknowledged request (NLM_F_ACK),
        the one reply for a GET, every entry for a dump (up to NLMSG_DONE).

        Raises:
            XfrmError: the kernel answered with an error (``errno`` and the kernel's text
                kept), no answer came in time, or the socket failed. ``what`` prefixes the
                message.
        """
        with self._lock:
            seq = self._next_seq()
            data = build(seq)
            (flags,) = struct.unpack_from("=H", data, 6)
            wants_ack = bool(flags & NLM_F_ACK)
            is_dump = (flags & NLM_F_DUMP) == NLM_F_DUMP
            self._send(data, what)
            answer: list[m.Message] = []
            while True:
                try:
                    messages = list(m.split_messages(self._recv(what)))
                except m.XfrmDecodeError as exc:
                    raise XfrmError(f"{what}: malformed answer from the kernel: {exc}") from None
                for message in messages:
                    if message.seq != seq:
                        continue  # a late answer to an earlier, timed-out request
                    if message.type == m.NLMSG_ERROR:
                        try:
                            code, _ = m.decode_error(message)
                        except m.XfrmDecodeError as exc:
                            raise XfrmError(f"{what}: {exc}") from None
                        if code == 0:
                            return answer
                        text = _ext_ack_message(message.data, message.flags)
                        detail = text or os.strerror(code)
                        raise XfrmError(f"{what}: {detail}", code, text)
                    if message.type == m.NLMSG_DONE:
                        return answer
                    answer.append(message)
                    if not wants_ack and not is_dump:
                        return answer

    def read_events(self) -> list[m.Message]:
        """One datagram of multicast events (blocks up to the timeout; [] on timeout)."""
        try:
            data = self._sock.recv(RECV_BUFFER)
        except TimeoutError:
            return []
        except OSError as exc:
            raise XfrmError(f"reading XFRM events: {exc.strerror}", exc.errno or 0) from None
        return list(m.split_messages(data))
