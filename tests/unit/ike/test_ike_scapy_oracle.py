"""scapy's IKEv2 dissector as an independent oracle for the codec, both directions.

scapy quirks handled by hand: the Key Length attribute only appears when the transform
length says so (12), and transform/proposal counts are not derived automatically.
"""

from __future__ import annotations

import contextlib
import random
from ipaddress import IPv4Address

import pytest
from ike_messages import all_messages, ike_auth_request, informational_request
from scapy.contrib.ikev2 import (
    IKEv2,
    IKEv2_AUTH,
    IKEv2_Delete,
    IKEv2_IDi,
    IKEv2_KE,
    IKEv2_Nonce,
    IKEv2_Notify,
    IKEv2_Proposal,
    IKEv2_SA,
    IKEv2_Transform,
    IKEv2_TSi,
    IKEv2_TSr,
    IKEv2_VendorID,
    IPv4TrafficSelector,
)
from scapy.packet import Packet, fuzz, raw

from cgwd.ike.constants import ExchangeType, NotifyType, PayloadType, ProtocolId
from cgwd.ike.decode_errors import IkeDecodeError
from cgwd.ike.rng import SeededRng
from cgwd.ike.v2.message import decode_message, encode_message
from cgwd.ike.v2.payloads import (
    AuthPayload,
    DeletePayload,
    IdiPayload,
    KePayload,
    NoncePayload,
    NotifyPayload,
    SaPayload,
    TrafficSelector,
    Transform,
    TsiPayload,
    TsrPayload,
    VendorIdPayload,
)


def scapy_transforms() -> Packet:
    return (
        IKEv2_Transform(
            next_payload=3, transform_type=1, transform_id=12, length=12, key_length=256
        )
        / IKEv2_Transform(next_payload=3, transform_type=3, transform_id=12)
        / IKEv2_Transform(next_payload=3, transform_type=2, transform_id=5)
        / IKEv2_Transform(next_payload=0, transform_type=4, transform_id=14)
    )


def test_scapy_built_ike_sa_init_decodes() -> None:
    esp_like = IKEv2_Transform(
        next_payload=0, transform_type=1, transform_id=20, length=12, key_length=128
    )
    props = IKEv2_Proposal(
        next_payload=2, proposal=1, proto=1, trans_nb=4, trans=scapy_transforms()
    ) / (IKEv2_Proposal(next_payload=0, proposal=2, proto=1, trans_nb=1, trans=esp_like))
    pkt = (
        IKEv2(init_SPI=b"\x01" * 8, resp_SPI=b"\x00" * 8, exch_type=34, flags="Initiator", id=0)
        / IKEv2_SA(prop=props)
        / IKEv2_KE(group=14, ke=b"\x07" * 256)
        / IKEv2_Nonce(nonce=b"n" * 32)
        / IKEv2_Notify(type=16388, notify=b"h" * 20)
        / IKEv2_VendorID(vendorID=b"strongSwan")
    )
    msg = decode_message(raw(pkt), None)
    assert msg.exchange_type == ExchangeType.IKE_SA_INIT and msg.initiator and not msg.response
    assert msg.spi_i == int.from_bytes(b"\x01" * 8, "big") and msg.spi_r == 0
    sa = msg.get(SaPayload)
    assert sa is not None
    assert [p.number for p in sa.proposals] == [1, 2]
    assert sa.proposals[0].transforms == (
        Transform.of(1, 12, 256),
        Transform.of(3, 12),
        Transform.of(2, 5),
        Transform.of(4, 14),
    )
    assert sa.proposals[1].transforms == (Transform.of(1, 20, 128),)
    assert msg.get(KePayload) == KePayload(14, b"\x07" * 256)
    assert msg.get(NoncePayload) == NoncePayload(b"n" * 32)
    assert msg.notify(NotifyType.NAT_DETECTION_SOURCE_IP) == NotifyPayload(16388, b"h" * 20)
    assert msg.get(VendorIdPayload) == VendorIdPayload(b"strongSwan")


def test_scapy_built_auth_payloads_decode() -> None:
    ts = IPv4TrafficSelector(
        TS_type=7,
        IP_protocol_ID=0,
        start_port=0,
        end_port=65535,
        starting_address_v4="10.0.0.0",
        ending_address_v4="10.255.255.255",
    )  # fmt: skip  (scapy mangles "255.255.255.255": its IPField resolves it as a name)
    pkt = (
        IKEv2(init_SPI=b"\x01" * 8, resp_SPI=b"\x02" * 8, exch_type=35, flags="Response", id=1)
        / IKEv2_IDi(IDtype=1, ID="203.0.113.9")
        / IKEv2_AUTH(auth_type=2, load=b"a" * 20)
        / IKEv2_TSi(number_of_TSs=1, traffic_selector=[ts])
        / IKEv2_TSr(number_of_TSs=1, traffic_selector=[ts])
        / IKEv2_Notify(proto=3, SPIsize=4, type=16393, SPI=b"\xc0\x00\x00\x01")
        / IKEv2_Delete(proto=3, SPIsize=4, SPInum=2, SPI=[b"\xc0\x00\x00\x01", b"\xc0\x00\x00\x02"])
    )
    msg = decode_message(raw(pkt), None)
    assert msg.response and not msg.initiator and msg.message_id == 1
    assert msg.payloads == [
        IdiPayload.ipv4("203.0.113.9"),
        AuthPayload(2, b"a" * 20),
        TsiPayload((TrafficSelector.from_network("10.0.0.0/8"),)),
        TsrPayload((TrafficSelector.from_network("10.0.0.0/8"),)),
        NotifyPayload(NotifyType.REKEY_SA, b"", ProtocolId.ESP, b"\xc0\x00\x00\x01"),
        DeletePayload(ProtocolId.ESP, (b"\xc0\x00\x00\x01", b"\xc0\x00\x00\x02")),
    ]


