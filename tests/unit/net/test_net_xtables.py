"""The x_tables MSS clamp (iptables-legacy): the generated documents, and when
`PyrouteNetOps` falls back to it. The last test runs the real tools in a namespace (root)."""

from __future__ import annotations

import shlex
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from cgwd.net import xtables
from cgwd.net.base import MssClamp, NetOpsError
from cgwd.net.nft import Nft
from cgwd.net.pyroute import CLAMP_NFT, CLAMP_XTABLES, PyrouteNetOps
from cgwd.net.xtables import (
    IPV4,
    IPV6,
    Xtables,
    apply_document,
    chain_exists,
    jump_rules,
    remove_document,
)

try:
    from tests.conftest import require, require_root
except ImportError:  # pragma: no cover - depends on how pytest was started
    from conftest import require, require_root  # type: ignore[no-redef]

EMPTY_MANGLE = """*mangle
:PREROUTING ACCEPT [0:0]
:INPUT ACCEPT [0:0]
:FORWARD ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:POSTROUTING ACCEPT [0:0]
COMMIT
"""
OURS_AND_THEIRS = """*mangle
:PREROUTING ACCEPT [0:0]
:FORWARD ACCEPT [0:0]
:CGWD-MSS - [0:0]
:THEIRS - [0:0]
-A FORWARD -j THEIRS
-A FORWARD -m comment --comment "cgwd: TCP MSS clamp" -j CGWD-MSS
-A FORWARD -o eth9 -j CGWD-MSS-NOT
-A CGWD-MSS -o vpc01-t1 -p tcp -j TCPMSS --set-mss 1382
COMMIT
"""


def tokens(line: str) -> list[str]:
    return shlex.split(line)


def test_apply_document_for_ipv4_and_ipv6() -> None:
    clamps = [MssClamp("vpc01-t1", 1382), MssClamp("vpc01-t2", 1300)]
    doc = apply_document(IPV4, clamps, EMPTY_MANGLE).splitlines()
    # The chain line creates or flushes CGWD-MSS; the jump is inserted first in FORWARD.
    assert doc[:2] == ["*mangle", ":CGWD-MSS - [0:0]"]
    assert doc[-1] == "COMMIT"
    assert tokens(doc[-2]) == [
        "-I", "FORWARD", "1", "-m", "comment", "--comment", "cgwd: TCP MSS clamp",
        "-j", "CGWD-MSS",
    ]  # fmt: skip
    rules = [tokens(line) for line in doc[2:-2]]
    assert [(r[2], r[3], r[-1]) for r in rules] == [
        ("-o", "vpc01-t1", "1382"),
        ("-i", "vpc01-t1", "1382"),
        ("-o", "vpc01-t2", "1300"),
        ("-i", "vpc01-t2", "1300"),
    ]
    assert rules[0] == [
        "-A", "CGWD-MSS", "-o", "vpc01-t1", "-p", "tcp", "-m", "tcp",
        "--tcp-flags", "SYN,RST", "SYN", "-m", "tcpmss", "--mss", "1383:65535",
        "-m", "comment", "--comment", "cgwd: ipv4 SYNs into vpc01-t1: MSS at most 1382",
        "-j", "TCPMSS", "--set-mss", "1382",
    ]  # fmt: skip
    v6 = [tokens(line) for line in apply_document(IPV6, clamps, EMPTY_MANGLE).splitlines()[2:-2]]
    assert [(r[3], r[14], r[-1]) for r in v6] == [
        ("vpc01-t1", "1363:65535", "1362"),
        ("vpc01-t1", "1363:65535", "1362"),
        ("vpc01-t2", "1281:65535", "1280"),
        ("vpc01-t2", "1281:65535", "1280"),
    ]
    assert "cgwd: ipv6 SYNs out of vpc01-t2: MSS at most 1280" in v6[3]


def test_reapplying_adds_no_second_jump_and_an_empty_set_keeps_an_empty_chain() -> None:
    doc = apply_document(IPV4, [], OURS_AND_THEIRS)
    assert doc == "*mangle\n:CGWD-MSS - [0:0]\nCOMMIT\n"


def test_refuses_duplicates_and_names_iptables_cannot_hold() -> None:
    with pytest.raises(NetOpsError, match="two MSS clamps for interface t1"):
        apply_document(IPV4, [MssClamp("t1", 1300), MssClamp("t1", 1200)], EMPTY_MANGLE)
    with pytest.raises(NetOpsError, match="cannot be written"):
        apply_document(IPV4, [MssClamp('a"b', 1300)], EMPTY_MANGLE)


