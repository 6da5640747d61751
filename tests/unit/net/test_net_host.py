"""HostNetwork bookkeeping over the fake NetOps: clamps, per-connection routes, shutdown."""

from __future__ import annotations

from ipaddress import IPv4Address, IPv4Interface, ip_network

import pytest

from cgwd.net.base import MssClamp, NetOpsError, Nexthop, RouteSpec
from cgwd.net.fake import FakeNetOps
from cgwd.net.host import HostNetwork, TunnelInterface
from cgwd.net.routes import TunnelRoutes, plan_routes

VPC = ip_network("10.99.0.0/16")


def tunnel(name: str, third: int, mss: int = 1398) -> TunnelInterface:
    return TunnelInterface(
        name,
        IPv4Interface(f"169.254.{third}.2/30"),
        IPv4Address(f"169.254.{third}.1"),
        mtu=mss + 40,
        mss=mss,
    )


@pytest.fixture
def host() -> HostNetwork:
    fake = FakeNetOps()
    for name in ("a-t1", "a-t2", "b-t1"):
        fake.add_link(name)
    return HostNetwork(fake)


def fake(host: HostNetwork) -> FakeNetOps:
    assert isinstance(host.netops, FakeNetOps)
    return host.netops


def test_configure_tunnel_sets_everything_and_the_clamp(host: HostNetwork) -> None:
    host.configure_tunnel(tunnel("a-t1", 10))
    host.configure_tunnel(tunnel("a-t2", 11, mss=1382))
    link = fake(host).links["a-t1"]
    assert (link.address, link.mtu, link.up, link.rp_filter) == (
        (IPv4Interface("169.254.10.2/30"), IPv4Address("169.254.10.1")),
        1438,
        True,
        2,
    )
    assert fake(host).clamps == (MssClamp("a-t1", 1398), MssClamp("a-t2", 1382))
    # Reconfiguring with the same settings does not rewrite the nft table.
    applied = fake(host).operations.count("mss_clamp a-t1=1398,a-t2=1382")
    host.configure_tunnel(tunnel("a-t1", 10))
    assert fake(host).operations.count("mss_clamp a-t1=1398,a-t2=1382") == applied
    host.configure_tunnel(tunnel("a-t1", 10, mss=1300))
    assert fake(host).clamps == (MssClamp("a-t1", 1300), MssClamp("a-t2", 1382))


def test_routes_per_connection_and_failover(host: HostNetwork) -> None:
    both = plan_routes(
        [VPC], [TunnelRoutes(1, "a-t1", True), TunnelRoutes(2, "a-t2", True)], "prefer-1"
    )
    host.set_routes("a", both)
    assert sorted(fake(host).list_routes(), key=lambda r: r.metric) == both
    one = plan_routes(
        [VPC], [TunnelRoutes(1, "a-t1", False), TunnelRoutes(2, "a-t2", True)], "prefer-1"
    )
    changes = host.set_routes("a", one)
    assert changes.install == [] and changes.remove == [both[0]]
    assert host.routes("a") == one
    # Another connection may not take the same key.
    with pytest.raises(NetOpsError, match="collides"):
        host.set_routes("b", [RouteSpec(VPC, (Nexthop("b-t1"),), 101)])
    host.set_routes("b", [RouteSpec(ip_network("10.98.0.0/16"), (Nexthop("b-t1"),), 100)])
    assert len(fake(host).list_routes()) == 2


def test_release_tunnel_drops_its_routes_and_clamp(host: HostNetwork) -> None:
    host.configure_tunnel(tunnel("a-t1", 10))
    host.configure_tunnel(tunnel("a-t2", 11))
    ecmp = RouteSpec(VPC, (Nexthop("a-t1"), Nexthop("a-t2")), 100)
    only_t1 = RouteSpec(ip_network("10.97.0.0/16"), (Nexthop("a-t1"),), 100)
    host.set_routes("a", [ecmp, only_t1])
    host.release_tunnel("a-t1")
    assert host.routes("a") == []
    assert fake(host).list_routes() == []
    assert fake(host).clamps == (MssClamp("a-t2", 1398),)


def test_shutdown_removes_everything(host: HostNetwork) -> None:
    host.configure_tunnel(tunnel("a-t1", 10))
    host.set_routes("a", [RouteSpec(VPC, (Nexthop("a-t1"),), 100)])
    host.shutdown()
    assert fake(host).list_routes() == [] and fake(host).clamps is None
    assert fake(host).closed


def test_start_cleans_leftovers_and_reports_forwarding(host: HostNetwork) -> None:
    fake(host).replace_route(RouteSpec(VPC, (Nexthop("a-t1"),), 100))
    fake(host).apply_mss_clamp([MssClamp("a-t1", 1398)])
    report, forwarding = host.start()
    assert len(report.routes) == 1 and report.nft_table
    assert forwarding.ipv4


def test_a_refused_change_keeps_the_bookkeeping_true(host: HostNetwork) -> None:
    good = RouteSpec(VPC, (Nexthop("a-t1"),), 100)
    missing = RouteSpec(ip_network("10.98.0.0/16"), (Nexthop("gone0"),), 100)
    with pytest.raises(NetOpsError, match="gone0"):
        host.set_routes("a", [good, missing])
    assert host.routes("a") == [good]
    host.set_routes("a", [])
    assert fake(host).list_routes() == []
