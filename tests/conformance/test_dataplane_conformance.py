"""One conformance suite for every `Dataplane` implementation (cgwd/dataplane/base.py).

Each implementation comes with a harness: how to make one, where its coroutines run (the
userspace one runs inside a network namespace of its own, with real TUN devices and
sockets), and how to observe its interface from outside. The kernel dataplane joins by
adding a harness here.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Interface
from typing import Any, TypeVar

import pytest

from cgwd.dataplane.base import (
    Dataplane,
    DataplaneError,
    SaExistsError,
    SaId,
    SaParams,
    TunnelExistsError,
    TunnelSpec,
    UdpEncap,
    UnknownSaError,
    UnknownTunnelError,
)
from cgwd.dataplane.fake import FakeDataplane
from cgwd.dataplane.kernel import KernelDataplane
from cgwd.dataplane.select import probe_kernel
from cgwd.dataplane.userspace import UserspaceDataplane
from cgwd.esp.sa import SaCounters
from cgwd.esp.suites import suite_by_name
from cgwd.lab.netns import Topology
from cgwd.secret import Secret

try:
    from tests.conftest import require_root
    from tests.dataplane_netns import run_async_in_netns
except ImportError:  # pragma: no cover - depends on how pytest was started
    from conftest import require_root  # type: ignore[no-redef]
    from dataplane_netns import run_async_in_netns  # type: ignore[no-redef]

T = TypeVar("T")
LOCAL_OUT = IPv4Address("192.0.2.1")
REMOTE_OUT = IPv4Address("192.0.2.2")
GCM = suite_by_name("aes128gcm16")
CBC = suite_by_name("aes256-sha256")


def spec(name: str = "cgc0", third_octet: int = 10) -> TunnelSpec:
    return TunnelSpec(
        name=name,
        local_inside=IPv4Interface(f"169.254.{third_octet}.2/30"),
        remote_inside=IPv4Address(f"169.254.{third_octet}.1"),
        mtu=1400,
        local_outside=LOCAL_OUT,
        # A VTI (the kernel dataplane without xfrm interfaces) is keyed by its outside
        # endpoints, as AWS's two tunnels are: give each tunnel its own peer address.
        remote_outside=REMOTE_OUT + (third_octet - 10),
    )


ENCAP = UdpEncap()


def params(suite: Any = GCM, encap: UdpEncap | None = ENCAP, fill: int = 1) -> SaParams:
    return SaParams(suite, Secret(bytes([fill]) * suite.keymat_bytes), encap=encap)


@dataclass
class Harness:
    make: Callable[[], Dataplane]
    run: Callable[[Callable[[], Awaitable[Any]]], Any]
    interface: Callable[[str], dict[str, Any] | None]  # name -> {"mtu", "up", "addr"} or None


def _run_plain(fn: Callable[[], Awaitable[T]]) -> T:
    return asyncio.run(fn())  # type: ignore[arg-type]


def _fake_harness() -> Iterator[Harness]:
    holder: dict[str, FakeDataplane] = {}

    def make() -> Dataplane:
        holder["dp"] = FakeDataplane(seed=1)
        return holder["dp"]

    def interface(name: str) -> dict[str, Any] | None:
        t = holder["dp"].tunnels.get(name)
        if t is None:
            return None
        return {"mtu": t.spec.mtu, "up": True, "addr": str(t.spec.local_inside)}

    yield Harness(make, _run_plain, interface)


def _userspace_harness() -> Iterator[Harness]:
    yield from _namespace_harness(UserspaceDataplane)


def _kernel_harness() -> Iterator[Harness]:
    yield from _namespace_harness(KernelDataplane)


def _namespace_harness(make: Callable[[], Dataplane]) -> Iterator[Harness]:
    require_root()
    topo = Topology()
    try:
        ns = topo.add_netns("dp")
        peer = topo.add_netns("peer")
        topo.link(ns, "out0", peer, "out0")
        ns.ip("addr", "add", f"{LOCAL_OUT}/24", "dev", "out0")
        peer.ip("addr", "add", f"{REMOTE_OUT}/24", "dev", "out0")

        def run(fn: Callable[[], Awaitable[T]]) -> T:
            return run_async_in_netns(ns.name, fn)

        def interface(name: str) -> dict[str, Any] | None:
            out = ns.ip("-o", "addr", "show", "dev", name, check=False)
            if out.returncode != 0:
                return None
            link = ns.ip("-o", "link", "show", "dev", name).stdout
            mtu = int(link.split(" mtu ")[1].split()[0])
            addr = next(
                (
                    w
                    for line in out.stdout.splitlines()
                    if " inet " in line
                    for w in [line.split(" inet ")[1].split()[0]]
                ),
                "",
            )
            peer_part = out.stdout.split(" peer ")[1].split()[0] if " peer " in out.stdout else ""
            return {
                "mtu": mtu,
                "up": ",UP" in link,
                "addr": f"{addr}" + (f" {peer_part}" if peer_part else ""),
            }

        yield Harness(make, run, interface)
    finally:
        topo.close()


# The kernel dataplane joins where the kernel can carry it (ESP and VTI/xfrm interfaces):
# on hosts without ESP, tests/uml/test_uml_kernel_dataplane.py runs this module inside a
# user-mode Linux guest, where it does.
_KERNEL_HERE = os.geteuid() == 0 and probe_kernel().usable
_HARNESSES = {"fake": _fake_harness, "userspace": _userspace_harness, "kernel": _kernel_harness}


@pytest.fixture(
    scope="module",
    params=[
        pytest.param("fake"),
        pytest.param("userspace", marks=pytest.mark.netns),
        *([pytest.param("kernel", marks=pytest.mark.netns)] if _KERNEL_HERE else []),
    ],
)
def harness(request: pytest.FixtureRequest) -> Iterator[Harness]:
    yield from _HARNESSES[request.param]()


def test_open_tunnel_creates_addressed_interface_and_close_removes_it(harness: Harness) -> None:
    async def body() -> tuple[Any, Any, Any]:
        dp = harness.make()
        try:
            await dp.open_tunnel(spec())
            seen = harness.interface("cgc0")
            with pytest.raises(TunnelExistsError):
                await dp.open_tunnel(spec())
            await dp.close_tunnel("cgc0")
            gone = harness.interface("cgc0")
            with pytest.raises(UnknownTunnelError):
                await dp.close_tunnel("cgc0")
            return dp.kind, seen, gone
        finally:
            await dp.close()

    kind, seen, gone = harness.run(body)
    assert kind in ("fake", "userspace", "kernel")
    assert seen is not None and seen["mtu"] == 1400 and seen["up"]
    assert seen["addr"].startswith("169.254.10.2")
    assert gone is None


def test_spi_allocation_is_unique_reserved_and_never_small(harness: Harness) -> None:
    async def body() -> tuple[list[int], list[int]]:
        dp = harness.make()
        try:
            await dp.open_tunnel(spec("cgc0", 10))
            await dp.open_tunnel(spec("cgc1", 11))
            first = [dp.allocate_spi("cgc0") for _ in range(300)]
            second = [dp.allocate_spi("cgc1") for _ in range(300)]
            with pytest.raises(UnknownTunnelError):
                dp.allocate_spi("nope")
            # A reserved SPI can be installed on its own tunnel, not on another one.
            await dp.add_sa(SaId("cgc0", "in", first[0]), params())
            with pytest.raises(SaExistsError):
                await dp.add_sa(SaId("cgc1", "in", first[1]), params())
            return first, second
        finally:
            await dp.close()

    first, second = harness.run(body)
    spis = first + second
    assert len(set(spis)) == len(spis)
    assert all(256 <= s <= 0xFFFFFFFF for s in spis)


def test_inbound_sas_coexist_for_make_before_break(harness: Harness) -> None:
    async def body() -> tuple[SaCounters, SaCounters, type[Exception] | None]:
        dp = harness.make()
        try:
            await dp.open_tunnel(spec())
            old, new = SaId("cgc0", "in", 0x1001), SaId("cgc0", "in", 0x1002)
            await dp.add_sa(old, params())
            await dp.add_sa(new, params(fill=2))
            c_old, c_new = dp.sa_counters(old), dp.sa_counters(new)
            await dp.remove_sa(old)
            error: type[Exception] | None = None
            try:
                dp.sa_counters(old)
            except UnknownSaError as exc:
                error = type(exc)
            dp.sa_counters(new)  # still there
            return c_old, c_new, error
        finally:
            await dp.close()

    c_old, c_new, error = harness.run(body)
    for c in (c_old, c_new):
        assert (c.packets, c.bytes, c.dropped, c.last_used) == (0, 0, 0, None)
    assert error is UnknownSaError


def test_outbound_replacement_is_atomic_and_keeps_the_old_sa_until_removed(
    harness: Harness,
) -> None:
    async def body() -> list[Any]:
        dp = harness.make()
        seen: list[Any] = []
        try:
            await dp.open_tunnel(spec())
            seen.append(dp.current_outbound("cgc0"))
            one, two, three = (SaId("cgc0", "out", s) for s in (0x2001, 0x2002, 0x2003))
            await dp.add_sa(one, params())
            seen.append(dp.current_outbound("cgc0"))
            await dp.add_sa(two, params(CBC, encap=None, fill=3))
            seen.append(dp.current_outbound("cgc0"))
            dp.sa_counters(one)  # the old one stays installed, unused
            await dp.add_sa(three, params(fill=4))
            await dp.remove_sa(three)  # the current one goes: latest remaining takes over
            seen.append(dp.current_outbound("cgc0"))
            await dp.remove_sa(two)
            seen.append(dp.current_outbound("cgc0"))
            await dp.remove_sa(one)
            seen.append(dp.current_outbound("cgc0"))
            return seen
        finally:
            await dp.close()

    one, two = SaId("cgc0", "out", 0x2001), SaId("cgc0", "out", 0x2002)
    assert harness.run(body) == [None, one, two, two, one, None]


def test_errors_for_unknown_tunnels_and_sas_and_duplicates(harness: Harness) -> None:
    async def body() -> list[type[Exception]]:
        dp = harness.make()
        raised: list[type[Exception]] = []

        async def expect(exc: type[Exception], fn: Callable[[], Awaitable[Any] | Any]) -> None:
            try:
                result = fn()
                if asyncio.iscoroutine(result):
                    await result
            except exc as caught:
                raised.append(type(caught))
                assert "0x" not in str(caught) or "Secret" not in str(caught)

        try:
            await dp.open_tunnel(spec())
            sa = SaId("cgc0", "out", 0x3001)
            await expect(UnknownTunnelError, lambda: dp.add_sa(SaId("zz", "out", 0x3001), params()))
            await expect(UnknownTunnelError, lambda: dp.remove_sa(SaId("zz", "in", 0x3001)))
            await expect(UnknownTunnelError, lambda: dp.sa_counters(SaId("zz", "in", 0x3001)))
            await expect(UnknownTunnelError, lambda: dp.current_outbound("zz"))
            await expect(UnknownSaError, lambda: dp.remove_sa(sa))
            await expect(UnknownSaError, lambda: dp.sa_counters(sa))
            await dp.add_sa(sa, params())
            await expect(SaExistsError, lambda: dp.add_sa(sa, params()))
            inbound = SaId("cgc0", "in", 0x3002)
            await dp.add_sa(inbound, params())
            await expect(SaExistsError, lambda: dp.add_sa(inbound, params(fill=9)))
            # Inbound SPIs are unique across tunnels (ESP demultiplexes on the SPI alone).
            await dp.open_tunnel(spec("cgc1", 11))
            await expect(SaExistsError, lambda: dp.add_sa(SaId("cgc1", "in", 0x3002), params()))
            return raised
        finally:
            await dp.close()

    assert (
        harness.run(body) == [UnknownTunnelError] * 4 + [UnknownSaError] * 2 + [SaExistsError] * 3
    )


def test_close_tunnel_removes_its_sas_and_counters_are_snapshots(harness: Harness) -> None:
    async def body() -> tuple[bool, int]:
        dp = harness.make()
        try:
            await dp.open_tunnel(spec())
            sa = SaId("cgc0", "in", 0x4001)
            await dp.add_sa(sa, params())
            snapshot = dp.sa_counters(sa)
            snapshot.packets += 5
            snapshot.drops.clear()
            fresh = dp.sa_counters(sa).packets
            await dp.close_tunnel("cgc0")
            await dp.open_tunnel(spec())
            try:
                dp.sa_counters(sa)
                still_there = True
            except UnknownSaError:
                still_there = False
            # The SPI is free again: another tunnel may use it now.
            await dp.add_sa(sa, params())
            return still_there, fresh
        finally:
            await dp.close()
            await dp.close()  # idempotent

    still_there, fresh = harness.run(body)
    assert not still_there
    assert fresh == 0


def test_ike_receiver_can_be_set_and_cleared(harness: Harness) -> None:
    async def body() -> None:
        dp = harness.make()
        try:
            dp.set_ike_receiver(lambda data, remote, local: None)
            dp.set_ike_receiver(None)
        finally:
            await dp.close()

    harness.run(body)


def test_sa_params_reject_wrong_key_length() -> None:
    with pytest.raises(DataplaneError, match="needs 20 bytes"):
        SaParams(GCM, Secret(b"\x00" * 16))
    with pytest.raises(DataplaneError):
        SaParams(GCM, Secret(b"\x00" * 20), replay_window=4096)
    with pytest.raises(DataplaneError):
        spec("a-name-that-is-too-long")
    rendered = repr(SaParams(GCM, Secret(b"\x42" * 20)))
    assert "42" * 4 not in rendered and "redacted" in rendered
