"""PyrouteNetOps against a real kernel, inside namespaces this module creates.

Topology (one per module)::

    client ns "c"             router ns "r" (NetOps under test)          server ns "s"
    lan0 192.0.2.10/24 -- lan0 192.0.2.1/24
                              t1 169.254.10.2/30 peer .1  -- t1p 169.254.10.1/30
                              t2 169.254.11.2/30 peer .1  -- t2p 169.254.11.1/30
                                                               lo 10.99.0.10/32

The two veth links stand in for the two tunnels. Every check reads the kernel's state with
``ip -j``, ``sysctl`` or ``nft -j`` (independent of the code under test), and the MSS clamp
is observed with tcpdump on real forwarded SYNs.
"""

from __future__ import annotations

import asyncio
import json
import re
import select
import subprocess
import sys
import time
from collections.abc import Iterator
from ipaddress import IPv4Address, IPv4Interface, IPv6Address, ip_network
from typing import Any

import pytest
from conftest import require, require_root

from cgwd.lab.netns import Netns, Topology
from cgwd.net.base import RTPROT_CGWD, MssClamp, NetOps, NetOpsError, Nexthop, RouteSpec
from cgwd.net.fake import FakeNetOps
from cgwd.net.host import HostNetwork, TunnelInterface
from cgwd.net.nft import Nft, mss_clamp_document
from cgwd.net.pyroute import PyrouteNetOps
from cgwd.net.routes import TunnelRoutes, plan_routes

pytestmark = pytest.mark.netns

VPC = ip_network("10.99.0.0/16")
SERVER = "10.99.0.10"
VPC6 = ip_network("2001:db8:99::/64")
SERVER6 = "2001:db8:99::10"
PORT = 5001


class Lab:
    def __init__(self, topo: Topology) -> None:
        self.topo = topo
        self.c = topo.add_netns("c")
        self.r = topo.add_netns("r")
        self.s = topo.add_netns("s")
        topo.link(self.c, "lan0", self.r, "lan0")
        topo.link(self.r, "t1", self.s, "t1p")
        topo.link(self.r, "t2", self.s, "t2p")
        self.c.ip("addr", "add", "192.0.2.10/24", "dev", "lan0")
        self.c.ip("route", "add", "default", "via", "192.0.2.1")
        self.r.ip("addr", "add", "192.0.2.1/24", "dev", "lan0")
        self.r.sysctl("net.ipv4.ip_forward", "1")
        self.s.ip("addr", "add", "169.254.10.1/30", "dev", "t1p")
        self.s.ip("addr", "add", "169.254.11.1/30", "dev", "t2p")
        self.s.ip("addr", "add", f"{SERVER}/32", "dev", "lo")
        self.s.ip("route", "add", "192.0.2.0/24", "via", "169.254.10.2")
        # IPv6 too, to see the IPv6 clamp (nodad: usable at once).
        self.r.sysctl("net.ipv6.conf.all.forwarding", "1")
        self.c.ip("addr", "add", "2001:db8:1::10/64", "dev", "lan0", "nodad")
        self.c.ip("-6", "route", "add", "default", "via", "2001:db8:1::1")
        self.r.ip("addr", "add", "2001:db8:1::1/64", "dev", "lan0", "nodad")
        self.s.ip("addr", "add", "fd00:10::1/64", "dev", "t1p", "nodad")
        self.s.ip("addr", "add", f"{SERVER6}/128", "dev", "lo")
        self.s.ip("-6", "route", "add", "2001:db8:1::/64", "via", "fd00:10::2")
        self.net = PyrouteNetOps(self.r.name)
        self.net.set_address("t1", IPv4Interface("169.254.10.2/30"), IPv4Address("169.254.10.1"))
        self.net.set_address("t2", IPv4Interface("169.254.11.2/30"), IPv4Address("169.254.11.1"))


@pytest.fixture(scope="module")
def lab() -> Iterator[Lab]:
    require_root()
    topo = Topology()
    try:
        built = Lab(topo)
        yield built
        built.net.close()
    finally:
        topo.close()


def ip_json(ns: Netns, *args: str) -> Any:
    return json.loads(ns.run("ip", "-j", *args).stdout or "[]")


def cgwd_routes(ns: Netns) -> list[dict[str, Any]]:
    return [
        r
        for r in ip_json(ns, "route", "show", "table", "all")
        if r.get("protocol") == str(RTPROT_CGWD)
    ]


