"""cgwd's IKEv2 engine against strongSwan playing AWS (cgwd.lab), with the userspace dataplane.

`python -m cgwd.ike.run_tunnel` runs in the lab's ``cgw`` namespace from the AWS sample
download (which says AES128/SHA1/DH2 everywhere) and offers AWS's whole supported set; the
lab's charon is restricted to one suite per case. Success means: both sides report the
suite, and the VPC host answers pings through the tunnel. One lab serves the module.
"""

from __future__ import annotations

import json
import re
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from conftest import require_strongswan

from cgwd.config.importers import load_aws_config
from cgwd.lab.aws_side import AwsLab, LabOptions
from cgwd.lab.strongswan import wait_until
from cgwd.secret import Secret

pytestmark = [pytest.mark.netns, pytest.mark.strongswan, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]
PYTHON = str(REPO / ".venv" / "bin" / "python")
AWS_CONFIG = REPO / "tests" / "data" / "aws" / "aws-describe-vpn-connections-static.xml"
FAST = [  # quick failure detection for the tests
    "--dpd-delay", "2",
    "--dpd-retransmit-interval", "1",
    "--dpd-retransmit-tries", "2",
    "--retransmit-interval", "1",
    "--retransmit-tries", "3",
    "--reconnect-cap", "2",
]  # fmt: skip


class Cgwd:
    """One run_tunnel process in the lab's cgw namespace."""

    def __init__(self, lab: AwsLab, workdir: Path, *extra: str) -> None:
        self.lab = lab
        self.status_file = workdir / "status.json"
        self.status_file.unlink(missing_ok=True)
        self.log_file = workdir / "cgwd.log"
        self._log = self.log_file.open("w")
        args = [
            PYTHON, "-m", "cgwd.ike.run_tunnel",
            "--aws-config", str(AWS_CONFIG), "--tunnel", "1",
            "--local-address", str(lab.cgw_local_ip),
            "--route", str(lab.options.vpc_cidr),
            "--status-file", str(self.status_file),
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
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AwsLab]:
    require_strongswan()
    conn = load_aws_config(AWS_CONFIG)
    with AwsLab(conn, LabOptions.for_tests(tunnels=(1,), lan=False)) as lab:
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
    # Back to the file's policy and no SA left over for the next test.
    lab.reconfigure(1, lab.options.policy(1))
    lab.wait_tunnel_down(1, timeout=15)


def restrict(lab: AwsLab, ike: str, esp: str, **more: Any) -> None:
    lab.reconfigure(1, replace(lab.options.policy(1), ike_proposals=ike, esp_proposals=esp, **more))


SUITES = [
    # (strongSwan IKE proposal, ESP proposal, our IKE suite name, our ESP suite, PFS group)
    ("aes128-sha1-modp1024", "aes128-sha1-modp1024",
     "aes128-sha1-prfsha1-modp1024", "aes128-sha1", 2),
    ("aes256-sha256-modp2048", "aes256-sha256-modp2048",
     "aes256-sha256-prfsha256-modp2048", "aes256-sha256", 14),
    ("aes128gcm16-prfsha256-ecp256", "aes128gcm16-ecp256",
     "aes128gcm16-prfsha256-ecp256", "aes128gcm16", 19),
    ("aes256gcm16-prfsha384-ecp384", "aes256gcm16-ecp384",
     "aes256gcm16-prfsha384-ecp384", "aes256gcm16", 20),
    ("aes256-sha512-ecp521", "aes256-sha512-ecp521",
     "aes256-sha512-prfsha512-ecp521", "aes256-sha512", 21),
    ("aes128-sha256-modp2048s256", "aes128-sha256-modp2048s256",
     "aes128-sha256-prfsha256-modp2048s256", "aes128-sha256", 24),
]  # fmt: skip


