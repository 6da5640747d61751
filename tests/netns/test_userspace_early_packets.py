"""ESP that arrives for an SPI we reserved before its SA is installed (the peer answers our
CREATE_CHILD_SA and sends on the new SA at once) is held, then delivered when the SA is added.

Our outside address 192.0.2.1 in one namespace, running a `UserspaceDataplane`; the peer
(192.0.2.2, another namespace) is a UDP socket on 4500 sending ESP-in-UDP that an
`OutboundSa` with the same keys encrypts. The inner packets are UDP datagrams numbered in
their payload, received by a socket on our inside address: what arrives, and in which
order, is what the TUN device delivered.
"""

from __future__ import annotations

import asyncio
import socket
import struct
import time
from collections.abc import Iterator
from ipaddress import IPv4Address, IPv4Interface

import pytest

from cgwd.dataplane.base import SaId, SaParams, TunnelSpec, UdpEncap
from cgwd.dataplane.userspace import UserspaceDataplane
from cgwd.esp.sa import OutboundSa
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
    name="cgearly0",
    local_inside=IPv4Interface("169.254.40.2/30"),
    remote_inside=IPv4Address("169.254.40.1"),
    mtu=1400,
    local_outside=IPv4Address(LOCAL),
    remote_outside=IPv4Address(REMOTE),
)
GCM = suite_by_name("aes128gcm16")
OLD_KEYS = Secret(bytes(range(20)))
NEW_KEYS = Secret(bytes(range(100, 120)))
INNER_PORT = 5999
MAGIC = b"early-test"


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


@pytest.fixture
def peer_sock(namespaces: tuple[Netns, Netns]) -> Iterator[socket.socket]:
    def make() -> socket.socket:
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.bind((REMOTE, 4500))
        s.connect((LOCAL, 4500))
        return s

    sock = run_in_netns(namespaces[1].name, make)
    try:
        yield sock
    finally:
        sock.close()


def _inner(seq: int, size: int = 100) -> bytes:
    """IPv4/UDP, peer inside -> our inside:INNER_PORT, payload MAGIC + ``seq`` (UDP
    checksum 0: allowed in IPv4, RFC 768)."""
    payload = MAGIC + struct.pack("!I", seq) + bytes(size - 28 - len(MAGIC) - 4)
    header = struct.pack(
        "!BBHHHBBH4s4s", 0x45, 0, size, seq & 0xFFFF, 0x4000, 64, 17, 0,
        SPEC.remote_inside.packed, SPEC.local_inside.ip.packed,
    )  # fmt: skip
    total = sum(struct.unpack("!10H", header))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    header = header[:10] + struct.pack("!H", ~total & 0xFFFF) + header[12:]
    return header + struct.pack("!HHHH", 40000, INNER_PORT, size - 20, 0) + payload


def _send(sock: socket.socket, sa: OutboundSa, seqs: range) -> None:
    for seq in seqs:
        esp = sa.encapsulate(_inner(seq))
        assert esp is not None
        sock.send(esp)


def _inside_receiver() -> socket.socket:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind((str(SPEC.local_inside.ip), INNER_PORT))
    s.setblocking(False)
    return s


async def _received(sock: socket.socket, count: int, timeout: float = 5.0) -> list[int]:
    """Sequence numbers of up to ``count`` inner datagrams, in arrival order."""
    loop = asyncio.get_running_loop()
    got: list[int] = []
    deadline = time.monotonic() + timeout
    while len(got) < count and time.monotonic() < deadline:
        try:
            data = await asyncio.wait_for(loop.sock_recv(sock, 2048), deadline - time.monotonic())
        except TimeoutError:
            break
        assert data.startswith(MAGIC)
        got.append(struct.unpack_from("!I", data, len(MAGIC))[0])
    await asyncio.sleep(0.1)  # anything more (e.g. a duplicate) would show up here
    while True:
        try:
            data = sock.recv(2048)
        except BlockingIOError:
            return got
        got.append(struct.unpack_from("!I", data, len(MAGIC))[0])


async def _until(cond: object, timeout: float = 5.0) -> None:
    assert callable(cond)
    deadline = time.monotonic() + timeout
    while not cond() and time.monotonic() < deadline:
        await asyncio.sleep(0.01)


async def _tunnel_with_an_sa(dp: UserspaceDataplane) -> None:
    """The tunnel as before a rekey: one inbound SA, so the ESP-in-UDP socket is open."""
    await dp.open_tunnel(SPEC)
    old = dp.allocate_spi(SPEC.name)
    await dp.add_sa(SaId(SPEC.name, "in", old), SaParams(GCM, OLD_KEYS, encap=UdpEncap()))


