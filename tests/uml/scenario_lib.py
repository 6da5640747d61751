"""Helpers for the scenarios that run inside the UML guest (not tests themselves).

A `Gateway` is one cgwd "instance" in a network namespace: a KernelDataplane and a
HostNetwork (routes, rp_filter, MSS clamp) living on an event loop whose thread joined the
namespace, so every socket, subprocess (nft) and sysctl they use is in that namespace.
Scenarios print one JSON document of observations; the pytest side asserts on it.
"""

from __future__ import annotations

import asyncio
import os
import socket
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import Future
from ipaddress import IPv4Address, IPv4Interface, IPv4Network
from pathlib import Path
from typing import Any, TypeVar

ROOT = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from dataplane_netns import enter_netns, run_in_netns  # noqa: E402

from cgwd.dataplane.base import SaId, SaParams, TunnelSpec, UdpEncap  # noqa: E402
from cgwd.dataplane.kernel import KernelDataplane  # noqa: E402
from cgwd.dataplane.userspace import UserspaceDataplane  # noqa: E402
from cgwd.esp.suites import EspSuite  # noqa: E402
from cgwd.net.base import Nexthop, RouteSpec  # noqa: E402
from cgwd.net.host import HostNetwork, TunnelInterface  # noqa: E402
from cgwd.net.pyroute import PyrouteNetOps  # noqa: E402
from cgwd.net.xfrm.ike_socket import bypass_ipsec, enable_espinudp  # noqa: E402
from cgwd.secret import Secret  # noqa: E402

T = TypeVar("T")


class Gateway:
    """cgwd's datapath and host networking inside namespace ``netns``.

    ``dataplane``: "kernel" (the guest) or "userspace" (runs on any kernel: the host-side
    twin of a scenario). ``real_nft``: apply the MSS clamp with nft (the host kernel), or
    record the documents (the guest kernel has no nftables inet family, see RecordingNft).
    """

    def __init__(self, netns: str, *, dataplane: str = "kernel", real_nft: bool = False) -> None:
        self.netns = netns
        self.loop = asyncio.new_event_loop()
        ready = threading.Event()

        def serve() -> None:
            enter_netns(netns)
            asyncio.set_event_loop(self.loop)
            ready.set()
            self.loop.run_forever()

        self.thread = threading.Thread(target=serve, name=f"gw-{netns}", daemon=True)
        self.thread.start()
        ready.wait(10)
        self.dp: Any = self.call(_make_dataplane if dataplane == "kernel" else _make_userspace)
        self.recording = None if real_nft else RecordingNft()
        self.host: HostNetwork = self.call(lambda: _make_host(self.recording))
        self.nft_documents: list[Any] = self.recording.documents if self.recording else []
        self.ike_socket: socket.socket | None = None
        self.tunnels: list[str] = []

    def call(self, fn: Callable[[], Awaitable[T]], timeout: float = 60.0) -> T:
        future: Future[T] = asyncio.run_coroutine_threadsafe(_as_coro(fn), self.loop)
        return future.result(timeout)

    def sync(self, fn: Callable[[], T], timeout: float = 60.0) -> T:
        async def wrapped() -> T:
            return fn()

        return self.call(wrapped, timeout)

    def open_ike_socket(self, address: str) -> None:
        """What the IKE host does with a kernel dataplane: UDP 4500 with ESPINUDP and
        bypass policies (so ESP-in-UDP reaches the kernel's SAs)."""

        def make() -> socket.socket:
            sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            sock.bind((address, 4500))
            bypass_ipsec(sock)
            enable_espinudp(sock)
            return sock

        self.ike_socket = self.sync(make)

    def open_tunnel(
        self, spec: TunnelSpec, *, mss: int, routes: list[str], owner: str = "conn"
    ) -> None:
        self.call(lambda: self.dp.open_tunnel(spec))
        self.tunnels.append(spec.name)
        self.sync(
            lambda: self.host.configure_tunnel(
                TunnelInterface(spec.name, spec.local_inside, spec.remote_inside, spec.mtu, mss)
            )
        )
        if routes:
            self.sync(
                lambda: self.host.set_routes(
                    owner,
                    [RouteSpec(IPv4Network(r), (Nexthop(spec.name),), metric=100) for r in routes],
                )
            )

    def add_sa(self, sa: SaId, params: SaParams) -> None:
        self.call(lambda: self.dp.add_sa(sa, params))

    def remove_sa(self, sa: SaId) -> None:
        self.call(lambda: self.dp.remove_sa(sa))

    def counters(self, sa: SaId) -> dict[str, Any]:
        c = self.sync(lambda: self.dp.sa_counters(sa))
        return {"packets": c.packets, "bytes": c.bytes, "dropped": c.dropped}

    def shutdown(self) -> None:
        def stop_host() -> None:
            for name in self.tunnels:
                self.host.release_tunnel(name)
            self.host.shutdown()

        self.sync(stop_host)
        self.call(self.dp.close)
        if self.ike_socket is not None:
            self.ike_socket.close()
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


async def _as_coro(fn: Callable[[], Awaitable[T]]) -> T:
    return await fn()


async def _make_dataplane() -> KernelDataplane:
    dp = KernelDataplane()
    await dp.start()
    return dp


