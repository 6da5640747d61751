"""Receive-side TCP coalescing for the TUN device (what GRO does for a NIC).

Decrypted packets of one bulk TCP flow arrive in bursts (UDP GRO hands us 40 at a time).
Writing each one to the TUN device costs a syscall plus the kernel's whole per-packet
receive path, and makes the receiver ACK every second segment, which the peer's datapath
must then encrypt and carry back. Merging consecutive in-order segments of one flow into a
single large packet, written with a ``virtio_net_hdr`` that marks it as a TCP GSO packet
(``IFF_VNET_HDR``), gives the kernel one packet instead of dozens; if the packet is
forwarded rather than delivered locally, the kernel's GSO splits it again into the
original segments.

Merging follows the rules of Linux's ``tcp_gro_receive``: IPv4 without options, DF set, no
fragments, same addresses, ports, TOS, TTL, ACK number, window and TCP options; the
sequence number continues the run; only ACK (and PSH on the last segment) among the flags;
every segment as long as the first except a shorter last one; at most 64 KiB in total.
Anything else ends the run first, so the packet order on the device is exactly the order
of arrival. The merged packet's TCP checksum is the pseudo-header sum with
``VIRTIO_NET_HDR_F_NEEDS_CSUM`` (CHECKSUM_PARTIAL): ESP has already authenticated every
byte, so the payload is not summed again in Python.

Pure and synchronous: `TcpCoalescer` calls ``emit(view)`` with ``vnet header + packet``.
"""

from __future__ import annotations

import functools
import struct
from collections.abc import Callable

VNET_HDR_LEN = 10  # sizeof(struct virtio_net_hdr), <linux/virtio_net.h>
VNET_F_NEEDS_CSUM = 1
VNET_GSO_TCPV4 = 1
_VNET = struct.Struct("<BBHHHH")  # flags, gso_type, hdr_len, gso_size, csum_start, csum_offset
_ZERO_VNET = bytes(VNET_HDR_LEN)
# From an IPv4 header without options and the TCP header behind it (RFC 791, RFC 9293):
_START = struct.Struct("!2xH2xH16xI4xBB4xH")  # total length, frag, seq, data offset, flags, urg
_LEN_SEQ_FLAGS = struct.Struct("!2xH20xI5xB")  # total length, seq, flags
IPPROTO_TCP = 6
IP_DF = 0x4000
TCP_ACK = 0x10
TCP_PSH = 0x08
TCP_CSUM_OFFSET = 16  # RFC 9293 §3.1: checksum at offset 16 of the TCP header
MAX_MERGED = 65535  # an IPv4 total length field
MAX_SEGMENTS = 64

Emit = Callable[[memoryview], None]


@functools.cache
def _header_mask(hdr_len: int) -> int:
    """For a ``hdr_len``-octet IPv4 + TCP header read as one big-endian int: ones over
    every bit that must equal the run's first packet for a segment to join the run, so
    one AND and one comparison check them all. Left out: the IP total length, ID and
    checksum, the TCP sequence number and checksum, and the PSH flag (allowed last)."""
    mask = bytearray(b"\xff" * hdr_len)
    for start, end in ((2, 6), (10, 12), (24, 28), (36, 38)):
        mask[start:end] = bytes(end - start)
    mask[33] &= ~TCP_PSH & 0xFF
    return int.from_bytes(mask, "big")


def _fold(total: int) -> int:
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return total


def ipv4_header_checksum(header: bytes | bytearray | memoryview) -> int:
    """RFC 791 header checksum of a 20-byte header whose checksum field is zero."""
    return ~_fold(sum(struct.unpack("!10H", header))) & 0xFFFF


