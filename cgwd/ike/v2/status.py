"""`cgwd status` data for one IKEv2 session: AWS's state words, SPIs, suites and timers.

Never any key material: only SPIs, suite names, states and relative times.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from cgwd.ike.v2.states import ChildState, IkeState, status_word

if TYPE_CHECKING:
    from cgwd.ike.v2.session import IkeSession


def session_status(session: IkeSession, now: float | None) -> dict[str, Any]:
    """The snapshot; times are seconds relative to ``now`` (None without ``now``)."""

    def rel(t: float | None) -> float | None:
        return None if t is None or now is None else round(t - now, 1)

    cur = session.current_ike()
    connecting = any(sa.state == IkeState.CONNECTING for sa in session.ike_sas)
    if cur is not None:
        ike_state = status_word(cur.state)
    else:
        ike_state = "Negotiating" if connecting else "Down"
    children = [
        {
            "state": status_word(c.state),
            "spi_in": f"{c.spi_in:08x}",
            "spi_out": f"{c.spi_out:08x}",
            "suite": c.suite.name,
            "pfs_group": c.pfs_group,
            "encap": c.out_params.encap is not None,
            "ts_local": [str(s) for s in c.ts_local],
            "ts_remote": [str(s) for s in c.ts_remote],
            "established_seconds_ago": None if now is None else round(now - c.created_at, 1),
            "rekey_in": rel(c.rekey_at),
        }
        for c in session.children.values()
        if c.state != ChildState.GONE
    ]
    child_state = "Down"
    if any(c["state"] == "Rekeying" for c in children):
        child_state = "Rekeying"
    elif any(c["state"] == "Established" for c in children):
        child_state = "Established"
    elif cur is not None or connecting:
        child_state = "Negotiating"
    return {
        "tunnel": session.config.tunnel,
        "peer": str(session.config.remote_address),
        "phase1": ike_state,
        "phase2": child_state,
        "ike": None
        if cur is None
        else {
            "spi_i": f"{cur.spi_i_int:016x}",
            "spi_r": f"{cur.spi_r_int:016x}",
            "initiator": cur.initiator,
            "suite": cur.suite_name,
            "nat_local": cur.nat_local,
            "nat_remote": cur.nat_remote,
            "port": cur.local_port,
            "established_seconds_ago": None
            if now is None or cur.established_at is None
            else round(now - cur.established_at, 1),
            "rekey_in": rel(cur.rekey_at),
        },
        "children": children,
        "last_down_reason": session.last_down_reason,
        "reconnect_in": rel(session.reconnect_at),
        "counters": dict(session.counters),
    }


_IKE_STATE_WORD = {
    IkeState.CONNECTING: "negotiating",
    IkeState.ESTABLISHED: "established",
    IkeState.REKEYING: "rekeying",
    IkeState.REKEYED: "established",
    IkeState.DELETING: "deleting",
    IkeState.DEAD: "down",
}


def _secs(value: float | None) -> int | None:
    return None if value is None else max(0, round(value))


def control_fields(
    session: IkeSession, now: float
) -> tuple[dict[str, Any] | None, list[dict[str, Any]]]:
    """The ``ike`` and ``child_sas`` members of a tunnel in `cgwd.control.status` (its
    `IkeSaStatus` / `ChildSaStatus` shapes, without the dataplane's counters, which the
    daemon adds from `Dataplane.sa_counters`)."""
    cur = session.current_ike()
    ike = None
    if cur is not None and cur.suite is not None:
        parts = cur.suite.name.split("-")
        local, remote = (cur.spi_i, cur.spi_r) if cur.initiator else (cur.spi_r, cur.spi_i)
        ike = {
            "version": 2,
            "state": _IKE_STATE_WORD[cur.state],
            "local_spi": local.hex(),
            "remote_spi": remote.hex(),
            "encryption": parts[0],
            "integrity": None if parts[1].startswith("prf") else parts[1],
            "prf": next(p for p in parts if p.startswith("prf")),
            "dh_group": cur.suite.dh_group,
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
        if c.state == ChildState.GONE:
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
