"""An in-memory `NetOps` for unit tests of the daemon: records state, touches nothing.

It keeps the kernel's rules that matter to callers: a route is keyed by (table,
destination, metric) and replaces its predecessor, deleting an absent route is fine,
addresses/MTU/routes need an existing interface (`add_link` creates one), and the MSS clamp
is a whole set replaced at once. `operations` lists every mutating call in order, so a test
can assert make-before-break ordering.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv4Interface

from cgwd.net.base import (
    RP_FILTER_LOOSE,
    CleanupReport,
    ForwardingState,
    MssClamp,
    NetOpsError,
    RouteSpec,
    check_interface_name,
)


@dataclass
class FakeLink:
    name: str
    mtu: int = 1500
    up: bool = False
    address: tuple[IPv4Interface, IPv4Address] | None = None
    rp_filter: int = 0


@dataclass
class FakeNetOps:
    """`NetOps` in memory. Set ``forwarding_state`` to what the test wants reported."""

    links: dict[str, FakeLink] = field(default_factory=dict)
    routes: dict[tuple[int, object, int], RouteSpec] = field(default_factory=dict)
    clamps: tuple[MssClamp, ...] | None = None  # None: no nft table
    forwarding_state: ForwardingState = field(default_factory=lambda: ForwardingState(True, False))
    operations: list[str] = field(default_factory=list)
    closed: bool = False

    def add_link(self, name: str) -> FakeLink:
        """Create an interface (what a dataplane's open_tunnel does on a real system)."""
        link = self.links[check_interface_name(name)] = FakeLink(name)
        return link

    def remove_link(self, name: str) -> None:
        """Remove an interface; its routes go with it, as in the kernel."""
        self.links.pop(name, None)
        for key, route in list(self.routes.items()):
            if any(nh.interface == name for nh in route.nexthops):
                del self.routes[key]

    def _link(self, name: str) -> FakeLink:
        if name not in self.links:
            raise NetOpsError(f"interface {name} does not exist")
        return self.links[name]

    def link_exists(self, interface: str) -> bool:
        return interface in self.links

    def set_address(self, interface: str, local: IPv4Interface, peer: IPv4Address) -> None:
        if peer not in local.network or peer == local.ip:
            raise NetOpsError(f"{interface}: peer {peer} is not another address of {local}")
        self._link(interface).address = (local, peer)
        self.operations.append(f"address {interface} {local} peer {peer}")

    def set_mtu(self, interface: str, mtu: int) -> None:
        self._link(interface).mtu = mtu
        self.operations.append(f"mtu {interface} {mtu}")

    def set_link_up(self, interface: str, up: bool) -> None:
        self._link(interface).up = up
        self.operations.append(f"link {interface} {'up' if up else 'down'}")

    def replace_route(self, route: RouteSpec) -> None:
        for nh in route.nexthops:
            self._link(nh.interface)
        self.routes[route.key] = route
        self.operations.append(f"replace {route.describe()}")

    def delete_route(self, route: RouteSpec) -> None:
        if self.routes.pop(route.key, None) is not None:
            self.operations.append(f"delete {route.describe()}")

    def list_routes(self) -> list[RouteSpec]:
        return list(self.routes.values())

    def set_rp_filter(self, interface: str, mode: int = RP_FILTER_LOOSE) -> None:
        if mode not in (0, 1, 2):
            raise NetOpsError(f"rp_filter mode {mode} is not 0, 1 or 2")
        self._link(interface).rp_filter = mode
        self.operations.append(f"rp_filter {interface} {mode}")

    def forwarding(self) -> ForwardingState:
        return self.forwarding_state

    def apply_mss_clamp(self, clamps: Sequence[MssClamp]) -> None:
        if len({c.interface for c in clamps}) != len(clamps):
            raise NetOpsError("two MSS clamps for one interface")
        self.clamps = tuple(clamps)
        self.operations.append(
            "mss_clamp " + ",".join(f"{c.interface}={c.mss_ipv4}" for c in clamps)
        )

    def remove_mss_clamp(self) -> None:
        if self.clamps is not None:
            self.operations.append("mss_clamp removed")
        self.clamps = None

    def cleanup_leftovers(self) -> CleanupReport:
        report = CleanupReport(routes=list(self.routes.values()), nft_table=self.clamps is not None)
        self.routes.clear()
        self.clamps = None
        return report

    def close(self) -> None:
        self.closed = True
