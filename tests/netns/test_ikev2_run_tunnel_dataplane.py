"""`python -m cgwd.ike.run_tunnel --dataplane ...` builds the dataplane the selection picks.

Runs in a namespace of its own with only its loopback (nothing it sends can leave it). The
expectation comes from probing the kernel here, independently of run_tunnel: ``auto``
must name the kind `choose_dataplane` picks and open that kind of interface, and
``kernel`` on a kernel without ESP or tunnel interfaces must fail with a clear message,
not a traceback.
"""

from __future__ import annotations

import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from cgwd.dataplane.select import choose_dataplane, probe_kernel
from cgwd.lab.netns import Netns, Topology

try:
    from tests.conftest import require_root
except ImportError:  # pragma: no cover - depends on how pytest was started
    from conftest import require_root  # type: ignore[no-redef]

pytestmark = pytest.mark.netns

REPO = Path(__file__).resolve().parents[2]
PYTHON = str(REPO / ".venv" / "bin" / "python")
AWS_CONFIG = REPO / "tests" / "data" / "aws" / "aws-describe-vpn-connections-static.xml"
LOCAL = "192.0.2.1"
IFACE = "cgwdp1"


@pytest.fixture
def ns() -> Iterator[Netns]:
    require_root()
    with Topology() as topo:
        ns = topo.add_netns("rt")
        ns.ip("addr", "add", f"{LOCAL}/32", "dev", "lo")
        ns.ip("link", "set", "lo", "up")
        yield ns


def _start(ns: Netns, log: Path, dataplane: str) -> subprocess.Popen[bytes]:
    args = [
        PYTHON, "-m", "cgwd.ike.run_tunnel", "--aws-config", str(AWS_CONFIG),
        "--tunnel", "1", "--local-address", LOCAL, "--interface", IFACE,
        "--dataplane", dataplane, "--log-level", "DEBUG",
    ]  # fmt: skip
    with log.open("w") as out:
        return ns.popen(*args, stdout=out, stderr=subprocess.STDOUT, cwd=str(REPO))


def _wait_for(log: Path, text: str, proc: subprocess.Popen[bytes], timeout: float) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        content = log.read_text(errors="replace")
        if text in content or proc.poll() is not None:
            return content
        time.sleep(0.1)
    return log.read_text(errors="replace")


def test_auto_runs_the_dataplane_the_selection_picks(ns: Netns, tmp_path: Path) -> None:
    expected, _ = choose_dataplane("auto", probe_kernel())
    log = tmp_path / "run.log"
    proc = _start(ns, log, "auto")
    try:
        content = _wait_for(log, "initiating", proc, 30)
        assert proc.poll() is None, content
        assert f"dataplane: {expected} (auto: " in content, content
        link = ns.ip("-d", "link", "show", IFACE).stdout
        if expected == "userspace":
            assert "tun" in link, link
        else:
            assert "vti" in link or "xfrm" in link, link
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        rc = proc.wait(15)
    assert rc == 0, log.read_text(errors="replace")


def test_kernel_without_kernel_support_fails_cleanly(ns: Netns, tmp_path: Path) -> None:
    if probe_kernel().usable:
        pytest.skip("this kernel can run the kernel dataplane (covered by the UML tests)")
    log = tmp_path / "run.log"
    proc = _start(ns, log, "kernel")
    try:
        rc = proc.wait(30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)
    content = log.read_text(errors="replace")
    assert rc == 1, content
    assert "dataplane: kernel (configured, but it will fail: " in content, content
    assert "cgwd: " in content and "Traceback" not in content, content
