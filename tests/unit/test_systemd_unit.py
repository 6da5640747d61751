"""systemd/cgwd.service and cgwd.tmpfiles, checked by systemd's own tools.

- `systemd-analyze security --offline=yes` must rate the unit at most 2.8 (issue 7: as
  hardened as systemd-networkd; strongSwan's Debian unit rates 9.6).
- `systemd-analyze verify` must accept it (run on a copy whose ExecStart points at a file
  that exists, because verify checks the binary and cgwd is not installed here).
- The settings the daemon relies on are there, and the tmpfiles entry creates what it says.
"""

from __future__ import annotations

import re
import shutil
import stat
import subprocess
from pathlib import Path

import pytest
from conftest import require

from cgwd.net.base import RTPROT_CGWD

SYSTEMD_DIR = Path(__file__).resolve().parents[2] / "systemd"
UNIT = SYSTEMD_DIR / "cgwd.service"
TMPFILES = SYSTEMD_DIR / "cgwd.tmpfiles"
MAX_EXPOSURE = 2.8


def settings(path: Path) -> dict[str, list[str]]:
    """KEY -> values, in order (systemd allows repeated keys)."""
    found: dict[str, list[str]] = {}
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";", "[")):
            continue
        key, _, value = line.partition("=")
        found.setdefault(key.strip(), []).append(value.strip())
    return found


def require_systemd_analyze() -> None:
    require(shutil.which("systemd-analyze") is not None, "needs systemd-analyze (Debian systemd)")


def test_security_exposure_is_at_most_2_8() -> None:
    require_systemd_analyze()
    proc = subprocess.run(
        ["systemd-analyze", "security", "--offline=yes", str(UNIT)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    match = re.search(r"Overall exposure level for cgwd\.service: (\d+\.\d)", proc.stdout)
    assert match, proc.stdout + proc.stderr
    assert float(match.group(1)) <= MAX_EXPOSURE, proc.stdout


def test_verify_passes(tmp_path: Path) -> None:
    require_systemd_analyze()
    binary = tmp_path / "cgwd"
    binary.write_text("#!/bin/sh\nexit 0\n")
    binary.chmod(0o755)
    unit = tmp_path / "cgwd.service"
    text = UNIT.read_text()
    assert "ExecStart=/usr/local/bin/cgwd " in text
    unit.write_text(text.replace("ExecStart=/usr/local/bin/cgwd ", f"ExecStart={binary} "))
    proc = subprocess.run(
        ["systemd-analyze", "verify", "--man=no", str(unit)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0 and proc.stderr == "", proc.stderr


def test_the_settings_the_daemon_relies_on() -> None:
    s = settings(UNIT)
    expected = {
        "Type": ["notify"],
        "NotifyAccess": ["main"],
        "ExecStart": ["/usr/local/bin/cgwd run --config /etc/cgwd/cgwd.toml"],
        "ExecReload": ["/bin/kill -HUP $MAINPID"],
        "Restart": ["on-failure"],
        "RuntimeDirectory": ["cgwd"],
        "RuntimeDirectoryMode": ["0750"],
        "DeviceAllow": ["/dev/net/tun rw"],
        "ReadWritePaths": ["/proc/sys/net"],
        "NoNewPrivileges": ["yes"],
        "ProtectSystem": ["strict"],
        "PrivateTmp": ["yes"],
    }
    for key, value in expected.items():
        assert s.get(key) == value, key
    assert s["WatchdogSec"]
    caps = {"CAP_NET_ADMIN", "CAP_NET_BIND_SERVICE", "CAP_NET_RAW"}
    assert set(s["CapabilityBoundingSet"][0].split()) == caps
    assert set(s["AmbientCapabilities"][0].split()) == caps
    assert set(s["RestrictAddressFamilies"][0].split()) == {
        "AF_UNIX",
        "AF_INET",
        "AF_INET6",
        "AF_NETLINK",
    }
    # /proc/sys must stay visible for rp_filter (ProcSubset=pid would hide it).
    assert "ProcSubset" not in s


def test_tmpfiles_creates_the_directories_and_the_protocol_name(tmp_path: Path) -> None:
    require(shutil.which("systemd-tmpfiles") is not None, "needs systemd-tmpfiles (Debian systemd)")
    root = tmp_path / "root"
    root.mkdir()
    proc = subprocess.run(
        ["systemd-tmpfiles", "--create", f"--root={root}", str(TMPFILES)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert stat.S_IMODE((root / "run/cgwd").stat().st_mode) == 0o750
    assert stat.S_IMODE((root / "etc/cgwd").stat().st_mode) == 0o700
    protos = root / "etc/iproute2/rt_protos.d/cgwd.conf"
    assert protos.read_text() == f"{RTPROT_CGWD} cgwd\n"


@pytest.mark.parametrize("path", [UNIT, TMPFILES])
def test_files_are_plain_ascii(path: Path) -> None:
    path.read_bytes().decode("ascii")