def test_our_messages_parse_in_scapy() -> None:
    for msg in all_messages():
        wire = encode_message(msg, None, SeededRng(0))
        pkt = IKEv2(wire)
        assert raw(pkt) == wire  # scapy re-serialises what it parsed to the same octets
        assert pkt.length == len(wire)
        assert pkt.exch_type == msg.exchange_type and pkt.id == msg.message_id
        assert int.from_bytes(pkt.init_SPI, "big") == msg.spi_i
        # walk scapy's payload chain and compare the types with ours
        types = []
        layer = pkt.payload
        nxt = pkt.next_payload
        while nxt and isinstance(layer, Packet) and layer.name != "Raw":
            types.append(nxt)
            nxt = layer.next_payload
            layer = layer.payload
        assert types == [p.payload_type for p in msg.payloads]


def test_scapy_sees_our_field_values() -> None:
    auth = ike_auth_request()
    pkt = IKEv2(encode_message(auth, None, SeededRng(0)))
    assert pkt[IKEv2_IDi].IDtype == 1 and pkt[IKEv2_IDi].ID == "198.51.100.7"
    assert pkt[IKEv2_AUTH].auth_type == 2 and pkt[IKEv2_AUTH].load == b"\xaa" * 20
    proposal = pkt[IKEv2_Proposal]
    assert (proposal.proposal, proposal.proto, proposal.SPI, proposal.trans_nb) == (
        1, 3, b"\xc0\x01\x02\x03", 2,
    )  # fmt: skip
    assert proposal.trans.transform_id == 20 and proposal.trans.key_length == 128
    ts = pkt[IKEv2_TSr].traffic_selector
    assert ts[0].starting_address_v4 == "10.0.0.0" and ts[0].end_port == 443
    assert str(IPv4Address(ts[0].ending_address_v4)) == "10.0.255.255"

    info = IKEv2(encode_message(informational_request(), None, SeededRng(0)))
    delete = info[IKEv2_Delete]
    assert (delete.proto, delete.SPIsize, delete.SPInum) == (3, 4, 2)
    assert (
        info[IKEv2_Notify].type == NotifyType.REKEY_SA
        and info[IKEv2_Notify].SPI == b"\xc0\x01\x02\x03"
    )
    assert info.next_payload == PayloadType.DELETE


# ---------------------------------------------------------------- scapy-crafted bad input


def _header(**kw: object) -> Packet:
    return IKEv2(init_SPI=b"\x01" * 8, resp_SPI=b"\x00" * 8, exch_type=34, **kw)


MALFORMED = {
    # scapy's own defaults: key length attribute announced by length 12 but absent data
    "transform count says 3": _header()
    / IKEv2_SA(
        prop=IKEv2_Proposal(trans_nb=3, trans=IKEv2_Transform(transform_type=2, transform_id=2))
    ),
    "notify SPI size larger than SPI": _header()
    / IKEv2_Notify(proto=3, SPIsize=8, type=16393, SPI=b"abcd"),
    "delete ESP with 8-octet SPIs": _header()
    / IKEv2_Delete(proto=3, SPIsize=8, SPInum=1, SPI=[b"12345678"]),
    "nonce of 8 octets": _header() / IKEv2_Nonce(nonce=b"n" * 8),
    "TS count 2 with one selector": _header()
    / IKEv2_TSi(number_of_TSs=2, traffic_selector=[IPv4TrafficSelector(IP_protocol_ID=0)]),
    "IKEv1 version octet": _header(version=0x10) / IKEv2_Nonce(nonce=b"n" * 16),
    "KE without data": _header() / IKEv2_KE(group=14, ke=b""),
}


def test_scapy_crafted_malformed_messages_are_rejected() -> None:
    for name, pkt in MALFORMED.items():
        with pytest.raises(IkeDecodeError):
            decode_message(raw(pkt), None)
            raise AssertionError(f"{name}: accepted")


def test_scapy_fuzzed_fields_only_raise_decode_errors() -> None:
    """scapy's fuzz() fills fields at random (fixed seed); the header stays consistent."""
    random.seed(4)
    reached_payloads = 0
    for _ in range(300):
        body = (
            fuzz(IKEv2_SA(prop=IKEv2_Proposal(trans=IKEv2_Transform() / IKEv2_Transform())))
            / fuzz(IKEv2_Notify())
            / fuzz(IKEv2_Nonce())
        )
        try:
            payload = raw(body)
        except Exception:
            continue
        wire = raw(_header(next_payload=33, length=28 + len(payload))) + payload
        with contextlib.suppress(IkeDecodeError):
            decode_message(wire, None)
        reached_payloads += 1
    assert reached_payloads > 20