def test_address_mtu_and_link_state(lab: Lab) -> None:
    lab.net.set_mtu("t1", 1446)
    lab.net.set_link_up("t1", False)
    (link,) = ip_json(lab.r, "link", "show", "dev", "t1")
    assert link["mtu"] == 1446 and "UP" not in link["flags"]
    lab.net.set_link_up("t1", True)
    (link,) = ip_json(lab.r, "addr", "show", "dev", "t1")
    assert "UP" in link["flags"]
    inet = [a for a in link["addr_info"] if a["family"] == "inet"]
    assert [(a["local"], a.get("address"), a["prefixlen"]) for a in inet] == [
        ("169.254.10.2", "169.254.10.1", 30)
    ]
    # A new address replaces the old one; setting it again changes nothing.
    lab.net.set_address("t1", IPv4Interface("169.254.20.2/30"), IPv4Address("169.254.20.1"))
    lab.net.set_address("t1", IPv4Interface("169.254.10.2/30"), IPv4Address("169.254.10.1"))
    lab.net.set_address("t1", IPv4Interface("169.254.10.2/30"), IPv4Address("169.254.10.1"))
    (link,) = ip_json(lab.r, "addr", "show", "dev", "t1")
    assert [a["local"] for a in link["addr_info"] if a["family"] == "inet"] == ["169.254.10.2"]
    lab.net.set_mtu("t1", 1500)


def test_errors_name_the_object(lab: Lab) -> None:
    with pytest.raises(NetOpsError, match="interface nope0 does not exist"):
        lab.net.set_mtu("nope0", 1400)
    with pytest.raises(NetOpsError, match="MTU 70000 on t1"):
        lab.net.set_mtu("t1", 70000)
    with pytest.raises(NetOpsError, match="nope0"):
        lab.net.replace_route(RouteSpec(VPC, (Nexthop("nope0"),)))
    with pytest.raises(NetOpsError, match="namespace"):
        PyrouteNetOps(lab.topo.prefix + "-absent")


def test_routes_with_metrics_appear_and_are_withdrawn(lab: Lab) -> None:
    t1, t2 = TunnelRoutes(1, "t1", True), TunnelRoutes(2, "t2", True)
    plan = plan_routes([VPC], [t1, t2], "prefer-1", metric=100)
    for route in plan:
        lab.net.replace_route(route)
    seen = {(r["dst"], r["dev"], r["metric"]) for r in cgwd_routes(lab.r)}
    assert seen == {("10.99.0.0/16", "t1", 100), ("10.99.0.0/16", "t2", 101)}
    assert sorted(lab.net.list_routes(), key=lambda r: r.metric) == plan
    (chosen,) = ip_json(lab.r, "route", "get", SERVER)
    assert chosen["dev"] == "t1"
    # Tunnel 1 goes down: its route is withdrawn and traffic moves to tunnel 2.
    lab.net.delete_route(plan[0])
    lab.net.delete_route(plan[0])  # absent: not an error
    (chosen,) = ip_json(lab.r, "route", "get", SERVER)
    assert chosen["dev"] == "t2"
    lab.net.delete_route(plan[1])
    assert cgwd_routes(lab.r) == []


def test_ecmp_multipath_route(lab: Lab) -> None:
    both = RouteSpec(VPC, (Nexthop("t1"), Nexthop("t2", IPv4Address("169.254.11.1"), 3)), 50)
    lab.net.replace_route(both)
    (route,) = cgwd_routes(lab.r)
    hops = {(h["dev"], h.get("gateway"), h["weight"]) for h in route["nexthops"]}
    assert hops == {("t1", None, 1), ("t2", "169.254.11.1", 3)}
    assert lab.net.list_routes() == [both]
    one = RouteSpec(VPC, (Nexthop("t2"),), 50)
    lab.net.replace_route(one)  # same key: replaced in place
    (route,) = cgwd_routes(lab.r)
    assert route["dev"] == "t2" and "nexthops" not in route
    lab.net.delete_route(one)
    assert cgwd_routes(lab.r) == []


def test_rp_filter_and_forwarding(lab: Lab) -> None:
    lab.r.sysctl("net.ipv4.conf.t1.rp_filter", "1")
    lab.net.set_rp_filter("t1")
    assert lab.r.run("sysctl", "-n", "net.ipv4.conf.t1.rp_filter").stdout.strip() == "2"
    assert lab.net.rp_filter("t1") == 2
    with pytest.raises(NetOpsError, match="nope0"):
        lab.net.set_rp_filter("nope0")
    assert lab.net.forwarding().ipv4
    lab.r.sysctl("net.ipv4.ip_forward", "0")
    try:
        assert not lab.net.forwarding().ipv4
    finally:
        lab.r.sysctl("net.ipv4.ip_forward", "1")