@pytest.mark.parametrize(("ike", "esp", "ike_suite", "esp_suite", "pfs"), SUITES)
def test_suite_matrix_establish_ping_and_child_rekey_with_pfs(
    lab: AwsLab,
    cgwd_factory: Callable[..., Cgwd],
    ike: str,
    esp: str,
    ike_suite: str,
    esp_suite: str,
    pfs: int,
) -> None:
    """The file says AES128/SHA1/DH2; strongSwan allows only one suite; we still get up,
    carry traffic, and rekey the Child SA with the PFS group strongSwan insists on."""
    restrict(lab, ike, esp)
    cgwd = cgwd_factory("--child-rekey-time", "4", "--rekey-jitter", "0")
    st = cgwd.wait_up()
    assert st["ike"]["suite"] == ike_suite
    assert st["children"][0]["suite"] == esp_suite
    assert st["ike"]["port"] == 4500  # strongSwan's libipsec fakes a NAT: ESP-in-UDP
    assert st["children"][0]["encap"] is True
    child = lab.wait_tunnel_up(1)
    assert child.spi_in == st["children"][0]["spi_out"]
    assert lab.ping("cgw", lab.vpc_host_ip, count=3)
    first_spi = st["children"][0]["spi_in"]
    cgwd.wait(
        lambda s: (
            any(
                c["spi_in"] != first_spi and c["pfs_group"] == pfs and c["state"] == "Established"
                for c in s.get("children", [])
            )
            and len(s["children"]) == 1
        ),
        20,
        "child rekeyed with PFS",
    )
    assert lab.ping("cgw", lab.vpc_host_ip, count=3)
    new = cgwd.status()["children"][0]
    wait_until(
        lambda: (c := lab.tunnel_child(1)) is not None and c.spi_in == new["spi_out"],
        10,
        0.2,
        "strongSwan on the new child",
    )


def test_aws_initiates_and_rekeys_child_and_ike(
    lab: AwsLab, cgwd_factory: Callable[..., Cgwd]
) -> None:
    """Startup action "start": AWS initiates; then AWS rekeys the Child SA and the IKE SA."""
    cgwd = cgwd_factory("--passive")
    time.sleep(1.0)
    assert lab.initiate(1)
    st = cgwd.wait_up()
    assert st["ike"]["initiator"] is False
    assert lab.ping("cgw", lab.vpc_host_ip, count=2)
    ep = lab.endpoint(1)
    old_child = st["children"][0]["spi_in"]
    ep.charon.rekey(child=ep.name)
    cgwd.wait(
        lambda s: [c["spi_in"] for c in s.get("children", [])] not in ([], [old_child]),
        10,
        "child rekeyed by AWS",
    )
    cgwd.wait(lambda s: len(s.get("children", [])) == 1, 10, "old child deleted")
    assert lab.ping("cgw", lab.vpc_host_ip, count=2)
    old_ike = cgwd.status()["ike"]["spi_i"]
    ep.charon.rekey(ike=ep.name)
    cgwd.wait(lambda s: s.get("ike", {}).get("spi_i") not in (None, old_ike), 10, "IKE rekeyed")
    assert lab.ping("cgw", lab.vpc_host_ip, count=2)
    # The rekeyed IKE SA works: a child rekey over it still succeeds.
    cur = cgwd.status()["children"][0]["spi_in"]
    ep.charon.rekey(child=ep.name)
    cgwd.wait(
        lambda s: [c["spi_in"] for c in s.get("children", [])] not in ([], [cur]),
        10,
        "child rekeyed over the new IKE SA",
    )
    assert lab.ping("cgw", lab.vpc_host_ip, count=2)
    assert cgwd.status()["phase1"] == "Established"


def test_our_ike_rekey(lab: AwsLab, cgwd_factory: Callable[..., Cgwd]) -> None:
    cgwd = cgwd_factory("--ike-rekey-time", "4", "--rekey-jitter", "0")
    st = cgwd.wait_up()
    first = st["ike"]["spi_i"]
    cgwd.wait(lambda s: s.get("ike", {}).get("spi_i") not in (None, first), 15, "IKE rekeyed")
    sas = lab.list_sas(1)
    wait_until(lambda: len(lab.list_sas(1)) == 1, 10, 0.2, "old IKE SA deleted at strongSwan")
    assert sas
    assert lab.ping("cgw", lab.vpc_host_ip, count=2)
    assert "ike_rekeyed" in cgwd.log()


def test_wrong_psk_is_auth_failed_and_retried(
    lab: AwsLab, cgwd_factory: Callable[..., Cgwd]
) -> None:
    lab.reconfigure(1, replace(lab.options.policy(1), psk=Secret("Not.the.right.psk.1")))
    cgwd = cgwd_factory()
    cgwd.wait(lambda s: s.get("last_down_reason") == "auth_failed", 15, "auth_failed")
    time.sleep(4)  # backoff capped at 2 s: several more attempts, no crash
    assert cgwd.proc.poll() is None
    log = cgwd.log()
    assert log.count("auth_failed") >= 3
    assert "Not.the.right" not in log
    assert cgwd.status()["phase1"] in ("Down", "Negotiating")


