"""Route planning for failover/ECMP and the install-then-remove order, over the fake NetOps."""

from __future__ import annotations

from ipaddress import IPv4Address, IPv4Interface, ip_network

import pytest

from cgwd.net.base import MssClamp, NetOpsError, Nexthop, RouteSpec, check_interface_name
from cgwd.net.fake import FakeNetOps
from cgwd.net.routes import (
    TunnelRoutes,
    apply_route_changes,
    carrying_tunnels,
    diff_routes,
    plan_routes,
)

VPC = ip_network("10.99.0.0/16")
VPC2 = ip_network("10.98.0.0/16")


def tunnels(up1: bool, up2: bool) -> list[TunnelRoutes]:
    return [TunnelRoutes(1, "vpc01-t1", up1), TunnelRoutes(2, "vpc01-t2", up2)]


def route(dst: str, metric: int, *ifaces: str) -> RouteSpec:
    return RouteSpec(ip_network(dst), tuple(Nexthop(i) for i in ifaces), metric)


def test_prefer_1_with_both_up_puts_tunnel_1_first() -> None:
    plan = plan_routes([VPC, VPC2], tunnels(True, True), "prefer-1", metric=100)
    assert plan == [
        route("10.99.0.0/16", 100, "vpc01-t1"),
        route("10.99.0.0/16", 101, "vpc01-t2"),
        route("10.98.0.0/16", 100, "vpc01-t1"),
        route("10.98.0.0/16", 101, "vpc01-t2"),
    ]


def test_prefer_2_swaps_the_metrics() -> None:
    plan = plan_routes([VPC], tunnels(True, True), "prefer-2", metric=7)
    assert plan == [route("10.99.0.0/16", 8, "vpc01-t1"), route("10.99.0.0/16", 7, "vpc01-t2")]


def test_a_down_tunnel_contributes_no_route() -> None:
    assert plan_routes([VPC], tunnels(False, True), "prefer-1") == [
        route("10.99.0.0/16", 101, "vpc01-t2")
    ]
    assert plan_routes([VPC], tunnels(False, False), "prefer-1") == []
    assert plan_routes([VPC], tunnels(False, False), "ecmp") == []


def test_ecmp_is_one_multipath_route_that_shrinks_to_one_path() -> None:
    both = plan_routes([VPC], tunnels(True, True), "ecmp", metric=50)
    assert both == [route("10.99.0.0/16", 50, "vpc01-t1", "vpc01-t2")]
    assert both[0].multipath
    one = plan_routes([VPC], tunnels(True, False), "ecmp", metric=50)
    assert one == [route("10.99.0.0/16", 50, "vpc01-t1")]
    # Same key: the kernel replaces the multipath route in place.
    assert one[0].key == both[0].key


def test_duplicate_destinations_are_planned_once() -> None:
    assert len(plan_routes([VPC, VPC], tunnels(True, False), "prefer-1")) == 1


def test_plan_rejects_bad_input() -> None:
    with pytest.raises(NetOpsError):
        plan_routes([VPC], [TunnelRoutes(1, "a", True), TunnelRoutes(1, "b", True)], "ecmp")
    with pytest.raises(NetOpsError):
        plan_routes([VPC], tunnels(True, True), "prefer-1", metric=0xFFFFFFFF)


@pytest.mark.parametrize(
    ("up1", "up2", "preference", "expected"),
    [
        (True, True, "prefer-1", {1}),
        (True, True, "prefer-2", {2}),
        (False, True, "prefer-1", {2}),
        (True, False, "prefer-2", {1}),
        (True, True, "ecmp", {1, 2}),
        (False, False, "prefer-1", set()),
    ],
)
def test_carrying_tunnels(up1: bool, up2: bool, preference: str, expected: set[int]) -> None:
    assert carrying_tunnels(tunnels(up1, up2), preference) == expected  # type: ignore[arg-type]


def test_failover_and_failback_never_leave_the_destination_without_a_route() -> None:
    net = FakeNetOps()
    net.add_link("vpc01-t1")
    net.add_link("vpc01-t2")
    installed: list[RouteSpec] = []
    timeline = [(True, True), (False, True), (True, True), (True, False), (False, False)]
    for up1, up2 in timeline:
        desired = plan_routes([VPC], tunnels(up1, up2), "prefer-1")
        changes = diff_routes(installed, desired)
        before = len(net.operations)
        apply_route_changes(net, changes)
        ops = net.operations[before:]
        # Every install comes before every removal.
        kinds = [op.split()[0] for op in ops]
        assert kinds == sorted(kinds, key=lambda k: k != "replace")
        installed = desired
        assert sorted(net.list_routes(), key=lambda r: r.metric) == desired
    assert net.routes == {}


def test_diff_touches_only_what_changed() -> None:
    a = route("10.99.0.0/16", 100, "t1")
    b = route("10.99.0.0/16", 101, "t2")
    b_moved = route("10.99.0.0/16", 101, "t3")
    changes = diff_routes([a, b], [a, b_moved])
    assert changes.install == [b_moved]
    assert changes.remove == []  # same key: replaced, not removed
    changes = diff_routes([a, b], [b])
    assert changes.install == [] and changes.remove == [a]
    assert diff_routes([a], [a]).empty


def test_route_spec_validation() -> None:
    with pytest.raises(NetOpsError):
        RouteSpec(VPC, ())
    with pytest.raises(NetOpsError):
        RouteSpec(VPC, (Nexthop("t1"), Nexthop("t1")))
    with pytest.raises(NetOpsError):
        RouteSpec(VPC, (Nexthop("t1"),), metric=-1)
    with pytest.raises(NetOpsError):
        Nexthop("t1", weight=0)
    assert route("10.99.0.0/16", 5, "a", "b").describe() == "10.99.0.0/16 dev a+b metric 5"


@pytest.mark.parametrize("name", ["", "a" * 16, "a/b", "a b", "a:1", "..", "tab\t"])
def test_bad_interface_names_are_refused(name: str) -> None:
    with pytest.raises(NetOpsError):
        check_interface_name(name)


def test_mss_clamp_validation() -> None:
    assert MssClamp("t1", 1398).mss_ipv6 == 1378
    with pytest.raises(NetOpsError):
        MssClamp("t1", 535)
    with pytest.raises(NetOpsError):
        MssClamp("t1", 65496)


def test_fake_requires_links_and_checks_the_peer() -> None:
    net = FakeNetOps()
    with pytest.raises(NetOpsError):
        net.set_mtu("missing", 1400)
    net.add_link("t1")
    with pytest.raises(NetOpsError):
        net.set_address("t1", IPv4Interface("169.254.10.2/30"), IPv4Address("169.254.11.1"))
    net.set_address("t1", IPv4Interface("169.254.10.2/30"), IPv4Address("169.254.10.1"))
    net.replace_route(route("10.99.0.0/16", 1, "t1"))
    net.apply_mss_clamp([MssClamp("t1", 1398)])
    report = net.cleanup_leftovers()
    assert len(report.routes) == 1 and report.nft_table
    assert net.cleanup_leftovers().empty
