"""The userspace dataplane's UDP 4500 socket next to the IKE host's: demultiplexing and NAT-T.

In a namespace holding our outside address 192.0.2.1 (peer 192.0.2.2 in another one): an
"IKE host" socket bound to 192.0.2.1:4500 with SO_REUSEPORT, as cgwd's IKE host binds it,
and the dataplane's socket connected to the peer. From the peer's 4500: an IKE datagram
(non-ESP marker) must reach the registered IKE receiver, marker included, with both
addresses; a keepalive must not; an ESP packet for an unknown SPI is counted. The dataplane
must send NAT keepalives (RFC 3948 §2.3) while ESP-in-UDP is idle.
"""

from __future__ import annotations

import asyncio
import select
import socket
import struct
import time
from collections.abc import Iterator
from ipaddress import IPv4Address, IPv4Interface

import pytest

from cgwd.dataplane.base import (
    SPI_RESERVATION_TTL,
    SaExistsError,
    SaId,
    SaParams,
    TunnelSpec,
    UdpEncap,
)
from cgwd.dataplane.sockets import UDP_GRO, UDP_SEGMENT
from cgwd.dataplane.tun import TUN_TX_QUEUE_LEN
from cgwd.dataplane.userspace import UserspaceDataplane
from cgwd.esp.sa import OutboundSa, SaCounters
from cgwd.esp.suites import suite_by_name
from cgwd.lab.netns import Netns, Topology
from cgwd.secret import Secret

try:
    from tests.conftest import require_root
    from tests.dataplane_netns import run_async_in_netns, run_in_netns
except ImportError:  # pragma: no cover
    from conftest import require_root  # type: ignore[no-redef]
    from dataplane_netns import run_async_in_netns, run_in_netns  # type: ignore[no-redef]

pytestmark = [pytest.mark.netns]

LOCAL, REMOTE = "192.0.2.1", "192.0.2.2"
SPEC = TunnelSpec(
    name="cgio0",
    local_inside=IPv4Interface("169.254.30.2/30"),
    remote_inside=IPv4Address("169.254.30.1"),
    mtu=1400,
    local_outside=IPv4Address(LOCAL),
    remote_outside=IPv4Address(REMOTE),
)
GCM = suite_by_name("aes128gcm16")


@pytest.fixture(scope="module")
def namespaces() -> Iterator[tuple[Netns, Netns]]:
    require_root()
    topo = Topology()
    try:
        ours, peer = topo.add_netns("cgw"), topo.add_netns("peer")
        topo.link(ours, "out0", peer, "out0")
        ours.ip("addr", "add", f"{LOCAL}/24", "dev", "out0")
        peer.ip("addr", "add", f"{REMOTE}/24", "dev", "out0")
        yield ours, peer
    finally:
        topo.close()


def udp_socket(ns: Netns, addr: str, port: int) -> socket.socket:
    def make() -> socket.socket:
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        s.bind((addr, port))
        return s

    return run_in_netns(ns.name, make)


def test_ike_datagrams_reach_the_receiver_and_esp_keepalives_do_not(
    namespaces: tuple[Netns, Netns],
) -> None:
    ours, peer = namespaces
    ike_host = udp_socket(ours, LOCAL, 4500)  # bound first, as the daemon's IKE host is
    peer_sock = udp_socket(peer, REMOTE, 4500)
    got: list[tuple[bytes, tuple[str, int], tuple[str, int]]] = []

    async def body() -> dict[str, int]:
        dp = UserspaceDataplane()
        arrived = asyncio.Event()

        def receive(data: bytes, remote: tuple[str, int], local: tuple[str, int]) -> None:
            got.append((data, remote, local))
            arrived.set()

        dp.set_ike_receiver(receive)
        try:
            await dp.open_tunnel(SPEC)
            params = SaParams(GCM, Secret(bytes(20)), encap=UdpEncap())
            await dp.add_sa(SaId(SPEC.name, "in", 0x5001), params)
            for datagram in (
                b"\xff",
                b"\x00\x00\x00\x00IKE-MESSAGE",
                b"\x00\x00\x77\x77" + bytes(40),
            ):
                peer_sock.sendto(datagram, (LOCAL, 4500))
            await asyncio.wait_for(arrived.wait(), 5)
            await asyncio.sleep(0.3)  # anything else that would (wrongly) arrive
            counters = dp.tunnel_counters(SPEC.name)
            return {
                "keepalives_in": counters.keepalives_in,
                "ike_in": counters.ike_in,
                "unknown_spi": counters.drops.get("unknown_spi", 0),
            }
        finally:
            await dp.close()

    try:
        counts = run_async_in_netns(ours.name, body)
        ike_host.setblocking(False)
        stolen = select.select([ike_host], [], [], 0)[0]
    finally:
        ike_host.close()
        peer_sock.close()
    assert got == [(b"\x00\x00\x00\x00IKE-MESSAGE", (REMOTE, 4500), (LOCAL, 4500))]
    assert counts == {"keepalives_in": 1, "ike_in": 1, "unknown_spi": 1}
    assert not stolen, "the peer's datagrams went to the unconnected socket"