def test_no_common_proposal_is_logged_and_retried(
    lab: AwsLab, cgwd_factory: Callable[..., Cgwd]
) -> None:
    restrict(lab, "aes256-sha512-ecp521", "aes256-sha512-ecp521")
    cgwd = cgwd_factory("--proposals", "file")  # only what the file says: AES128/SHA1/DH2
    cgwd.wait(lambda s: s.get("last_down_reason") == "no_proposal_chosen", 15, "no proposal")
    time.sleep(3)
    assert cgwd.proc.poll() is None
    assert cgwd.log().count("no_proposal_chosen") >= 2


def test_peer_restart_and_kill_are_noticed_and_recovered(
    lab: AwsLab, cgwd_factory: Callable[..., Cgwd]
) -> None:
    cgwd = cgwd_factory()
    first = cgwd.wait_up()["ike"]["spi_i"]
    # Graceful restart: strongSwan DELETEs its SAs; we re-initiate.
    lab.restart_endpoint(1)
    cgwd.wait(
        lambda s: s.get("phase2") == "Established" and s["ike"]["spi_i"] != first,
        30,
        "re-established after a restart",
    )
    assert lab.ping("cgw", lab.vpc_host_ip, count=2)
    assert "deleted_by_peer" in cgwd.log() or "ike_deleted_by_peer" in cgwd.log()
    second = cgwd.status()["ike"]["spi_i"]
    # Killed: no DELETE; our DPD notices, and we re-initiate once it is back.
    lab.kill_endpoint(1)
    cgwd.wait(lambda s: s.get("last_down_reason") == "dpd_timeout", 20, "dpd_timeout")
    lab.start_endpoint(1)
    cgwd.wait(
        lambda s: s.get("phase2") == "Established" and s["ike"]["spi_i"] != second,
        30,
        "re-established after a kill",
    )
    assert lab.ping("cgw", lab.vpc_host_ip, count=2)


def test_aws_dpd_is_answered(lab: AwsLab, cgwd_factory: Callable[..., Cgwd]) -> None:
    """AWS probes an idle peer (lab: after 2 s, dead 4 s later); we answer, it stays up."""
    cgwd = cgwd_factory("--dpd-delay", "60")  # we never probe: only AWS does
    cgwd.wait_up()
    mark = lab.endpoint(1).charon.log_mark()
    time.sleep(8)
    lines = lab.endpoint(1).charon.log_since(mark)
    assert any("sending DPD request" in line for line in lines), "\n".join(lines[-30:])
    assert lab.tunnel_child(1) is not None
    assert cgwd.status()["phase2"] == "Established"


def _ping_stream(lab: AwsLab, count: int, interval: float = 0.02) -> tuple[int, int]:
    """(transmitted, received) of a ping stream from cgw to the VPC host."""
    proc = lab.run(
        "cgw", "ping", "-n", "-q", "-i", str(interval), "-c", str(count), "-W", "2",
        str(lab.vpc_host_ip), check=False, timeout=count * interval + 30,
    )  # fmt: skip
    m = re.search(r"(\d+) packets transmitted, (\d+) received", proc.stdout)
    assert m, proc.stdout + proc.stderr
    return int(m.group(1)), int(m.group(2))


def test_rekeys_under_a_continuous_stream_lose_nothing(
    lab: AwsLab, cgwd_factory: Callable[..., Cgwd]
) -> None:
    """Our Child rekeys every ~3 s and an IKE rekey, while 400 pings flow (8 s)."""
    cgwd = cgwd_factory("--child-rekey-time", "3", "--ike-rekey-time", "5", "--rekey-jitter", "0")
    cgwd.wait_up()
    first_child = cgwd.status()["children"][0]["spi_in"]
    sent, received = _ping_stream(lab, 400)
    log = cgwd.log()
    assert log.count("child_rekeyed") >= 2, log[-3000:]
    assert "ike_rekeyed" in log
    assert cgwd.status()["children"][0]["spi_in"] != first_child
    assert (sent, received) == (400, 400), "\n".join(
        line for line in log.splitlines() if "drop" in line or "SA " in line
    )


