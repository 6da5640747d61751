"""ESP packets captured from strongSwan 5.9.8 (kernel-libipsec), stored with their keys in
tests/vectors/esp/strongswan_libipsec.json (how: tests/netns/esp_strongswan_capture.py;
the same exchange runs live in tests/netns/test_esp_strongswan.py).

Every packet strongSwan sent must decapsulate to the ICMP echo it carried; the echo
replies strongSwan sent to requests cgwd had encrypted show that strongSwan accepted
cgwd's packets when they were captured.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import Any

import pytest

from cgwd.esp import DropReason, InboundSa, suite_by_name
from cgwd.secret import Secret

VECTORS = Path(__file__).resolve().parents[2] / "vectors" / "esp" / "strongswan_libipsec.json"
CAPTURES = json.loads(VECTORS.read_text())["captures"]
INITIATOR = "192.0.2.1"
CGWD_ICMP_IDENT = 0xC6D0


def _ones_complement(data: bytes) -> int:
    data += b"\0" * (len(data) % 2)
    total: int = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def test_every_suite_was_captured() -> None:
    assert {c["suite"] for c in CAPTURES} == {
        "aes128gcm16",
        "aes256gcm16",
        "aes128-sha1",
        "aes256-sha256",
        "aes128-sha384",
        "aes256-sha512",
    }


@pytest.mark.parametrize("capture", CAPTURES, ids=lambda c: c["suite"])
def test_strongswan_packets_decapsulate(capture: dict[str, Any]) -> None:
    suite = suite_by_name(capture["suite"])
    sas = {}
    for sa in capture["sas"]:
        keymat = bytes.fromhex(sa["keymat"])
        assert len(keymat) == suite.keymat_bytes  # strongSwan derived what cgwd expects
        sas[sa["source"]] = InboundSa(int(sa["spi"], 16), suite, Secret(keymat))
    kinds: dict[str, int] = {}
    for packet in capture["packets"]:
        esp = bytes.fromhex(packet["esp"])
        inner = sas[packet["source"]].decapsulate(esp)
        assert isinstance(inner, bytes), inner
        request = packet["source"] == INITIATOR
        if inner[0] >> 4 == 4:
            assert _ones_complement(inner[:20]) == 0 and inner[9] == 1
            icmp = inner[20:]
            assert _ones_complement(icmp) == 0
            assert icmp[0] == (8 if request else 0)
            cgwd = int.from_bytes(icmp[4:6], "big") == CGWD_ICMP_IDENT
            kind = ("cgwd-" if cgwd else "v4-") + ("request" if request else "reply")
        else:
            assert inner[6] == 58  # ICMPv6
            assert inner[40] == (128 if request else 129)
            kind = "v6-" + ("request" if request else "reply")
        kinds[kind] = kinds.get(kind, 0) + 1
        assert sas[packet["source"]].decapsulate(esp) is DropReason.REPLAY
    sizes = len(capture["ping_sizes"])
    assert kinds == {
        "v4-request": sizes,
        "v4-reply": sizes,
        "v6-request": sizes,
        "v6-reply": sizes,
        "cgwd-request": len(capture["injected"]),
        "cgwd-reply": len(capture["injected"]),  # strongSwan answered cgwd's packets
    }


@pytest.mark.parametrize("capture", CAPTURES, ids=lambda c: c["suite"])
def test_tampered_strongswan_packets_fail_authentication(capture: dict[str, Any]) -> None:
    suite = suite_by_name(capture["suite"])
    sa = capture["sas"][1]
    inbound = InboundSa(int(sa["spi"], 16), suite, Secret(bytes.fromhex(sa["keymat"])))
    packet = next(p for p in capture["packets"] if p["source"] == sa["source"])
    esp = bytearray.fromhex(packet["esp"])
    esp[len(esp) // 2] ^= 0x10
    assert inbound.decapsulate(bytes(esp)) is DropReason.AUTH_FAILED
