"""The MSS clamp nftables document, checked structurally (nft itself checks it in tests/netns)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest

from cgwd.net.base import MssClamp, NetOpsError
from cgwd.net.nft import Nft, family_probe_document, mss_clamp_document, remove_table_document


def rules(doc: dict[str, list[dict[str, Any]]]) -> list[dict[str, Any]]:
    return [c["add"]["rule"] for c in doc["nftables"] if "rule" in c.get("add", {})]


def summary(rule: dict[str, Any]) -> tuple[str, str, str, int, int]:
    expr = rule["expr"]
    direction = expr[0]["match"]["left"]["meta"]["key"]
    interface = expr[0]["match"]["right"]
    nfproto = expr[1]["match"]["right"]
    greater_than = expr[3]["match"]["right"]
    set_to = expr[5]["mangle"]["value"]
    return direction, interface, nfproto, greater_than, set_to


def test_document_rebuilds_the_table_in_one_transaction() -> None:
    doc = mss_clamp_document([MssClamp("vpc01-t1", 1398)])
    commands = doc["nftables"]
    table = {"family": "inet", "name": "cgwd"}
    # add (no-op if present), delete (whatever it held), add again: idempotent.
    assert commands[1:4] == [
        {"add": {"table": table}},
        {"delete": {"table": table}},
        {"add": {"table": table}},
    ]
    chain = commands[4]["add"]["chain"]
    assert (chain["hook"], chain["prio"], chain["type"], chain["policy"]) == (
        "forward",
        -150,
        "filter",
        "accept",
    )
    json.dumps(doc)  # serialisable as is


def test_each_tunnel_gets_four_rules_with_ipv6_20_less() -> None:
    doc = mss_clamp_document([MssClamp("vpc01-t1", 1398), MssClamp("vpc01-t2", 1382)])
    assert sorted(summary(r) for r in rules(doc)) == sorted(
        [
            ("oifname", "vpc01-t1", "ipv4", 1398, 1398),
            ("oifname", "vpc01-t1", "ipv6", 1378, 1378),
            ("iifname", "vpc01-t1", "ipv4", 1398, 1398),
            ("iifname", "vpc01-t1", "ipv6", 1378, 1378),
            ("oifname", "vpc01-t2", "ipv4", 1382, 1382),
            ("oifname", "vpc01-t2", "ipv6", 1362, 1362),
            ("iifname", "vpc01-t2", "ipv4", 1382, 1382),
            ("iifname", "vpc01-t2", "ipv6", 1362, 1362),
        ]
    )
    # Only SYNs without RST, and only lowering.
    expr = rules(doc)[0]["expr"]
    assert expr[2]["match"]["left"]["&"][1] == ["syn", "rst"]
    assert expr[2]["match"]["right"] == "syn"
    assert expr[3]["match"]["op"] == ">"


def test_empty_clamp_set_is_an_empty_chain() -> None:
    assert rules(mss_clamp_document([])) == []


def test_duplicate_interface_is_refused() -> None:
    with pytest.raises(NetOpsError, match="vpc01-t1"):
        mss_clamp_document([MssClamp("vpc01-t1", 1398), MssClamp("vpc01-t1", 1300)])


def test_remove_document_tolerates_a_missing_table() -> None:
    commands = remove_table_document()["nftables"]
    assert [next(iter(c)) for c in commands] == ["metainfo", "add", "delete"]


def test_missing_nft_binary_is_a_clear_error() -> None:
    with pytest.raises(NetOpsError, match="install nftables"):
        Nft(binary="/nonexistent/nft").run(["--version"])


# -- kernels whose nftables lacks the inet family ---------------------------------------------

# Stands in for nft on a kernel built with only the families in $FAMILIES (Debian's UML
# kernel: "bridge"): a document touching another family fails as nf_tables fails it
# (EOPNOTSUPP), listings are empty. Every invocation is logged to $NFT_LOG.
FAKE_NFT = """#!{python}
import json, os, sys
args = sys.argv[1:]
with open(os.environ["NFT_LOG"], "a") as log:
    log.write(" ".join(args) + "\\n")
if args[-1] == "-":
    doc = json.load(sys.stdin)
    families = {{
        obj["family"]
        for cmd in doc["nftables"]
        for verb in cmd.values() if isinstance(verb, dict)
        for obj in verb.values() if isinstance(obj, dict) and "family" in obj
    }}
    if families - set(os.environ["FAMILIES"].split()):
        sys.stderr.write("Error: Could not process rule: Operation not supported\\n")
        sys.exit(1)
elif args[:3] == ["-j", "list", "tables"]:
    print(json.dumps({{"nftables": [{{"metainfo": {{"json_schema_version": 1}}}}]}}))
"""


@pytest.fixture
def fake_nft(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, Path]:
    binary = tmp_path / "nft"
    binary.write_text(FAKE_NFT.format(python=sys.executable))
    binary.chmod(0o755)
    log = tmp_path / "calls"
    monkeypatch.setenv("NFT_LOG", str(log))
    return binary, log


def test_missing_inet_family_names_the_kernel_options(
    fake_nft: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    binary, log = fake_nft
    monkeypatch.setenv("FAMILIES", "bridge")
    nft = Nft(binary=str(binary))
    for _ in range(2):
        with pytest.raises(NetOpsError) as err:
            nft.apply(mss_clamp_document([MssClamp("vpc01-t1", 1398)]))
        message = str(err.value)
        for option in ("CONFIG_NF_TABLES_INET", "CONFIG_NF_TABLES_IPV4", "CONFIG_NF_TABLES_IPV6"):
            assert option in message
        assert "MSS clamp" in message and "Operation not supported" in message
    calls = log.read_text().splitlines()
    # Two applies, and the three families probed once (check mode: nothing changed).
    assert calls.count("-j -f -") == 2
    assert calls.count("-c -j -f -") == 3
    # Nothing of cgwd's can exist there: removing is a listing and succeeds.
    assert nft.remove_table() is False
    assert log.read_text().splitlines()[5:] == ["-j list tables inet"]


def test_partial_family_support_is_reported(
    fake_nft: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    binary, _ = fake_nft
    monkeypatch.setenv("FAMILIES", "ip ip6")
    nft = Nft(binary=str(binary))
    with pytest.raises(NetOpsError) as err:
        nft.apply(mss_clamp_document([]))
    message = str(err.value)
    assert "CONFIG_NF_TABLES_INET (inet)" in message and "CONFIG_NF_TABLES_IPV4" not in message
    assert "it has ip and ip6" in message
    assert nft.family_supported("ip6") and not nft.family_supported("inet")


def test_other_nft_failures_are_not_blamed_on_the_kernel(
    fake_nft: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    binary, log = fake_nft
    monkeypatch.setenv("FAMILIES", "inet")
    nft = Nft(binary=str(binary))
    nft.apply(mss_clamp_document([MssClamp("vpc01-t1", 1398)]))
    with pytest.raises(NetOpsError, match="Operation not supported") as err:
        nft.apply({"nftables": [{"add": {"table": {"family": "netdev", "name": "x"}}}]})
    assert "CONFIG_" not in str(err.value)  # inet works: nft's own message stands
    assert "-c -j -f -" in log.read_text().splitlines()  # one probe, for inet


def test_family_probe_document_adds_only_a_table() -> None:
    assert family_probe_document("ip6")["nftables"][1:] == [
        {"add": {"table": {"family": "ip6", "name": "cgwd"}}}
    ]
