"""Outbound details: IV construction, zero-copy variants, sizes, suites and NAT-T helpers."""

from __future__ import annotations

import threading
import tracemalloc

import pytest
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from cgwd.esp import (
    ALL_SUITES,
    KEEPALIVE,
    NON_ESP_MARKER,
    DropReason,
    EspSuite,
    InboundSa,
    OutboundSa,
    UdpPayloadKind,
    classify,
    suite_by_name,
    suite_from_ike,
)
from cgwd.esp.natt import ike_to_udp
from cgwd.secret import Secret

SPI = 0x2000
SUITES = pytest.mark.parametrize("suite", ALL_SUITES, ids=lambda s: s.name)


def _keymat(suite: EspSuite, salt: int = 0) -> Secret:
    return Secret(bytes((i * 13 + salt) % 256 for i in range(suite.keymat_bytes)))


def _inner(size: int) -> bytes:
    header = bytearray.fromhex("450000000000000040110000c0000201c0000202")
    header[2:4] = size.to_bytes(2, "big")
    return bytes(header) + bytes(i % 256 for i in range(size - 20))


def test_gcm_explicit_iv_is_the_sequence_number() -> None:
    suite = suite_by_name("aes256gcm16")
    sa = OutboundSa(SPI, suite, _keymat(suite), esn=True, last_seq=(9 << 32) | 0xFFFFFFFF)
    packet = sa.encapsulate(_inner(40))
    assert packet is not None
    assert packet[4:8] == bytes(4)  # low half wrapped
    assert packet[8:16] == (10 << 32).to_bytes(8, "big")  # RFC 4106 3.1: unique per key


@pytest.mark.parametrize("suite", [s for s in ALL_SUITES if not s.aead], ids=lambda s: s.name)
def test_cbc_iv_is_aes_of_a_unique_nonce(suite: EspSuite) -> None:
    """Default CBC IV = AES_K("cgwd-esp" || seq64), NIST SP 800-38A appendix C method 1,
    checked with a separate AES-ECB computation; all IVs distinct."""
    keymat = _keymat(suite)
    key = keymat.reveal()[: suite.encryption_key_bytes]
    ecb = Cipher(algorithms.AES(key), modes.ECB()).encryptor()
    sa = OutboundSa(SPI, suite, keymat)
    ivs = set()
    for seq in range(1, 201):
        packet = sa.encapsulate(_inner(20 + seq % 50))
        assert packet is not None
        iv = packet[8:24]
        assert iv == ecb.update(b"cgwd-esp" + seq.to_bytes(8, "big"))
        ivs.add(iv)
    assert len(ivs) == 200
    other = OutboundSa(SPI, suite, _keymat(suite, salt=1)).encapsulate(_inner(40))
    assert other is not None and other[8:24] not in ivs  # another key, other IVs


@SUITES
@pytest.mark.parametrize("size", [20, 21, 40, 1400, 1401])
def test_zero_copy_paths_match(suite: EspSuite, size: int) -> None:
    """encapsulate, encapsulate_into and encapsulate_in_place give the same packet (the IV
    depends only on key and sequence number, not on the path)."""
    inner = _inner(size)
    a = OutboundSa(SPI, suite, _keymat(suite))
    b = OutboundSa(SPI, suite, _keymat(suite))
    c = OutboundSa(SPI, suite, _keymat(suite))
    receiver = InboundSa(SPI, suite, _keymat(suite))
    for _ in range(3):
        expected = a.encapsulate(inner)
        assert expected is not None
        buf = bytearray(b.buffer_size(size))
        length = b.encapsulate_into(buf, inner)
        assert bytes(buf[:length]) == expected
        room = c.header_room
        big = bytearray(c.buffer_size(size) + 100)
        big[room : room + size] = inner
        length = c.encapsulate_in_place(memoryview(big), size)
        assert bytes(big[:length]) == expected
        assert receiver.decapsulate(expected) == inner
        assert len(expected) == size + a.overhead(size)


def test_buffer_contract_is_enforced() -> None:
    suite = suite_by_name("aes128-sha1")
    sa = OutboundSa(SPI, suite, _keymat(suite))
    inner = _inner(100)
    with pytest.raises(ValueError, match="too small"):
        sa.encapsulate_into(bytearray(sa.buffer_size(100) - 1), inner)
    with pytest.raises(ValueError, match="too small"):
        sa.encapsulate_in_place(bytearray(10), 100)
    assert sa.last_seq == 0


@pytest.mark.parametrize(
    ("name", "udp", "inner", "expected"),
    [
        # GCM: 8 header + 8 IV + pad to 4 + 2 trailer + 16 ICV (+ 8 UDP)
        ("aes128gcm16", False, 1400, 8 + 8 + 4 + 16),  # 1400 + 2 -> 1404
        ("aes128gcm16", True, 1401, 8 + 8 + 3 + 16 + 8),  # 1403 -> 1404
        # CBC: 8 + 16 IV + pad to 16 + ICV
        ("aes128-sha1", False, 1400, 8 + 16 + 8 + 12),  # 1402 -> 1408
        ("aes256-sha512", True, 1407, 8 + 16 + 17 + 32 + 8),  # 1409 -> 1424: pad 15
    ],
)
def test_overhead(name: str, udp: bool, inner: int, expected: int) -> None:
    suite = suite_by_name(name)
    assert OutboundSa(SPI, suite, _keymat(suite), udp_encap=udp).overhead(inner) == expected


