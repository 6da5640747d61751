"""cgwd's IKEv1 engine against strongSwan playing AWS (cgwd.lab, IKEv1 only), with the
userspace dataplane.

`python -m cgwd.ike.v1.run_tunnel` runs in the lab's ``cgw`` namespace from an AWS download
(AES128/SHA1/DH2 everywhere) and offers AWS's IKEv1 set; the lab's charon is restricted per
case. Success means both sides report the suite and the VPC host answers pings through
the tunnel. One lab serves the module.
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
        self.lab = lab
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
        """Up at both ends: charon installs its IPsec SA on Quick Mode message 3, which
        leaves after ours is installed."""
        self.wait(lambda s: s.get("phase2") == "Established", timeout, "tunnel up")
        self.lab.wait_tunnel_up(1, timeout=timeout)
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


def test_aws_rekeys_quick_mode_and_main_mode(
    lab: AwsLab, cgwd_factory: Callable[..., Cgwd]
) -> None:
    """AWS (charon) rekeys the IPsec SA (a new Quick Mode, we respond) and the ISAKMP SA
    (strongSwan reauthenticates with a new Main Mode); the phase 2 SA survives the
    phase 1 replacement, and a Quick Mode over the new ISAKMP SA still works."""
    cgwd = cgwd_factory()
    st = cgwd.wait_up()
    old_child = st["children"][0]["spi_in"]
    lab.rekey(1)
    cgwd.wait(
        lambda s: [c["spi_in"] for c in s.get("children", [])] not in ([], [old_child]),
        10,
        "child rekeyed by AWS",
    )
    cgwd.wait(lambda s: len(s.get("children", [])) == 1, 40, "old child deleted")
    assert lab.ping("cgw", lab.vpc_host_ip, count=2)
    old_ike = cgwd.status()["ike"]["spi_i"]
    lab.rekey(1, ike=True)
    cgwd.wait(
        lambda s: s.get("ike", {}).get("spi_i") not in (None, old_ike), 15, "ISAKMP SA replaced"
    )
    assert cgwd.status()["ike"]["initiator"] is False
    assert lab.ping("cgw", lab.vpc_host_ip, count=2)
    cgwd.wait(lambda s: s.get("isakmp_sas") == 1, 40, "old ISAKMP SA deleted")
    cur = cgwd.status()["children"][0]["spi_in"]
    lab.rekey(1)
    cgwd.wait(
        lambda s: [c["spi_in"] for c in s.get("children", [])] not in ([], [cur]),
        10,
        "child rekeyed over the new ISAKMP SA",
    )
    assert lab.ping("cgw", lab.vpc_host_ip, count=2)
    assert cgwd.status()["phase1"] == "Established"
    assert cgwd.status()["counters"].get("integrity_failed", 0) == 0


def test_our_main_mode_rekey(lab: AwsLab, cgwd_factory: Callable[..., Cgwd]) -> None:
    cgwd = cgwd_factory("--ike-rekey-time", "8", "--rekey-jitter", "0")
    st = cgwd.wait_up()
    first = st["ike"]["spi_i"]
    child = st["children"][0]["spi_in"]
    cgwd.wait(lambda s: s.get("ike", {}).get("spi_i") not in (None, first), 15, "ISAKMP rekeyed")
    cgwd.wait(lambda s: s.get("isakmp_sas") == 1, 20, "old ISAKMP SA deleted by us")
    wait_until(lambda: len(lab.list_sas(1)) == 1, 20, 0.2, "one ISAKMP SA at strongSwan")
    st = cgwd.status()
    assert [c["spi_in"] for c in st["children"]] == [child]  # phase 2 SAs outlive phase 1
    assert lab.ping("cgw", lab.vpc_host_ip, count=2)
    (ike_sa,) = lab.list_sas(1)
    assert ike_sa.children, "strongSwan adopted the IPsec SA into the new ISAKMP SA"
    assert "ike_rekeyed" in cgwd.log()


def _ping_stream(lab: AwsLab, count: int, interval: float = 0.02) -> tuple[int, int]:
    proc = lab.run(
        "cgw", "ping", "-n", "-q", "-i", str(interval), "-c", str(count), "-W", "2",
        str(lab.vpc_host_ip), check=False, timeout=count * interval + 30,
    )  # fmt: skip
    m = re.search(r"(\d+) packets transmitted, (\d+) received", proc.stdout)
    assert m, proc.stdout + proc.stderr
    return int(m.group(1)), int(m.group(2))


def test_rekeys_by_both_sides_under_a_stream_lose_nothing(
    lab: AwsLab, cgwd_factory: Callable[..., Cgwd]
) -> None:
    """Our Quick Mode rekeys every ~3 s and a Main Mode rekey, plus AWS rekeying the
    IPsec SA and the ISAKMP SA, while 500 pings flow: none is lost."""
    cgwd = cgwd_factory("--child-rekey-time", "3", "--ike-rekey-time", "5", "--rekey-jitter", "0")
    cgwd.wait_up()
    first = cgwd.status()["children"][0]["spi_in"]
    proc = lab.ns["cgw"].popen(
        "ping", "-n", "-q", "-i", "0.02", "-c", "500", "-W", "2", str(lab.vpc_host_ip),
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    time.sleep(4)
    lab.rekey(1)
    time.sleep(2)
    lab.rekey(1, ike=True)
    out, _ = proc.communicate(timeout=60)
    m = re.search(r"(\d+) packets transmitted, (\d+) received", out)
    assert m, out
    log = cgwd.log()
    assert log.count("child_rekeyed") >= 2, log[-3000:]
    assert "ike_rekeyed" in log
    assert cgwd.status()["children"][0]["spi_in"] != first
    assert (int(m.group(1)), int(m.group(2))) == (500, 500), log[-5000:]


def test_aws_dpd_is_answered(lab: AwsLab, cgwd_factory: Callable[..., Cgwd]) -> None:
    """AWS probes an idle peer (lab: after 2 s, dead 4 s later); we answer with the
    sequence number, and the tunnel stays up."""
    cgwd = cgwd_factory("--dpd-delay", "60")
    cgwd.wait_up()
    mark = lab.endpoint(1).charon.log_mark()
    time.sleep(8)
    lines = lab.endpoint(1).charon.log_since(mark)
    assert any("DPD" in line or "R_U_THERE" in line for line in lines), "\n".join(lines[-30:])
    assert lab.tunnel_child(1) is not None
    st = cgwd.status()
    assert st["phase2"] == "Established" and st["counters"].get("dpd_answered", 0) >= 1


def test_our_dpd_restart_and_kill_are_recovered(
    lab: AwsLab, cgwd_factory: Callable[..., Cgwd]
) -> None:
    cgwd = cgwd_factory()
    first = cgwd.wait_up()["ike"]["spi_i"]
    time.sleep(3)  # idle: both sides' DPD keep it up
    assert cgwd.status()["phase2"] == "Established"
    # Graceful restart: strongSwan DELETEs its SAs; we re-initiate.
    lab.restart_endpoint(1)
    cgwd.wait(
        lambda s: s.get("phase2") == "Established" and s["ike"]["spi_i"] != first,
        30,
        "re-established after a restart",
    )
    lab.wait_tunnel_up(1)  # charon installs its SAs on Quick Mode message 3
    assert lab.ping("cgw", lab.vpc_host_ip, count=2)
    assert "deleted_by_peer" in cgwd.log()
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
    lab.wait_tunnel_up(1)
    assert lab.ping("cgw", lab.vpc_host_ip, count=2)


def test_wrong_psk_is_auth_failed_and_retried(
    lab: AwsLab, cgwd_factory: Callable[..., Cgwd]
) -> None:
    lab.reconfigure(1, replace(lab.options.policy(1), psk=Secret("Not.the.right.psk.1")))
    cgwd = cgwd_factory()
    cgwd.wait(lambda s: s.get("last_down_reason") == "auth_failed", 20, "auth_failed")
    time.sleep(4)
    assert cgwd.proc.poll() is None
    log = cgwd.log()
    assert log.count("auth_failed") >= 2, log[-3000:]
    assert "pre-shared key mismatch" in log
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


def test_aws_initiates_main_mode(lab: AwsLab, cgwd_factory: Callable[..., Cgwd]) -> None:
    """We answer a Main Mode and Quick Mode that AWS starts (e.g. after its own restart)."""
    cgwd = cgwd_factory("--passive")
    time.sleep(1.0)
    assert lab.initiate(1)
    st = cgwd.wait_up()
    assert st["ike"]["initiator"] is False
    assert lab.ping("cgw", lab.vpc_host_ip, count=2)


def test_behind_nat(tmp_path: Path) -> None:
    """The customer gateway sits behind a masquerading NAT: Main Mode floats to 4500, ESP
    goes in UDP, our identity stays the public address, and a Quick Mode rekey works."""
    require_strongswan()
    conn = load_aws_config(AWS_CONFIG)
    opts = LabOptions.for_tests(tunnels=(1,), lan=False, nat=True, ike_version="ikev1")
    with AwsLab(conn, opts) as lab:
        assert lab.cgw_local_ip != lab.cgw_outside_ip
        cgwd = Cgwd(lab, tmp_path, "--child-rekey-time", "8", "--rekey-jitter", "0")
        try:
            st = cgwd.wait_up()
            assert st["ike"]["nat_local"] is True and st["ike"]["port"] == 4500
            assert st["children"][0]["encap"] is True
            (ike,) = lab.list_sas(1)
            assert ike.remote_id == str(lab.cgw_outside_ip)
            assert ike.nat_remote
            lab.wait_tunnel_up(1)
            assert lab.ping("cgw", lab.vpc_host_ip, count=3)
            first = st["children"][0]["spi_in"]
            cgwd.wait(
                lambda s: s["children"][0]["spi_in"] != first and len(s["children"]) == 1,
                20,
                "rekeyed behind the NAT",
            )
            # (connectivity on the new SA; loss across rekeys is the stream tests' job)
            time.sleep(1.0)
            assert lab.ping("cgw", lab.vpc_host_ip, count=3), cgwd.log()[-4000:] + "\n".join(
                lab.log(1).splitlines()[-60:]
            )
        finally:
            cgwd.stop()


def test_aws_short_lifetimes_rekeys_on_its_own_under_a_stream(
    lab: AwsLab, cgwd_factory: Callable[..., Cgwd]
) -> None:
    """AWS with short lifetimes (phase 1 40 s, phase 2 24 s, margin 8 s, no fuzz) rekeys
    both phases by itself while pings flow: we answer its Main and Quick Modes, honour its
    lifetime, and lose nothing."""
    lab.reconfigure(
        1,
        replace(
            lab.options.policy(1),
            phase1_lifetime=40,
            phase2_lifetime=24,
            rekey_margin=8,
            rekey_fuzz_percentage=0,
        ),
    )
    cgwd = cgwd_factory("--rekey-jitter", "0")
    st = cgwd.wait_up()
    first = st["children"][0]["spi_in"]
    first_ike = st["ike"]["spi_i"]
    sent, received = _ping_stream(lab, 1750)  # 35 s
    st = cgwd.status()
    log = cgwd.log()
    assert st["children"][0]["spi_in"] != first and st["ike"]["spi_i"] != first_ike
    assert "responded" in log and "by rekey" in log, log[-3000:]
    assert st["children"][0]["lifetime"] <= 24  # AWS's shorter lifetime is honoured
    # Our side never lacks the SA a packet arrives on (the userspace dataplane would log
    # every such drop). strongSwan's libipsec, deleting its own expired SA, has been seen
    # to delay one reply beyond ping's 2 s wait (measured: 1 in 1750, once in 3 runs), so
    # the end-to-end count allows that single packet.
    assert "unknown_spi" not in log, log[-5000:]
    assert sent == 1750 and received >= sent - 1, log[-5000:]


def test_pfs_group_other_than_phase_1(lab: AwsLab, cgwd_factory: Callable[..., Cgwd]) -> None:
    """Phase 1 on ECP-256 but AWS allows only MODP-1024 for PFS: Quick Mode moves on to
    the group AWS accepts after its refusals, and traffic flows."""
    restrict(lab, "aes128-sha1-ecp256", "aes128-sha1-modp1024")
    cgwd = cgwd_factory()
    st = cgwd.wait_up(timeout=40)
    assert st["ike"]["suite"] == "aes128-sha1-ecp256"
    assert st["children"][0]["pfs_group"] == 2
    lab.wait_tunnel_up(1)
    assert lab.ping("cgw", lab.vpc_host_ip, count=2)