def test_remove_document_touches_only_cgwds_chain_and_jump() -> None:
    assert jump_rules(OURS_AND_THEIRS) == [
        '-A FORWARD -m comment --comment "cgwd: TCP MSS clamp" -j CGWD-MSS'
    ]
    assert chain_exists(OURS_AND_THEIRS) and not chain_exists(EMPTY_MANGLE)
    assert remove_document(OURS_AND_THEIRS) == (
        "*mangle\n"
        '-D FORWARD -m comment --comment "cgwd: TCP MSS clamp" -j CGWD-MSS\n'
        "-F CGWD-MSS\n-X CGWD-MSS\nCOMMIT\n"
    )
    assert remove_document(EMPTY_MANGLE) is None


# -- the fallback in PyrouteNetOps ------------------------------------------------------------

# nft on a kernel whose nf_tables has only the families in $FAMILIES (see test_net_nft.py).
FAKE_NFT = """#!{python}
import json, os, sys
args = sys.argv[1:]
if args[-1] == "-":
    doc = json.load(sys.stdin)
    fams = {{o["family"] for c in doc["nftables"] for v in c.values() if isinstance(v, dict)
            for o in v.values() if isinstance(o, dict) and "family" in o}}
    if fams - set(os.environ["FAMILIES"].split()):
        sys.exit("Error: Could not process rule: Operation not supported")
elif args[:3] == ["-j", "list", "tables"]:
    print(json.dumps({{"nftables": []}}))
"""
# *-legacy-save prints $XT_STATE (absent: an empty mangle table); *-legacy-restore appends
# its input to $XT_LOG.
FAKE_SAVE = """#!/bin/sh
cat "$XT_STATE" 2>/dev/null || printf '*mangle\\n:FORWARD ACCEPT [0:0]\\nCOMMIT\\n'
"""
FAKE_RESTORE = """#!/bin/sh
echo "== $(basename $0) $*" >>"$XT_LOG"
cat >>"$XT_LOG"
"""


