"""One tunnel kept up, and a connection's routes following its tunnels.

`TunnelSupervisor` owns one tunnel of a connection: the plan, the IKE session that keeps it
up (the engines initiate, detect dead peers and re-initiate forever with a capped, jittered
backoff by themselves), the interface settings (MTU and MSS follow the negotiated suite and
NAT-T) and what `cgwd status` reports (state, last error). `ConnectionRoutes` recomputes a
static connection's routes whenever one of its tunnels comes up or goes down: a tunnel
carries routes only while it has a Child SA (xfrm/TUN link state does not follow SA state).

The decisions are pure functions (`tunnel_state`, `interface_settings`, `desired_routes`,
`active_tunnels`) tested in tests/unit/daemon/; the classes only apply them.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any, Protocol

from cgwd.config.tunnel_plan import ConnectionPlan, TunnelPlan
from cgwd.control.status import TunnelState
from cgwd.daemon.logging import tunnel_logger
from cgwd.daemon.sessions import dpd_retransmit, exchange_retransmit, reconnect_backoff
from cgwd.esp.suites import EspSuite
from cgwd.ike.events import ChildSaInstalled, ChildSaRemoved, Event, IkeDown, IkeEstablished
from cgwd.net.base import RouteSpec
from cgwd.net.host import TunnelInterface
from cgwd.net.routes import TunnelRoutes, carrying_tunnels, plan_routes

log = logging.getLogger("cgwd.daemon")

UP_PHASE2 = frozenset({"Established", "Rekeying"})  # the sessions' status words (AWS's)


class DrivenSession(Protocol):
    """What the daemon needs of an IKE session (IKEv2 `IkeSession`, IKEv1 `Ikev1Session`)."""

    config: Any
    last_down_reason: str | None

    def initiate(self, now: float) -> None: ...
    def terminate(self, now: float) -> None: ...
    def status(self, now: float | None = None) -> dict[str, Any]: ...


# -- decisions (pure) ---------------------------------------------------------------------


def tunnel_state(phase2: str, wanted: bool) -> TunnelState:
    """``up`` while a Child SA is established (also mid-rekey); otherwise ``connecting`` when
    the tunnel should be up (negotiating, or waiting to retry), ``down`` when stopped."""
    if phase2 in UP_PHASE2:
        return "up"
    return "connecting" if wanted else "down"


@dataclass(frozen=True)
class InterfaceSettings:
    mtu: int
    mss: int


def interface_settings(
    plan: TunnelPlan, suite: EspSuite | None, natt: bool | None
) -> InterfaceSettings:
    """MTU and MSS clamp: the plan's worst case before any Child SA, then what the
    negotiated suite and NAT-T allow (cgwd.toml's ``mtu``/``mss`` always win)."""
    if suite is None or natt is None:
        return InterfaceSettings(plan.mtu, plan.mss)
    m = plan.mtu_mss_for(suite, natt)
    return InterfaceSettings(m.mtu, m.mss)


def desired_routes(plan: ConnectionPlan, up: Sequence[bool]) -> list[RouteSpec]:
    """The routes of a connection whose tunnels 1 and 2 are ``up[0]``/``up[1]``."""
    return plan_routes(
        plan.config.routes,
        _route_tunnels(plan, up),
        plan.config.tunnel_preference,
        metric=plan.config.route_metric,
    )


def active_tunnels(plan: ConnectionPlan, up: Sequence[bool]) -> set[int]:
    """Indexes of the tunnels the kernel sends the connection's routed traffic into."""
    if not plan.config.routes:
        return set()
    return carrying_tunnels(_route_tunnels(plan, up), plan.config.tunnel_preference)


def _route_tunnels(plan: ConnectionPlan, up: Sequence[bool]) -> list[TunnelRoutes]:
    return [
        TunnelRoutes(t.index, t.interface, is_up, t.remote_inside)
        for t, is_up in zip(plan.tunnels, up, strict=True)
    ]


# -- one tunnel ---------------------------------------------------------------------------


class TunnelSupervisor:
    """The live state of one tunnel. The daemon creates the session and interface, then
    feeds every session event to `on_event`; `wanted` follows initiate/terminate."""

    def __init__(self, plan: TunnelPlan, session: DrivenSession) -> None:
        self.plan = plan
        self.session = session
        self.wanted = True
        self.log = tunnel_logger(plan.interface)
        self.last_error: str | None = None
        self.suite: EspSuite | None = None
        self.natt: bool | None = None
        self._was_up = False

    @property
    def name(self) -> str:
        return self.plan.interface

    def state(self, now: float | None = None) -> TunnelState:
        return tunnel_state(str(self.session.status(now).get("phase2", "Down")), self.wanted)

    @property
    def up(self) -> bool:
        return self.state() == "up"

    def interface(self) -> TunnelInterface:
        s = interface_settings(self.plan, self.suite, self.natt)
        return TunnelInterface(
            self.plan.interface, self.plan.local_inside, self.plan.remote_inside, s.mtu, s.mss
        )

    def on_event(self, event: Event) -> tuple[bool, bool]:
        """Record ``event``. Returns (interface settings may have changed, up/down may have
        changed)."""
        settings_changed = False
        if isinstance(event, ChildSaInstalled):
            suite, natt = event.inbound_params.suite, event.inbound_params.encap is not None
            settings_changed = (suite, natt) != (self.suite, self.natt)
            self.suite, self.natt = suite, natt
        elif isinstance(event, IkeDown):
            if self.wanted and event.reason != "terminated":
                self.last_error = event.reason
        elif isinstance(event, IkeEstablished):
            pass
        elif not isinstance(event, ChildSaRemoved):
            return False, False
        return settings_changed, True

    def note_transition(self) -> bool:
        """Log ``tunnel_up``/``tunnel_down`` when the state crossed; True if it did."""
        up = self.up
        if up == self._was_up:
            return False
        self._was_up = up
        if up:
            self.last_error = None
            self.log.event(logging.INFO, "tunnel_up", "Child SA established: tunnel up")
        else:
            why = self.last_error or self.session.last_down_reason or "stopped"
            self.log.event(logging.WARNING, "tunnel_down", "no Child SA any more (%s)", why)
        return True

    def set_plan(self, plan: TunnelPlan) -> None:
        """An in-place reload: routes, MTU/MSS overrides, DPD timing and lifetimes (the
        latter take effect at the next rekey, as the engines read them then)."""
        self.plan = plan
        cfg = self.session.config
        self.session.config = replace(
            cfg,
            dpd_delay=float(plan.dpd.interval),
            **_timing_overrides(plan, cfg),
        )


def _timing_overrides(plan: TunnelPlan, cfg: Any) -> dict[str, Any]:
    lifetime = type(cfg.ike_lifetime)  # float for IKEv2, int for IKEv1 (it proposes them)
    return {
        "dpd_retransmit": dpd_retransmit(plan.dpd),
        "retransmit": exchange_retransmit(plan.dpd),
        "reconnect": reconnect_backoff(plan.dpd),
        "ike_rekey_time": float(plan.phase1.rekey_max),
        "child_rekey_time": float(plan.phase2.rekey_max),
        "ike_lifetime": lifetime(plan.phase1.lifetime),
        "child_lifetime": lifetime(plan.phase2.lifetime),
    }


# -- a connection -------------------------------------------------------------------------


@dataclass
class ConnectionRuntime:
    """A connection's plan and its two tunnel supervisors (tunnel 1 first)."""

    plan: ConnectionPlan
    tunnels: list[TunnelSupervisor]

    @property
    def name(self) -> str:
        return self.plan.name

    def up(self) -> list[bool]:
        return [t.up for t in self.tunnels]

    def routes(self) -> list[RouteSpec]:
        return desired_routes(self.plan, self.up())

    def active(self) -> set[int]:
        return active_tunnels(self.plan, self.up())

    def tunnel(self, index: int) -> TunnelSupervisor:
        for t in self.tunnels:
            if t.plan.index == index:
                return t
        raise KeyError(index)
