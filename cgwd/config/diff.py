"""What a reload changes: old configuration vs new, as actions per connection.

`cgwd reload` re-reads cgwd.toml and the AWS files and applies the difference, touching only
what changed (architecture §4.5). Connections are identified by name. For each one:

- ``add`` / ``remove``: a connection appeared or went away;
- ``restart``: something the IKE or ESP SAs were negotiated or installed with changed
  (addresses, interface, key, IKE version, proposals, NAT-T, replay window, dataplane): the
  tunnel's SAs are deleted and re-initiated, one tunnel at a time;
- ``update``: only things that apply in place changed (routes and metrics, MTU/MSS
  overrides, DPD timing, lifetimes and rekey times, which take effect at the next rekey);
- ``keep``: nothing changed.

Pure: no I/O. Change descriptions never contain a pre-shared key.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

from cgwd.config.load import LoadedConfiguration
from cgwd.config.tunnel_plan import ConnectionPlan, TunnelPlan

Action = Literal["add", "remove", "restart", "update", "keep"]

# Tunnel fields whose change needs new SAs (what they were negotiated or installed with).
_RESTART: dict[str, Callable[[TunnelPlan], object]] = {
    "interface": lambda t: t.interface,
    "inside addresses": lambda t: (t.local_inside, t.remote_inside),
    "local address": lambda t: t.local_address,
    "IKE identity": lambda t: t.identity,
    "AWS endpoint": lambda t: t.remote_address,
    "pre-shared key": lambda t: t.psk,  # Secret compares in constant time, never prints
    "IKE version": lambda t: t.ike_version,
    "proposals": lambda t: (t.proposals.ike, t.proposals.ikev1, t.proposals.esp),
    "NAT traversal": lambda t: t.nat_traversal,
    "replay window": lambda t: t.replay_window,
    "dataplane": lambda t: t.dataplane,
}
# Tunnel fields that apply in place.
_UPDATE: dict[str, Callable[[TunnelPlan], object]] = {
    "routes": lambda t: t.routes,
    "MTU/MSS": lambda t: (t.mtu_override, t.mss_override),
    "DPD": lambda t: (t.dpd.interval, t.dpd.retries),
    "phase 1 lifetime and rekey": lambda t: t.phase1,
    "phase 2 lifetime and rekey": lambda t: t.phase2,
}


@dataclass(frozen=True)
class ConnectionDiff:
    name: str
    action: Action
    changes: tuple[str, ...] = ()  # e.g. "tunnel 1: routes", never a secret
    restart_tunnels: tuple[int, ...] = ()  # for "restart": which tunnels (1, 2)


@dataclass(frozen=True)
class ConfigDiff:
    connections: tuple[ConnectionDiff, ...]
    daemon_changes: tuple[str, ...]  # need a daemon restart (e.g. the control socket)

    @property
    def changed(self) -> bool:
        return bool(self.daemon_changes) or any(c.action != "keep" for c in self.connections)

    def summary(self) -> str:
        """One line per change, for `cgwd reload` and the log."""
        lines = [f"daemon: {change} (restart cgwd to apply)" for change in self.daemon_changes]
        for c in self.connections:
            if c.action == "keep":
                continue
            detail = f": {', '.join(c.changes)}" if c.changes else ""
            lines.append(f"{c.name}: {c.action}{detail}")
        return "\n".join(lines) or "no changes"


def _tunnel_changes(
    old: TunnelPlan, new: TunnelPlan, fields: dict[str, Callable[[TunnelPlan], object]]
) -> list[str]:
    return [f"tunnel {new.index}: {label}" for label, get in fields.items() if get(old) != get(new)]


def diff_connection(old: ConnectionPlan, new: ConnectionPlan) -> ConnectionDiff:
    """The action for one connection present in both configurations."""
    restart: list[str] = []
    update: list[str] = []
    restart_tunnels: list[int] = []
    for old_tunnel, new_tunnel in zip(old.tunnels, new.tunnels, strict=True):
        needs = _tunnel_changes(old_tunnel, new_tunnel, _RESTART)
        if needs:
            restart_tunnels.append(new_tunnel.index)
        restart += needs
        update += _tunnel_changes(old_tunnel, new_tunnel, _UPDATE)
    if old.config.tunnel_preference != new.config.tunnel_preference:
        update.append("tunnel preference")
    if restart:
        return ConnectionDiff(new.name, "restart", tuple(restart + update), tuple(restart_tunnels))
    if update:
        return ConnectionDiff(new.name, "update", tuple(update))
    return ConnectionDiff(new.name, "keep")


def diff_configurations(old: LoadedConfiguration, new: LoadedConfiguration) -> ConfigDiff:
    """Old vs new: removals first, then changes and additions in the new file's order."""
    old_by_name = {c.name: c for c in old.connections}
    new_names = {c.name for c in new.connections}
    out: list[ConnectionDiff] = [
        ConnectionDiff(c.name, "remove") for c in old.connections if c.name not in new_names
    ]
    for conn in new.connections:
        before = old_by_name.get(conn.name)
        out.append(
            ConnectionDiff(conn.name, "add") if before is None else diff_connection(before, conn)
        )
    daemon: list[str] = []
    if old.config.daemon.control_socket != new.config.daemon.control_socket:
        daemon.append("control_socket")
    return ConfigDiff(tuple(out), tuple(daemon))


def connections_to(diff: ConfigDiff, actions: Sequence[Action]) -> tuple[str, ...]:
    """Names of the connections whose action is one of ``actions``."""
    return tuple(c.name for c in diff.connections if c.action in actions)
