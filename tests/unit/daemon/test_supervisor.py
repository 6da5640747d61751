"""The daemon's decisions, without I/O: tunnel state, interface settings, routes, and the
session timing derived from a tunnel's plan."""

from __future__ import annotations

import sys
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/unit: config_fixtures
from config_fixtures import connection

from cgwd.config.model import ConnectionConfig, DaemonConfig
from cgwd.config.tunnel_plan import ConnectionPlan, DpdPlan, plan_connection
from cgwd.daemon.sessions import (
    dpd_retransmit,
    exchange_retransmit,
    ikev1_config,
    ikev2_config,
    reconnect_backoff,
)
from cgwd.daemon.supervisor import (
    active_tunnels,
    desired_routes,
    interface_settings,
    tunnel_state,
)
from cgwd.esp.suites import suite_by_name
from cgwd.ike.retransmit import DEFAULT_POLICY
from cgwd.net.base import Nexthop, RouteSpec

VPC = IPv4Network("10.99.0.0/16")
T1, T2 = "vpc01-t1", "vpc01-t2"
GW1, GW2 = IPv4Address("169.254.141.37"), IPv4Address("169.254.27.181")


def plan(**conn: Any) -> ConnectionPlan:
    settings: dict[str, Any] = {"name": "vpc01", "aws_config": Path("/x.txt"), "routes": [VPC]}
    settings.update(conn)
    return plan_connection(ConnectionConfig(**settings), connection(), DaemonConfig())


@pytest.mark.parametrize(
    ("phase2", "wanted", "state"),
    [
        ("Established", True, "up"),
        ("Rekeying", True, "up"),
        ("Established", False, "up"),  # terminate in progress: still carrying until gone
        ("Negotiating", True, "connecting"),
        ("Down", True, "connecting"),  # waiting for the next attempt
        ("Down", False, "down"),
        ("Negotiating", False, "down"),
    ],
)
def test_tunnel_state(phase2: str, wanted: bool, state: str) -> None:
    assert tunnel_state(phase2, wanted) == state


def test_interface_settings_follow_the_negotiated_suite() -> None:
    t = plan().tunnels[0]
    before = interface_settings(t, None, None)
    assert (before.mtu, before.mss) == (t.mtu, t.mss)
    # AWS's table (aws-behaviour §8): GCM 1446/1406, with NAT-T 1438/1398; CBC+SHA1 1438/1398,
    # with NAT-T 1422/1382.
    gcm = suite_by_name("aes128gcm16")
    cbc = suite_by_name("aes128-sha1")
    assert interface_settings(t, gcm, False).mtu == 1446
    assert interface_settings(t, gcm, True).mss == 1398
    assert (interface_settings(t, cbc, True).mtu, interface_settings(t, cbc, True).mss) == (
        1422,
        1382,
    )
    fixed = plan(mtu=1300, mss=1200).tunnels[0]
    s = interface_settings(fixed, gcm, False)
    assert (s.mtu, s.mss) == (1300, 1200)


def route(dev: str, gw: IPv4Address, metric: int) -> RouteSpec:
    return RouteSpec(VPC, (Nexthop(dev, gw),), metric)


def test_routes_prefer_1_fail_over_and_back() -> None:
    p = plan()
    assert desired_routes(p, [True, True]) == [route(T1, GW1, 100), route(T2, GW2, 101)]
    assert active_tunnels(p, [True, True]) == {1}
    assert desired_routes(p, [False, True]) == [route(T2, GW2, 101)]
    assert active_tunnels(p, [False, True]) == {2}
    assert desired_routes(p, [True, False]) == [route(T1, GW1, 100)]
    assert desired_routes(p, [False, False]) == []
    assert active_tunnels(p, [False, False]) == set()


def test_routes_prefer_2_and_metric() -> None:
    p = plan(tunnel_preference="prefer-2", route_metric=20)
    assert desired_routes(p, [True, True]) == [route(T1, GW1, 21), route(T2, GW2, 20)]
    assert active_tunnels(p, [True, True]) == {2}