def nft_rules(ns: Netns) -> list[dict[str, Any]]:
    listing = json.loads(ns.run("nft", "-j", "list", "table", "inet", "cgwd").stdout)
    return [item["rule"] for item in listing["nftables"] if "rule" in item]


def test_nft_document_checks_applies_and_is_idempotent(lab: Lab) -> None:
    clamps = [MssClamp("t1", 1398), MssClamp("t2", 1382)]
    Nft(lab.r.name).apply(mss_clamp_document(clamps), check_only=True)
    assert not Nft(lab.r.name).table_exists()  # -c changed nothing
    lab.net.apply_mss_clamp(clamps)
    lab.net.apply_mss_clamp(clamps)
    assert len(nft_rules(lab.r)) == 8
    tables = json.loads(lab.r.run("nft", "-j", "list", "tables").stdout)["nftables"]
    assert [t["table"]["name"] for t in tables if "table" in t] == ["cgwd"]
    lab.net.apply_mss_clamp(clamps[:1])
    assert len(nft_rules(lab.r)) == 4
    lab.net.remove_mss_clamp()
    lab.net.remove_mss_clamp()  # absent: not an error
    assert not Nft(lab.r.name).table_exists()


def test_family_probe_finds_this_kernels_families_and_changes_nothing(lab: Lab) -> None:
    nft = Nft(lab.r.name)
    # This kernel has them all (checked with nft itself, not with the code under test).
    for family in ("inet", "ip", "ip6"):
        assert lab.r.run("nft", "-c", "add", "table", family, "cgwd").returncode == 0
        assert nft.family_supported(family)
    tables = json.loads(lab.r.run("nft", "-j", "list", "tables").stdout)["nftables"]
    assert [t for t in tables if "table" in t] == []  # the probes were check-only
    assert nft.remove_table() is False  # nothing to remove: not an error


# SYN and SYN-ACK only: IPv4 has a TCP flags shorthand; for IPv6 (no extension headers
# here) the flags are byte 13 of the TCP header after the 40-byte IPv6 header.
SYN_FILTER = {4: "tcp[tcpflags] & tcp-syn != 0", 6: "ip6 and tcp and ip6[53] & 2 != 0"}


