"""cgwd <-> cgwd round trips for every suite (the scapy oracle is in test_esp_oracle.py)."""

from __future__ import annotations

import pytest

from cgwd.esp import ALL_SUITES, DropReason, EspSuite, InboundSa, OutboundSa
from cgwd.secret import Secret

IPV4 = bytes.fromhex("450000200001000040110000c0000201c0000202") + b"abcdefghijkl"
IPV6 = (
    bytes.fromhex("6000000000081140")
    + bytes.fromhex("20010db8000000000000000000000001")
    + bytes.fromhex("20010db8000000000000000000000002")
    + b"\x00\x01\x00\x02\x00\x08\x00\x00"
)


def _keymat(suite: EspSuite) -> Secret:
    return Secret(bytes(range(7, 7 + suite.keymat_bytes)))


@pytest.mark.parametrize("suite", ALL_SUITES, ids=lambda s: s.name)
@pytest.mark.parametrize("esn", [False, True])
@pytest.mark.parametrize("inner", [IPV4, IPV6], ids=["ipv4", "ipv6"])
def test_roundtrip(suite: EspSuite, esn: bool, inner: bytes) -> None:
    out = OutboundSa(0x1000, suite, _keymat(suite), esn=esn)
    inb = InboundSa(0x1000, suite, _keymat(suite), esn=esn)
    for _ in range(3):
        packet = out.encapsulate(inner)
        assert packet is not None
        assert inb.decapsulate(packet) == inner
        assert inb.decapsulate(packet) is DropReason.REPLAY
    assert out.counters.packets == 3
    assert inb.counters.packets == 3
    assert inb.counters.bytes == 3 * len(inner)
    assert inb.counters.drops == {DropReason.REPLAY: 3}
