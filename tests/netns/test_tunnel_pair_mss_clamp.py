"""A SYN that crosses a cgwd tunnel arrives with the MSS cgwd's nftables clamp set.

The kernel datapath's scenario (tests/uml/scenario_static_pair.py: hostA - gwA == tunnel ==
gwB - hostB, cgwd on both gateways with static keys) runs here on the host kernel with the
userspace datapath, because Debian's UML kernel has no nftables ``inet`` family: the clamp
rules match the tunnel interface by name, the same for a TUN device as for a VTI. The MSS
is read from the SYN as hostB receives it (an AF_PACKET capture parsed by the scenario).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

try:
    from tests.conftest import require, require_root
except ImportError:  # pragma: no cover - depends on how pytest was started
    from conftest import require, require_root  # type: ignore[no-redef]

pytestmark = [pytest.mark.netns, pytest.mark.slow]

SCENARIO = Path(__file__).resolve().parents[1] / "uml" / "scenario_static_pair.py"


def test_syn_through_the_tunnel_carries_the_clamped_mss() -> None:
    require_root()
    require(shutil.which("nft") is not None, "needs nft (Debian package nftables)")
    proc = subprocess.run(
        [sys.executable, str(SCENARIO), "userspace"],
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    lines = proc.stdout.strip().splitlines()
    assert proc.returncode == 0 and lines, proc.stdout + proc.stderr
    doc = json.loads(lines[-1])
    # hostA's SYN asks for 1460 (its eth0 MTU is 1500); gwA clamps it into the tunnel.
    assert doc["syn_mss_at_hostb"] == [1300]
    assert doc["ping"] and doc["ping_after_rekey"]
    # An SA's last use is its latest packet (the ping after a 3 s pause).
    assert doc["ping_after_pause"]
    assert doc["a_out_last_used_age"] < 2.0 and doc["b_in_last_used_age"] < 2.0
    assert doc["tcp"]["received_sha256"] == doc["tcp"]["sent_sha256"]
    stream = doc["rekey_stream"]
    assert stream["received"] == stream["sent"] > 200, stream["missing"]
    for side, left in doc["leftovers"].items():  # the nft table went with the tunnels
        assert left == {
            "xfrm_state": "",
            "xfrm_policy": "",
            "links": [],
            "routes": "",
            "nft_tables": "",
        }, side
