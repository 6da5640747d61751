"""The tunnel interfaces cgwd asks for equal what ``ip link add`` asks for.

This kernel has neither xfrm interfaces nor VTIs, but the RTM_NEWLINK request is sent (and
refused) all the same, so both requests are captured with strace in a test namespace and
compared attribute by attribute (pyroute2 orders and pads attributes differently from
iproute2; the kernel reads them the same). This is the only check of the xfrm interface
path here: the UML guest has VTIs but no xfrm interfaces.
"""

from __future__ import annotations

import re
import shutil
import struct
import subprocess
import sys
from collections.abc import Iterator

import pytest

from cgwd.lab.netns import Netns, Topology

try:
    from tests.conftest import require, require_root
except ImportError:  # pragma: no cover - depends on how pytest was started
    from conftest import require, require_root  # type: ignore[no-redef]

pytestmark = pytest.mark.netns

STRACE = ("strace", "-f", "-e", "trace=sendmsg,sendto", "-e", "write=all", "-s", "0")
HEX_LINE = re.compile(r"^ \| [0-9a-f]{5}  ((?:[0-9a-f]{2} {1,2}){1,16})")
RTM_NEWLINK = 16
IFLA_IFNAME, IFLA_LINKINFO, IFLA_INFO_KIND, IFLA_INFO_DATA = 3, 18, 1, 2
IFLA_VTI_FWMARK = 6
VTI_KEYS = ("ikey", "0x63670001", "okey", "0x63670001")

CREATE = """
import sys
from ipaddress import IPv4Address, IPv4Interface
from cgwd.dataplane.base import TunnelSpec
from cgwd.dataplane.kernel import _create_link
spec = TunnelSpec("cgx0", IPv4Interface("169.254.1.2/30"), IPv4Address("169.254.1.1"), 1400,
                  IPv4Address("192.0.2.1"), IPv4Address("192.0.2.2"))
try:
    _create_link(spec, sys.argv[1], 0x63670001)
except Exception as exc:
    print(type(exc).__name__, exc)
"""


@pytest.fixture(scope="module")
def ns() -> Iterator[Netns]:
    require_root()
    require(shutil.which("strace") is not None, "needs strace (Debian package strace)")
    with Topology() as topo:
        yield topo.add_netns("lnk")


def newlink_requests(ns: Netns, argv: list[str]) -> list[bytes]:
    proc = subprocess.run(
        [*ns.exec_argv([*STRACE, *argv])], capture_output=True, text=True, timeout=60, check=False
    )
    messages: list[bytes] = []
    current = bytearray()
    for line in proc.stderr.splitlines():
        match = HEX_LINE.match(line)
        if match:
            if line.startswith(" | 00000") and current:
                messages.append(bytes(current))
                current = bytearray()
            current += bytes.fromhex(match.group(1).replace(" ", ""))
    if current:
        messages.append(bytes(current))
    found = [
        m for m in messages if len(m) >= 32 and struct.unpack_from("=H", m, 4)[0] == RTM_NEWLINK
    ]
    assert found, proc.stderr[-3000:]
    return found


def attrs(data: bytes) -> dict[int, bytes]:
    out: dict[int, bytes] = {}
    offset = 0
    while offset + 4 <= len(data):
        length, kind = struct.unpack_from("=HH", data, offset)
        if length < 4:
            break
        out[kind & 0x3FFF] = data[offset + 4 : offset + length]
        offset += (length + 3) & ~3
    return out


def semantic(message: bytes) -> dict[str, object]:
    top = attrs(message[32:])  # nlmsghdr (16) + ifinfomsg (16)
    info = attrs(top[IFLA_LINKINFO])
    data = attrs(info[IFLA_INFO_DATA])
    if data.get(IFLA_VTI_FWMARK) == b"\0\0\0\0":
        del data[IFLA_VTI_FWMARK]  # iproute2 sends "no fwmark" explicitly; absent is the same
    return {
        "ifname": top[IFLA_IFNAME].rstrip(b"\0"),
        "kind": info[IFLA_INFO_KIND].rstrip(b"\0"),
        "data": data,
        "ifinfomsg": message[16:32],
    }


@pytest.mark.parametrize(
    ("kind", "ip_args"),
    [
        ("xfrm", ["type", "xfrm", "if_id", "0x63670001"]),
        (
            "vti",
            ["type", "vti", "local", "192.0.2.1", "remote", "192.0.2.2", *VTI_KEYS],
        ),
    ],
)
def test_newlink_matches_ip_link_add(ns: Netns, kind: str, ip_args: list[str]) -> None:
    ours = newlink_requests(ns, [sys.executable, "-c", CREATE, kind])
    theirs = newlink_requests(ns, ["ip", "link", "add", "cgx0", *ip_args])
    assert semantic(ours[-1]) == semantic(theirs[-1])