def test_forced_child_rekey_collision(lab: AwsLab, cgwd_factory: Callable[..., Cgwd]) -> None:
    """Both ends rekey the Child SA at once (requests held back by cutting the path, then
    released together): exactly one Child SA survives on both sides, traffic flows.
    (Every ordering of the two exchanges is covered in memory, tests/exchange.)"""
    cgwd = cgwd_factory(
        "--child-rekey-time", "6", "--rekey-jitter", "0", "--dpd-delay", "60"
    )  # fmt: skip
    st = cgwd.wait_up()
    first = st["children"][0]["spi_in"]
    cgwd.wait(lambda s: (s["children"][0].get("rekey_in") or 99) < 1.2, 10, "rekey imminent")
    lab.cut(1)
    ep = lab.endpoint(1)
    mark = ep.charon.log_mark()
    ep.charon.rekey(child=ep.name)
    wait_until(
        lambda: any("activating CHILD_REKEY task" in x for x in ep.charon.log_since(mark)),
        5,
        0.05,
        "strongSwan's rekey in flight",
    )
    cgwd.wait(lambda s: s["children"][0]["state"] == "Rekeying", 5, "our rekey in flight")
    lab.restore(1)
    cgwd.wait(
        lambda s: (
            len(s.get("children", [])) == 1
            and s["children"][0]["spi_in"] != first
            and s["children"][0]["state"] == "Established"
        ),
        15,
        "one child after the collision",
    )
    wait_until(lambda: len(lab.list_sas(1)[0].children) == 1, 15, 0.2, "one child at AWS")
    charon_child = lab.tunnel_child(1)
    assert charon_child is not None
    assert charon_child.spi_in == cgwd.status()["children"][0]["spi_out"]
    lines = "\n".join(ep.charon.log_since(mark))
    # Both requests were in flight together; which end *sees* a collision depends on which
    # retransmission arrives first (an exchange that completed before the other request
    # arrived deleted the old SA: that request is answered CHILD_SA_NOT_FOUND).
    assert "collision" in lines or "child_rekey_collision" in cgwd.log(), lines[-4000:]
    assert lab.ping("cgw", lab.vpc_host_ip, count=3)


def test_behind_nat(tmp_path: Path) -> None:
    """The customer gateway sits behind a masquerading NAT: IKE floats to 4500, ESP goes in
    UDP, our identity stays the public address, and the tunnel survives rekeys."""
    require_strongswan()
    conn = load_aws_config(AWS_CONFIG)
    with AwsLab(conn, LabOptions.for_tests(tunnels=(1,), lan=False, nat=True)) as lab:
        assert lab.cgw_local_ip != lab.cgw_outside_ip
        cgwd = Cgwd(lab, tmp_path, "--child-rekey-time", "4", "--rekey-jitter", "0")
        try:
            st = cgwd.wait_up()
            assert st["ike"]["nat_local"] is True and st["ike"]["port"] == 4500
            assert st["children"][0]["encap"] is True
            (ike,) = lab.list_sas(1)
            assert ike.remote_id == str(lab.cgw_outside_ip)
            assert ike.nat_remote
            assert lab.ping("cgw", lab.vpc_host_ip, count=3)
            first = st["children"][0]["spi_in"]
            cgwd.wait(
                lambda s: s["children"][0]["spi_in"] != first and len(s["children"]) == 1,
                15,
                "rekeyed behind the NAT",
            )
            assert lab.ping("cgw", lab.vpc_host_ip, count=3)
        finally:
            cgwd.stop()


def test_forced_ike_rekey_collision(lab: AwsLab, cgwd_factory: Callable[..., Cgwd]) -> None:
    """Both ends rekey the IKE SA at once: one IKE SA remains, shared by both, and it works."""
    cgwd = cgwd_factory(
        "--ike-rekey-time", "6", "--rekey-jitter", "0", "--dpd-delay", "60"
    )  # fmt: skip
    st = cgwd.wait_up()
    first = st["ike"]["spi_i"]
    cgwd.wait(lambda s: (s["ike"].get("rekey_in") or 99) < 1.2, 10, "IKE rekey imminent")
    lab.cut(1)
    ep = lab.endpoint(1)
    mark = ep.charon.log_mark()
    ep.charon.rekey(ike=ep.name)
    wait_until(
        lambda: any("activating IKE_REKEY task" in x for x in ep.charon.log_since(mark)),
        5,
        0.05,
        "strongSwan's IKE rekey in flight",
    )
    cgwd.wait(lambda s: s["phase1"] == "Rekeying", 5, "our IKE rekey in flight")
    lab.restore(1)
    cgwd.wait(
        lambda s: (
            s.get("ike") is not None and s["ike"]["spi_i"] != first and s["phase1"] == "Established"
        ),
        15,
        "one IKE SA after the collision",
    )
    wait_until(lambda: len(lab.list_sas(1)) == 1, 20, 0.2, "one IKE SA at AWS")
    (ike,) = lab.list_sas(1)
    ours = cgwd.status()["ike"]
    lines = "\n".join(ep.charon.log_since(mark))
    assert ike.state == "ESTABLISHED", lines[-3000:]
    assert "collision" in lines, lines[-3000:]
    assert {ours["spi_i"], ours["spi_r"]} == {
        ike.raw.get("initiator-spi"),
        ike.raw.get("responder-spi"),
    }, (ours, ike.raw)
    assert lab.ping("cgw", lab.vpc_host_ip, count=3)
    # The surviving IKE SA carries exchanges: a Child rekey over it succeeds.
    child = cgwd.status()["children"][0]["spi_in"]
    ep.charon.rekey(child=ep.name)
    cgwd.wait(
        lambda s: [c["spi_in"] for c in s.get("children", [])] not in ([], [child]),
        10,
        "child rekeyed over the surviving IKE SA",
    )
    assert lab.ping("cgw", lab.vpc_host_ip, count=2)


