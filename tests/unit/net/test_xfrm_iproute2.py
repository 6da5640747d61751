"""Our XFRM netlink messages against iproute2's, octet for octet, and our decoder against
what ``ip xfrm`` installs.

Each request is sent by ``ip -n NS xfrm ...`` under ``strace -e write=all`` (which dumps
every byte written to the netlink socket) in a namespace the test creates, and compared with
our encoding of the same request (same sequence number). SA adds fail on this kernel (no
ESP, EPROTONOSUPPORT/ENOSYS) after the request was sent, so they are capturable too.
Policies and larval SAs (ALLOCSPI) do work here: ``ip xfrm`` installs them, our code dumps
and decodes them.
"""

from __future__ import annotations

import re
import shutil
import struct
import subprocess
from collections.abc import Callable, Iterator
from functools import partial
from ipaddress import IPv4Address, IPv4Network

import pytest

from cgwd.esp.suites import suite_by_name
from cgwd.lab.netns import Netns, Topology
from cgwd.net.sysctl import in_netns
from cgwd.net.xfrm import messages as m
from cgwd.net.xfrm.socket import XfrmSocket
from cgwd.secret import Secret

try:
    from tests.conftest import require, require_root
except ImportError:  # pragma: no cover - depends on how pytest was started
    from conftest import require, require_root  # type: ignore[no-redef]

pytestmark = pytest.mark.netns

A = IPv4Address("192.0.2.1")
B = IPv4Address("192.0.2.2")
STRACE = ("strace", "-f", "-e", "trace=sendmsg,sendto", "-e", "write=all", "-s", "0")
HEX_LINE = re.compile(r"^ \| [0-9a-f]{5}  ((?:[0-9a-f]{2} {1,2}){1,16})")


@pytest.fixture(scope="module")
def ns() -> Iterator[Netns]:
    require_root()
    require(shutil.which("strace") is not None, "needs strace (Debian package strace)")
    with Topology() as topo:
        yield topo.add_netns("xfrm")


