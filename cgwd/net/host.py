"""`HostNetwork`: the daemon's bookkeeping over `NetOps` for all its tunnels.

The daemon tells it what should be (a tunnel's interface settings, a connection's routes)
and it makes the host match, remembering what cgwd installed so that:

- the nftables clamp always holds exactly the configured tunnels (one atomic document);
- a connection's routes change as a diff, installed before stale ones are removed, so a
  failover or failback never leaves a destination without a route;
- two connections never silently overwrite each other's routes;
- shutdown removes everything cgwd added, and start-up removes what a crashed run left.

Tunnel interfaces themselves are created and removed by the dataplane (TUN or xfrm); this
only configures them. Every method raises only `NetOpsError`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Interface

from cgwd.net.base import (
    RP_FILTER_LOOSE,
    CleanupReport,
    ForwardingState,
    MssClamp,
    NetOps,
    NetOpsError,
    RouteSpec,
    check_interface_name,
)
from cgwd.net.routes import RouteChanges, apply_route_changes, diff_routes


@dataclass(frozen=True)
class TunnelInterface:
    """How a tunnel interface must be set up."""

    name: str
    local_inside: IPv4Interface  # e.g. 169.254.141.38/30
    remote_inside: IPv4Address  # e.g. 169.254.141.37
    mtu: int
    mss: int  # IPv4 clamp; IPv6 gets 20 less

    def __post_init__(self) -> None:
        check_interface_name(self.name)


class HostNetwork:
    """Host network state owned by one cgwd process. Not thread-safe: call it from the
    daemon's event loop (NetOps calls block briefly)."""

    def __init__(self, netops: NetOps) -> None:
        self.netops = netops
        self._clamps: dict[str, MssClamp] = {}
        self._applied_clamps: tuple[MssClamp, ...] | None = None
        self._routes: dict[str, dict[tuple[object, ...], RouteSpec]] = {}  # owner -> key -> route

    def start(self) -> tuple[CleanupReport, ForwardingState]:
        """Remove a crashed run's leftovers; report IP forwarding (for a warning)."""
        report = self.netops.cleanup_leftovers()
        return report, self.netops.forwarding()

    # -- tunnel interfaces ----------------------------------------------------------------

    def configure_tunnel(self, tunnel: TunnelInterface) -> None:
        """Address with peer, MTU, link up, loose rp_filter, MSS clamp. Idempotent, so a
        reload may call it again with changed settings."""
        self.netops.set_address(tunnel.name, tunnel.local_inside, tunnel.remote_inside)
        self.netops.set_mtu(tunnel.name, tunnel.mtu)
        self.netops.set_link_up(tunnel.name, True)
        # AWS returns traffic on either tunnel (aws-behaviour §9): strict rp_filter would
        # drop what arrives on the tunnel that is not the route back.
        self.netops.set_rp_filter(tunnel.name, RP_FILTER_LOOSE)
        self._clamps[tunnel.name] = MssClamp(tunnel.name, tunnel.mss)
        self._apply_clamps()

    def release_tunnel(self, name: str) -> None:
        """Forget a tunnel that is going away: its clamp rules and any route through it
        (call it before the dataplane removes the interface)."""
        for owner, routes in list(self._routes.items()):
            keep = [r for r in routes.values() if all(nh.interface != name for nh in r.nexthops)]
            if len(keep) != len(routes):
                self.set_routes(owner, keep)
        if self._clamps.pop(name, None) is not None:
            self._apply_clamps()

    def _apply_clamps(self) -> None:
        wanted = tuple(self._clamps[name] for name in sorted(self._clamps))
        if wanted != self._applied_clamps:
            self.netops.apply_mss_clamp(wanted)
            self._applied_clamps = wanted

    @property
    def clamps(self) -> tuple[MssClamp, ...]:
        return tuple(self._clamps[name] for name in sorted(self._clamps))

    # -- routes ---------------------------------------------------------------------------

    def set_routes(self, owner: str, routes: Sequence[RouteSpec]) -> RouteChanges:
        """Make ``owner``'s (a connection's) installed routes exactly ``routes``.

        Raises:
            NetOpsError: a route has the same (table, destination, metric) as another
                owner's, or the kernel refused; on a kernel refusal part of the change may
                be in place and the bookkeeping reflects what succeeded.
        """
        for route in routes:
            for other, theirs in self._routes.items():
                if other != owner and route.key in theirs:
                    raise NetOpsError(
                        f"route {route.describe()} of {owner} collides with one of {other}"
                    )
        installed = self._routes.setdefault(owner, {})
        changes = diff_routes(installed.values(), routes)
        try:
            apply_route_changes(self.netops, changes)
        except NetOpsError:
            self._resync(owner, changes)
            raise
        self._routes[owner] = {r.key: r for r in routes}
        if not routes:
            del self._routes[owner]
        return changes

    def _resync(self, owner: str, changes: RouteChanges) -> None:
        present = {r.key: r for r in self.netops.list_routes()}
        mine = self._routes.get(owner, {})
        for route in (*changes.install, *changes.remove):
            if present.get(route.key) == route:
                mine[route.key] = route
            else:
                mine.pop(route.key, None)

    def routes(self, owner: str) -> list[RouteSpec]:
        """What cgwd installed for ``owner``."""
        return list(self._routes.get(owner, {}).values())

    # -- shutdown -------------------------------------------------------------------------

    def shutdown(self) -> None:
        """Remove every route and the clamp table, then close NetOps. Goes on past errors
        and raises the first one at the end."""
        first: NetOpsError | None = None
        for owner in list(self._routes):
            try:
                self.set_routes(owner, [])
            except NetOpsError as exc:
                first = first or exc
        try:
            self.netops.remove_mss_clamp()
        except NetOpsError as exc:
            first = first or exc
        self._clamps.clear()
        self._applied_clamps = None
        self.netops.close()
        if first is not None:
            raise first
