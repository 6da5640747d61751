"""``cgwd reload`` / SIGHUP: apply a new configuration as a diff (`cgwd.config.diff`).

The new cgwd.toml and AWS files are validated exactly as at start-up; if anything is wrong
the reload is refused with the error and the running configuration stays. Otherwise, per
connection (by name): removed ones are stopped (DELETE, routes, interfaces), added ones
started, ``restart`` ones get new SAs on the affected tunnel only (the other keeps carrying
traffic), ``update`` ones are changed in place (routes, MTU/MSS, DPD, lifetimes) and ``keep``
ones are not touched at all: their SAs, interfaces and routes stay as they are, so they
lose no packet.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

from cgwd.config.diff import ConnectionDiff, diff_configurations
from cgwd.config.load import LoadedConfiguration, load_configuration
from cgwd.config.tunnel_plan import ConnectionPlan
from cgwd.daemon.logging import register_secret
from cgwd.errors import CgwdError, ConfigError
from cgwd.net.base import NetOpsError

if TYPE_CHECKING:
    from cgwd.daemon.app import Daemon

log = logging.getLogger("cgwd.daemon")


def _load(daemon: Daemon) -> LoadedConfiguration:
    from cgwd.daemon.app import requested_dataplane  # noqa: PLC0415 - cycle

    new = load_configuration(daemon.config_path)
    requested = requested_dataplane(new)
    if requested != daemon.dataplane_requested:
        raise ConfigError(
            f"the dataplane setting changed ({daemon.dataplane_requested} -> {requested}): "
            "restart cgwd to apply it",
            source=new.config.source,
        )
    return new


async def apply_reload(daemon: Daemon) -> str:
    """Validate and apply; returns the change summary.

    Raises:
        CgwdError: the new configuration was refused (nothing changed).
    """
    assert daemon.loaded is not None
    try:
        new = await asyncio.to_thread(_load, daemon)
    except ConfigError as exc:
        log.error("reload refused, the running configuration stays: %s", exc)
        raise CgwdError(f"configuration refused, the running one stays: {exc}") from None
    for conn in new.connections:
        for tunnel in conn.tunnels:
            register_secret(tunnel.psk)
    for warning in new.warnings:
        log.warning("configuration: %s", warning)
    diff = diff_configurations(daemon.loaded, new)
    plans = {c.name: c for c in new.connections}
    failed: list[str] = []
    for change in diff.daemon_changes:
        log.warning("reload: %s changed: restart cgwd to apply it", change)
    for item in diff.connections:
        if item.action != "keep":
            log.info(
                "reload: %s: %s%s",
                item.name,
                item.action,
                f" ({', '.join(item.changes)})" if item.changes else "",
            )
        try:
            await _apply(daemon, item, plans.get(item.name))
        except CgwdError as exc:  # e.g. no route to a new endpoint: the others still apply
            log.error("reload: %s: %s failed: %s", item.name, item.action, exc)
            failed.append(f"{item.name}: {item.action} failed: {exc}")
    daemon.loaded = new
    summary = "\n".join([diff.summary(), *failed])
    log.info("reload applied: %s", summary.replace("\n", "; "))
    if failed:
        raise CgwdError("configuration applied in part:\n" + summary)
    return summary


async def _apply(daemon: Daemon, item: ConnectionDiff, plan: ConnectionPlan | None) -> None:
    if item.action == "remove":
        await daemon.stop_connection(item.name)
        return
    assert plan is not None
    if item.action == "add":
        await daemon.start_connection(plan)
        daemon.schedule_route_refresh(plan.name)
        return
    runtime = daemon.connections.get(item.name)
    if runtime is None:  # its start failed at an earlier reload: try again
        await daemon.start_connection(plan)
        daemon.schedule_route_refresh(plan.name)
        return
    if item.action == "keep":
        return  # not even the plan object: nothing about the tunnels may move
    for position, new_tunnel in enumerate(plan.tunnels):
        sup = runtime.tunnels[position]
        if new_tunnel.index in item.restart_tunnels:
            await daemon.stop_tunnel(sup)
            runtime.tunnels[position] = await daemon.start_tunnel(new_tunnel)
            continue
        sup.set_plan(new_tunnel)
        if daemon.net is not None:
            try:
                daemon.net.configure_tunnel(sup.interface())
            except NetOpsError as exc:
                sup.log.error("applying the new interface settings failed: %s", exc)
    runtime.plan = plan
    daemon.apply_routes(item.name)
