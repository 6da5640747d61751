"""The IKE socket options equal strongSwan's: charon is started under strace in a test
namespace, and the IP_XFRM_POLICY values it sets on its IKE sockets (and UDP_ENCAP on its
NAT-T socket) are compared with ours, octet for octet."""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from cgwd.lab.netns import Netns, Topology
from cgwd.net.xfrm.ike_socket import IP_XFRM_POLICY
from cgwd.net.xfrm.messages import UDP_ENCAP_ESPINUDP, userpolicy_info_bytes

try:
    from tests.conftest import require, require_strongswan
except ImportError:  # pragma: no cover - depends on how pytest was started
    from conftest import require, require_strongswan  # type: ignore[no-redef]

pytestmark = [pytest.mark.netns, pytest.mark.strongswan]

POLICY_CALL = re.compile(
    r'setsockopt\((\d+), SOL_IP, IP_XFRM_POLICY, "((?:\\x[0-9a-f]{2})+)", 168\)'
)
ENCAP_CALL = re.compile(r"setsockopt\(\d+, SOL_UDP, UDP_ENCAP, \[(\d+)\], 4\)")


@pytest.fixture
def ns(tmp_path: Path) -> Iterator[Netns]:
    require_strongswan()
    require(shutil.which("strace") is not None, "needs strace (Debian package strace)")
    with Topology() as topo:
        yield topo.add_netns("ss")


def test_bypass_policies_and_udp_encap_match_charons(ns: Netns, tmp_path: Path) -> None:
    conf = tmp_path / "strongswan.conf"
    trace = tmp_path / "trace"
    conf.write_text(
        "charon {\n    load = openssl random nonce kernel-netlink socket-default vici\n"
        f"    plugins {{\n        vici {{\n            socket = unix://{tmp_path}/v.sock\n"
        "        }\n    }\n}\n"
    )
    script = (
        "mount -t tmpfs none /run && exec strace -f -e trace=setsockopt -xx -s 400 "
        f"-o {trace} /usr/lib/ipsec/charon"
    )
    proc = subprocess.Popen(
        [*ns.exec_argv(["unshare", "--mount", "--propagation", "private"]), "sh", "-c", script],
        env={**os.environ, "STRONGSWAN_CONF": str(conf)},
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 20
        policies: list[tuple[str, bytes]] = []
        while time.monotonic() < deadline:
            text = trace.read_text(errors="replace") if trace.exists() else ""
            policies = [
                (fd, bytes.fromhex(raw.replace("\\x", ""))) for fd, raw in POLICY_CALL.findall(text)
            ]
            if len(policies) >= 4 and ENCAP_CALL.search(text):
                break
            time.sleep(0.1)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)  # strace and the charon it runs: ours
        proc.wait(10)
    assert len(policies) >= 4, trace.read_text(errors="replace")[-2000:]
    # charon sets out, then in, on each IPv4 IKE socket (ports 500 and 4500).
    assert IP_XFRM_POLICY == 17
    for i in range(0, 4, 2):
        (fd_out, out), (fd_in, inb) = policies[i], policies[i + 1]
        assert fd_out == fd_in
        assert out == userpolicy_info_bytes("out", socket.AF_INET)
        assert inb == userpolicy_info_bytes("in", socket.AF_INET)
    encap = ENCAP_CALL.search(trace.read_text(errors="replace"))
    assert encap is not None and int(encap.group(1)) == UDP_ENCAP_ESPINUDP
