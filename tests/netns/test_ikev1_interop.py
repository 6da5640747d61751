"""cgwd's IKEv1 engine against strongSwan playing AWS (cgwd.lab, IKEv1 only), with the
userspace dataplane.

`python -m cgwd.ike.v1.run_tunnel` runs in the lab's ``cgw`` namespace from an AWS download
(AES128/SHA1/DH2 everywhere) and offers AWS's IKEv1 set; the lab's charon is restricted per
case. Success means both sides report the suite and the VPC host answers pings through
the tunnel. One lab serves the module.
"""

from __future__ import annotations

import json
import signal
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from conftest import require_strongswan

from cgwd.config.importers import load_aws_config
from cgwd.lab.aws_side import AwsLab, LabOptions
from cgwd.lab.strongswan import wait_until

pytestmark = [pytest.mark.netns, pytest.mark.strongswan, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]
PYTHON = str(REPO / ".venv" / "bin" / "python")
AWS_CONFIG = REPO / "tests" / "data" / "aws" / "aws-describe-vpn-connections-static.xml"
FAST = [
    "--dpd-delay", "2",
    "--dpd-retransmit-interval", "1",
    "--dpd-retransmit-tries", "2",
    "--retransmit-interval", "1",
    "--retransmit-tries", "3",
    "--reconnect-cap", "2",
]  # fmt: skip


class Cgwd:
    """One IKEv1 run_tunnel process in the lab's cgw namespace."""

    def __init__(self, lab: AwsLab, workdir: Path, *extra: str) -> None:
        self.status_file = workdir / "status.json"
        self.status_file.unlink(missing_ok=True)
        self.log_file = workdir / "cgwd.log"
        self._log = self.log_file.open("w")
        args = [
            PYTHON, "-m", "cgwd.ike.v1.run_tunnel",
            "--aws-config", str(AWS_CONFIG), "--tunnel", "1",
            "--local-address", str(lab.cgw_local_ip),
            "--route", str(lab.options.vpc_cidr),
            "--status-file", str(self.status_file),
            "--log-level", "DEBUG",
            *FAST, *extra,
        ]  # fmt: skip
        self.proc = lab.ns["cgw"].popen(
            *args, stdout=self._log, stderr=subprocess.STDOUT, cwd=str(REPO)
        )

    def status(self) -> dict[str, Any]:
        try:
            return dict(json.loads(self.status_file.read_text()))
        except (OSError, ValueError):
            return {}

    def wait(self, pred: Callable[[dict[str, Any]], bool], timeout: float, what: str) -> None:
        def check() -> bool:
            assert self.proc.poll() is None, f"run_tunnel exited:\n{self.log()}"
            return pred(self.status())

        try:
            wait_until(check, timeout, 0.2, what)
        except Exception as exc:
            raise AssertionError(f"{exc}\n--- cgwd:\n{self.log()[-4000:]}") from None

    def wait_up(self, timeout: float = 20.0) -> dict[str, Any]:
        self.wait(lambda s: s.get("phase2") == "Established", timeout, "tunnel up")
        return self.status()

    def log(self) -> str:
        return self.log_file.read_text(errors="replace")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self._log.close()


@pytest.fixture(scope="module")
def lab() -> Iterator[AwsLab]:
    require_strongswan()
    conn = load_aws_config(AWS_CONFIG)
    opts = LabOptions.for_tests(tunnels=(1,), lan=False, ike_version="ikev1")
    with AwsLab(conn, opts) as lab:
        yield lab


@pytest.fixture
def cgwd_factory(lab: AwsLab, tmp_path: Path) -> Iterator[Callable[..., Cgwd]]:
    started: list[Cgwd] = []

    def start(*extra: str) -> Cgwd:
        c = Cgwd(lab, tmp_path, *extra)
        started.append(c)
        return c

    yield start
    for c in started:
        c.stop()
    lab.reconfigure(1, lab.options.policy(1))
    lab.wait_tunnel_down(1, timeout=15)


def restrict(lab: AwsLab, ike: str, esp: str, **more: Any) -> None:
    lab.reconfigure(1, replace(lab.options.policy(1), ike_proposals=ike, esp_proposals=esp, **more))


SUITES = [
    # (strongSwan IKE proposal, ESP proposal, our phase 1 suite, our ESP suite, PFS group)
    ("aes128-sha1-modp1024", "aes128-sha1-modp1024", "aes128-sha1-modp1024", "aes128-sha1", 2),
    ("aes256-sha256-modp2048", "aes256-sha256-modp2048", "aes256-sha256-modp2048",
     "aes256-sha256", 14),
]  # fmt: skip


@pytest.mark.parametrize(("ike", "esp", "ike_suite", "esp_suite", "pfs"), SUITES)
def test_suite_establish_ping_and_our_quick_mode_rekey(
    lab: AwsLab,
    cgwd_factory: Callable[..., Cgwd],
    ike: str,
    esp: str,
    ike_suite: str,
    esp_suite: str,
    pfs: int,
) -> None:
    """Main Mode + Quick Mode with the lab restricted to one suite; traffic both ways; then
    our Quick Mode rekey with PFS (a wrong PFS group would only fail here)."""
    restrict(lab, ike, esp)
    cgwd = cgwd_factory("--child-rekey-time", "8", "--rekey-jitter", "0")
    st = cgwd.wait_up()
    assert st["ike"]["suite"] == ike_suite
    assert st["ike"]["lifetime"] == 28800  # AWS's value, proposed exactly
    child = st["children"][0]
    assert child["suite"] == esp_suite and child["pfs_group"] == pfs
    assert child["lifetime"] == 3600
    assert st["ike"]["port"] == 4500 and child["encap"] is True  # libipsec fakes a NAT
    (ike_sa,) = lab.list_sas(1)
    assert ike_sa.version == 1
    charon_child = lab.wait_tunnel_up(1)
    assert charon_child.spi_in == child["spi_out"]
    assert lab.ping("cgw", lab.vpc_host_ip, count=3)
    assert lab.ping("vpc", lab.cgw_inside_ip(1).ip, count=2)
    first = child["spi_in"]
    cgwd.wait(
        lambda s: len(s.get("children", [])) == 1 and s["children"][0]["spi_in"] != first,
        20,
        "child rekeyed by us, old one deleted",
    )
    assert lab.ping("cgw", lab.vpc_host_ip, count=3)
    new = cgwd.status()["children"][0]
    wait_until(
        lambda: (c := lab.tunnel_child(1)) is not None and c.spi_in == new["spi_out"],
        10,
        0.2,
        "strongSwan on the new child",
    )
