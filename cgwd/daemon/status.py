"""The ``status`` control method's document, built from the live tunnels.

The IKE and Child SA members come from the sessions (`cgwd.ike.v2.status.control_fields`
for IKEv2, the IKEv1 session's status snapshot for IKEv1), the byte and packet counters
from the dataplane, ``active`` from the routes (`cgwd.net.routes.carrying_tunnels`). The
result is validated by `cgwd.control.status.StatusDocument`, which cannot hold a secret.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from typing import Any

from cgwd import __version__
from cgwd.control.status import (
    ChildSaStatus,
    ConnectionStatus,
    DaemonStatus,
    IkeSaStatus,
    StatusDocument,
    TunnelStatus,
)
from cgwd.daemon.supervisor import ConnectionRuntime, TunnelSupervisor
from cgwd.dataplane.base import Dataplane, DataplaneError, Direction, SaId
from cgwd.ike.v1.session import Ikev1Session
from cgwd.ike.v2.session import IkeSession
from cgwd.ike.v2.status import control_fields

_V1_STATE = {"established": "established", "dead": "down"}


def _secs(value: float | None) -> int | None:
    return None if value is None else max(0, round(value))


def _ikev1_fields(
    session: Ikev1Session, now: float
) -> tuple[dict[str, Any] | None, list[dict[str, Any]]]:
    """IKEv1's ISAKMP SA and Quick Mode SAs in the IKEv2 shapes (version 1). IKEv1's PRF
    is the HMAC of the phase 1 hash (RFC 2409 §5)."""
    cur = session.current
    ike = None
    if cur is not None and cur.suite is not None:
        encryption, integrity, _group = cur.suite.name.split("-", 2)
        local, remote = (cur.cky_i, cur.cky_r) if cur.initiator else (cur.cky_r, cur.cky_i)
        ike = {
            "version": 1,
            "state": _V1_STATE.get(cur.state, "negotiating"),
            "local_spi": local.hex(),
            "remote_spi": remote.hex(),
            "encryption": encryption,
            "integrity": integrity,
            "prf": f"prf{integrity}",
            "dh_group": cur.suite.group,
            "established_seconds": _secs(
                None if cur.established_at is None else now - cur.established_at
            ),
            "rekey_in_seconds": _secs(None if cur.rekey_at is None else cur.rekey_at - now),
            "local_port": cur.local_port,
            "remote_port": cur.remote_port,
            "nat_detected": cur.nat_local or cur.nat_remote,
        }
    children = []
    for c in session.children.values():
        if c.state not in ("installed", "rekeyed", "rekeying"):
            continue
        encryption, _, integrity = c.suite.name.partition("-")
        children.append(
            {
                "spi_in": f"{c.spi_in:08x}",
                "spi_out": f"{c.spi_out:08x}",
                "encryption": encryption,
                "integrity": integrity or None,
                "established_seconds": _secs(now - c.created_at),
                "rekey_in_seconds": _secs(None if c.rekey_at is None else c.rekey_at - now),
                "udp_encap": c.out_params.encap is not None,
            }
        )
    return ike, children


def session_fields(
    session: object, now: float
) -> tuple[dict[str, Any] | None, list[dict[str, Any]]]:
    """The ``ike`` and ``child_sas`` members of a tunnel, without counters."""
    if isinstance(session, IkeSession):
        return control_fields(session, now)
    if isinstance(session, Ikev1Session):
        return _ikev1_fields(session, now)
    return None, []


def _with_counters(
    tunnel: str, child: dict[str, Any], dataplane: Dataplane, now: float
) -> dict[str, Any]:
    out = dict(child)
    directions: tuple[tuple[Direction, str], ...] = (("in", "spi_in"), ("out", "spi_out"))
    for direction, spi_key in directions:
        try:
            counters = dataplane.sa_counters(SaId(tunnel, direction, int(child[spi_key], 16)))
        except DataplaneError:  # not installed yet, or already removed
            continue
        out[f"bytes_{direction}"] = counters.bytes
        out[f"packets_{direction}"] = counters.packets
        if counters.last_used is not None:
            out[f"last_{direction}_seconds"] = max(0, int(now - counters.last_used))
        if direction == "in":
            out["drops_in"] = counters.dropped
            by_reason = counters.as_dict()["drops"]
            if by_reason:
                out["drops_in_by_reason"] = by_reason
    return out


def tunnel_status(
    sup: TunnelSupervisor, active: bool, dataplane: Dataplane, now: float
) -> TunnelStatus:
    ike, children = session_fields(sup.session, now)
    iface = sup.interface()
    return TunnelStatus(
        index=sup.plan.index,
        interface=sup.plan.interface,
        state=sup.state(now),
        active=active,
        last_error=sup.last_error,
        vpn_gateway_outside_ip=sup.plan.remote_address,
        customer_gateway_outside_ip=sup.plan.identity,
        inside_address=sup.plan.local_inside,
        dataplane=dataplane.kind,  # type: ignore[arg-type]
        mtu=iface.mtu,
        mss=iface.mss,
        ike=None if ike is None else IkeSaStatus(**ike),
        child_sas=[
            ChildSaStatus(**_with_counters(sup.plan.interface, c, dataplane, now)) for c in children
        ],
    )


def build_status(
    connections: Iterable[ConnectionRuntime],
    dataplane: Dataplane,
    now: float,
    *,
    started: float,
    config_file: str | None,
    ip_forwarding: bool | None,
    dataplane_reason: str | None,
) -> StatusDocument:
    """The whole document; ``now``/``started`` are readings of the daemon's monotonic clock."""
    conns = []
    for conn in connections:
        active = conn.active()
        conns.append(
            ConnectionStatus(
                name=conn.name,
                tunnels=[
                    tunnel_status(t, t.plan.index in active, dataplane, now) for t in conn.tunnels
                ],
                routes=list(conn.plan.config.routes),
                tunnel_preference=conn.plan.config.tunnel_preference,
            )
        )
    daemon = DaemonStatus(
        version=__version__,
        pid=os.getpid(),
        uptime_seconds=max(0, round(now - started)),
        config_file=config_file,
        ip_forwarding=ip_forwarding,
        dataplane_reason=dataplane_reason,
    )
    return StatusDocument(connections=conns, daemon=daemon)