def test_nat_keepalives_are_sent_while_esp_in_udp_is_idle(
    namespaces: tuple[Netns, Netns],
) -> None:
    ours, peer = namespaces
    peer_sock = udp_socket(peer, REMOTE, 4500)

    async def body() -> int:
        dp = UserspaceDataplane(keepalive_interval=0.3)
        try:
            await dp.open_tunnel(SPEC)
            params = SaParams(GCM, Secret(bytes(20)), encap=UdpEncap())
            await dp.add_sa(SaId(SPEC.name, "out", 0x6001), params)
            await asyncio.sleep(2.5)  # the worker checks at least once a second
            return dp.tunnel_counters(SPEC.name).keepalives_out
        finally:
            await dp.close()

    try:
        sent = run_async_in_netns(ours.name, body)
        received = []
        deadline = time.monotonic() + 1
        peer_sock.setblocking(False)
        while time.monotonic() < deadline:
            try:
                data, addr = peer_sock.recvfrom(100)
            except BlockingIOError:
                break
            received.append((data, addr))
    finally:
        peer_sock.close()
    assert sent >= 2
    assert received and all(r == (b"\xff", (LOCAL, 4500)) for r in received)
    assert len(received) >= sent  # one more may leave between the count and the close


def test_the_tun_device_queues_enough_for_a_bulk_flow(namespaces: tuple[Netns, Netns]) -> None:
    ours, _peer = namespaces

    async def body() -> str:
        dp = UserspaceDataplane()
        try:
            await dp.open_tunnel(SPEC)
            return str(ours.ip("-o", "link", "show", SPEC.name).stdout)
        finally:
            await dp.close()

    link = run_async_in_netns(ours.name, body)
    assert f" qlen {TUN_TX_QUEUE_LEN}" in link and TUN_TX_QUEUE_LEN > 500, link  # 500: default


def test_a_tun_device_deleted_under_the_datapath_is_counted_not_spun_on(
    namespaces: tuple[Netns, Netns],
) -> None:
    ours, _peer = namespaces

    async def body() -> dict[str, int]:
        dp = UserspaceDataplane()
        try:
            await dp.open_tunnel(SPEC)
            await asyncio.to_thread(ours.ip, "link", "del", SPEC.name)
            await asyncio.sleep(2.0)
            return dp.tunnel_counters(SPEC.name).drops
        finally:
            await dp.close()  # must not raise although the device is gone

    drops = run_async_in_netns(ours.name, body)
    # Backed off (0.01 s doubling to 1 s), not millions of spins on a dead descriptor.
    assert 1 <= drops.get("device_error", 0) <= 20, drops
    assert set(drops) == {"device_error"}
    assert ours.ip("link", "show", SPEC.name, check=False).returncode != 0


def test_spi_reservations_expire_unless_installed(namespaces: tuple[Netns, Netns]) -> None:
    ours, _peer = namespaces
    now = [0.0]

    async def body() -> tuple[int, int, str]:
        dp = UserspaceDataplane(clock=lambda: now[0])
        other = TunnelSpec(
            "cgio1", IPv4Interface("169.254.31.2/30"), IPv4Address("169.254.31.1"), 1400,
            IPv4Address(LOCAL), IPv4Address("192.0.2.3"),
        )  # fmt: skip
        params = SaParams(GCM, Secret(bytes(20)))
        try:
            await dp.open_tunnel(SPEC)
            await dp.open_tunnel(other)
            unused, used = dp.allocate_spi(SPEC.name), dp.allocate_spi(SPEC.name)
            await dp.add_sa(SaId(SPEC.name, "in", used), params)
            now[0] = SPI_RESERVATION_TTL + 1
            dp.allocate_spi(SPEC.name)  # prunes expired reservations
            await dp.add_sa(SaId(other.name, "in", unused), params)  # free again
            try:
                await dp.add_sa(SaId(other.name, "in", used), params)
                error = ""
            except SaExistsError as exc:
                error = str(exc)
            return unused, used, error
        finally:
            await dp.close()

    _unused, used, error = run_async_in_netns(ours.name, body)
    assert f"0x{used:08x}" in error and "in use" in error


