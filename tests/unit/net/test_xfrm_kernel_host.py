"""The kernel dataplane's pieces that work on this host's kernel (XFRM without ESP):
stale-state cleanup scoped to cgwd's marks/if_ids, the IKE socket bypass policies, and the
messages when the kernel lacks tunnel interfaces. Everything runs in namespaces the tests
create; the observations come from ``ip xfrm`` (iproute2), not from our decoder.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from ipaddress import IPv4Address, IPv4Interface

import pytest

from cgwd.dataplane.base import DataplaneError, TunnelSpec
from cgwd.dataplane.kernel import KernelDataplane, KernelFeatureError
from cgwd.dataplane.select import choose_dataplane, probe_kernel
from cgwd.lab.netns import Netns, Topology
from cgwd.net.xfrm.ike_socket import bypass_ipsec, enable_espinudp

try:
    from tests.conftest import require_root
    from tests.dataplane_netns import run_async_in_netns, run_in_netns
except ImportError:  # pragma: no cover - depends on how pytest was started
    from conftest import require_root  # type: ignore[no-redef]
    from dataplane_netns import run_async_in_netns, run_in_netns  # type: ignore[no-redef]

pytestmark = pytest.mark.netns


@pytest.fixture
def pair() -> Iterator[tuple[Netns, Netns]]:
    require_root()
    with Topology() as topo:
        a, b = topo.add_netns("xa"), topo.add_netns("xb")
        topo.link(a, "out0", b, "out0")
        a.ip("addr", "add", "192.0.2.1/24", "dev", "out0")
        b.ip("addr", "add", "192.0.2.2/24", "dev", "out0")
        yield a, b


def test_start_removes_only_stale_cgwd_state(pair: tuple[Netns, Netns]) -> None:
    ns, _ = pair
    tmpl = ["tmpl", "src", "192.0.2.1", "dst", "192.0.2.2", "proto", "esp", "mode", "tunnel"]
    zero = ["src", "0.0.0.0/0", "dst", "0.0.0.0/0"]
    ns.run("ip", "xfrm", "policy", "add", *zero, "dir", "out", *tmpl, "mark", "0x63670005")
    ns.run("ip", "xfrm", "policy", "add", *zero, "dir", "in", *tmpl, "if_id", "0x63670007")
    ns.run("ip", "xfrm", "policy", "add", *zero, "dir", "out", *tmpl, "mark", "0x10")
    ns.run("ip", "xfrm", "policy", "add", "src", "10.0.0.0/8", "dst", "10.1.0.0/16", "dir", "fwd")
    for mark, spi in (("0x63670005", "0x5005"), ("0x11", "0x5011")):
        ns.run(
            *["ip", "xfrm", "state", "allocspi", "src", "192.0.2.2", "dst", "192.0.2.1"],
            *["proto", "esp", "mode", "tunnel", "mark", mark, "min", spi, "max", spi],
        )

    async def start() -> list[str]:
        dp = KernelDataplane(interface_kind="vti")  # detection needs a kernel with VTIs
        try:
            return await dp.start()
        finally:
            await dp.close()

    removed = run_async_in_netns(ns.name, start)
    policies = ns.run("ip", "xfrm", "policy").stdout
    states = ns.run("ip", "xfrm", "state").stdout
    assert "0x63670005" not in policies and "0x63670007" not in policies
    assert "mark 0x10/" in policies and "src 10.0.0.0/8 dst 10.1.0.0/16" in policies
    assert "spi 0x00005005" not in states and "spi 0x00005011" in states
    assert len(removed) == 3  # one SA, two policies
    assert any("0x00005005" in line for line in removed)


def test_bypass_policies_exempt_the_ike_socket_from_a_zero_selector_policy(
    pair: tuple[Netns, Netns],
) -> None:
    a, b = pair
    # A plain 0/0 policy that blocks everything: what a route-based setup must never have,
    # and what socket policies take precedence over.
    zero = ["src", "0.0.0.0/0", "dst", "0.0.0.0/0"]
    a.run("ip", "xfrm", "policy", "add", *zero, "dir", "out", "action", "block")
    received: list[bytes] = []

    def receiver() -> socket.socket:
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.bind(("192.0.2.2", 4500))
        sock.settimeout(3)
        return sock

    rx = run_in_netns(b.name, receiver)

    def send(bypass: bool) -> str:
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.bind(("192.0.2.1", 4500))
        if bypass:
            bypass_ipsec(sock)
            enable_espinudp(sock)
        try:
            sock.sendto(b"\0\0\0\0ike", ("192.0.2.2", 4500))
            return "sent"
        except OSError as exc:
            return f"refused: {exc.strerror}"
        finally:
            sock.close()

    try:
        assert run_in_netns(a.name, lambda: send(False)).startswith("refused")
        assert run_in_netns(a.name, lambda: send(True)) == "sent"
        received.append(rx.recv(100))
    finally:
        rx.close()
    assert received == [b"\0\0\0\0ike"]


def test_tunnels_without_kernel_support_fail_with_the_missing_feature(
    pair: tuple[Netns, Netns],
) -> None:
    ns, _ = pair
    caps = probe_kernel()
    spec = TunnelSpec(
        name="cgk0",
        local_inside=IPv4Interface("169.254.20.2/30"),
        remote_inside=IPv4Address("169.254.20.1"),
        mtu=1400,
        local_outside=IPv4Address("192.0.2.1"),
        remote_outside=IPv4Address("192.0.2.2"),
    )

    async def open_and_close() -> str:
        dp = KernelDataplane()
        try:
            await dp.open_tunnel(spec)
            await dp.close_tunnel("cgk0")
            return "opened"
        except DataplaneError as exc:
            return f"{type(exc).__name__}: {exc}"
        finally:
            await dp.close()

    outcome = run_async_in_netns(ns.name, open_and_close)
    if caps.interface_kind is None:
        assert outcome.startswith(KernelFeatureError.__name__), outcome
        assert "CONFIG_XFRM_INTERFACE" in outcome and "CONFIG_NET_IPVTI" in outcome
        assert choose_dataplane("auto", caps)[0] == "userspace"
    else:
        assert outcome == "opened"
    assert ns.run("ip", "xfrm", "policy").stdout == ""  # nothing half-installed remains


def test_probe_without_a_namespace_of_its_own_agrees_and_leaves_nothing(
    pair: tuple[Netns, Netns],
) -> None:
    """Under the systemd unit (no unshare) the probe runs in the daemon's namespace: it must
    reach the same verdict and leave no SA, policy or interface behind there."""
    from cgwd.dataplane.select import _probe_in_current_thread  # noqa: PLC0415

    ns, _ = pair
    before = [
        ns.run("ip", *cmd).stdout for cmd in (["xfrm", "state"], ["xfrm", "policy"], ["-o", "link"])
    ]
    shared = run_in_netns(ns.name, lambda: _probe_in_current_thread(shared_namespace=True))
    after = [
        ns.run("ip", *cmd).stdout for cmd in (["xfrm", "state"], ["xfrm", "policy"], ["-o", "link"])
    ]
    assert after == before
    assert shared == probe_kernel()
