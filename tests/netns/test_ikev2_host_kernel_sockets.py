"""The IKE host prepares its sockets for the kernel dataplane (`needs_ike_socket_bypass`).

In a namespace whose SPD has 0/0 policies blocking everything in and out (what a tunnel's
0/0 policies amount to while no SA exists), the host's IKE traffic must still pass both
ways, and the NAT-T socket must carry UDP_ENCAP_ESPINUDP (read back with getsockopt; the
kernel has no getsockopt for IP_XFRM_POLICY, so the bypass is shown by traffic). The same
host with a dataplane that does not need the bypass is the control: blocked both ways.
The peer is a plain UDP socket in a second namespace without policies.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from ipaddress import IPv4Address

import pytest

from cgwd.config.aws import AwsTunnel, DeadPeerDetection, PhaseSettings
from cgwd.config.proposals import proposals_for
from cgwd.dataplane.fake import FakeDataplane
from cgwd.esp.natt import NON_ESP_MARKER
from cgwd.ike.clock import MonotonicClock
from cgwd.ike.constants import ExchangeType, ProtocolId
from cgwd.ike.host import IkeHost
from cgwd.ike.rng import SystemRng
from cgwd.ike.v2.message import decode_header
from cgwd.ike.v2.sa import IkeSessionConfig
from cgwd.ike.v2.session import IkeSession
from cgwd.ike.v2.wire import proposals_from_config
from cgwd.lab.netns import Netns, Topology
from cgwd.secret import Secret

try:
    from tests.conftest import require_root
    from tests.dataplane_netns import run_async_in_netns, run_in_netns
except ImportError:  # pragma: no cover - depends on how pytest was started
    from conftest import require_root  # type: ignore[no-redef]
    from dataplane_netns import run_async_in_netns, run_in_netns  # type: ignore[no-redef]

pytestmark = pytest.mark.netns

CGW, PEER = "192.0.2.1", "192.0.2.2"
SOL_UDP = 17  # <netinet/in.h>, spelled out rather than taken from the code under test
UDP_ENCAP = 100  # <linux/udp.h>
ESPINUDP = 2  # UDP_ENCAP_ESPINUDP, <linux/udp.h>


class KernelLikeDataplane(FakeDataplane):
    """The fake, claiming (or not) the kernel dataplane's need for prepared IKE sockets."""

    def __init__(self, needs_bypass: bool) -> None:
        super().__init__()
        self.needs_ike_socket_bypass = needs_bypass


@dataclass
class Outcome:
    encap: dict[int, int]  # port -> UDP_ENCAP read back
    request_seen_by_peer: bytes | None
    received_by_host: int


@pytest.fixture
def namespaces() -> Iterator[tuple[Netns, Netns]]:
    require_root()
    with Topology() as topo:
        cgw, peer = topo.add_netns("ka"), topo.add_netns("kb")
        topo.link(cgw, "out0", peer, "out0")
        cgw.ip("addr", "add", f"{CGW}/24", "dev", "out0")
        peer.ip("addr", "add", f"{PEER}/24", "dev", "out0")
        zero = ["src", "0.0.0.0/0", "dst", "0.0.0.0/0"]
        for direction in ("in", "out"):
            cgw.run("ip", "xfrm", "policy", "add", *zero, "dir", direction, "action", "block")
        yield cgw, peer


def _config() -> IkeSessionConfig:
    tunnel = AwsTunnel(
        index=1,
        customer_gateway_outside_ip=IPv4Address(CGW),
        vpn_gateway_outside_ip=IPv4Address(PEER),
        customer_gateway_inside_ip=IPv4Address("169.254.10.2"),
        vpn_gateway_inside_ip=IPv4Address("169.254.10.1"),
        inside_cidr=None,
        pre_shared_key=Secret("socket_test_psk"),
        ike_version="ikev2",
        phase1=PhaseSettings((), (), ()),
        phase2=PhaseSettings((), (), ()),
        dpd=DeadPeerDetection(),
    )
    ps = proposals_for(tunnel, "ikev2")
    return IkeSessionConfig(
        tunnel="t1",
        local_address=IPv4Address(CGW),
        remote_address=IPv4Address(PEER),
        psk=Secret("socket_test_psk"),
        ike_proposals=proposals_from_config(ps.ike, ProtocolId.IKE),
        esp_proposals=proposals_from_config(ps.esp, ProtocolId.ESP),
    )


def _peer_sockets(peer: Netns) -> tuple[socket.socket, socket.socket]:
    def make() -> tuple[socket.socket, socket.socket]:
        socks = []
        for port in (500, 4500):
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            s.bind((PEER, port))
            s.settimeout(1.0)
            socks.append(s)
        return socks[0], socks[1]

    return run_in_netns(peer.name, make)


def _run_host(cgw: Netns, peer: Netns, *, needs_bypass: bool) -> Outcome:
    p500, p4500 = _peer_sockets(peer)  # they stay in the peer's namespace

    async def scenario() -> Outcome:
        dp = KernelLikeDataplane(needs_bypass)
        clock = MonotonicClock()
        host = IkeHost(dp, clock, IPv4Address(CGW))
        await host.start()
        try:
            encap = {
                port: t.get_extra_info("socket").getsockopt(SOL_UDP, UDP_ENCAP)
                for port, t in host._transports.items()
            }
            session = IkeSession(_config(), SystemRng(), lambda: 0x1000, clock.now())
            host.add_session(session)
            host.initiate(session)

            def receive() -> bytes | None:
                try:
                    return p500.recv(65535)
                except TimeoutError:
                    return None

            seen = await asyncio.get_running_loop().run_in_executor(None, receive)
            before = host.counters.received
            p500.sendto(b"not really IKE", (CGW, 500))
            p4500.sendto(NON_ESP_MARKER + b"not really IKE either", (CGW, 4500))
            await asyncio.sleep(0.3)
            return Outcome(encap, seen, host.counters.received - before)
        finally:
            await host.close(delete=False)

    try:
        return run_async_in_netns(cgw.name, scenario)
    finally:
        p500.close()
        p4500.close()


def test_kernel_dataplane_host_sockets_bypass_ipsec_and_take_esp_in_udp(
    namespaces: tuple[Netns, Netns],
) -> None:
    cgw, peer = namespaces
    out = _run_host(cgw, peer, needs_bypass=True)
    assert out.encap == {500: 0, 4500: ESPINUDP}
    assert out.request_seen_by_peer is not None
    assert decode_header(out.request_seen_by_peer).exchange_type == ExchangeType.IKE_SA_INIT
    assert out.received_by_host == 2


def test_without_the_capability_the_sockets_are_left_alone(
    namespaces: tuple[Netns, Netns],
) -> None:
    """The control: the 0/0 block policies do catch an unprepared socket both ways."""
    cgw, peer = namespaces
    out = _run_host(cgw, peer, needs_bypass=False)
    assert out.encap == {500: 0, 4500: 0}
    assert out.request_seen_by_peer is None
    assert out.received_by_host == 0