def _inner_udp(size: int, ident: int) -> bytes:
    """An IPv4/UDP packet of ``size`` octets, peer inside -> our inside (UDP checksum 0,
    allowed in IPv4: RFC 768)."""
    header = struct.pack(
        "!BBHHHBBH4s4s", 0x45, 0, size, ident, 0x4000, 64, 17, 0,
        SPEC.remote_inside.packed, SPEC.local_inside.ip.packed,
    )  # fmt: skip
    header = header[:10] + struct.pack("!H", _ipv4_checksum(header)) + header[12:]
    udp = struct.pack("!HHHH", 40000, 9, size - 20, 0)
    return header + udp + bytes([ident & 0xFF]) * (size - 28)


def _ipv4_checksum(header: bytes) -> int:
    total = sum(struct.unpack("!10H", header))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def _send_segmented(sock: socket.socket, datagrams: list[bytes]) -> None:
    """One sendmsg of equal-size datagrams (the last may be shorter) with UDP_SEGMENT."""
    segment = len(datagrams[0])
    assert all(len(d) == segment for d in datagrams[:-1]) and len(datagrams[-1]) <= segment
    sock.sendmsg([b"".join(datagrams)], [(socket.SOL_UDP, UDP_SEGMENT, struct.pack("=H", segment))])


def _kernel_delivers_segmented_sends_whole(ours: Netns, peer: Netns) -> bool:
    """Whether a UDP_SEGMENT send reaches a UDP_GRO socket as one coalesced receive (with
    the segment size in a cmsg), which is the receive path under test."""
    receiver = udp_socket(ours, LOCAL, 4600)
    sender = udp_socket(peer, REMOTE, 4600)
    try:
        receiver.setsockopt(socket.SOL_UDP, UDP_GRO, 1)
        sender.connect((LOCAL, 4600))
        _send_segmented(sender, [b"a" * 100, b"b" * 100, b"c" * 40])
        if not select.select([receiver], [], [], 2)[0]:
            return False
        data, anc, _flags, _addr = receiver.recvmsg(1000, socket.CMSG_SPACE(4))
        return len(data) == 240 and any(
            level == socket.SOL_UDP and kind == UDP_GRO and struct.unpack("=i", cmsg[:4])[0] == 100
            for level, kind, cmsg in anc
        )
    finally:
        receiver.close()
        sender.close()


def test_a_coalesced_run_with_a_shorter_last_packet_is_split_at_its_real_end(
    namespaces: tuple[Netns, Netns],
) -> None:
    """A GSO sender ends a run with a shorter packet; UDP GRO hands the run over in one
    receive whose cmsg gives the (longer) segment size. The last ESP packet must be cut at
    the end of what was received, not at a full segment (whose tail would be stale buffer
    contents, failing authentication)."""
    ours, peer = namespaces
    if not _kernel_delivers_segmented_sends_whole(ours, peer):
        pytest.skip("this kernel does not deliver UDP_SEGMENT sends whole to UDP_GRO sockets")
    keymat = Secret(bytes(range(20)))
    sender_sa = OutboundSa(0x5003, GCM, keymat, udp_encap=True)
    # A full run first (leaves full-size ciphertext in the receive buffer), then runs
    # ending in a shorter packet, of various lengths.
    # 1297 pads to 4 octets less than 1300 (RFC 4303 2.4): the shortest possible difference.
    runs = [[1300] * 4, [1300, 1300, 1300, 500], [1300, 1300, 1297], [600, 600, 77]]
    inner = [
        [_inner_udp(size, 16 * r + i) for i, size in enumerate(run)] for r, run in enumerate(runs)
    ]
    esp_runs = [[bytes(sender_sa.encapsulate(p) or b"") for p in run] for run in inner]
    peer_sock = udp_socket(peer, REMOTE, 4500)

    async def body() -> tuple[SaCounters, dict[str, int]]:
        dp = UserspaceDataplane()
        sa = SaId(SPEC.name, "in", 0x5003)
        try:
            await dp.open_tunnel(SPEC)
            await dp.add_sa(sa, SaParams(GCM, keymat, encap=UdpEncap()))
            peer_sock.connect((LOCAL, 4500))
            for run in esp_runs:
                _send_segmented(peer_sock, run)
                await asyncio.sleep(0.05)  # one receive per run
            deadline = time.monotonic() + 5
            total = sum(len(run) for run in runs)
            while time.monotonic() < deadline:
                counters = dp.sa_counters(sa)
                if counters.packets + counters.dropped >= total:
                    break
                await asyncio.sleep(0.05)
            return dp.sa_counters(sa), dp.tunnel_counters(SPEC.name).drops
        finally:
            await dp.close()

    try:
        counters, tunnel_drops = run_async_in_netns(ours.name, body)
    finally:
        peer_sock.close()
    assert counters.drops == {}
    assert counters.packets == sum(len(run) for run in runs)
    assert counters.bytes == sum(len(p) for run in inner for p in run)
    assert "malformed" not in tunnel_drops and "internal" not in tunnel_drops


