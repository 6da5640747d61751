"""Every inbound drop reason, with packets built by a small reference encoder written here
from RFC 4303 / 4106 / 3602 with `cryptography` and `hmac` directly (a fresh cipher per
packet, no code shared with cgwd), so that the trailer can be made wrong on purpose."""

from __future__ import annotations

import hashlib
import hmac
import struct

import pytest
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from cgwd.esp import ALL_SUITES, DropReason, EspSuite, InboundSa, OutboundSa, peek_spi
from cgwd.secret import Secret

SPI = 0x51515151
IPV4 = bytes.fromhex("4500002800000000401100000a0000010a00000200350035001459f3") + b"abcdefghijkl"
IPV6 = (
    bytes.fromhex("6000000000081140")
    + bytes(15)
    + b"\x01"
    + bytes(15)
    + b"\x02"
    + bytes.fromhex("0035003500080000")
)


def keymat(suite: EspSuite) -> bytes:
    return bytes((3 * i + 1) % 256 for i in range(suite.keymat_bytes))


def reference_packet(
    suite: EspSuite, seq: int, payload: bytes, *, esn: bool = False, spi: int = SPI
) -> bytes:
    """An ESP packet whose encrypted part is exactly ``payload`` (trailer included)."""
    km = keymat(suite)
    header = struct.pack(">II", spi, seq & 0xFFFFFFFF)
    if suite.aead:
        key, salt = km[: suite.encryption_key_bytes], km[suite.encryption_key_bytes :]
        iv = (seq * 7919 + 13).to_bytes(8, "big")  # any unique IV is valid for a receiver
        aad = struct.pack(">III", spi, seq >> 32, seq & 0xFFFFFFFF) if esn else header
        return header + iv + AESGCM(key).encrypt(salt + iv, payload, aad)
    assert suite.hash_name is not None
    key, ikey = km[: suite.encryption_key_bytes], km[suite.encryption_key_bytes :]
    iv = hashlib.sha256(seq.to_bytes(8, "big")).digest()[:16]
    encryptor = Cipher(algorithms.AES(key), modes.CBC(iv)).encryptor()
    body = header + iv + encryptor.update(payload) + encryptor.finalize()
    tail = struct.pack(">I", seq >> 32) if esn else b""
    icv = hmac.new(ikey, body + tail, suite.hash_name).digest()[: suite.icv_bytes]
    return body + icv


def trailer(suite: EspSuite, inner_len: int, nh: int, extra_blocks: int = 0) -> bytes:
    pad = -(inner_len + 2) % suite.pad_align + extra_blocks * suite.pad_align
    return bytes(range(1, pad + 1)) + bytes([pad, nh])


def inbound(suite: EspSuite, esn: bool = False) -> InboundSa:
    return InboundSa(SPI, suite, Secret(keymat(suite)), esn=esn)


SUITES = pytest.mark.parametrize("suite", ALL_SUITES, ids=lambda s: s.name)


@SUITES
@pytest.mark.parametrize("esn", [False, True])
def test_reference_packets_are_accepted(suite: EspSuite, esn: bool) -> None:
    sa = inbound(suite, esn)
    for seq, inner, nh in ((1, IPV4, 4), (2, IPV6, 41)):
        packet = reference_packet(suite, seq, inner + trailer(suite, len(inner), nh), esn=esn)
        assert sa.decapsulate(packet) == inner
    assert sa.counters.packets == 2
    assert sa.counters.bytes == len(IPV4) + len(IPV6)
    assert sa.counters.drops == {}


@SUITES
def test_longer_padding_and_tfc_padding_are_accepted(suite: EspSuite) -> None:
    """Extra padding blocks (RFC 4303 2.4 allows up to 255) and TFC padding after the
    inner packet (2.7, cut off using the inner IP length) are both valid."""
    sa = inbound(suite)
    padded = IPV4 + trailer(suite, len(IPV4), 4, extra_blocks=3)
    assert sa.decapsulate(reference_packet(suite, 1, padded)) == IPV4
    tfc = IPV6 + b"\x00" * 20
    assert sa.decapsulate(reference_packet(suite, 2, tfc + trailer(suite, len(tfc), 41))) == IPV6


def _bad_payloads(suite: EspSuite) -> list[tuple[str, bytes, DropReason]]:
    good = trailer(suite, len(IPV4), 4)
    pad = good[-2]
    rows: list[tuple[str, bytes, DropReason]] = []
    if pad >= 2:
        wrong = bytearray(good)
        wrong[1] ^= 0xFF  # padding 1, 2, 3, ... broken in its second octet
        rows.append(("pad-contents", IPV4 + bytes(wrong), DropReason.BAD_PADDING))
    align = suite.pad_align
    all_pad = bytes(range(1, align - 1)) + bytes([align - 2, 4])  # no room for anything
    rows += [
        ("pad-longer-than-payload", bytes(align - 2) + bytes([250, 4]), DropReason.BAD_PADDING),
        ("nh-tcp", IPV4 + trailer(suite, len(IPV4), 6), DropReason.BAD_NEXT_HEADER),
        ("nh-0", IPV4 + trailer(suite, len(IPV4), 0), DropReason.BAD_NEXT_HEADER),
        ("dummy-59", IPV4 + trailer(suite, len(IPV4), 59), DropReason.DUMMY_PACKET),
        ("v6-said-v4", IPV6 + trailer(suite, len(IPV6), 4), DropReason.BAD_INNER_PACKET),
        ("v4-said-v6", IPV4 + trailer(suite, len(IPV4), 41), DropReason.BAD_INNER_PACKET),
        ("empty-inner", all_pad, DropReason.BAD_INNER_PACKET),
    ]
    long_ipv4 = bytearray(IPV4)
    long_ipv4[2:4] = (len(IPV4) + 1).to_bytes(2, "big")  # claims one octet more than present
    rows.append(
        ("v4-length", bytes(long_ipv4) + trailer(suite, len(IPV4), 4), DropReason.BAD_INNER_PACKET)
    )
    short_ipv4 = bytearray(IPV4)
    short_ipv4[2:4] = (19).to_bytes(2, "big")  # shorter than its own header
    rows.append(
        ("v4-tiny", bytes(short_ipv4) + trailer(suite, len(IPV4), 4), DropReason.BAD_INNER_PACKET)
    )
    return rows


