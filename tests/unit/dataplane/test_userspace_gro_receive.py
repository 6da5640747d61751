"""The userspace rx worker's receive loop (`UserspaceDataplane._drain_udp`) on UDP GRO runs
of mixed datagrams, with a stand-in socket: every datagram is accounted for exactly once
(delivered, dropped by the SA, dropped by the tunnel, a keepalive or IKE), in order, and
nothing past the received length is ever read."""

from __future__ import annotations

import contextlib
import os
import socket
import struct
from collections.abc import Iterator
from ipaddress import IPv4Address, IPv4Interface

from hypothesis import given, settings
from hypothesis import strategies as st

from cgwd.dataplane import userspace
from cgwd.dataplane.base import SaId, TunnelSpec
from cgwd.dataplane.sockets import UDP_GRO, UdpEncapSocket
from cgwd.dataplane.tcp_coalesce import VNET_HDR_LEN, TcpCoalescer
from cgwd.esp import InboundSa, OutboundSa, suite_by_name
from cgwd.secret import Secret

SPI, OTHER_SPI = 0x1000, 0x2000
SUITE = suite_by_name("aes128gcm16")
KEYMAT = Secret(bytes(range(SUITE.keymat_bytes)))
SPEC = TunnelSpec(
    "cgt0", IPv4Interface("169.254.10.2/30"), IPv4Address("169.254.10.1"), 1400,
    IPv4Address("192.0.2.1"), IPv4Address("192.0.2.2"),
)  # fmt: skip
INNER = 100  # every inner packet: an IPv4/UDP datagram of this many octets


def inner(tag: int) -> bytes:
    header = struct.pack("!BBHHHBBH4s4s", 0x45, 0, INNER, tag, 0x4000, 64, 17, 0,
                         b"\x0a\x00\x00\x01", b"\x0a\x00\x00\x02")  # fmt: skip
    return header + bytes([tag % 256]) * (INNER - 20)


class GroSocket:
    """Hands the loop one receive, then EAGAIN, as a socket with UDP_GRO would. The buffer
    is pre-filled with valid ESP of the SA after the receive, so reading past it shows."""

    def __init__(self, data: bytes, segment: int, stale: bytes) -> None:
        self.data, self.segment, self.stale, self.done = data, segment, stale, False

    def recvmsg_into(
        self, buffers: list[memoryview], _ancsize: int, _flags: int
    ) -> tuple[int, list[tuple[int, int, bytes]], int, None]:
        if self.done:
            raise BlockingIOError
        self.done = True
        n = len(self.data)
        buffers[0][:n] = self.data
        buffers[0][n : n + len(self.stale)] = self.stale
        ancillary = [(socket.IPPROTO_UDP, UDP_GRO, struct.pack("=i", self.segment))]
        return n, ancillary, 0, None


@contextlib.contextmanager
def rx_tunnel() -> Iterator[tuple[userspace.UserspaceDataplane, userspace._Tunnel, list[bytes]]]:
    """A tunnel's rx state without threads or devices; ``written`` gets each delivered
    inner packet."""
    dp = userspace.UserspaceDataplane(tun_coalesce=False)
    devnull = os.open(os.devnull, os.O_WRONLY)
    t = userspace._Tunnel(SPEC, devnull)
    t.coalescer = TcpCoalescer(lambda framed: None)
    written: list[bytes] = []
    t.deliver = lambda n: written.append(bytes(t.rx_out[VNET_HDR_LEN : VNET_HDR_LEN + n]))
    try:
        yield dp, t, written
    finally:
        os.close(devnull)


KINDS = st.sampled_from(["fresh", "fresh", "fresh", "forged", "replayed", "other_spi", "ike"])
LAST = st.sampled_from(["none", "keepalive", "truncated", "short_ike", "empty_tail"])


@settings(max_examples=150, deadline=None)
@given(kinds=st.lists(KINDS, min_size=1, max_size=20), last=LAST)
def test_every_datagram_of_a_gro_run_is_accounted_for_once_and_in_order(
    kinds: list[str], last: str
) -> None:
    with rx_tunnel() as (dp, t, written):
        _check_run(dp, t, written, kinds, last)


def _check_run(
    dp: userspace.UserspaceDataplane,
    t: userspace._Tunnel,
    written: list[bytes],
    kinds: list[str],
    last: str,
) -> None:
    sender = OutboundSa(SPI, SUITE, KEYMAT, udp_encap=True)
    other = OutboundSa(OTHER_SPI, SUITE, KEYMAT, udp_encap=True)
    sa = InboundSa(SPI, SUITE, KEYMAT)
    t.inbound = {SPI: userspace._Inbound(SaId("cgt0", "in", SPI), sa)}
    datagrams: list[bytes] = []
    expected: list[bytes] = []
    sent: list[bytes] = []
    for tag, kind in enumerate(kinds):
        packet = sender.encapsulate(inner(tag)) or b""
        segment = len(packet)
        if kind == "fresh":
            expected.append(inner(tag))
        elif kind == "forged":
            packet = packet[:-1] + bytes([packet[-1] ^ 0x80])
        elif kind == "replayed":
            packet = sent[0] if sent else packet
            if not sent:
                expected.append(inner(tag))
        elif kind == "other_spi":
            packet = other.encapsulate(inner(tag)) or b""
        elif kind == "ike":
            packet = b"\x00\x00\x00\x00" + bytes(segment - 4)
        if kind in ("fresh", "replayed") and packet not in sent:
            sent.append(packet)
        datagrams.append(packet)
    segment = len(datagrams[0])
    tails = {
        "none": None,
        "keepalive": b"\xff",
        "truncated": (sender.encapsulate(inner(999)) or b"")[: segment // 2],
        "short_ike": b"\x00\x00\x00\x00ike",
        "empty_tail": None,
    }
    if tails[last] is not None:
        datagrams.append(tails[last])  # type: ignore[arg-type]
    stale = sender.encapsulate(inner(500)) or b""
    udp = UdpEncapSocket(GroSocket(b"".join(datagrams), segment, stale), ("192.0.2.1", 4500),  # type: ignore[arg-type]
                         ("192.0.2.2", 4500), gso=True, gro=True)  # fmt: skip
    dp._drain_udp(t, udp, memoryview(bytearray(userspace.MAX_PACKET)), 1.0)

    assert written == expected  # authentic, new packets only, in arrival order
    tunnel_drops = sum(t.counters.drops.values())
    accounted = (
        sa.counters.packets
        + sum(sa.counters.drops.values())
        + tunnel_drops
        + t.counters.keepalives_in
        + t.counters.ike_in
    )
    assert accounted == len(datagrams)
    assert "internal" not in t.counters.drops
    assert t.counters.keepalives_in == (last == "keepalive")
    assert t.counters.ike_in == kinds.count("ike") + (last == "short_ike")
    assert t.counters.drops.get("unknown_spi", 0) == kinds.count("other_spi")