class RecordingNft:
    """Stands in for `cgwd.net.nft.Nft` where a scenario wants to see the nftables
    documents rather than a clamp: Debian's UML kernel is built without
    CONFIG_NF_TABLES_INET/IPV4/IPV6 (only the bridge family), so no ``inet`` table can exist
    there. The documents are recorded; the real clamp runs in the guest through the
    iptables-legacy fallback (scenario_nft_support.py, scenario_daemon_kernel.py) and on the
    host kernel with nftables (tests/netns/test_tunnel_pair_mss_clamp.py)."""

    def __init__(self) -> None:
        self.documents: list[Any] = []

    def apply(self, document: Any, *, check_only: bool = False) -> None:
        self.documents.append(document)

    def table_exists(self) -> bool:
        return False

    def remove_table(self) -> bool:
        return False


async def _make_userspace() -> UserspaceDataplane:
    return UserspaceDataplane()


async def _make_host(recording: RecordingNft | None) -> HostNetwork:
    netops = PyrouteNetOps() if recording is None else PyrouteNetOps(nft=recording)  # type: ignore[arg-type]
    host = HostNetwork(netops)
    host.start()
    return host


def tunnel_spec(
    name: str, local_inside: str, remote_inside: str, local_out: str, remote_out: str
) -> TunnelSpec:
    return TunnelSpec(
        name=name,
        local_inside=IPv4Interface(local_inside),
        remote_inside=IPv4Address(remote_inside),
        mtu=1400,
        local_outside=IPv4Address(local_out),
        remote_outside=IPv4Address(remote_out),
    )


def params(suite: EspSuite, *, encap: bool, esn: bool = False, window: int = 1024) -> SaParams:
    return SaParams(
        suite,
        Secret(os.urandom(suite.keymat_bytes)),
        esn=esn,
        replay_window=window,
        encap=UdpEncap() if encap else None,
    )


def sh(*argv: str, check: bool = False, timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(argv), capture_output=True, text=True, timeout=timeout, check=check)


def xfrm_state_bytes(netns: str) -> dict[int, int]:
    """SPI -> current bytes, parsed from ``ip -s xfrm state`` (what an admin would read)."""
    out = sh("ip", "-n", netns, "-s", "xfrm", "state").stdout
    result: dict[int, int] = {}
    spi: int | None = None
    lines = out.splitlines()
    for i, line in enumerate(lines):
        words = line.split()
        if "spi" in words:
            spi = int(words[words.index("spi") + 1].split("(")[0], 16)
        if line.strip() == "lifetime current:" and spi is not None and i + 1 < len(lines):
            result[spi] = int(lines[i + 1].split("(bytes)")[0].strip())
    return result


def leftovers(netns: str, names: list[str]) -> dict[str, Any]:
    """What cgwd may have left in ``netns``: SAs, policies, interfaces, routes, nft table."""
    return {
        "xfrm_state": sh("ip", "-n", netns, "xfrm", "state").stdout.strip(),
        "xfrm_policy": sh("ip", "-n", netns, "xfrm", "policy").stdout.strip(),
        "links": [
            n for n in names if sh("ip", "-n", netns, "link", "show", "dev", n).returncode == 0
        ],
        "routes": sh("ip", "-n", netns, "route", "show", "proto", "157").stdout.strip(),
        "nft_tables": sh("ip", "netns", "exec", netns, "nft", "list", "tables").stdout.strip(),
    }


def ping(netns: str, address: str, count: int = 3) -> bool:
    proc = sh(
        "ip",
        "netns",
        "exec",
        netns,
        "ping",
        "-n",
        "-c",
        str(count),
        "-i",
        "0.2",
        "-W",
        "3",
        address,
    )
    return proc.returncode == 0


def sniff_syn_mss(netns: str, interface: str, port: int, ready: threading.Event) -> list[int]:
    """MSS options of the first TCP SYN (no ACK) to ``port`` seen on ``interface``."""

    def capture() -> list[int]:
        eth_p_ip = 0x0800
        sock = socket.socket(socket.AF_PACKET, socket.SOCK_DGRAM, socket.htons(eth_p_ip))
        sock.bind((interface, eth_p_ip))
        sock.settimeout(20)
        ready.set()
        deadline = time.monotonic() + 20
        try:
            while time.monotonic() < deadline:
                data = sock.recv(65535)
                ihl = (data[0] & 0x0F) * 4
                if data[9] != socket.IPPROTO_TCP or len(data) < ihl + 20:
                    continue
                tcp = data[ihl:]
                dport = struct.unpack_from("!H", tcp, 2)[0]
                flags = tcp[13]
                if dport != port or flags & 0x12 != 0x02:  # SYN without ACK
                    continue
                return _mss_options(tcp[20 : (tcp[12] >> 4) * 4])
        finally:
            sock.close()
        return []

    return run_in_netns(netns, capture, timeout=30)


def _mss_options(options: bytes) -> list[int]:
    """RFC 9293 §3.1: kind 0 ends, kind 1 is one byte, others are kind, length, data."""
    found: list[int] = []
    i = 0
    while i < len(options):
        kind = options[i]
        if kind == 0:
            break
        if kind == 1:
            i += 1
            continue
        if i + 1 >= len(options) or options[i + 1] < 2:
            break
        length = options[i + 1]
        if kind == 2 and length == 4:
            found.append(struct.unpack_from("!H", options, i + 2)[0])
        i += length
    return found