def ip_xfrm_bytes(ns: Netns, *args: str) -> bytes:
    """The first netlink message ``ip -n NS xfrm ARGS`` writes."""
    proc = subprocess.run(
        [*STRACE, "ip", "-n", ns.name, "xfrm", *args],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    data = bytearray()
    started = False
    for line in proc.stderr.splitlines():
        match = HEX_LINE.match(line)
        if match:
            started = True
            data += bytes.fromhex(match.group(1).replace(" ", ""))
        elif started:
            break
    assert data, f"no netlink request captured from ip xfrm {' '.join(args)}:\n{proc.stderr}"
    return bytes(data)


def seq_of(data: bytes) -> int:
    return int(struct.unpack_from("=I", data, 8)[0])


def same(ours: Callable[[int], bytes], theirs: bytes) -> None:
    encoded = ours(seq_of(theirs))
    assert encoded.hex(" ", 4) == theirs.hex(" ", 4)


GCM_KEY = bytes(range(1, 21))
CBC_KEYS = {  # suite -> encryption key + integrity key
    "aes128-sha1": bytes(range(16)) + bytes(range(100, 120)),
    "aes256-sha256": bytes(range(32)) + bytes(range(100, 132)),
    "aes128-sha384": bytes(range(16)) + bytes(range(100, 148)),
    "aes256-sha512": bytes(range(32)) + bytes(range(100, 164)),
}


@pytest.mark.parametrize(
    ("replay", "encap", "mark", "if_id"),
    [
        (1024, True, 0x63670001, 7),
        (32, False, None, None),
        (2048, False, 0x10, None),
        (0, True, None, 0x63670002),
    ],
)
def test_newsa_gcm_matches_ip_xfrm(
    ns: Netns, replay: int, encap: bool, mark: int | None, if_id: int | None
) -> None:
    suite = suite_by_name("aes128gcm16")
    args = ["state", "add", "src", str(A), "dst", str(B), "proto", "esp", "spi", "0x1000"]
    args += ["mode", "tunnel", "reqid", "5", "replay-window", str(replay)]
    args += ["aead", "rfc4106(gcm(aes))", "0x" + GCM_KEY.hex(), "128"]
    if encap:
        args += ["encap", "espinudp", "4500", "4501", "0.0.0.0"]
    if mark is not None:
        args += ["mark", hex(mark)]
    if if_id is not None:
        args += ["if_id", str(if_id)]
    spec = m.SaSpec(
        A,
        B,
        0x1000,
        suite,
        Secret(GCM_KEY),
        reqid=5,
        replay_window=replay,
        encap=m.UdpEncapsulation(4500, 4501) if encap else None,
        mark=m.Mark(mark) if mark is not None else None,
        if_id=if_id,
    )
    same(partial(m.encode_newsa, spec), ip_xfrm_bytes(ns, *args))


@pytest.mark.parametrize("name", sorted(CBC_KEYS))
def test_newsa_cbc_hmac_matches_ip_xfrm(ns: Netns, name: str) -> None:
    suite = suite_by_name(name)
    key = CBC_KEYS[name]
    enc, integ = key[: suite.encryption_key_bytes], key[suite.encryption_key_bytes :]
    args = ["state", "add", "src", str(B), "dst", str(A), "proto", "esp", "spi", "0xc0012345"]
    args += ["mode", "tunnel", "reqid", "9", "replay-window", "1024", "flag", "esn"]
    args += ["enc", "cbc(aes)", "0x" + enc.hex()]
    args += ["auth-trunc", f"hmac({suite.hash_name})", "0x" + integ.hex(), str(suite.icv_bytes * 8)]
    args += ["mark", "0x63670003"]
    spec = m.SaSpec(
        B,
        A,
        0xC0012345,
        suite,
        Secret(key),
        reqid=9,
        replay_window=1024,
        esn=True,
        mark=m.Mark(0x63670003),
    )
    same(partial(m.encode_newsa, spec), ip_xfrm_bytes(ns, *args))


def test_updsa_uses_the_update_message(ns: Netns) -> None:
    suite = suite_by_name("aes256gcm16")
    key = bytes(range(36))
    args = ["state", "update", "src", str(B), "dst", str(A), "proto", "esp", "spi", "0x4242"]
    args += ["mode", "tunnel", "aead", "rfc4106(gcm(aes))", "0x" + key.hex(), "128"]
    spec = m.SaSpec(B, A, 0x4242, suite, Secret(key))
    same(partial(m.encode_newsa, spec, update=True), ip_xfrm_bytes(ns, *args))


def test_delsa_getsa_allocspi_match_ip_xfrm(ns: Netns) -> None:
    ident = ["src", str(A), "dst", str(B), "proto", "esp", "spi", "0x1000", "mark", "0x10"]
    same(
        partial(m.encode_delsa, A, B, 0x1000, mark=m.Mark(0x10)),
        ip_xfrm_bytes(ns, "state", "delete", *ident),
    )
    same(
        partial(m.encode_getsa, A, B, 0x1000, mark=m.Mark(0x10)),
        ip_xfrm_bytes(ns, "state", "get", *ident),
    )
    theirs = ip_xfrm_bytes(
        ns,
        *["state", "allocspi", "src", str(B), "dst", str(A), "proto", "esp", "mode", "tunnel"],
        *["reqid", "5", "mark", "0x10", "min", "256", "max", "4294967295"],
    )
    same(
        partial(
            m.encode_allocspi, B, A, spi_min=256, spi_max=0xFFFFFFFF, reqid=5, mark=m.Mark(0x10)
        ),
        theirs,
    )
    same(partial(m.encode_dump, m.XFRM_MSG_GETPOLICY), ip_xfrm_bytes(ns, "policy", "list"))


@pytest.mark.parametrize("update", [False, True])
@pytest.mark.parametrize("direction", ["out", "in", "fwd"])
def test_policies_match_ip_xfrm(ns: Netns, direction: str, update: bool) -> None:
    src, dst = (A, B) if direction == "out" else (B, A)
    verb = "update" if update else "add"
    theirs = ip_xfrm_bytes(
        ns,
        *["policy", verb, "src", "0.0.0.0/0", "dst", "0.0.0.0/0", "dir", direction],
        *["priority", "8192", "tmpl", "src", str(src), "dst", str(dst), "proto", "esp"],
        *["reqid", "1667694593", "mode", "tunnel", "mark", "0x63670001", "if_id", "1667694593"],
    )
    spec = m.PolicySpec(
        m.Selector.any4(),
        direction,
        priority=8192,
        template=m.PolicyTemplate(src, dst, reqid=0x63670001),
        mark=m.Mark(0x63670001),
        if_id=0x63670001,
    )
    same(partial(m.encode_newpolicy, spec, update=update), theirs)
    in_netns(ns.name, lambda: _flush_policies_via_ip(ns))
    same(
        partial(
            m.encode_delpolicy,
            m.Selector.any4(),
            direction,
            mark=m.Mark(0x63670001),
            if_id=0x63670001,
        ),
        ip_xfrm_bytes(
            ns,
            *["policy", "delete", "src", "0.0.0.0/0", "dst", "0.0.0.0/0", "dir", direction],
            *["mark", "0x63670001", "if_id", "1667694593"],
        ),
    )


def _flush_policies_via_ip(ns: Netns) -> None:
    ns.run("ip", "xfrm", "policy", "flush")  # the test's own namespace only


def test_decoder_reads_what_ip_xfrm_installs(ns: Netns) -> None:
    ns.run("ip", "xfrm", "policy", "flush")
    ns.run("ip", "xfrm", "state", "flush")
    ns.run(
        *["ip", "xfrm", "policy", "add", "src", "10.1.0.0/16", "dst", "10.2.3.0/24"],
        *["dir", "in", "priority", "77", "tmpl", "src", str(B), "dst", str(A)],
        *["proto", "esp", "reqid", "42", "mode", "tunnel", "mark", "0x63670009"],
        *["mask", "0xffff00ff", "if_id", "0x63670009"],
    )
    ns.run("ip", "xfrm", "policy", "add", "src", "0.0.0.0/0", "dst", "0.0.0.0/0", "dir", "out",
           "action", "block")  # fmt: skip
    ns.run(
        *["ip", "xfrm", "state", "allocspi", "src", str(B), "dst", str(A), "proto", "esp"],
        *["mode", "tunnel", "reqid", "42", "mark", "0x63670009", "min", "0x1000", "max", "0x1000"],
    )

    def dump() -> tuple[list[m.PolicyInfo], list[m.SaInfo]]:
        with XfrmSocket() as sock:
            policies = [
                m.decode_policy(msg)
                for msg in sock.request(partial(m.encode_dump, m.XFRM_MSG_GETPOLICY), "dump")
            ]
            sas = [
                m.decode_sa(msg)
                for msg in sock.request(partial(m.encode_dump, m.XFRM_MSG_GETSA), "dump")
            ]
        return policies, sas

    policies, sas = in_netns(ns.name, dump)
    by_dir = {p.direction: p for p in policies}
    assert set(by_dir) == {"in", "out"}
    pin = by_dir["in"]
    assert pin.selector == m.Selector(IPv4Network("10.1.0.0/16"), IPv4Network("10.2.3.0/24"))
    assert (pin.priority, pin.action) == (77, m.XFRM_POLICY_ALLOW)
    assert pin.mark == m.Mark(0x63670009, 0xFFFF00FF)
    assert pin.if_id == 0x63670009
    assert pin.templates == (m.PolicyTemplate(B, A, reqid=42),)
    pout = by_dir["out"]
    assert pout.action == m.XFRM_POLICY_BLOCK
    assert (pout.mark, pout.if_id, pout.templates) == (None, None, ())
    assert pout.selector == m.Selector.any4()
    assert len(sas) == 1
    sa = sas[0]
    assert (sa.src, sa.dst, sa.spi, sa.proto, sa.reqid) == (B, A, 0x1000, 50, 42)
    assert sa.mark == m.Mark(0x63670009)
    assert sa.mode == m.XFRM_MODE_TUNNEL
    assert sa.hard_add_seconds > 0  # a larval SA expires (XFRM_ACQ_EXPIRES)
    ns.run("ip", "xfrm", "policy", "flush")
    ns.run("ip", "xfrm", "state", "flush")
