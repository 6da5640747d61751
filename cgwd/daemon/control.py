"""The daemon's control methods: ``status``, ``reload``, ``initiate``, ``terminate``,
``rekey`` (protocol and parameters: `cgwd.control.protocol`).

Parameters are checked here and refused with ``INVALID_PARAMS``; a failure to act is a
`CgwdError` (``FAILED``). Nothing a client sends reaches a tunnel unless it names one.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from cgwd.control.protocol import ControlError, ErrorCode
from cgwd.control.server import ControlServer
from cgwd.daemon.supervisor import TunnelSupervisor
from cgwd.errors import CgwdError
from cgwd.ike.v2.session import IkeSession
from cgwd.ike.v2.states import ChildState, IkeState

if TYPE_CHECKING:
    from cgwd.daemon.app import Daemon


def _invalid(message: str) -> ControlError:
    return ControlError(ErrorCode.INVALID_PARAMS, message)


def _only(params: dict[str, Any], allowed: set[str]) -> None:
    extra = sorted(set(params) - allowed)
    if extra:
        raise _invalid(f"unknown parameter {extra[0][:40]!r}")


def select_tunnels(daemon: Daemon, params: dict[str, Any]) -> list[TunnelSupervisor]:
    """The tunnels ``params`` names: ``connection`` (required) and ``tunnel`` (1 or 2)."""
    name = params.get("connection")
    if not isinstance(name, str):
        raise _invalid("'connection' must be the name of a connection")
    runtime = daemon.connections.get(name)
    if runtime is None:
        raise CgwdError(f"no connection named {name[:40]!r}")
    index = params.get("tunnel")
    if index is None:
        return list(runtime.tunnels)
    if isinstance(index, bool) or index not in (1, 2):
        raise _invalid("'tunnel' must be 1 or 2")
    return [runtime.tunnel(index)]


def request_rekey(session: object, what: str, now: float) -> bool:
    """Make the session's own rekey timer due now (make-before-break, as a scheduled
    rekey). Returns whether there was an SA to rekey."""
    if isinstance(session, IkeSession):
        if what == "ike":
            cur = session.current_ike()
            if cur is None or cur.state != IkeState.ESTABLISHED:
                return False
            cur.rekey_at = now
            return True
        children = [c for c in session.children.values() if c.state == ChildState.INSTALLED]
    else:  # IKEv1
        if what == "ike":
            cur = getattr(session, "current", None)
            if cur is None or cur.state != "established":
                return False
            cur.rekey_at = now
            return True
        children = [c for c in getattr(session, "children", {}).values() if c.state == "installed"]
    for child in children:
        child.rekey_at = now
    return bool(children)


def register_handlers(daemon: Daemon, server: ControlServer) -> None:
    async def status(params: dict[str, Any]) -> Any:
        _only(params, set())
        return daemon.status_document().model_dump(mode="json")

    async def reload(params: dict[str, Any]) -> Any:
        _only(params, set())
        if daemon.loaded is None:
            raise CgwdError("cgwd is still starting: reload once it is ready")
        summary = await daemon.reload()
        return {"message": f"configuration applied: {summary}"}

    async def initiate(params: dict[str, Any]) -> Any:
        _only(params, {"connection", "tunnel"})
        done = []
        for sup in select_tunnels(daemon, params):
            sup.wanted = True
            host = daemon.hosts_of(sup)
            host.initiate(sup.session)  # type: ignore[arg-type]
            done.append(sup.name)
        return {"message": f"initiating {', '.join(done)}"}

    async def terminate(params: dict[str, Any]) -> Any:
        _only(params, {"connection", "tunnel"})
        done = []
        for sup in select_tunnels(daemon, params):
            sup.wanted = False
            sup.session.terminate(daemon.clock.now())
            daemon.hosts_of(sup).pump(sup.session)  # type: ignore[arg-type]
            done.append(sup.name)
        return {"message": f"terminated {', '.join(done)} (until cgwd initiate)"}

    async def rekey(params: dict[str, Any]) -> Any:
        _only(params, {"connection", "tunnel", "sa"})
        what = params.get("sa", "child")
        if what not in ("child", "ike"):
            raise _invalid("'sa' must be 'child' or 'ike'")
        done = []
        for sup in select_tunnels(daemon, params):
            now = daemon.clock.now()
            if request_rekey(sup.session, what, now):
                host = daemon.hosts_of(sup)
                sup.session.handle_timer(now)  # type: ignore[attr-defined]
                host.pump(sup.session)  # type: ignore[arg-type]
                done.append(sup.name)
        if not done:
            raise CgwdError(f"no established {'IKE' if what == 'ike' else 'Child'} SA to rekey")
        return {"message": f"rekeying the {what} SA of {', '.join(done)}"}

    for method, handler in (
        ("status", status),
        ("reload", reload),
        ("initiate", initiate),
        ("terminate", terminate),
        ("rekey", rekey),
    ):
        server.register(method, handler)