class TcpCoalescer:
    """Merges runs of TCP segments; `add` each decrypted packet, `flush` after each burst.

    ``emit`` receives a view (valid only during the call) of a 10-byte virtio_net_hdr
    followed by the packet; single packets get an all-zero header.
    """

    def __init__(self, emit: Emit) -> None:
        self._emit = emit
        self._buf = bytearray(VNET_HDR_LEN + MAX_MERGED + 2048)
        self._view = memoryview(self._buf)
        self._count = 0  # segments in the current run (0: no run)
        self._end = 0  # end of the run's packet in _buf (after the vnet header)
        self._key = 0  # the run's first header, masked by _mask (see _header_mask)
        self._mask = 0
        self._seg = 0
        self._next_seq = 0
        self._hdr_len = 0
        self.merged_packets = 0  # for counters: packets that went out inside a merged one

    def add(self, framed: memoryview) -> None:
        """One decrypted inner packet behind 10 zero octets (room for the vnet header, so
        a packet that is not merged goes out without a copy). Valid only during the call."""
        self.add_framed(framed, len(framed) - VNET_HDR_LEN)

    def add_framed(self, buf: memoryview, n: int) -> None:
        """`add` for the packet at ``buf[VNET_HDR_LEN:][:n]`` (a datapath's receive buffer,
        so it need not cut a view per packet)."""
        if self._count:
            # The per-packet fast path: one masked comparison of the whole header against
            # the run's first packet, then the fields that must move (length, sequence).
            hdr_len = self._hdr_len
            if (
                n > hdr_len
                and int.from_bytes(buf[VNET_HDR_LEN : VNET_HDR_LEN + hdr_len], "big") & self._mask
                == self._key
            ):
                total, seq, flags = _LEN_SEQ_FLAGS.unpack_from(buf, VNET_HDR_LEN)
                payload = n - hdr_len
                end = self._end
                if (
                    total == n
                    and seq == self._next_seq
                    and payload <= self._seg
                    and end + payload <= MAX_MERGED
                ):
                    start = VNET_HDR_LEN + end
                    self._view[start : start + payload] = buf[
                        VNET_HDR_LEN + hdr_len : VNET_HDR_LEN + n
                    ]
                    self._end = end + payload
                    self._count += 1
                    self._next_seq = (seq + payload) & 0xFFFFFFFF
                    if flags & TCP_PSH:
                        self._buf[VNET_HDR_LEN + 20 + 13] |= TCP_PSH
                        self.flush()
                    elif payload < self._seg or self._count >= MAX_SEGMENTS:
                        self.flush()
                    return
            self.flush()
        self._start(buf, n)

    def _start(self, buf: memoryview, n: int) -> None:
        """Begin a run with this packet, or emit it alone if it can never be merged."""
        packet = buf[VNET_HDR_LEN : VNET_HDR_LEN + n]
        if n < 40 or packet[0] != 0x45 or packet[9] != IPPROTO_TCP:
            self._emit(buf[: VNET_HDR_LEN + n])
            return
        total, frag, seq, off_res, flags, urg = _START.unpack_from(packet)
        tcp_len = (off_res >> 4) * 4
        hdr_len = 20 + tcp_len
        payload = total - hdr_len
        if (
            total != n
            or tcp_len < 20
            or payload <= 0
            or frag != IP_DF
            or flags & ~TCP_PSH != TCP_ACK
            or urg
        ):
            self._emit(buf[: VNET_HDR_LEN + n])
            return
        self._view[VNET_HDR_LEN : VNET_HDR_LEN + n] = packet
        self._count = 1
        self._end = n
        self._hdr_len = hdr_len
        self._mask = _header_mask(hdr_len)
        self._key = int.from_bytes(packet[:hdr_len], "big") & self._mask
        self._seg = payload
        self._next_seq = (seq + payload) & 0xFFFFFFFF
        if flags & TCP_PSH:
            self.flush()

    def flush(self) -> None:
        """Emit the current run, if any."""
        count = self._count
        if not count:
            return
        self._count = 0
        buf = self._buf
        end = self._end
        if count == 1:
            buf[0:VNET_HDR_LEN] = _ZERO_VNET
            self._emit(self._view[: VNET_HDR_LEN + end])
            return
        ip = VNET_HDR_LEN
        struct.pack_into("!H", buf, ip + 2, end)  # total length
        struct.pack_into("!H", buf, ip + 10, 0)
        struct.pack_into("!H", buf, ip + 10, ipv4_header_checksum(self._view[ip : ip + 20]))
        # CHECKSUM_PARTIAL: the TCP checksum field holds the pseudo-header sum (RFC 9293
        # §3.1: source, destination, zero+protocol, TCP length), not complemented.
        src_dst = struct.unpack_from("!4H", buf, ip + 12)
        pseudo = _fold(sum(src_dst) + IPPROTO_TCP + end - 20)
        struct.pack_into("!H", buf, ip + 20 + TCP_CSUM_OFFSET, pseudo)
        _VNET.pack_into(
            buf, 0, VNET_F_NEEDS_CSUM, VNET_GSO_TCPV4, self._hdr_len, self._seg, 20,
            TCP_CSUM_OFFSET,
        )  # fmt: skip
        self.merged_packets += count
        self._emit(self._view[: VNET_HDR_LEN + end])
