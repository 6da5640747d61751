"""`make demo` works: `python -m cgwd.demo` end to end, as a fresh machine would run it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from conftest import require_strongswan

pytestmark = [pytest.mark.netns, pytest.mark.strongswan, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]


def test_demo_runs_and_cleans_up() -> None:
    require_strongswan()
    proc = subprocess.run(
        [sys.executable, "-m", "cgwd.demo"],
        capture_output=True,
        text=True,
        timeout=180,
        cwd=str(REPO),
        check=False,
    )
    out = proc.stdout
    assert proc.returncode == 0, out + proc.stderr
    for expected in (
        "2/2 tunnels up",  # cgwd status printed with both tunnels up
        "1/2 tunnels up (not up: vpc01 tunnel 1)",  # ... and after the cut
        "moved the routes to tunnel 2",
        "carries the traffic again",
        "cgwd exited with status 0",
        "no tunnel interface, cgwd route or nftables table is left in cgw",
        "nothing is left behind",
    ):
        assert expected in out, out
    # Pings before the cut, over tunnel 2, and after the restore all got every answer.
    assert out.count("4 received, 0% packet loss") == 3, out