@SUITES
def test_authentic_but_bad_payloads(suite: EspSuite) -> None:
    sa = inbound(suite)
    expected: dict[DropReason, int] = {}
    for seq, (label, payload, reason) in enumerate(_bad_payloads(suite), start=1):
        assert sa.decapsulate(reference_packet(suite, seq, payload)) is reason, label
        expected[reason] = expected.get(reason, 0) + 1
        # authentic, so the window moved: the same packet again is a replay
        assert sa.window.top == seq
    assert sa.counters.drops == expected
    assert sa.counters.packets == 0


@SUITES
def test_malformed_lengths(suite: EspSuite) -> None:
    sa = inbound(suite)
    good = reference_packet(suite, 1, IPV4 + trailer(suite, len(IPV4), 4))
    cuts = [
        b"",
        good[:3],
        good[:8],
        good[:16],
        good[:-1],
        good + b"\x00",
        good[: suite.iv_bytes + 8],
    ]
    for packet in cuts:
        assert sa.decapsulate(packet) is DropReason.MALFORMED, len(packet)
    assert sa.counters.drops == {DropReason.MALFORMED: len(cuts)}
    assert sa.decapsulate(good) == IPV4  # nothing above touched the window


@SUITES
def test_unknown_spi_auth_failure_and_replay(suite: EspSuite) -> None:
    sa = inbound(suite)
    payload = IPV4 + trailer(suite, len(IPV4), 4)
    other = reference_packet(suite, 1, payload, spi=SPI + 1)
    assert peek_spi(other) == SPI + 1
    assert sa.decapsulate(other) is DropReason.UNKNOWN_SPI
    good = reference_packet(suite, 1, payload)
    for index in (0 + 8, len(good) // 2, len(good) - 1):  # IV, ciphertext, ICV
        bad = bytearray(good)
        bad[index] ^= 0x04
        assert sa.decapsulate(bytes(bad)) is DropReason.AUTH_FAILED, index
    wrong_seq = bytearray(good)
    wrong_seq[7] ^= 0x02  # sequence number is authenticated too
    assert sa.decapsulate(bytes(wrong_seq)) is DropReason.AUTH_FAILED
    assert sa.decapsulate(good) == IPV4
    assert sa.decapsulate(good) is DropReason.REPLAY
    assert sa.counters.drops == {
        DropReason.UNKNOWN_SPI: 1,
        DropReason.AUTH_FAILED: 4,
        DropReason.REPLAY: 1,
    }
    assert sa.counters.dropped == 6


@SUITES
def test_decapsulate_into(suite: EspSuite) -> None:
    sa = inbound(suite)
    packet = reference_packet(suite, 1, IPV6 + trailer(suite, len(IPV6), 41))
    out = bytearray(len(packet))
    assert sa.decapsulate_into(packet, out) == len(IPV6)
    assert bytes(out[: len(IPV6)]) == IPV6
    assert sa.decapsulate_into(packet, out) is DropReason.REPLAY
    packet2 = reference_packet(suite, 2, IPV4 + trailer(suite, len(IPV4), 4))
    too_small = bytearray(len(packet2) - 1)
    assert sa.decapsulate_into(packet2, too_small) is DropReason.MALFORMED
    assert sa.decapsulate_into(memoryview(packet2), memoryview(out)) == len(IPV4)


@SUITES
def test_outbound_refuses_non_ip(suite: EspSuite) -> None:
    sa = OutboundSa(SPI, suite, Secret(keymat(suite)))
    assert sa.encapsulate(b"") is None
    assert sa.encapsulate(b"\x55" + IPV4[1:]) is None
    assert sa.counters.drops == {DropReason.BAD_INNER_PACKET: 2}
    assert sa.last_seq == 0  # no sequence number spent on a refused packet


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"spi": 255}, "SPI"),
        ({"spi": 1 << 32}, "SPI"),
        ({"keymat": Secret(bytes(19))}, "keymat"),
    ],
)
def test_constructor_errors(kwargs: dict[str, object], message: str) -> None:
    suite = ALL_SUITES[0]
    args: dict[str, object] = {"spi": SPI, "suite": suite, "keymat": Secret(keymat(suite))}
    args.update(kwargs)
    with pytest.raises(ValueError, match=message):
        InboundSa(**args)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=message):
        OutboundSa(**args)  # type: ignore[arg-type]


def test_keys_never_in_repr() -> None:
    suite = ALL_SUITES[0]
    km = keymat(suite)
    for sa in (OutboundSa(SPI, suite, Secret(km)), InboundSa(SPI, suite, Secret(km))):
        assert km.hex() not in repr(sa) and "aes128gcm16" in repr(sa)
