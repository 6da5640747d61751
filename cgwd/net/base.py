"""The `NetOps` seam: everything cgwd asks of the host's network stack besides ESP.

Addresses, MTU and link state of the tunnel interfaces, routes to the networks behind AWS,
``rp_filter``, the IP forwarding check and the nftables TCP MSS clamp. The daemon talks to
this `typing.Protocol` only; `cgwd.net.pyroute.PyrouteNetOps` does it with netlink
(pyroute2), ``/proc/sys`` and ``nft``, and `cgwd.net.fake.FakeNetOps` records it in memory
for unit tests.

Ownership: routes cgwd installs carry the routing protocol number `RTPROT_CGWD`, and the
MSS clamp lives in one nftables table (`NFT_FAMILY` `NFT_TABLE`). That is how a restarted
cgwd finds and removes what a crashed run left behind (`NetOps.cleanup_leftovers`) without
touching anyone else's routes or rules.

The methods are blocking but short (one netlink round trip, or one ``nft`` run of a few
milliseconds for the clamp); an asyncio caller may run them in a thread. Every method raises
only `NetOpsError`, whose message names the object and the operation.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv4Interface, IPv4Network, IPv6Address, IPv6Network
from typing import Protocol

from cgwd.errors import CgwdError

# Routing protocol number ("proto" in `ip route`) marking routes installed by cgwd.
# The kernel reserves 0-4 (RTPROT_UNSPEC .. RTPROT_STATIC); the values above that are a
# free-for-all by convention, recorded in iproute2's /etc/iproute2/rt_protos (8 gated,
# 9 ra, 10 mrt, 11 zebra, 12 bird, ..., 16 dhcp, 18 keepalived, 42 babel, 99 openr,
# 186-192 FRR's bgp/isis/ospf/rip/eigrp). 157 appears in none of them; to make
# `ip route show proto cgwd` work, add "157 cgwd" to /etc/iproute2/rt_protos.d/cgwd.conf.
RTPROT_CGWD = 157

RT_TABLE_MAIN = 254  # <linux/rtnetlink.h>

NFT_FAMILY = "inet"  # one table for IPv4 and IPv6
NFT_TABLE = "cgwd"
NFT_MSS_CHAIN = "mss_clamp"

RP_FILTER_LOOSE = 2  # RFC 3704 loose mode; the kernel applies max(all, interface)

IFNAMSIZ = 15  # usable characters of a Linux interface name

# RFC 879 / RFC 9293 §3.7.1: 536 is the default MSS every IPv4 host must accept; the
# largest MSS of a 65535-byte IPv4 datagram is 65495.
MIN_MSS = 536
MAX_MSS = 65495
IPV6_MSS_REDUCTION = 20  # an IPv6 header is 20 bytes longer than an IPv4 one

IPNetwork = IPv4Network | IPv6Network
IPAddress = IPv4Address | IPv6Address


class NetOpsError(CgwdError):
    """A network operation failed; the message names the interface, route or table."""


def check_interface_name(name: str) -> str:
    """Return ``name`` if Linux accepts it as an interface name, else raise `NetOpsError`."""
    if not name or len(name) > IFNAMSIZ or name in (".", ".."):
        raise NetOpsError(f"invalid interface name {name!r} (1 to {IFNAMSIZ} characters)")
    if any(c in name for c in "/:") or any(c.isspace() or not c.isprintable() for c in name):
        raise NetOpsError(f"invalid interface name {name!r} (no '/', ':' or whitespace)")
    return name


@dataclass(frozen=True)
class Nexthop:
    """One path of a route: out of ``interface``, optionally via ``gateway``.

    Tunnel interfaces are point-to-point, so the gateway is usually left out; giving the
    peer's inside address is harmless and makes ``ip route`` output self-explanatory.
    """

    interface: str
    gateway: IPAddress | None = None
    weight: int = 1  # relative share of flows in an ECMP route (1-256)

    def __post_init__(self) -> None:
        check_interface_name(self.interface)
        if not 1 <= self.weight <= 256:
            raise NetOpsError(f"nexthop weight {self.weight} is outside 1-256")


@dataclass(frozen=True)
class RouteSpec:
    """A route cgwd owns: ``destination`` over one nexthop, or ECMP over several.

    The kernel identifies a route by (table, destination, metric) for a given type and TOS,
    which is also `key`: installing a spec replaces any cgwd route with the same key, so a
    multipath route shrinks to one path (and grows back) atomically.
    """

    destination: IPNetwork
    nexthops: tuple[Nexthop, ...]
    metric: int = 0
    table: int = RT_TABLE_MAIN

    def __post_init__(self) -> None:
        if not self.nexthops:
            raise NetOpsError(f"route to {self.destination} has no nexthop")
        if not 0 <= self.metric <= 0xFFFFFFFF:
            raise NetOpsError(f"route metric {self.metric} is outside 0-4294967295")
        if len({nh.interface for nh in self.nexthops}) != len(self.nexthops):
            raise NetOpsError(f"route to {self.destination} repeats an interface")

    @property
    def key(self) -> tuple[int, IPNetwork, int]:
        return (self.table, self.destination, self.metric)

    @property
    def multipath(self) -> bool:
        return len(self.nexthops) > 1

    def describe(self) -> str:
        """``10.0.0.0/16 via t1 metric 100`` (for messages and logs)."""
        via = "+".join(nh.interface for nh in self.nexthops)
        table = "" if self.table == RT_TABLE_MAIN else f" table {self.table}"
        return f"{self.destination} dev {via} metric {self.metric}{table}"


@dataclass(frozen=True)
class MssClamp:
    """Clamp the MSS of TCP SYNs forwarded into or out of ``interface`` to ``mss_ipv4``.

    IPv6 SYNs are clamped to 20 less (aws-behaviour §8). Only larger MSS values are lowered:
    a SYN that already asks for less is left alone.
    """

    interface: str
    mss_ipv4: int

    def __post_init__(self) -> None:
        check_interface_name(self.interface)
        if not MIN_MSS <= self.mss_ipv4 <= MAX_MSS:
            raise NetOpsError(
                f"MSS {self.mss_ipv4} for {self.interface} is outside {MIN_MSS}-{MAX_MSS}"
            )

    @property
    def mss_ipv6(self) -> int:
        return self.mss_ipv4 - IPV6_MSS_REDUCTION


@dataclass(frozen=True)
class ForwardingState:
    """Whether the kernel forwards packets (``net.ipv4.ip_forward``, IPv6 ``all.forwarding``)."""

    ipv4: bool
    ipv6: bool


@dataclass
class CleanupReport:
    """What `NetOps.cleanup_leftovers` removed (for one log line at start-up)."""

    routes: list[RouteSpec] = field(default_factory=list)
    nft_table: bool = False

    @property
    def empty(self) -> bool:
        return not self.routes and not self.nft_table

    def describe(self) -> str:
        parts = [f"{len(self.routes)} route(s)"] if self.routes else []
        if self.nft_table:
            parts.append(f"nftables table {NFT_FAMILY} {NFT_TABLE}")
        return ", ".join(parts) if parts else "nothing"


class NetOps(Protocol):
    """The host network operations the daemon needs. See the module docstring."""

    def link_exists(self, interface: str) -> bool:
        """Whether ``interface`` exists."""
        ...

    def set_address(self, interface: str, local: IPv4Interface, peer: IPv4Address) -> None:
        """Make ``local`` (e.g. 169.254.141.38/30) with ``peer`` the only IPv4 address.

        Idempotent: nothing changes when it is already so; other IPv4 addresses on the
        interface (a previous configuration's) are removed.
        """
        ...

    def set_mtu(self, interface: str, mtu: int) -> None:
        """Set the interface MTU."""
        ...

    def set_link_up(self, interface: str, up: bool) -> None:
        """Bring the interface up or down."""
        ...

    def replace_route(self, route: RouteSpec) -> None:
        """Install ``route`` (proto `RTPROT_CGWD`), replacing one with the same key."""
        ...

    def delete_route(self, route: RouteSpec) -> None:
        """Remove the cgwd route with ``route.key``; absent is not an error."""
        ...

    def list_routes(self) -> list[RouteSpec]:
        """The routes with proto `RTPROT_CGWD`, in every table."""
        ...

    def set_rp_filter(self, interface: str, mode: int = RP_FILTER_LOOSE) -> None:
        """Set ``net.ipv4.conf.<interface>.rp_filter`` (0 off, 1 strict, 2 loose)."""
        ...

    def forwarding(self) -> ForwardingState:
        """Report IP forwarding (never changes it: that is the admin's decision)."""
        ...

    def apply_mss_clamp(self, clamps: Sequence[MssClamp]) -> None:
        """Make cgwd's nftables table hold exactly these clamps, atomically.

        An empty sequence leaves an empty table; `remove_mss_clamp` deletes it.
        """
        ...

    def remove_mss_clamp(self) -> None:
        """Delete cgwd's nftables table; absent is not an error."""
        ...

    def cleanup_leftovers(self) -> CleanupReport:
        """Remove every route with proto `RTPROT_CGWD` and cgwd's nftables table."""
        ...

    def close(self) -> None:
        """Release netlink sockets. Never raises."""
        ...
