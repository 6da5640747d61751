"""Known-answer tests against published ESP packets (tests/vectors/esp/*.json).

- RFC 3602 4, cases 5-8: AES-CBC-128 ESP packets. Cases 7 and 8 are tunnel mode and go
  through the whole cgwd engine in both directions; the RFC uses no authentication, so
  the test appends an HMAC-SHA1-96 computed here with the standard library.
- draft-mcgrew-gcm-test-01 4: AES-GCM ESP packets, some with extended sequence numbers.
  They are not tunnel-mode packets (synthetic payloads, next header 1), so the GCM
  transform is checked on its own, and the whole engine is checked to authenticate them
  and then refuse them for their next header.
- RFC 4231 / RFC 2202 HMAC vectors for the truncated ICVs are covered through the
  primitives in test_esp_icv_vectors below (RFC 4868 2.7.1 uses RFC 4231's keys).
"""

from __future__ import annotations

import hashlib
import hmac
import json
from pathlib import Path
from typing import Any

import pytest

from cgwd.esp import DropReason, InboundSa, OutboundSa, suite_by_name
from cgwd.esp.suites import AUTH_HMAC_SHA1_96, ENCR_AES_CBC
from cgwd.esp.transforms import CbcHmacTransform, GcmTransform
from cgwd.secret import Secret

VECTORS = Path(__file__).resolve().parents[2] / "vectors" / "esp"
CBC = json.loads((VECTORS / "cbc_esp_rfc3602.json").read_text())["cases"]
GCM = json.loads((VECTORS / "gcm_esp_draft_mcgrew.json").read_text())["cases"]
INTEG_KEY = bytes(range(0xA0, 0xA0 + 20))  # any 20 octets: the RFC has no integrity key


def _hmac_sha1_96(data: bytes) -> bytes:
    return hmac.new(INTEG_KEY, data, hashlib.sha1).digest()[:12]


def _rfc3602_padding(length: int) -> bytes:
    pad = -(length + 2) % 16
    return bytes(range(1, pad + 1)) + bytes([pad])


@pytest.mark.parametrize(
    "case", [c for c in CBC if c["next_header"] == 4], ids=lambda c: str(c["case"])
)
def test_rfc3602_tunnel_packets_decapsulate(case: dict[str, Any]) -> None:
    suite = suite_by_name("aes128-sha1")
    assert suite.ike_transform == (ENCR_AES_CBC, 128, AUTH_HMAC_SHA1_96)
    keymat = Secret(bytes.fromhex(case["key"]) + INTEG_KEY)
    packet = bytes.fromhex(case["packet"])
    inbound = InboundSa(int(case["spi"], 16), suite, keymat)
    assert inbound.decapsulate(packet + _hmac_sha1_96(packet)) == bytes.fromhex(case["payload"])
    assert inbound.window.top == case["seq"]


@pytest.mark.parametrize(
    "case", [c for c in CBC if c["next_header"] == 4], ids=lambda c: str(c["case"])
)
def test_rfc3602_tunnel_packets_encapsulate(case: dict[str, Any]) -> None:
    """With the RFC's IV injected, cgwd's packet is the RFC's, octet for octet."""
    suite = suite_by_name("aes128-sha1")
    keymat = Secret(bytes.fromhex(case["key"]) + INTEG_KEY)
    iv = bytes.fromhex(case["iv"])
    seen: list[int] = []

    def iv_source(seq: int) -> bytes:
        seen.append(seq)
        return iv

    outbound = OutboundSa(
        int(case["spi"], 16), suite, keymat, iv_source=iv_source, last_seq=case["seq"] - 1
    )
    expected = bytes.fromhex(case["packet"])
    payload = bytes.fromhex(case["payload"])
    assert outbound.encapsulate(payload) == expected + _hmac_sha1_96(expected)
    # the same through the zero-copy path, on a fresh SA
    outbound = OutboundSa(
        int(case["spi"], 16), suite, keymat, iv_source=iv_source, last_seq=case["seq"] - 1
    )
    buf = bytearray(outbound.buffer_size(len(payload)))
    size = outbound.encapsulate_into(buf, payload)
    assert bytes(buf[:size]) == expected + _hmac_sha1_96(expected)
    assert seen == [case["seq"], case["seq"]]


@pytest.mark.parametrize("case", CBC, ids=lambda c: str(c["case"]))
def test_rfc3602_cbc_transform_opens_every_case(case: dict[str, Any]) -> None:
    suite = suite_by_name("aes128-sha1")
    spi = int(case["spi"], 16)
    transform = CbcHmacTransform(suite, bytes.fromhex(case["key"]) + INTEG_KEY, spi, False)
    packet = bytes.fromhex(case["packet"])
    payload = bytes.fromhex(case["payload"])
    plain = transform.open(memoryview(packet + _hmac_sha1_96(packet)), case["seq"])
    assert plain == payload + _rfc3602_padding(len(payload)) + bytes([case["next_header"]])


