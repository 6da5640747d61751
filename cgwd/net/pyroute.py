"""`NetOps` on a real kernel: rtnetlink through pyroute2, ``/proc/sys`` and ``nft``.

One instance per network namespace. ``netns=None`` (the daemon) works where cgwd runs; a
name under /run/netns (tests, the lab) drives that namespace without moving the process:
pyroute2 opens its netlink socket inside it, sysctls are written from a thread that joined
it, and ``nft`` runs under ``ip netns exec``. A namespace is never created here.

Threads: pyroute2's synchronous API runs an asyncio loop of its own, which cannot run in a
thread whose loop is already running (the daemon's). So the netlink socket lives in one
worker thread of this object and every netlink call is handed to it and waited for: the
methods can be called from anywhere, the event loop thread included (they block it for one
netlink round trip), and calls are serialised.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import socket
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from ipaddress import IPv4Address, IPv4Interface, ip_address, ip_network
from typing import Any, TypeVar

from pyroute2 import IPRoute
from pyroute2.netlink.exceptions import NetlinkError

from cgwd.net.base import (
    RP_FILTER_LOOSE,
    RTPROT_CGWD,
    CleanupReport,
    ForwardingState,
    MssClamp,
    NetOpsError,
    Nexthop,
    RouteSpec,
)
from cgwd.net.nft import Nft, mss_clamp_document
from cgwd.net.sysctl import interface_key, read_sysctl, write_sysctl
from cgwd.net.xtables import CHAIN as XT_CHAIN
from cgwd.net.xtables import TABLE as XT_TABLE
from cgwd.net.xtables import Xtables

T = TypeVar("T")

RT_SCOPE_UNIVERSE = 0  # <linux/rtnetlink.h>
RT_SCOPE_LINK = 253
RT_SCOPE_NOWHERE = 255
_ABSENT = (errno.ESRCH, errno.ENOENT, errno.EADDRNOTAVAIL)  # "no such route/address"

CLAMP_NFT = "nftables"  # `PyrouteNetOps.clamp_backend` values
CLAMP_XTABLES = "iptables-legacy"

_log = logging.getLogger(__name__)


def _netlink_message(exc: NetlinkError) -> str:
    detail = exc.args[1] if len(exc.args) > 1 and exc.args[1] else os.strerror(exc.code)
    return str(detail)


class PyrouteNetOps:
    """The kernel implementation of `cgwd.net.base.NetOps`.

    Args:
        netns: a namespace name under /run/netns, or None for cgwd's own.
        nft: how to run nft (default: in the same namespace).
        xtables: how to run the iptables-legacy tools, the MSS clamp's fallback when the
            kernel's nftables has no ``inet`` family (default: in the same namespace).

    Raises:
        NetOpsError: the netlink socket cannot be opened (e.g. the namespace is missing).
    """

    def __init__(
        self, netns: str | None = None, *, nft: Nft | None = None, xtables: Xtables | None = None
    ) -> None:
        self._netns = netns
        self._worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="cgwd-netlink")
        try:
            # flags=0: never create the namespace (pyroute2's default is O_CREAT).
            make = (lambda: IPRoute(netns=netns, flags=0)) if netns else IPRoute
            self._ipr = self._worker.submit(make).result()
        except (OSError, NetlinkError) as exc:
            self._worker.shutdown(wait=False)
            where = f"network namespace {netns}" if netns else "this network namespace"
            raise NetOpsError(f"cannot open rtnetlink in {where}: {exc}") from None
        self._nft = nft if nft is not None else Nft(netns)
        self._xtables = xtables if xtables is not None else Xtables(netns)
        self.clamp_backend: str | None = None  # chosen at the first apply_mss_clamp

    # -- plumbing ---------------------------------------------------------------------------

    def _call(self, what: str, func: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        try:
            return self._worker.submit(func, *args, **kwargs).result()
        except NetlinkError as exc:
            raise NetOpsError(f"{what}: {_netlink_message(exc)}") from None
        except OSError as exc:
            raise NetOpsError(f"{what}: {exc.strerror or exc}") from None
        except RuntimeError as exc:  # submit() after close()
            raise NetOpsError(f"{what}: {exc}") from None

    def _index(self, interface: str) -> int:
        found: list[int] = self._call(
            f"cannot look up interface {interface}", self._ipr.link_lookup, ifname=interface
        )
        if not found:
            raise NetOpsError(f"interface {interface} does not exist")
        return found[0]

    def _names(self) -> dict[int, str]:
        links = self._call("cannot list interfaces", self._ipr.link, "dump")
        return {int(link["index"]): str(link.get("ifname")) for link in links}

    # -- links and addresses ----------------------------------------------------------------

    def link_exists(self, interface: str) -> bool:
        found = self._call(
            f"cannot look up interface {interface}", self._ipr.link_lookup, ifname=interface
        )
        return bool(found)

    def set_address(self, interface: str, local: IPv4Interface, peer: IPv4Address) -> None:
        if peer not in local.network or peer == local.ip:
            raise NetOpsError(f"{interface}: peer {peer} is not another address of {local}")
        index = self._index(interface)
        current = self._call(
            f"cannot list addresses of {interface}",
            self._ipr.addr,
            "dump",
            index=index,
            family=socket.AF_INET,
        )
        present = False
        stale = []
        for addr in current:
            if addr.get("index") != index:
                continue
            entry = (addr.get("local"), addr.get("address"), addr["prefixlen"])
            if entry == (str(local.ip), str(peer), local.network.prefixlen):
                present = True
            else:
                stale.append(entry)
        if not present:
            self._call(
                f"cannot add address {local} peer {peer} to {interface}",
                self._ipr.addr,
                "add",
                index=index,
                local=str(local.ip),
                address=str(peer),
                prefixlen=local.network.prefixlen,
            )
        for loc, addr_, prefixlen in stale:
            self._call(
                f"cannot remove old address {loc}/{prefixlen} from {interface}",
                self._ipr.addr,
                "del",
                index=index,
                local=loc,
                address=addr_,
                prefixlen=prefixlen,
            )

    def set_mtu(self, interface: str, mtu: int) -> None:
        index = self._index(interface)
        self._call(
            f"cannot set MTU {mtu} on {interface}", self._ipr.link, "set", index=index, mtu=mtu
        )

    def set_link_up(self, interface: str, up: bool) -> None:
        index = self._index(interface)
        state = "up" if up else "down"
        self._call(
            f"cannot set {interface} {state}", self._ipr.link, "set", index=index, state=state
        )

    # -- routes -----------------------------------------------------------------------------

    def _route_selector(self, route: RouteSpec) -> dict[str, Any]:
        family = socket.AF_INET if route.destination.version == 4 else socket.AF_INET6
        return {
            "dst": str(route.destination),
            "family": family,
            "priority": route.metric,
            "table": route.table,
            "proto": RTPROT_CGWD,
        }

    def replace_route(self, route: RouteSpec) -> None:
        request = self._route_selector(route)
        if route.multipath:
            request["multipath"] = [
                {
                    "oif": self._index(nh.interface),
                    "hops": nh.weight - 1,  # rtnh_hops is "weight - 1"
                    **({"gateway": str(nh.gateway)} if nh.gateway is not None else {}),
                }
                for nh in route.nexthops
            ]
        else:
            nh = route.nexthops[0]
            request["oif"] = self._index(nh.interface)
            if nh.gateway is not None:
                request["gateway"] = str(nh.gateway)
            elif route.destination.version == 4:
                request["scope"] = RT_SCOPE_LINK  # as `ip route add ... dev X` does
        self._call(
            f"cannot install route {route.describe()}", self._ipr.route, "replace", **request
        )

    def delete_route(self, route: RouteSpec) -> None:
        # proto in the request makes the kernel delete only a route with proto cgwd;
        # scope "nowhere" matches any scope (iproute2 does the same for delete).
        request = {**self._route_selector(route), "scope": RT_SCOPE_NOWHERE}
        try:
            self._worker.submit(self._ipr.route, "del", **request).result()
        except NetlinkError as exc:
            if exc.code in _ABSENT:
                return
            raise NetOpsError(
                f"cannot remove route {route.describe()}: {_netlink_message(exc)}"
            ) from None

    def list_routes(self) -> list[RouteSpec]:
        names = self._names()
        found: list[RouteSpec] = []
        for family in (socket.AF_INET, socket.AF_INET6):
            dump = self._call("cannot list routes", self._ipr.route, "dump", family=family)
            for msg in dump:
                if msg["proto"] != RTPROT_CGWD:
                    continue
                spec = self._parse_route(msg, names)
                if spec is not None:
                    found.append(spec)
        return found

    @staticmethod
    def _parse_route(msg: Any, names: dict[int, str]) -> RouteSpec | None:
        family_default = "0.0.0.0" if msg["family"] == socket.AF_INET else "::"
        dst = msg.get("dst") or family_default
        destination = ip_network(f"{dst}/{msg['dst_len']}", strict=False)
        hops: list[Nexthop] = []
        multipath = msg.get("multipath")
        if multipath:
            for hop in multipath:
                gateway = None
                for name, value in hop.get("attrs", []):
                    if name == "RTA_GATEWAY":
                        gateway = ip_address(value)
                oif = int(hop["oif"])
                hops.append(Nexthop(names.get(oif, f"#{oif}"), gateway, int(hop["hops"]) + 1))
        elif msg.get("oif") is not None:
            oif = int(msg.get("oif"))
            gateway = msg.get("gateway")
            hops.append(
                Nexthop(names.get(oif, f"#{oif}"), ip_address(gateway) if gateway else None)
            )
        if not hops:
            return None  # not a unicast route over an interface: not one of ours to describe
        table = msg.get("table") or msg["table"]
        return RouteSpec(destination, tuple(hops), int(msg.get("priority") or 0), int(table))

    # -- sysctls ----------------------------------------------------------------------------

    def set_rp_filter(self, interface: str, mode: int = RP_FILTER_LOOSE) -> None:
        if mode not in (0, 1, 2):
            raise NetOpsError(f"rp_filter mode {mode} is not 0, 1 or 2")
        write_sysctl(interface_key(interface, "rp_filter"), str(mode), self._netns)

    def rp_filter(self, interface: str) -> int:
        """The interface's current ``rp_filter`` (for tests and `cgwd check`)."""
        return int(read_sysctl(interface_key(interface, "rp_filter"), self._netns))

    def forwarding(self) -> ForwardingState:
        ipv4 = read_sysctl(("net", "ipv4", "ip_forward"), self._netns) == "1"
        try:
            ipv6 = read_sysctl(("net", "ipv6", "conf", "all", "forwarding"), self._netns) == "1"
        except NetOpsError:  # IPv6 disabled on this kernel
            ipv6 = False
        return ForwardingState(ipv4=ipv4, ipv6=ipv6)

    # -- the MSS clamp: nftables, else iptables-legacy -------------------------------------

    def apply_mss_clamp(self, clamps: Sequence[MssClamp]) -> None:
        if self.clamp_backend == CLAMP_XTABLES:
            self._xtables.apply(clamps)
            return
        try:
            self._nft.apply(mss_clamp_document(clamps))
        except NetOpsError as exc:
            # Only a kernel without the inet family falls back (the probe is cached); any
            # other nft failure is reported as it is.
            if self.clamp_backend is not None or self._nft_has_inet():
                raise
            try:
                self._xtables.apply(clamps)
            except NetOpsError as xt_exc:
                fallback = f"the iptables-legacy fallback failed too: {xt_exc}"
                raise NetOpsError(f"{exc}; {fallback}") from None
            self._chose(CLAMP_XTABLES)
            return
        self._chose(CLAMP_NFT)

    def _nft_has_inet(self) -> bool:
        try:
            return self._nft.family_supported("inet")
        except NetOpsError:
            return True  # nft failed otherwise: not the case the fallback is for

    def _chose(self, backend: str) -> None:
        if self.clamp_backend is None:
            self.clamp_backend = backend
            if backend == CLAMP_XTABLES:
                _log.info(
                    "MSS clamp: iptables-legacy, chain %s in table %s (this kernel's nftables "
                    "has no inet family)",
                    XT_CHAIN,
                    XT_TABLE,
                )
            else:
                _log.info("MSS clamp: nftables, table inet cgwd")

    def remove_mss_clamp(self) -> None:
        self._nft.remove_table()
        self._xtables.remove()

    # -- crash recovery ---------------------------------------------------------------------

    def cleanup_leftovers(self) -> CleanupReport:
        report = CleanupReport()
        for route in self.list_routes():
            self.delete_route(route)
            report.routes.append(route)
        report.nft_table = self._nft.remove_table()
        if self._xtables.remove():
            _log.info("removed the iptables-legacy chain %s a previous run left", XT_CHAIN)
        return report

    def close(self) -> None:
        with contextlib.suppress(Exception):  # closing must never raise
            self._worker.submit(self._ipr.close).result(timeout=5)
        self._worker.shutdown(wait=False)
