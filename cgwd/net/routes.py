"""Which routes a connection's tunnels should carry, and the changes to get there.

Pure functions, no I/O. For a static-routing connection every destination (VPC CIDR) is
routed over each tunnel whose CHILD_SA is up:

- ``prefer-1`` / ``prefer-2``: one route per tunnel, the preferred tunnel at ``metric`` and
  the other at ``metric + 1``. While both are up the kernel uses the preferred one; when it
  goes down its routes are withdrawn and the other's (already installed) take over with no
  gap, and they fail back when it returns.
- ``ecmp``: one multipath route at ``metric`` over every up tunnel, so flows are hashed over
  both. Losing a tunnel *replaces* the route with a single-path one under the same key,
  which the kernel does atomically.

A tunnel that is down contributes nothing: AWS would drop what we sent into it. Routes are
installed before stale ones are removed (`apply_route_changes`), so traffic always has a
path while a preferred tunnel comes back.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Literal

from cgwd.net.base import (
    RT_TABLE_MAIN,
    IPAddress,
    IPNetwork,
    NetOps,
    NetOpsError,
    Nexthop,
    RouteSpec,
)

RoutePreference = Literal["prefer-1", "prefer-2", "ecmp"]


@dataclass(frozen=True)
class TunnelRoutes:
    """A tunnel as the route planner sees it."""

    index: int  # 1 or 2, as AWS numbers the tunnels
    interface: str
    up: bool
    gateway: IPAddress | None = None  # AWS's inside address, optional on a p2p interface


def preferred_index(preference: RoutePreference) -> int | None:
    """1 or 2 for ``prefer-N``, None for ``ecmp``."""
    return None if preference == "ecmp" else int(preference.rsplit("-", 1)[1])


def plan_routes(
    destinations: Iterable[IPNetwork],
    tunnels: Sequence[TunnelRoutes],
    preference: RoutePreference,
    *,
    metric: int = 100,
    table: int = RT_TABLE_MAIN,
) -> list[RouteSpec]:
    """The routes that should be installed now (see the module docstring).

    Raises:
        NetOpsError: two tunnels share an index, or ``metric + 1`` overflows 32 bits.
    """
    if len({t.index for t in tunnels}) != len(tunnels):
        raise NetOpsError("two tunnels with the same index")
    if not 0 <= metric < 0xFFFFFFFF:
        raise NetOpsError(f"route metric {metric} leaves no room for the standby tunnel")
    up = sorted((t for t in tunnels if t.up), key=lambda t: t.index)
    if not up:
        return []
    plan: list[RouteSpec] = []
    preferred = preferred_index(preference)
    for destination in dict.fromkeys(destinations):  # keep order, drop duplicates
        if preferred is None:
            hops = tuple(Nexthop(t.interface, t.gateway) for t in up)
            plan.append(RouteSpec(destination, hops, metric, table))
            continue
        for t in up:
            route_metric = metric if t.index == preferred else metric + 1
            plan.append(
                RouteSpec(destination, (Nexthop(t.interface, t.gateway),), route_metric, table)
            )
    return plan


def carrying_tunnels(tunnels: Sequence[TunnelRoutes], preference: RoutePreference) -> set[int]:
    """Indexes of the tunnels the kernel sends routed traffic into (``active`` in status)."""
    up = {t.index for t in tunnels if t.up}
    preferred = preferred_index(preference)
    if preferred is None or len(up) <= 1:
        return up
    return {preferred} if preferred in up else {min(up)}


@dataclass
class RouteChanges:
    """Routes to install (replace) and routes to remove, in that order."""

    install: list[RouteSpec] = field(default_factory=list)
    remove: list[RouteSpec] = field(default_factory=list)

    @property
    def empty(self) -> bool:
        return not self.install and not self.remove


def diff_routes(installed: Iterable[RouteSpec], desired: Iterable[RouteSpec]) -> RouteChanges:
    """What turns ``installed`` into ``desired``.

    ``installed`` must be the routes of the same owner (one connection), not every cgwd
    route: two connections may legitimately route different destinations.
    """
    have = {r.key: r for r in installed}
    want = {r.key: r for r in desired}
    return RouteChanges(
        install=[r for key, r in want.items() if have.get(key) != r],
        remove=[r for key, r in have.items() if key not in want],
    )


def apply_route_changes(netops: NetOps, changes: RouteChanges) -> None:
    """Install first, then remove (make-before-break). Raises only `NetOpsError`."""
    for route in changes.install:
        netops.replace_route(route)
    for route in changes.remove:
        netops.delete_route(route)
