"""Message accessors, NAT detection and cookie data, Rng and Clock."""

from __future__ import annotations

import hashlib
import hmac

import pytest
from ike_messages import ike_auth_request, informational_request

from cgwd.ike.clock import FakeClock, MonotonicClock
from cgwd.ike.constants import HeaderFlag, NotifyType, is_error_notify, name_of
from cgwd.ike.rng import SeededRng, SystemRng
from cgwd.ike.v2.message import Message
from cgwd.ike.v2.notify_data import (
    cookie_version,
    make_cookie,
    nat_detection_hash,
    verify_cookie,
)
from cgwd.ike.v2.payloads import (
    DeletePayload,
    IdiPayload,
    IdrPayload,
    NotifyPayload,
    UnknownPayload,
)
from cgwd.secret import Secret


def test_message_accessors() -> None:
    msg = ike_auth_request()
    idi = msg.get(IdiPayload)
    assert idi is not None and str(idi) == "198.51.100.7"
    assert idi.body == b"\x01\x00\x00\x00" + bytes([198, 51, 100, 7])
    idr = msg.get(IdrPayload)
    assert idr is not None and str(idr) == "aws.example"
    assert msg.notify(NotifyType.INITIAL_CONTACT) == NotifyPayload(NotifyType.INITIAL_CONTACT)
    assert msg.notify(NotifyType.COOKIE) is None
    assert msg.flags == HeaderFlag.INITIATOR
    info = informational_request()
    assert len(info.get_all(DeletePayload)) == 2
    assert [n.type for n in info.notifies()] == [NotifyType.REKEY_SA]
    reply = Message(37, 7, 1, 2, initiator=False, response=True)
    reply.add(NotifyPayload(NotifyType.INVALID_SYNTAX))
    assert reply.flags == HeaderFlag.RESPONSE and len(reply.payloads) == 1


def test_summary_names_payloads_not_contents() -> None:
    assert ike_auth_request().summary() == (
        "IKE_AUTH request 1 [ IDi N(INITIAL_CONTACT) IDr AUTH SA TSi TSr ]"
    )
    reply = Message(37, 7, 1, 2, initiator=False, response=True)
    assert reply.summary() == "INFORMATIONAL response 7 [ ]"
    reply.add(NotifyPayload(40000), UnknownPayload(99, False, b""))
    assert reply.summary() == "INFORMATIONAL response 7 [ N(NotifyType 40000) UNKNOWN(99) ]"


def test_nat_detection_hash_definition() -> None:
    # RFC 7296 §2.23: SHA-1(SPIi | SPIr | IP | Port), spelled out independently here.
    spi_i, spi_r = bytes.fromhex("0102030405060708"), bytes(8)
    expected = hashlib.sha1(spi_i + spi_r + bytes([192, 0, 2, 1]) + (500).to_bytes(2, "big"))
    assert nat_detection_hash(0x0102030405060708, 0, "192.0.2.1", 500) == expected.digest()
    assert nat_detection_hash(spi_i, spi_r, "192.0.2.1", 4500) != expected.digest()
    v6 = nat_detection_hash(1, 2, "2001:db8::1", 500)
    assert v6 == hashlib.sha1(
        (1).to_bytes(8, "big") + (2).to_bytes(8, "big") + bytes.fromhex("20010db8" + "0" * 23 + "1")
        + (500).to_bytes(2, "big")
    ).digest()  # fmt: skip


def test_cookie_round_trip_and_binding() -> None:
    secret, ni = Secret(b"k" * 32), b"n" * 32
    cookie = make_cookie(secret, 7, ni, "203.0.113.5", 0xAA)
    assert cookie_version(cookie) == 7 and 1 <= len(cookie) <= 64
    tag = hmac.new(b"k" * 32, ni + bytes([203, 0, 113, 5]) + (0xAA).to_bytes(8, "big"), "sha256")
    assert cookie == (7).to_bytes(4, "big") + tag.digest()
    ok = {
        "secret": secret,
        "version": 7,
        "ni": ni,
        "initiator_address": "203.0.113.5",
        "spi_i": 0xAA,
    }
    assert verify_cookie(cookie, **ok)  # type: ignore[arg-type]
    for key, other in (("ni", b"m" * 32), ("initiator_address", "203.0.113.6"), ("spi_i", 0xAB),
                       ("secret", Secret(b"j" * 32))):  # fmt: skip
        assert not verify_cookie(cookie, **{**ok, key: other})  # type: ignore[arg-type]
    assert cookie_version(b"short") is None


def test_rngs_and_clocks() -> None:
    a, b = SeededRng(5), SeededRng(5)
    assert a.bytes(100) == b.bytes(40) + b.bytes(60)
    assert SeededRng(6).bytes(16) != SeededRng(5).bytes(16)
    assert SeededRng(b"x").bytes(0) == b""
    assert len(SystemRng().bytes(33)) == 33
    with pytest.raises(ValueError):
        SystemRng().bytes(-1)
    clock = FakeClock(10.0)
    assert clock.advance(2.5) == 12.5 == clock.now()
    with pytest.raises(ValueError):
        clock.advance(-1)
    m = MonotonicClock()
    assert m.now() <= m.now()


def test_constant_helpers() -> None:
    assert is_error_notify(NotifyType.NO_PROPOSAL_CHOSEN) and not is_error_notify(16384)
    assert name_of(NotifyType, 24) == "AUTHENTICATION_FAILED"
    assert name_of(NotifyType, 9999) == "NotifyType 9999"


def test_encoding_refuses_values_that_do_not_fit() -> None:
    from cgwd.ike.rng import SeededRng  # noqa: PLC0415
    from cgwd.ike.v2.message import encode_message  # noqa: PLC0415
    from cgwd.ike.v2.payloads import (  # noqa: PLC0415
        Attribute,
        IdPayload,
        KePayload,
        Proposal,
        SaPayload,
        Transform,
    )

    def encode(*payloads: object) -> bytes:
        msg = Message(34, 0, 1, 0, initiator=True, response=False, payloads=list(payloads))  # type: ignore[arg-type]
        return encode_message(msg, None, SeededRng(0))

    bad = [
        IdPayload(1, b"abcd"),  # the base class has no payload type
        KePayload(70000, b"x"),
        SaPayload((Proposal(256, 1, b"", (Transform.of(1, 12, 128),)),)),
        SaPayload((Proposal(1, 1, b"", (Transform(1, 12, (Attribute(0x8001, 1),)),)),)),
        SaPayload((Proposal(1, 1, b"", (Transform.of(1, 12, 70000),)),)),
        DeletePayload(3, (b"12345678",)),
    ]
    for payload in bad:
        with pytest.raises(ValueError):
            encode(payload)


def test_id_body_is_signed_as_received() -> None:
    from cgwd.ike.rng import SeededRng  # noqa: PLC0415
    from cgwd.ike.v2.message import decode_message, encode_message  # noqa: PLC0415

    odd = IdrPayload(2, b"peer.example", b"\x00\x01\x02")
    msg = Message(35, 1, 1, 2, initiator=False, response=True, payloads=[odd])
    wire = encode_message(msg, None, SeededRng(0))
    got = decode_message(wire, None).get(IdrPayload)
    assert got is not None and got.body == b"\x02\x00\x01\x02peer.example"
    assert wire.endswith(got.body)
