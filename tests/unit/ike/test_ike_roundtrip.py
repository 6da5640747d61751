"""End-to-end round trips of the common path: IKE_SA_INIT in clear, IKE_AUTH in SK."""

from __future__ import annotations

import pytest

from cgwd.ike.constants import ExchangeType, NotifyType, ProtocolId
from cgwd.ike.crypto import IkeSuite, derive_ike_keys, dh_group
from cgwd.ike.rng import SeededRng
from cgwd.ike.v2.message import Message, decode_message, encode_message
from cgwd.ike.v2.payloads import (
    AuthPayload,
    IdiPayload,
    KePayload,
    NoncePayload,
    NotifyPayload,
    Proposal,
    SaPayload,
    TrafficSelector,
    Transform,
    TsiPayload,
    TsrPayload,
)

SUITES = [
    IkeSuite(12, 128, 2, 2, 2),  # aes128-sha1-prfsha1-modp1024
    IkeSuite(12, 256, 12, 5, 14),
    IkeSuite(20, 128, None, 5, 19),
    IkeSuite(20, 256, None, 6, 20),
    IkeSuite(12, 256, 14, 7, 31),
]


def test_ike_sa_init_round_trip() -> None:
    rng = SeededRng(1)
    sa = SaPayload(
        (
            Proposal(
                1,
                ProtocolId.IKE,
                b"",
                (
                    Transform.of(1, 12, 128),
                    Transform.of(3, 2),
                    Transform.of(2, 2),
                    Transform.of(4, 2),
                ),
            ),
        )
    )
    ke = KePayload(2, dh_group(2).generate(rng).public_bytes())
    msg = Message(
        ExchangeType.IKE_SA_INIT,
        0,
        0x1122334455667788,
        0,
        initiator=True,
        response=False,
        payloads=[sa, ke, NoncePayload(rng.bytes(32)), NotifyPayload(NotifyType.COOKIE, b"c" * 8)],
    )
    wire = encode_message(msg, None, rng)
    decoded = decode_message(wire, None)
    assert decoded == msg
    assert encode_message(decoded, None, rng) == wire


@pytest.mark.parametrize("suite", SUITES, ids=lambda s: s.name)
def test_sk_round_trip_both_directions(suite: IkeSuite) -> None:
    rng = SeededRng(2)
    grp = dh_group(suite.dh_group)
    a, b = grp.generate(rng), grp.generate(rng)
    shared = a.shared_secret(b.public_bytes())
    assert shared == b.shared_secret(a.public_bytes())
    keys = derive_ike_keys(suite, rng.bytes(32), rng.bytes(32), shared, 1, 2)
    i_out, i_in = keys.sk_ciphers(suite, initiator=True)
    r_out, r_in = keys.sk_ciphers(suite, initiator=False)
    msg = Message(
        ExchangeType.IKE_AUTH,
        1,
        1,
        2,
        initiator=True,
        response=False,
        payloads=[
            IdiPayload.ipv4("192.0.2.1"),
            AuthPayload(2, b"a" * 20),
            TsiPayload((TrafficSelector.any_ipv4(),)),
            TsrPayload((TrafficSelector.any_ipv4(),)),
        ],
    )
    wire = encode_message(msg, i_out, rng)
    decoded = decode_message(wire, r_in)
    assert decoded.encrypted
    assert decoded.payloads == msg.payloads
    reply = Message(ExchangeType.IKE_AUTH, 1, 1, 2, initiator=False, response=True)
    assert decode_message(encode_message(reply, r_out, rng), i_in).payloads == []