@pytest.fixture
def tools(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    (tmp_path / "nft").write_text(FAKE_NFT.format(python=sys.executable))
    for family in (IPV4, IPV6):
        (tmp_path / family.save).write_text(FAKE_SAVE)
        (tmp_path / family.restore).write_text(FAKE_RESTORE)
    for tool in tmp_path.iterdir():
        tool.chmod(0o755)
    monkeypatch.setenv("XT_LOG", str(tmp_path / "restores"))
    monkeypatch.setenv("XT_STATE", str(tmp_path / "state"))
    return tmp_path


def netops(tools: Path, xt_dir: Path | None = None) -> PyrouteNetOps:
    nft = Nft(binary=str(tools / "nft"))
    return PyrouteNetOps(nft=nft, xtables=Xtables(binary_dir=str(xt_dir or tools)))


def test_falls_back_to_iptables_legacy_when_nftables_lacks_inet(
    tools: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("FAMILIES", "bridge")
    net = netops(tools)
    try:
        with caplog.at_level("INFO", logger="cgwd.net.pyroute"):
            net.apply_mss_clamp([MssClamp("vpc01-t1", 1382)])
            net.apply_mss_clamp([MssClamp("vpc01-t1", 1300)])
        assert net.clamp_backend == CLAMP_XTABLES
        restores = (tools / "restores").read_text()
        assert restores.count("== iptables-legacy-restore --noflush -w 5") == 2
        assert restores.count("== ip6tables-legacy-restore --noflush -w 5") == 2
        assert "--set-mss 1300" in restores and "--set-mss 1280" in restores
        # Which backend is in use is logged once.
        said = [r.getMessage() for r in caplog.records if "MSS clamp:" in r.getMessage()]
        assert said == [
            "MSS clamp: iptables-legacy, chain CGWD-MSS in table mangle (this kernel's "
            "nftables has no inet family)"
        ]
    finally:
        net.close()


def test_nftables_stays_the_backend_where_it_works(
    tools: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FAMILIES", "inet")
    net = netops(tools)
    try:
        net.apply_mss_clamp([MssClamp("vpc01-t1", 1382)])
        assert net.clamp_backend == CLAMP_NFT
        assert not (tools / "restores").exists()  # iptables never ran
    finally:
        net.close()


def test_without_either_backend_the_error_names_both(
    tools: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FAMILIES", "bridge")
    net = netops(tools, xt_dir=tools / "missing")
    try:
        with pytest.raises(NetOpsError) as err:
            net.apply_mss_clamp([MssClamp("vpc01-t1", 1382)])
    finally:
        net.close()
    message = str(err.value)
    assert message.startswith("cannot install the TCP MSS clamp: this kernel's nftables")
    assert "CONFIG_NF_TABLES_INET" in message and "CONFIG_NETFILTER_XT_TARGET_TCPMSS" in message
    assert message.endswith(
        "the iptables-legacy fallback failed too: cannot run iptables-legacy-save: "
        "install iptables (Debian package iptables)"
    )
    assert net.clamp_backend is None


def test_removal_and_crash_cleanup_remove_only_cgwds_chain(
    tools: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FAMILIES", "bridge")
    (tools / "state").write_text(OURS_AND_THEIRS)
    proc_net = tools / "proc-net"  # only IPv4 has a legacy mangle table
    proc_net.mkdir()
    (proc_net / "ip_tables_names").write_text("filter\nmangle\n")
    (proc_net / "ip6_tables_names").write_text("filter\n")
    monkeypatch.setattr(xtables, "PROC_NET", proc_net)
    net = netops(tools)
    try:
        net.cleanup_leftovers()
    finally:
        net.close()
    restores = (tools / "restores").read_text()
    assert restores == (
        "== iptables-legacy-restore --noflush -w 5\n*mangle\n"
        '-D FORWARD -m comment --comment "cgwd: TCP MSS clamp" -j CGWD-MSS\n'
        "-F CGWD-MSS\n-X CGWD-MSS\nCOMMIT\n"
    )


def test_nothing_runs_without_a_legacy_mangle_table(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # No x_tables loaded at all (no *_tables_names files): no tool runs, none is needed.
    monkeypatch.setattr(xtables, "PROC_NET", tmp_path)
    assert Xtables(binary_dir=str(tmp_path / "missing")).remove() is False
    # Someone else's legacy mangle table, and no iptables tools: cgwd cannot have made
    # anything there, and removing (shutdown, start-up cleanup) must not fail for it.
    (tmp_path / "ip_tables_names").write_text("mangle\n")
    assert Xtables(binary_dir=str(tmp_path / "missing")).remove() is False
    # Applying does need them, and says so.
    with pytest.raises(NetOpsError, match="install iptables"):
        Xtables(binary_dir=str(tmp_path / "missing")).apply([MssClamp("t1", 1300)])


# -- the real tools, in a namespace ----------------------------------------------------------


def _ns(name: str, *argv: str, stdin: str | None = None) -> str:
    proc = subprocess.run(
        ["ip", "netns", "exec", name, *argv],
        input=stdin,
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


@pytest.mark.netns
def test_real_iptables_legacy_accepts_the_rules_and_cleans_only_its_own() -> None:
    require_root()
    require(shutil.which("iptables-legacy-restore") is not None, "needs Debian package iptables")
    ns = f"cgwdxt{uuid.uuid4().hex[:8]}"
    subprocess.run(["ip", "netns", "add", ns], check=True)
    try:
        # Someone else's rule in the same table and hook.
        _ns(ns, "iptables-legacy", "-t", "mangle", "-A", "FORWARD", "-o", "eth9", "-j", "MARK",
            "--set-mark", "7")  # fmt: skip
        xt = Xtables(ns)
        for mss in (1382, 1300):  # twice: idempotent
            xt.apply([MssClamp("vpc01-t1", mss), MssClamp("vpc01-t2", 1382)])
        saved = _ns(ns, "iptables-legacy-save", "-t", "mangle")
        assert len(jump_rules(saved)) == 1
        assert saved.count("-A CGWD-MSS ") == 4 and "--set-mss 1300" in saved
        assert _ns(ns, "ip6tables-legacy-save", "-t", "mangle").count("--set-mss 1280") == 2
        assert xt.remove() is True and xt.remove() is False
        after = _ns(ns, "iptables-legacy-save", "-t", "mangle")
        assert "CGWD-MSS" not in after
        assert "-A FORWARD -o eth9 -j MARK --set-xmark 0x7/0xffffffff" in after
        assert "CGWD-MSS" not in _ns(ns, "ip6tables-legacy-save", "-t", "mangle")
    finally:
        subprocess.run(["ip", "netns", "del", ns], check=False)