def test_routes_ecmp_one_multipath_route() -> None:
    p = plan(tunnel_preference="ecmp")
    both = RouteSpec(VPC, (Nexthop(T1, GW1), Nexthop(T2, GW2)), 100)
    assert desired_routes(p, [True, True]) == [both]
    assert active_tunnels(p, [True, True]) == {1, 2}
    assert desired_routes(p, [False, True]) == [route(T2, GW2, 100)]


def test_no_routes_no_active_tunnel() -> None:
    p = plan(routes=[])  # a BGP connection: FRR routes over the inside addresses
    assert desired_routes(p, [True, True]) == []
    assert active_tunnels(p, [True, True]) == set()


def test_dpd_timing_matches_the_plan() -> None:
    aws = DpdPlan(10, 3, "default")
    policy = dpd_retransmit(aws)
    # AWS's DPD: probe after 10 s of silence, again 10 s later, dead at 30 s of silence.
    assert [policy.interval(n) for n in (1, 2)] == [10.0, 10.0]
    assert 10 + policy.total_time() == 30.0
    assert policy.gives_up_after(2) and not policy.gives_up_after(1)
    # Retransmits: the engines' schedule, capped at half the DPD timeout.
    retransmit = exchange_retransmit(aws)
    assert [retransmit.interval(n) for n in range(1, 7)] == [2.0, 4.0, 8.0, 15.0, 15.0, 15.0]
    assert retransmit.tries == DEFAULT_POLICY.tries
    assert reconnect_backoff(aws).cap == 60.0
    short = DpdPlan(2, 2, "test")
    assert exchange_retransmit(short).max_interval == 2.0
    assert reconnect_backoff(short).cap == 8.0
    assert 2 + dpd_retransmit(short).total_time() == 4.0  # dead after 4 s of silence
    assert 5 + dpd_retransmit(DpdPlan(5, 1, "one")).total_time() == 10.0  # at least 2 x 5


def test_session_configs_carry_the_plan() -> None:
    t = plan(dpd_interval=5, dpd_retries=4, phase2_lifetime=1800).tunnels[1]
    local = IPv4Address("192.0.2.117")
    v2 = ikev2_config(t, local)
    assert (v2.tunnel, v2.remote_address, v2.local_address) == (T2, t.remote_address, local)
    assert v2.local_id == IPv4Address("198.51.100.92")  # the file's customer gateway IP
    assert v2.psk == t.psk and v2.dpd_delay == 5.0 and v2.child_lifetime == 1800.0
    assert 5 + v2.dpd_retransmit.total_time() == 20.0  # dead after 5 x 4 s of silence
    # Every rekey the engine may draw lies in the plan's window, before AWS may rekey.
    for window, rekey in ((t.phase1, v2.ike_rekey_time), (t.phase2, v2.child_rekey_time)):
        assert rekey == window.rekey_max
        earliest = rekey * (1 - v2.rekey_jitter)
        assert earliest <= window.rekey_min + 1e-9
        assert rekey < window.aws_earliest
    assert v2.replay_window == 1024 and not v2.force_encap
    forced = ikev2_config(plan(nat_traversal="force").tunnels[0], local)
    assert forced.force_encap
    v1 = ikev1_config(t, local)
    assert (v1.ike_lifetime, v1.child_lifetime) == (28800, 1800)
    assert v1.phase1_suites and v1.esp_suites and v1.pfs_groups


def test_in_place_update_reaches_the_session_policy() -> None:
    from types import SimpleNamespace  # noqa: PLC0415

    from cgwd.daemon.supervisor import TunnelSupervisor  # noqa: PLC0415

    old, new = plan().tunnels[0], plan(dpd_interval=7, dpd_retries=5).tunnels[0]
    for make in (ikev2_config, ikev1_config):
        session = SimpleNamespace(config=make(old, IPv4Address("192.0.2.117")))
        sup = TunnelSupervisor(old, session)  # type: ignore[arg-type]
        sup.set_plan(new)
        cfg = session.config
        assert sup.plan is new and cfg.dpd_delay == 7.0
        assert 7 + cfg.dpd_retransmit.total_time() == 35.0
        assert cfg.psk == old.psk and cfg.tunnel == old.interface  # what needs new SAs stays
