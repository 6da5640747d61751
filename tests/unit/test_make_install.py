"""`make install` as the README describes it, into a temporary root: the command runs from
its own virtualenv, the unit points at it, and an existing configuration is never replaced."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).parents[2]

pytestmark = pytest.mark.slow


def _install(root: Path) -> subprocess.CompletedProcess[str]:
    dirs = {
        "PREFIX": root / "opt/cgwd",
        "BINDIR": root / "bin",
        "SYSCONFDIR": root / "etc/cgwd",
        "UNITDIR": root / "etc/systemd/system",
        "TMPFILESDIR": root / "usr/lib/tmpfiles.d",
    }
    args = [f"{k}={v}" for k, v in dirs.items()]
    return subprocess.run(
        ["make", "-C", str(REPO), "install", f"PYTHON={sys.executable}", *args],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )


def test_make_install_into_a_temporary_root(tmp_path: Path) -> None:
    assert shutil.which("make"), "make is part of the build requirements"
    proc = _install(tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    cgwd = tmp_path / "bin/cgwd"
    assert cgwd.is_symlink() and cgwd.resolve() == (tmp_path / "opt/cgwd/bin/cgwd").resolve()
    version = subprocess.run([str(cgwd), "--version"], capture_output=True, text=True, check=True)
    assert version.stdout.startswith("cgwd ")
    unit = (tmp_path / "etc/systemd/system/cgwd.service").read_text()
    assert f"ExecStart={cgwd} run --config {tmp_path}/etc/cgwd/cgwd.toml" in unit
    config = tmp_path / "etc/cgwd/cgwd.toml"
    assert config.stat().st_mode & 0o777 == 0o600
    assert (tmp_path / "etc/cgwd").stat().st_mode & 0o777 == 0o700
    assert (tmp_path / "usr/lib/tmpfiles.d/cgwd.conf").exists()

    config.write_text("# the admin's own\n")
    proc = _install(tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert config.read_text() == "# the admin's own\n"