def test_empty_datagrams_are_counted_as_malformed_not_internal_errors(
    namespaces: tuple[Netns, Netns],
) -> None:
    """A zero-length UDP datagram is neither ESP, IKE nor a keepalive. It once made the rx
    worker raise (a zero step for splitting), which stalls the worker for its back-off."""
    ours, peer = namespaces
    peer_sock = udp_socket(peer, REMOTE, 4500)

    async def body() -> dict[str, int]:
        dp = UserspaceDataplane()
        try:
            await dp.open_tunnel(SPEC)
            params = SaParams(GCM, Secret(bytes(20)), encap=UdpEncap())
            await dp.add_sa(SaId(SPEC.name, "in", 0x5004), params)
            for _ in range(3):
                peer_sock.sendto(b"", (LOCAL, 4500))
            peer_sock.sendto(b"\xff", (LOCAL, 4500))  # processed after them: the marker
            deadline = time.monotonic() + 5
            while time.monotonic() < deadline and not dp.tunnel_counters(SPEC.name).keepalives_in:
                await asyncio.sleep(0.05)
            return dp.tunnel_counters(SPEC.name).drops
        finally:
            await dp.close()

    try:
        drops = run_async_in_netns(ours.name, body)
    finally:
        peer_sock.close()
    assert drops == {"malformed": 3}


def test_only_authentic_esp_marks_an_inbound_sa_as_used(namespaces: tuple[Netns, Netns]) -> None:
    """``last_used`` of an inbound SA tells the IKE host that the peer is alive, so it must
    not move for packets that fail authentication (anyone can send those)."""
    ours, peer = namespaces
    peer_sock = udp_socket(peer, REMOTE, 4500)
    keymat = Secret(bytes(range(20)))
    sender = OutboundSa(0x5005, GCM, keymat, udp_encap=True)
    forged = bytearray(
        sender.encapsulate(bytes.fromhex("4500001c0000400040010000") + bytes(16)) or b""
    )
    forged[-1] ^= 1
    genuine = sender.encapsulate(bytes.fromhex("4500001c0000400040010000") + bytes(16)) or b""

    async def body() -> tuple[SaCounters, SaCounters]:
        dp = UserspaceDataplane()
        sa = SaId(SPEC.name, "in", 0x5005)
        try:
            await dp.open_tunnel(SPEC)
            await dp.add_sa(sa, SaParams(GCM, keymat, encap=UdpEncap()))
            for packet in (forged, forged):
                peer_sock.sendto(packet, (LOCAL, 4500))
            deadline = time.monotonic() + 5
            while time.monotonic() < deadline and dp.sa_counters(sa).dropped < 2:
                await asyncio.sleep(0.05)
            after_forged = dp.sa_counters(sa)
            peer_sock.sendto(genuine, (LOCAL, 4500))
            while time.monotonic() < deadline and not dp.sa_counters(sa).packets:
                await asyncio.sleep(0.05)
            return after_forged, dp.sa_counters(sa)
        finally:
            await dp.close()

    try:
        after_forged, after_genuine = run_async_in_netns(ours.name, body)
    finally:
        peer_sock.close()
    assert after_forged.dropped == 2 and after_forged.last_used is None
    assert after_genuine.packets == 1 and after_genuine.last_used is not None


def test_packets_routed_into_a_tunnel_without_outbound_sa_are_counted_as_no_sa(
    namespaces: tuple[Netns, Netns],
) -> None:
    """Before its first Child SA a tunnel has no outbound SA: what the kernel routes into
    it is read and dropped as ``no_sa``; the TUN device is not mistaken for gone."""
    ours, _peer = namespaces

    async def body() -> dict[str, int]:
        dp = UserspaceDataplane()
        try:
            await dp.open_tunnel(SPEC)
            await asyncio.to_thread(
                ours.run, "ping", "-c", "3", "-i", "0.2", "-W", "1", str(SPEC.remote_inside),
                check=False,
            )  # fmt: skip
            await asyncio.sleep(1.2)  # an idle poll timeout of the tx worker passes, too
            return dp.tunnel_counters(SPEC.name).drops
        finally:
            await dp.close()

    drops = run_async_in_netns(ours.name, body)
    assert drops == {"no_sa": 3}