def test_packets_for_a_reserved_spi_are_delivered_in_order_once_its_sa_is_added(
    namespaces: tuple[Netns, Netns], peer_sock: socket.socket
) -> None:
    ours, _peer = namespaces

    async def body() -> tuple[list[int], dict[str, int], dict[str, int], int, int]:
        dp = UserspaceDataplane(early_max_age=10.0)  # no expiry however slow CI is
        inside: socket.socket | None = None
        try:
            await _tunnel_with_an_sa(dp)
            inside = _inside_receiver()  # the inside address exists now
            new = dp.allocate_spi(SPEC.name)
            sender = OutboundSa(new, GCM, NEW_KEYS, udp_encap=True)
            _send(peer_sock, sender, range(10))
            # An SPI nobody reserved is still dropped at once.
            stranger = OutboundSa(new ^ 0x5A5A_0000, GCM, NEW_KEYS, udp_encap=True)
            _send(peer_sock, stranger, range(1000, 1003))
            await _until(
                lambda: (
                    dp.tunnel_counters(SPEC.name).early_held == 10
                    and dp.tunnel_counters(SPEC.name).drops.get("unknown_spi") == 3
                )
            )
            before = dict(dp.tunnel_counters(SPEC.name).drops)
            nothing_yet = await _received(inside, 0, timeout=0)
            assert nothing_yet == [], "a packet was delivered before its SA existed"
            await dp.add_sa(SaId(SPEC.name, "in", new), SaParams(GCM, NEW_KEYS, encap=UdpEncap()))
            _send(peer_sock, sender, range(10, 20))
            got = await _received(inside, 20)
            counters = dp.tunnel_counters(SPEC.name)
            packets = dp.sa_counters(SaId(SPEC.name, "in", new)).packets
            return got, before, counters.drops, counters.early_held, packets
        finally:
            if inside is not None:
                inside.close()
            await dp.close()

    got, before, drops, early_held, packets = run_async_in_netns(ours.name, body)
    assert before == {"unknown_spi": 3}
    assert got == list(range(20))
    assert drops == {"unknown_spi": 3}
    assert early_held == 10 and packets == 20


def test_held_packets_expire_overflow_and_die_with_their_released_spi(
    namespaces: tuple[Netns, Netns], peer_sock: socket.socket
) -> None:
    ours, _peer = namespaces

    async def body() -> tuple[dict[str, int], list[int], list[int], int]:
        dp = UserspaceDataplane(early_max_age=0.3)
        inside: socket.socket | None = None
        try:
            await _tunnel_with_an_sa(dp)
            inside = _inside_receiver()  # the inside address exists now
            spi_a, spi_b, spi_c = (dp.allocate_spi(SPEC.name) for _ in range(3))
            sender_a = OutboundSa(spi_a, GCM, NEW_KEYS, udp_encap=True)
            sender_b = OutboundSa(spi_b, GCM, NEW_KEYS, udp_encap=True)
            sender_c = OutboundSa(spi_c, GCM, NEW_KEYS, udp_encap=True)
            # A: held, then too old when its SA comes.
            _send(peer_sock, sender_a, range(3))
            # B: 40 small packets in well under 0.3 s; the queue keeps 32.
            _send(peer_sock, sender_b, range(100, 140))
            # C: held, then its SPI is released (the exchange failed).
            _send(peer_sock, sender_c, range(200, 202))
            await _until(lambda: dp.tunnel_counters(SPEC.name).early_held == 3 + 32 + 2)
            dp.release_spi(SPEC.name, spi_c)
            params = SaParams(GCM, NEW_KEYS, encap=UdpEncap())
            await dp.add_sa(SaId(SPEC.name, "in", spi_b), params)
            got_b = await _received(inside, 32)
            await asyncio.sleep(0.4)  # A's packets are now older than 0.3 s
            await dp.add_sa(SaId(SPEC.name, "in", spi_a), params)
            _send(peer_sock, sender_a, range(3, 5))  # A works once installed
            got_a = await _received(inside, 2)
            return (
                dp.tunnel_counters(SPEC.name).drops,
                got_b,
                got_a,
                dp.sa_counters(SaId(SPEC.name, "in", spi_a)).packets,
            )
        finally:
            if inside is not None:
                inside.close()
            await dp.close()

    drops, got_b, got_a, packets_a = run_async_in_netns(ours.name, body)
    assert drops == {"early_expired": 3, "early_overflow": 8, "early_released": 2}
    assert got_b == list(range(100, 132))
    assert got_a == [3, 4] and packets_a == 2


def test_with_holding_off_a_reserved_spi_is_an_unknown_spi(
    namespaces: tuple[Netns, Netns], peer_sock: socket.socket
) -> None:
    ours, _peer = namespaces

    async def body() -> dict[str, int]:
        dp = UserspaceDataplane(early_max_age=0)
        try:
            await _tunnel_with_an_sa(dp)
            new = dp.allocate_spi(SPEC.name)
            _send(peer_sock, OutboundSa(new, GCM, NEW_KEYS, udp_encap=True), range(4))
            await _until(lambda: dp.tunnel_counters(SPEC.name).drops.get("unknown_spi") == 4)
            return dp.tunnel_counters(SPEC.name).drops
        finally:
            await dp.close()

    assert run_async_in_netns(ours.name, body) == {"unknown_spi": 4}
