"""Sockets of the userspace datapath: ESP-in-UDP (RFC 3948) and raw ESP (IP protocol 50).

Both kinds are bound to the tunnel's local outside address and *connected* to its peer, so
the kernel filters by peer for us and sends take the cached route. The UDP socket shares
port 4500 with the IKE host's socket through ``SO_REUSEPORT``; a connected socket outranks
the unconnected one in the kernel's lookup, so all datagrams from this peer reach it (IKE
ones are handed back to the IKE host by the datapath).

Batching: ``UDP_SEGMENT`` (GSO) sends a run of equal-size ESP packets in one syscall and
``UDP_GRO`` receives a coalesced run in one, with the segment size in a control message.
Both are probed when the socket is made and simply not used where the kernel lacks them.

Errors: `DataplaneError` naming the addresses and the OS reason.
"""

from __future__ import annotations

import contextlib
import errno
import socket
import struct
from dataclasses import dataclass
from ipaddress import IPv4Address

from cgwd.dataplane.base import DataplaneError

# <linux/udp.h>
SOL_UDP = 17
UDP_SEGMENT = 103
UDP_GRO = 104
UDP_MAX_SEGMENTS = 64  # conservative: 64 before Linux 6.x raised it to 128
GSO_MAX_BYTES = 65000  # one GSO send must fit an IPv4 datagram (65535 - headers)
IPPROTO_ESP = 50  # RFC 4303 §2, IANA protocol number
SO_SNDBUFFORCE = 32  # <asm-generic/socket.h>
SO_RCVBUFFORCE = 33
SOCKET_BUFFER = 4 << 20  # absorb bursts while a worker is descheduled
_U16 = struct.Struct("=H")
_I32 = struct.Struct("=i")
GRO_CMSG_SPACE = socket.CMSG_SPACE(_I32.size)


@dataclass
class UdpEncapSocket:
    """A connected UDP socket for one tunnel's ESP-in-UDP, with its offload capabilities."""

    sock: socket.socket
    local: tuple[str, int]
    remote: tuple[str, int]
    gso: bool
    gro: bool
    gso_max_segment: int = 0xFFFF  # lowered when the path refuses GSO at some segment size


def _grow_buffers(sock: socket.socket) -> None:
    # The *FORCE variants (CAP_NET_ADMIN) pass net.core.[rw]mem_max; without the capability
    # the plain ones are capped silently, and smaller buffers still work.
    for force, plain in ((SO_RCVBUFFORCE, socket.SO_RCVBUF), (SO_SNDBUFFORCE, socket.SO_SNDBUF)):
        try:
            sock.setsockopt(socket.SOL_SOCKET, force, SOCKET_BUFFER)
        except OSError:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, plain, SOCKET_BUFFER)


def open_udp_encap(
    local: IPv4Address, local_port: int, remote: IPv4Address, remote_port: int
) -> UdpEncapSocket:
    """A blocking UDP socket bound to local:port (SO_REUSEPORT) and connected to remote:port.

    It is blocking so the sending worker gets back-pressure instead of drops; receivers
    use ``MSG_DONTWAIT``.

    Raises:
        DataplaneError: bind/connect refused (e.g. the local address is not configured).
    """
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        _grow_buffers(sock)
        sock.bind((str(local), local_port))
        sock.connect((str(remote), remote_port))
    except OSError as exc:
        sock.close()
        raise DataplaneError(
            f"UDP encapsulation socket {local}:{local_port} -> {remote}:{remote_port}: "
            f"{exc.strerror or exc}"
        ) from None
    gro = True
    try:
        sock.setsockopt(SOL_UDP, UDP_GRO, 1)
    except OSError:
        gro = False
    gso = _probe_gso(sock)
    return UdpEncapSocket(sock, (str(local), local_port), (str(remote), remote_port), gso, gro)


def _probe_gso(sock: socket.socket) -> bool:
    # Setting a socket-wide UDP_SEGMENT of 0 is accepted exactly where per-send GSO is.
    try:
        sock.setsockopt(SOL_UDP, UDP_SEGMENT, 0)
    except OSError:
        return False
    return True


def open_raw_esp(local: IPv4Address, remote: IPv4Address) -> socket.socket:
    """A blocking raw IP-protocol-50 socket bound to ``local`` and connected to ``remote``.

    Sends take the ESP packet (SPI onwards); the kernel adds the IPv4 header. Receives
    return the whole IPv4 datagram, header included (raw socket semantics).

    Raises:
        DataplaneError: no permission (needs CAP_NET_RAW) or the address is not local.
    """
    try:
        sock = socket.socket(socket.AF_INET, socket.SOCK_RAW | socket.SOCK_CLOEXEC, IPPROTO_ESP)
    except OSError as exc:
        raise DataplaneError(f"raw ESP socket: {exc.strerror or exc}") from None
    try:
        _grow_buffers(sock)
        sock.bind((str(local), 0))
        sock.connect((str(remote), 0))
    except OSError as exc:
        sock.close()
        raise DataplaneError(f"raw ESP socket {local} -> {remote}: {exc.strerror or exc}") from None
    return sock


def send_gso(sock: socket.socket, payload: bytes | bytearray | memoryview, segment: int) -> None:
    """Send ``payload`` as datagrams of ``segment`` bytes (the last may be shorter), one syscall.

    Raises:
        OSError: as ``sendmsg`` (the caller counts it as a send error).
    """
    sock.sendmsg([payload], [(SOL_UDP, UDP_SEGMENT, _U16.pack(segment))])


def gro_segment_size(ancdata: list[tuple[int, int, bytes]]) -> int:
    """The segment size of a coalesced receive from its control messages; 0 if not coalesced."""
    for level, kind, data in ancdata:
        if level == SOL_UDP and kind == UDP_GRO and len(data) >= _I32.size:
            return int(_I32.unpack_from(data)[0])
    return 0


def is_transient(exc: OSError) -> bool:
    """Errors a datapath worker counts and carries on after (peer gone, buffers full, ...)."""
    return exc.errno in (
        errno.EAGAIN,
        errno.ENOBUFS,
        errno.ECONNREFUSED,
        errno.EHOSTUNREACH,
        errno.ENETUNREACH,
        errno.EMSGSIZE,
        errno.EPERM,  # a firewall rule dropped it
        errno.EINVAL,
        errno.EIO,
    )
