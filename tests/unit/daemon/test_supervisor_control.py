"""The daemon's control-method parameter checks and its one-dataplane rule, without I/O."""

from __future__ import annotations

import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/unit: config_fixtures
from config_fixtures import connection

from cgwd.config.load import LoadedConfiguration
from cgwd.config.model import CgwdConfig, ConnectionConfig, DaemonConfig
from cgwd.config.tunnel_plan import plan_connection
from cgwd.control.protocol import ControlError, ErrorCode
from cgwd.daemon.app import requested_dataplane
from cgwd.daemon.control import request_rekey, select_tunnels
from cgwd.daemon.supervisor import ConnectionRuntime, TunnelSupervisor
from cgwd.errors import CgwdError, ConfigError


class StubSession:
    config: Any = None
    last_down_reason: str | None = None
    children: dict[int, Any] = {}  # noqa: RUF012 - a stub: never mutated

    def initiate(self, now: float) -> None: ...
    def terminate(self, now: float) -> None: ...
    def status(self, now: float | None = None) -> dict[str, Any]:
        return {"phase2": "Down"}


def loaded(*dataplanes: str | None, daemon: str = "auto") -> LoadedConfiguration:
    conns = [
        ConnectionConfig(name=f"vpc0{i}", aws_config=Path(f"/x{i}.txt"), dataplane=dp)
        for i, dp in enumerate(dataplanes)
    ]
    cfg = CgwdConfig(daemon=DaemonConfig(dataplane=daemon), connection=conns)  # type: ignore[call-arg]
    plans = tuple(
        plan_connection(
            c,
            connection(aws_ips=(f"203.0.113.{10 + 2 * i}", f"203.0.113.{11 + 2 * i}")),
            cfg.daemon,
        )
        for i, c in enumerate(conns)
    )
    return LoadedConfiguration(cfg, plans)


def test_one_dataplane_per_daemon() -> None:
    assert requested_dataplane(loaded(None, None, daemon="userspace")) == "userspace"
    assert requested_dataplane(loaded("kernel", "kernel")) == "kernel"
    with pytest.raises(ConfigError, match="different dataplanes"):
        requested_dataplane(loaded("kernel", "userspace"))


def daemon_with_vpc01() -> Any:
    plan = loaded(None).connections[0]
    sups = [TunnelSupervisor(t, StubSession()) for t in plan.tunnels]
    return SimpleNamespace(connections={"vpc00": ConnectionRuntime(plan, sups)})


@pytest.mark.parametrize(
    ("params", "code", "message"),
    [
        ({}, ErrorCode.INVALID_PARAMS, "'connection' must be"),
        ({"connection": 5}, ErrorCode.INVALID_PARAMS, "'connection' must be"),
        ({"connection": "vpc00", "tunnel": 3}, ErrorCode.INVALID_PARAMS, "1 or 2"),
        ({"connection": "vpc00", "tunnel": True}, ErrorCode.INVALID_PARAMS, "1 or 2"),
        ({"connection": "vpc00", "tunnel": "1"}, ErrorCode.INVALID_PARAMS, "1 or 2"),
    ],
)
def test_select_tunnels_refuses_bad_params(
    params: dict[str, Any], code: ErrorCode, message: str
) -> None:
    with pytest.raises(ControlError, match=message) as info:
        select_tunnels(daemon_with_vpc01(), params)
    assert info.value.code == code


def test_select_tunnels() -> None:
    d = daemon_with_vpc01()
    both = select_tunnels(d, {"connection": "vpc00"})
    assert [s.name for s in both] == ["vpc00-t1", "vpc00-t2"]
    assert [s.name for s in select_tunnels(d, {"connection": "vpc00", "tunnel": 2})] == ["vpc00-t2"]
    with pytest.raises(CgwdError, match="no connection named 'x'"):
        select_tunnels(d, {"connection": "x"})


def test_rekey_needs_an_established_sa() -> None:
    idle = cast(Any, SimpleNamespace(current=None, children={}))
    assert request_rekey(idle, "ike", 10.0) is False
    assert request_rekey(idle, "child", 10.0) is False
    child = SimpleNamespace(state="installed", rekey_at=500.0)
    gone = SimpleNamespace(state="gone", rekey_at=None)
    isakmp = SimpleNamespace(state="established", rekey_at=900.0)
    v1 = cast(Any, SimpleNamespace(current=isakmp, children={1: child, 2: gone}))
    assert request_rekey(v1, "child", 10.0) is True
    assert (child.rekey_at, gone.rekey_at) == (10.0, None)
    assert request_rekey(v1, "ike", 11.0) is True and isakmp.rekey_at == 11.0