def test_suite_table() -> None:
    names = [s.name for s in ALL_SUITES]
    assert names == [
        "aes128gcm16",
        "aes256gcm16",
        "aes128-sha1",
        "aes256-sha1",
        "aes128-sha256",
        "aes256-sha256",
        "aes128-sha384",
        "aes256-sha384",
        "aes128-sha512",
        "aes256-sha512",
    ]
    # (keymat, ICV) sizes from RFC 4106 8.1, RFC 2404, RFC 4868 2.1
    sizes = {s.name: (s.keymat_bytes, s.icv_bytes) for s in ALL_SUITES}
    assert sizes["aes128gcm16"] == (20, 16)
    assert sizes["aes256gcm16"] == (36, 16)
    assert sizes["aes128-sha1"] == (36, 12)
    assert sizes["aes256-sha256"] == (64, 16)
    assert sizes["aes128-sha384"] == (64, 24)
    assert sizes["aes256-sha512"] == (96, 32)
    assert suite_from_ike(20, 128, None).name == "aes128gcm16"
    assert suite_from_ike(20, 256, 0).name == "aes256gcm16"  # INTEG NONE
    assert suite_from_ike(12, 256, 12).name == "aes256-sha256"
    assert suite_from_ike(12, 128, 2).name == "aes128-sha1"
    assert suite_by_name(" AES128-SHA1 ").name == "aes128-sha1"
    with pytest.raises(ValueError, match="unknown ESP suite 'aes192gcm16'"):
        suite_by_name("aes192gcm16")
    with pytest.raises(ValueError, match="unsupported ESP transforms"):
        suite_from_ike(12, 192, 2)
    assert "aes128gcm16" in repr(ALL_SUITES[0])


def test_natt_classify() -> None:
    ike = bytes(range(1, 29))
    kind, payload = classify(ike_to_udp(ike))
    assert kind is UdpPayloadKind.IKE and bytes(payload) == ike
    assert classify(KEEPALIVE)[0] is UdpPayloadKind.KEEPALIVE
    assert classify(bytearray(b"\x00\x00\x12\x34" + bytes(20)))[0] is UdpPayloadKind.ESP
    assert classify(memoryview(b"\xff\xff"))[0] is UdpPayloadKind.MALFORMED
    assert classify(b"")[0] is UdpPayloadKind.MALFORMED
    assert classify(b"\x00\x00\x00\x01abc")[0] is UdpPayloadKind.MALFORMED  # SPI-like, short
    assert bytes(4) == NON_ESP_MARKER
    esp = b"\x00\x00\x10\x00" + bytes(30)
    kind, payload = classify(esp)
    assert kind is UdpPayloadKind.ESP and payload.obj is esp  # a view, no copy


def test_sequence_numbers_unique_even_when_shared_between_threads() -> None:
    """Sharing an SA between threads is misuse (counters may then miss updates), but
    it must never repeat a GCM nonce."""
    suite = suite_by_name("aes128gcm16")
    sa = OutboundSa(SPI, suite, _keymat(suite))
    inner = _inner(60)
    seen: list[list[int]] = [[] for _ in range(4)]

    def work(bucket: list[int]) -> None:
        for _ in range(3000):
            packet = sa.encapsulate(inner)
            assert packet is not None
            bucket.append(int.from_bytes(packet[8:16], "big"))

    threads = [threading.Thread(target=work, args=(bucket,)) for bucket in seen]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    ivs = [iv for bucket in seen for iv in bucket]
    assert len(ivs) == 12000 and len(set(ivs)) == 12000


@pytest.mark.parametrize("name", ["aes128gcm16", "aes256-sha512"])
def test_memory_stays_flat(name: str) -> None:
    """Per-SA state is bounded: sustained traffic (with replays, forgeries and refused
    packets mixed in) allocates nothing that survives the packets themselves."""
    suite = suite_by_name(name)
    out = OutboundSa(SPI, suite, _keymat(suite))
    inb = InboundSa(SPI, suite, _keymat(suite), replay_window=2048)
    inner = _inner(200)
    buf = bytearray(out.buffer_size(200))
    rx = bytearray(400)

    def burst(count: int) -> None:
        for index in range(count):
            packet = out.encapsulate(inner)
            assert packet is not None
            if index % 7 == 0:
                forged = packet[:-1] + bytes([packet[-1] ^ 1])
                assert inb.decapsulate(forged) is DropReason.AUTH_FAILED
                assert out.encapsulate(b"\x00") is None  # refused, counted
            assert inb.decapsulate(packet) == inner
            assert inb.decapsulate(packet) is DropReason.REPLAY
            n = out.encapsulate_into(buf, inner)
            assert inb.decapsulate_into(memoryview(buf)[:n], rx) == len(inner)

    burst(1000)
    tracemalloc.start()
    try:
        before = tracemalloc.take_snapshot()
        burst(3000)
        after = tracemalloc.take_snapshot()
    finally:
        tracemalloc.stop()
    grown = sum(stat.size_diff for stat in after.compare_to(before, "filename"))
    assert grown < 16_384, grown