def test_both_ends_initiate_at_once(lab: AwsLab, cgwd_factory: Callable[..., Cgwd]) -> None:
    """AWS's "start" and our own initiation race: one IKE SA and one Child SA remain, the
    same at both ends, and traffic flows."""
    cgwd = cgwd_factory()
    lab.initiate(1, timeout=10)
    cgwd.wait_up()
    # strongSwan keeps duplicates; we delete the redundant one (nonce rule) after 5 s.
    wait_until(lambda: len(lab.list_sas(1)) == 1, 15, 0.2, "one IKE SA at AWS")
    cgwd.wait(lambda s: len(s["children"]) == 1, 5, "one Child SA here")
    (ike,) = lab.list_sas(1)
    ours = cgwd.status()
    assert {ours["ike"]["spi_i"], ours["ike"]["spi_r"]} == {
        ike.raw.get("initiator-spi"),
        ike.raw.get("responder-spi"),
    }
    assert len(ike.children) == 1 and len(ours["children"]) == 1
    assert lab.ping("cgw", lab.vpc_host_ip, count=3)
    assert ours["phase2"] == "Established"


def test_aws_deletes_the_child_sa_only(lab: AwsLab, cgwd_factory: Callable[..., Cgwd]) -> None:
    """AWS deletes the Child SA but keeps the IKE SA: we create a new Child SA over it."""
    cgwd = cgwd_factory()
    st = cgwd.wait_up()
    ike, child = st["ike"]["spi_i"], st["children"][0]["spi_in"]
    ep = lab.endpoint(1)
    ep.charon.terminate(child=ep.name)
    cgwd.wait(
        lambda s: s.get("phase2") == "Established" and s["children"][0]["spi_in"] != child,
        15,
        "a new Child SA",
    )
    assert cgwd.status()["ike"]["spi_i"] == ike  # same IKE SA
    assert "child_deleted" in cgwd.log()
    assert lab.ping("cgw", lab.vpc_host_ip, count=3)


def test_pfs_trap_is_reported_and_survived(lab: AwsLab, cgwd_factory: Callable[..., Cgwd]) -> None:
    """Only the file's values (DH 2 for PFS) against an endpoint that requires PFS group 14:
    the tunnel comes up (IKE_AUTH's Child SA has no PFS), the first rekey fails with a
    clear log line naming the PFS groups, and at the Child SA's end of life a new IKE SA
    brings the tunnel back."""
    restrict(lab, "aes128-sha1-modp1024", "aes128-sha1-modp2048")
    cgwd = cgwd_factory(
        "--proposals", "file", "--child-rekey-time", "3", "--child-lifetime", "8",
        "--rekey-jitter", "0",
    )  # fmt: skip
    first = cgwd.wait_up()["ike"]["spi_i"]
    assert lab.ping("cgw", lab.vpc_host_ip, count=2)
    wait_until(lambda: "check the PFS groups" in cgwd.log(), 10, 0.2, "PFS failure logged")
    cgwd.wait(
        lambda s: s.get("phase2") == "Established" and s["ike"]["spi_i"] != first,
        25,
        "back up over a new IKE SA",
    )
    assert "child_create_failed" in cgwd.log()
    assert lab.ping("cgw", lab.vpc_host_ip, count=2)