def _start_capture(ns: Netns, interface: str, version: int) -> subprocess.Popen[bytes]:
    proc = ns.popen(
        "tcpdump", "-i", interface, "-nn", "-l", "-c", "2", "--immediate-mode",
        SYN_FILTER[version],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    assert proc.stderr is not None
    deadline = time.monotonic() + 10
    seen = b""
    while b"listening on" not in seen and time.monotonic() < deadline:
        ready, _, _ = select.select([proc.stderr], [], [], 0.2)
        if ready:
            seen += proc.stderr.read1(4096)
    assert b"listening on" in seen, seen
    return proc


def _syn_mss(proc: subprocess.Popen[bytes]) -> dict[str, int]:
    """{"S": mss of the SYN, "S.": mss of the SYN-ACK} from a finished tcpdump."""
    out, _ = proc.communicate(timeout=10)
    found = {}
    for line in out.decode().splitlines():
        m = re.search(r"Flags \[(S\.?)\].*options \[mss (\d+)", line)
        if m:
            found[m.group(1)] = int(m.group(2))
    return found


def _connect(lab: Lab, client_mss: int | None, version: int) -> None:
    family = "socket.AF_INET" if version == 4 else "socket.AF_INET6"
    address = SERVER if version == 4 else SERVER6
    server = lab.s.popen(
        sys.executable, "-c",
        f"import socket; s = socket.socket({family});"
        "s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1);"
        f"s.bind(('{address}', {PORT})); s.listen(); print('ok', flush=True);"
        "s.settimeout(10); c, _ = s.accept(); c.close()",
        stdout=subprocess.PIPE,
    )  # fmt: skip
    try:
        assert server.stdout is not None and server.stdout.readline().strip() == b"ok"
        setmss = f"s.setsockopt(socket.IPPROTO_TCP, socket.TCP_MAXSEG, {client_mss});"
        lab.c.run(
            sys.executable, "-c",
            f"import socket; s = socket.socket({family});" + (setmss if client_mss else "")
            + f"s.settimeout(5); s.connect(('{address}', {PORT})); s.close()",
        )  # fmt: skip
        server.wait(timeout=10)
    finally:
        server.kill()
        server.wait()


@pytest.mark.parametrize(
    ("version", "client_mss", "clamp"),
    [(4, None, 1398), (4, 1200, 1398), (6, None, 1378), (6, 1200, 1378)],
)
def test_forwarded_syns_get_their_mss_clamped_both_ways(
    lab: Lab, version: int, client_mss: int | None, clamp: int
) -> None:
    require(
        lab.r.run("which", "tcpdump", check=False).returncode == 0, "needs tcpdump (Debian tcpdump)"
    )
    route = (
        RouteSpec(VPC, (Nexthop("t1"),), 100)
        if version == 4
        else RouteSpec(VPC6, (Nexthop("t1", IPv6Address("fd00:10::1")),), 100)
    )
    # (here, not in Lab: taking t1 down in another test drops its IPv6 addresses)
    lab.r.ip("addr", "replace", "fd00:10::2/64", "dev", "t1", "nodad")
    lab.net.replace_route(route)
    lab.net.apply_mss_clamp([MssClamp("t1", 1398), MssClamp("t2", 1382)])
    try:
        # Resolve neighbours first (IPv6 waits for link-local DAD): a SYN retransmitted
        # meanwhile would take the SYN-ACK's place in the two-packet captures.
        lab.c.run("ping", f"-{version}", "-c", "1", "-w", "10", SERVER if version == 4 else SERVER6)
        at_server = _start_capture(lab.s, "t1p", version)
        at_client = _start_capture(lab.c, "lan0", version)
        _connect(lab, client_mss, version)
        server_view, client_view = _syn_mss(at_server), _syn_mss(at_client)
    finally:
        lab.net.remove_mss_clamp()
        lab.net.delete_route(route)
    # Unclamped MSS on a 1500-byte veth: 1460 (IPv4), 1440 (IPv6); a smaller one stays.
    unclamped = 1460 if version == 4 else 1440
    sent = unclamped if client_mss is None else client_mss
    assert client_view["S"] == sent
    assert server_view["S"] == min(sent, clamp)  # clamped going into the tunnel
    assert server_view["S."] == unclamped
    assert client_view["S."] == clamp  # clamped coming out of the tunnel


def test_cleanup_removes_only_what_cgwd_owns(lab: Lab) -> None:
    lab.net.replace_route(RouteSpec(VPC, (Nexthop("t1"),), 100))
    lab.net.replace_route(RouteSpec(ip_network("10.98.0.0/16"), (Nexthop("t1"), Nexthop("t2")), 5))
    lab.net.replace_route(RouteSpec(ip_network("10.97.0.0/16"), (Nexthop("t2"),), 9, table=100))
    lab.net.apply_mss_clamp([MssClamp("t1", 1398)])
    lab.r.ip("route", "add", "10.50.0.0/16", "dev", "t1", "proto", "static")
    try:
        # A fresh instance, as after a crash and restart.
        fresh = PyrouteNetOps(lab.r.name)
        try:
            report = fresh.cleanup_leftovers()
        finally:
            fresh.close()
        assert len(report.routes) == 3 and report.nft_table
        assert cgwd_routes(lab.r) == []
        assert not Nft(lab.r.name).table_exists()
        static = ip_json(lab.r, "route", "show", "10.50.0.0/16")
        assert [r["dst"] for r in static] == ["10.50.0.0/16"]
    finally:
        lab.r.ip("route", "del", "10.50.0.0/16", "dev", "t1", check=False)


# -- one contract, two implementations ---------------------------------------------------------


@pytest.fixture(scope="module")
def kernel_pair() -> Iterator[PyrouteNetOps]:
    require_root()
    topo = Topology()
    try:
        k = topo.add_netns("k")
        peer = topo.add_netns("kp")
        topo.link(k, "x1", peer, "y1")
        topo.link(k, "x2", peer, "y2")
        net = PyrouteNetOps(k.name)
        yield net
        net.close()
    finally:
        topo.close()


@pytest.fixture(params=["fake", "kernel"])
def netops(request: pytest.FixtureRequest) -> Iterator[NetOps]:
    if request.param == "fake":
        fake = FakeNetOps()
        fake.add_link("x1")
        fake.add_link("x2")
        yield fake
        return
    net: PyrouteNetOps = request.getfixturevalue("kernel_pair")
    yield net
    net.cleanup_leftovers()


def test_conformance_routes(netops: NetOps) -> None:
    assert netops.link_exists("x1") and not netops.link_exists("nope0")
    first = RouteSpec(VPC, (Nexthop("x1"),), 10)
    moved = RouteSpec(VPC, (Nexthop("x2"),), 10)
    standby = RouteSpec(VPC, (Nexthop("x2"),), 11)
    ecmp = RouteSpec(ip_network("10.98.0.0/16"), (Nexthop("x1"), Nexthop("x2", weight=2)), 10)
    for route in (first, moved, standby, ecmp):
        netops.replace_route(route)
    assert sorted(netops.list_routes(), key=lambda r: r.describe()) == sorted(
        [moved, standby, ecmp], key=lambda r: r.describe()
    )
    netops.replace_route(RouteSpec(ecmp.destination, (Nexthop("x1"),), 10))
    netops.delete_route(standby)
    netops.delete_route(standby)
    assert sorted(netops.list_routes(), key=lambda r: r.describe()) == sorted(
        [moved, RouteSpec(ecmp.destination, (Nexthop("x1"),), 10)], key=lambda r: r.describe()
    )
    report = netops.cleanup_leftovers()
    assert len(report.routes) == 2
    assert netops.list_routes() == []
    assert netops.cleanup_leftovers().empty


def test_conformance_errors(netops: NetOps) -> None:
    with pytest.raises(NetOpsError):
        netops.set_mtu("nope0", 1400)
    with pytest.raises(NetOpsError):
        netops.replace_route(RouteSpec(VPC, (Nexthop("nope0"),)))
    with pytest.raises(NetOpsError):
        netops.set_address("x1", IPv4Interface("169.254.30.2/30"), IPv4Address("169.254.31.1"))
    with pytest.raises(NetOpsError):
        netops.set_rp_filter("x1", 3)
    with pytest.raises(NetOpsError):
        netops.apply_mss_clamp([MssClamp("x1", 1398), MssClamp("x1", 1300)])


def test_conformance_clamp_and_links(netops: NetOps) -> None:
    netops.set_address("x1", IPv4Interface("169.254.30.2/30"), IPv4Address("169.254.30.1"))
    netops.set_address("x1", IPv4Interface("169.254.30.2/30"), IPv4Address("169.254.30.1"))
    netops.set_mtu("x1", 1438)
    netops.set_link_up("x1", True)
    netops.set_rp_filter("x1")
    netops.apply_mss_clamp([MssClamp("x1", 1398)])
    netops.apply_mss_clamp([MssClamp("x1", 1398)])
    assert netops.cleanup_leftovers().nft_table
    assert not netops.cleanup_leftovers().nft_table
    netops.remove_mss_clamp()  # absent: fine


def test_usable_from_inside_a_running_event_loop(lab: Lab) -> None:
    # pyroute2's sync API runs a loop of its own; the daemon calls NetOps from its loop.
    async def main() -> list[RouteSpec]:
        net = PyrouteNetOps(lab.r.name)
        try:
            route = RouteSpec(ip_network("10.96.0.0/16"), (Nexthop("t2"),), 3)
            net.replace_route(route)
            found = net.list_routes()
            net.delete_route(route)
            return found
        finally:
            net.close()

    assert asyncio.run(main()) == [RouteSpec(ip_network("10.96.0.0/16"), (Nexthop("t2"),), 3)]


def test_host_network_on_the_kernel(lab: Lab) -> None:
    host = HostNetwork(PyrouteNetOps(lab.r.name))
    host.start()
    host.configure_tunnel(
        TunnelInterface(
            "t2", IPv4Interface("169.254.11.2/30"), IPv4Address("169.254.11.1"), 1422, 1382
        )
    )
    host.set_routes("vpc01", [RouteSpec(VPC, (Nexthop("t2"),), 101)])
    (link,) = ip_json(lab.r, "link", "show", "dev", "t2")
    assert link["mtu"] == 1422
    assert lab.r.run("sysctl", "-n", "net.ipv4.conf.t2.rp_filter").stdout.strip() == "2"
    assert {(r["dst"], r["dev"], r["metric"]) for r in cgwd_routes(lab.r)} == {
        ("10.99.0.0/16", "t2", 101)
    }
    assert len(nft_rules(lab.r)) == 4
    host.shutdown()  # as at SIGTERM: nothing of cgwd's is left
    assert cgwd_routes(lab.r) == []
    assert not Nft(lab.r.name).table_exists()
    lab.r.ip("link", "set", "t2", "mtu", "1500")
