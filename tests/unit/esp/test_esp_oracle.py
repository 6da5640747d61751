"""Independent oracle: scapy's ESP implementation (scapy.layers.ipsec) against cgwd's.

For every suite, IPv4 and IPv6 inner packets, 32-bit and extended sequence numbers: scapy
encrypts and cgwd decrypts, and cgwd encrypts and scapy decrypts (verifying the ICV).
scapy's GCM takes the RFC 4106 keymat (key || salt) as its key, like cgwd.
"""

from __future__ import annotations

from typing import Any

import pytest
from scapy.layers.inet import ICMP, IP, TCP, UDP
from scapy.layers.inet6 import IPv6
from scapy.layers.ipsec import ESP, IPSecIntegrityError, SecurityAssociation
from scapy.packet import Packet, Raw

from cgwd.esp import ALL_SUITES, DropReason, EspSuite, InboundSa, OutboundSa
from cgwd.secret import Secret

SPI = 0x0C0FFEE1
SCAPY_AUTH = {
    "sha1": "HMAC-SHA1-96",
    "sha256": "SHA2-256-128",
    "sha384": "SHA2-384-192",
    "sha512": "SHA2-512-256",
}
OUTER = IP(src="198.51.100.1", dst="203.0.113.1")


def _keymat(suite: EspSuite) -> bytes:
    # distinct, non-repeating bytes so that a key/salt/integrity-key mix-up shows
    return bytes((i * 37 + 11) % 256 for i in range(suite.keymat_bytes))


def _scapy_sa(suite: EspSuite, esn: bool) -> SecurityAssociation:
    keymat = _keymat(suite)
    kwargs: dict[str, Any]
    if suite.aead:
        kwargs = {"crypt_algo": "AES-GCM", "crypt_key": keymat}
    else:
        assert suite.hash_name is not None
        enc = suite.encryption_key_bytes
        kwargs = {
            "crypt_algo": "AES-CBC",
            "crypt_key": keymat[:enc],
            "auth_algo": SCAPY_AUTH[suite.hash_name],
            "auth_key": keymat[enc:],
        }
    return SecurityAssociation(ESP, spi=SPI, tunnel_header=OUTER.copy(), esn_en=esn, **kwargs)


def _inner(family: str, size: int) -> bytes:
    payload = Raw(bytes((i * 7) % 251 for i in range(size)))
    packet: Packet
    if family == "ipv4":
        packet = IP(src="10.1.0.1", dst="10.2.0.2", id=7) / UDP(sport=4000, dport=53) / payload
    elif family == "ipv4-icmp":
        packet = IP(src="10.1.0.1", dst="10.2.0.2") / ICMP(id=1, seq=9) / payload
    else:
        packet = IPv6(src="2001:db8::1", dst="2001:db8:1::2") / TCP(sport=4000, dport=80) / payload
    return bytes(packet)


CASES = [("ipv4", 0), ("ipv4", 1), ("ipv4-icmp", 56), ("ipv4", 1372), ("ipv6", 3), ("ipv6", 1300)]
SUITES = pytest.mark.parametrize("suite", ALL_SUITES, ids=lambda s: s.name)
ESN = pytest.mark.parametrize("esn", [False, True], ids=["seq32", "esn"])


def _esp_bytes(packet: Packet) -> bytes:
    return bytes(packet[ESP])


@SUITES
@ESN
def test_scapy_encrypts_cgwd_decrypts(suite: EspSuite, esn: bool) -> None:
    scapy_sa = _scapy_sa(suite, esn)
    inbound = InboundSa(SPI, suite, Secret(_keymat(suite)), esn=esn)
    # (high, low) sequence numbers; with ESN they cross the 2^32 boundary
    sequence = [(0, 1), (0, 2), (0, 0x7FFFFFFF)]
    if esn:
        sequence += [(0, 0xFFFFFFFF), (1, 0), (1, 5), (1, 3)]
    delivered = 0
    for (high, low), (family, size) in zip(sequence, CASES * 2, strict=False):
        inner = _inner(family, size)
        if esn:
            encrypted = scapy_sa.encrypt(
                IP(inner) if family != "ipv6" else IPv6(inner), seq_num=low, esn_en=True, esn=high
            )
        else:
            encrypted = scapy_sa.encrypt(
                IP(inner) if family != "ipv6" else IPv6(inner), seq_num=low
            )
        packet = _esp_bytes(encrypted)
        assert inbound.decapsulate(packet) == inner, (high, low, family, size)
        delivered += 1
        assert inbound.decapsulate(packet) is DropReason.REPLAY
    assert inbound.counters.packets == delivered
    assert inbound.window.top == (sequence[-2][0] << 32 | sequence[-2][1] if esn else 0x7FFFFFFF)


@SUITES
@ESN
@pytest.mark.parametrize(("family", "size"), CASES)
def test_cgwd_encrypts_scapy_decrypts(suite: EspSuite, esn: bool, family: str, size: int) -> None:
    # with ESN start just below a 2^32 boundary so the high half is non-zero and changes
    last = (3 << 32) | 0xFFFFFFFE if esn else 41
    outbound = OutboundSa(SPI, suite, Secret(_keymat(suite)), esn=esn, last_seq=last)
    scapy_sa = _scapy_sa(suite, esn)
    inner = _inner(family, size)
    for seq in (last + 1, last + 2):
        packet = outbound.encapsulate(inner)
        assert packet is not None
        assert int.from_bytes(packet[4:8], "big") == seq & 0xFFFFFFFF
        wire = IP(bytes(OUTER.copy() / Raw(packet)))
        wire.proto = 50
        wire = IP(bytes(wire))
        kwargs = {"esn_en": True, "esn": seq >> 32} if esn else {}
        decrypted = scapy_sa.decrypt(wire, **kwargs)  # raises IPSecIntegrityError on bad ICV
        assert bytes(decrypted) == inner
    assert outbound.counters.packets == 2
    assert outbound.counters.bytes == 2 * len(inner)


@SUITES
def test_scapy_rejects_tampered_cgwd_packet(suite: EspSuite) -> None:
    """The oracle is not blind: a flipped bit in a cgwd packet fails scapy's ICV check."""
    outbound = OutboundSa(SPI, suite, Secret(_keymat(suite)))
    packet = bytearray(outbound.encapsulate(_inner("ipv4", 40)) or b"")
    packet[-1] ^= 0x01
    wire = OUTER.copy() / Raw(bytes(packet))
    wire.proto = 50
    with pytest.raises(IPSecIntegrityError):
        _scapy_sa(suite, False).decrypt(IP(bytes(wire)))


@pytest.mark.parametrize("suite", [s for s in ALL_SUITES if not s.aead], ids=lambda s: s.name)
def test_cbc_chain_state_across_many_packets(suite: EspSuite) -> None:
    """cgwd keeps one CBC context per SA; scapy (a fresh context per packet) must decrypt
    every packet of a long run of mixed sizes, through both outbound paths."""
    outbound = OutboundSa(SPI, suite, Secret(_keymat(suite)))
    scapy_sa = _scapy_sa(suite, False)
    for index in range(40):
        family, size = CASES[index % len(CASES)]
        inner = _inner(family, size + index)
        if index % 2:
            packet = outbound.encapsulate(inner)
        else:
            buf = bytearray(outbound.buffer_size(len(inner)))
            packet = bytes(buf[: outbound.encapsulate_into(buf, inner)])
        assert packet
        wire = OUTER.copy() / Raw(packet)
        wire.proto = 50
        assert bytes(scapy_sa.decrypt(IP(bytes(wire)))) == inner, index
