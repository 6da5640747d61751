"""The IKE engines' log lines get the tunnel and event as journald fields."""

from __future__ import annotations

import logging

import pytest

from cgwd.daemon.log_fields import EngineFields
from cgwd.dataplane.base import SaId


def record(msg: str, *args: object) -> logging.LogRecord:
    return logging.LogRecord("cgwd.ike", logging.INFO, __file__, 1, msg, args, None)


@pytest.fixture
def flt() -> EngineFields:
    return EngineFields(lambda: {"vpc01-t1"})


def test_log_event_shape(flt: EngineFields) -> None:
    r = record("%s %s: %s", "vpc01-t1", "dpd_timeout", "no answer to 2 probes")
    assert flt.filter(r)
    assert (r.tunnel, r.event, r.getMessage()) == (  # type: ignore[attr-defined]
        "vpc01-t1",
        "dpd_timeout",
        "no answer to 2 probes",
    )


def test_fixed_event_name(flt: EngineFields) -> None:
    r = record("%s ike_established: %s IKE SA %016x_i", "vpc01-t1", "initiated", 255)
    assert flt.filter(r)
    assert r.tunnel == "vpc01-t1" and r.event == "ike_established"  # type: ignore[attr-defined]
    assert r.getMessage() == "initiated IKE SA 00000000000000ff_i"


def test_dataplane_shapes(flt: EngineFields) -> None:
    r = record("tunnel %s: TUN up, %s peer %s", "vpc01-t1", "169.254.0.2/30", "169.254.0.1")
    assert flt.filter(r)
    assert r.tunnel == "vpc01-t1"  # type: ignore[attr-defined]
    assert r.getMessage() == "TUN up, 169.254.0.2/30 peer 169.254.0.1"
    r = record("SA %s removed", SaId("vpc01-t2", "in", 0x1234))
    assert flt.filter(r)
    assert r.tunnel == "vpc01-t2"  # type: ignore[attr-defined]
    assert r.getMessage() == "SA vpc01-t2/in/0x00001234 removed"


def test_other_lines_untouched(flt: EngineFields) -> None:
    for r in (
        record("%s %s: %s", "other-t1", "dpd_timeout", "x"),  # not one of ours
        record("tunnel %s: closed", "other-t1"),
        record("sending IKE to %s:%d failed: %s", "192.0.2.1", 500, "EPERM"),
        record("no arguments at all"),
    ):
        before = r.getMessage()
        assert flt.filter(r)
        assert r.getMessage() == before and not hasattr(r, "tunnel")
