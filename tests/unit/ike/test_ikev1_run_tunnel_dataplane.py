"""`python -m cgwd.ike.v1.run_tunnel` honours ``--dataplane`` (as the IKEv2 one does): the
requested kind reaches `create_dataplane`, whose refusal ends the run with status 1."""

from __future__ import annotations

from pathlib import Path

import pytest

import cgwd.ike.run_tunnel as shared_runner
import cgwd.ike.v1.run_tunnel as v1_run_tunnel
from cgwd.dataplane.base import Dataplane
from cgwd.errors import CgwdError

AWS_CONFIG = (
    Path(__file__).resolve().parents[2] / "data" / "aws" / "aws-describe-vpn-connections-static.xml"
)


@pytest.mark.parametrize(
    ("argv", "expected"), [([], "userspace"), (["--dataplane", "kernel"], "kernel")]
)
def test_dataplane_option_reaches_create_dataplane(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    argv: list[str],
    expected: str,
) -> None:
    requested: list[str] = []

    def refuse(kind: str) -> tuple[Dataplane, str]:
        requested.append(kind)
        raise CgwdError(f"no {kind} dataplane here (test)")

    monkeypatch.setattr(shared_runner, "create_dataplane", refuse)  # the runner both share
    status = v1_run_tunnel.main(
        ["--aws-config", str(AWS_CONFIG), "--local-address", "192.0.2.117", *argv]
    )
    assert requested == [expected]
    assert status == 1
    assert f"no {expected} dataplane here (test)" in capsys.readouterr().err