def _gcm_parts(case: dict[str, Any]) -> tuple[Any, bytes, int, int, bool, bytes, bytes]:
    key = bytes.fromhex(case["key"])
    suite = suite_by_name("aes128gcm16" if len(key) == 16 else "aes256gcm16")
    esn = len(case["seq"]) == 16
    return (
        suite,
        key + bytes.fromhex(case["salt"]),
        int(case["spi"], 16),
        int(case["seq"], 16),
        esn,
        bytes.fromhex(case["packet"]),
        bytes.fromhex(case["plaintext"]),
    )


GCM_SUPPORTED = [c for c in GCM if len(c["key"]) in (32, 64)]  # AES-192 is not an ESP suite here


@pytest.mark.parametrize("case", GCM_SUPPORTED, ids=lambda c: str(c["case"]))
def test_draft_gcm_transform_opens(case: dict[str, Any]) -> None:
    suite, keymat, spi, seq, esn, packet, plaintext = _gcm_parts(case)
    transform = GcmTransform(suite, keymat, spi, esn)
    assert transform.open(memoryview(packet), seq) == plaintext
    out = bytearray(len(packet))
    assert transform.open_into(memoryview(packet), seq, memoryview(out)) == len(plaintext)
    assert bytes(out[: len(plaintext)]) == plaintext
    # the AAD matters: the wrong high half of an ESN, or a flipped tag bit, is refused
    if esn:
        assert transform.open(memoryview(packet), seq ^ (1 << 40)) is None
    tampered = bytearray(packet)
    tampered[-1] ^= 0x80
    assert transform.open(memoryview(bytes(tampered)), seq) is None


# SA objects refuse the reserved SPIs 0..255 (RFC 4303 2.1), which one draft case uses
GCM_SA_CASES = [c for c in GCM_SUPPORTED if int(c["spi"], 16) >= 256]


@pytest.mark.parametrize("case", GCM_SA_CASES, ids=lambda c: str(c["case"]))
def test_draft_gcm_packets_through_inbound_sa(case: dict[str, Any]) -> None:
    """The whole engine authenticates each draft packet (window placed so that the ESN
    high half is inferred right), checks its padding, then refuses next header 1."""
    suite, keymat, spi, seq, esn, packet, plaintext = _gcm_parts(case)
    inbound = InboundSa(spi, suite, Secret(keymat), esn=esn, replay_window=64)
    inbound.window.top = max(seq - 1, 0)
    assert plaintext[-1] == 1  # every draft case carries next header 1 (ICMP)
    assert inbound.decapsulate(packet) is DropReason.BAD_NEXT_HEADER
    assert inbound.window.top == seq  # authenticated: the window moved
    assert inbound.decapsulate(packet) is DropReason.REPLAY


# RFC 4231 test case 2 (key "Jefe") truncated as RFC 4868 2.7 does, and RFC 2202 test case 2
# for HMAC-SHA1-96. These check the hash and truncation cgwd configures for each suite.
ICV_VECTORS = [
    ("aes128-sha1", "effcdf6ae5eb2fa2d27416d5f184df9c259a7c79"[:24]),
    ("aes128-sha256", "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"[:32]),
    (
        "aes128-sha384",
        "af45d2e376484031617f78d2b58a6b1b9c7ef464f5a01b47e42ec3736322445e"
        "8e2240ca5e69e2c78b3239ecfab21649"[:48],
    ),
    (
        "aes128-sha512",
        "164b7a7bfcf819e2e395fbe73b56e0a387bd64222e831fd610270cd7ea250554"
        "9758bf75c05a994a6d034f65f8f0e6fdcaeab1a34d4a6b4b636e070a38bce737"[:64],
    ),
]


@pytest.mark.parametrize(("name", "icv_hex"), ICV_VECTORS)
def test_icv_vectors(name: str, icv_hex: str) -> None:
    suite = suite_by_name(name)
    key = b"Jefe".ljust(suite.integrity_key_bytes, b"\x00")  # zero-padding keeps HMAC equal
    transform = CbcHmacTransform(suite, bytes(suite.encryption_key_bytes) + key, 0x1000, False)
    data = b"what do ya want for nothing?"
    assert suite.icv_bytes * 2 == len(icv_hex)
    assert transform.icv(data, 1) == bytes.fromhex(icv_hex)
