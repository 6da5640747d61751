"""The MSS clamp nftables document, checked structurally (nft itself checks it in tests/netns)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from cgwd.net.base import MssClamp, NetOpsError
from cgwd.net.nft import Nft, mss_clamp_document, remove_table_document


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
