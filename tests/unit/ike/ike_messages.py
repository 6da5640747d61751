"""Representative valid IKEv2 messages and suites for the codec tests."""

from __future__ import annotations

from ipaddress import IPv4Address, IPv6Address

from cgwd.ike.constants import (
    AuthMethod,
    DhGroup,
    EncrId,
    ExchangeType,
    IntegId,
    NotifyType,
    PrfId,
    ProtocolId,
    TransformType,
)
from cgwd.ike.crypto import IkeSuite
from cgwd.ike.v2.message import Message
from cgwd.ike.v2.payloads import (
    AuthPayload,
    CertReqPayload,
    DeletePayload,
    IdiPayload,
    IdrPayload,
    KePayload,
    NoncePayload,
    NotifyPayload,
    Proposal,
    SaPayload,
    TrafficSelector,
    Transform,
    TsiPayload,
    TsrPayload,
    UnknownPayload,
    VendorIdPayload,
)

T = TransformType
SUITES = [
    IkeSuite(EncrId.AES_CBC, 128, IntegId.HMAC_SHA1_96, PrfId.HMAC_SHA1, DhGroup.MODP_1024),
    IkeSuite(EncrId.AES_CBC, 256, IntegId.HMAC_SHA2_256_128, PrfId.HMAC_SHA2_256, 14),
    IkeSuite(EncrId.AES_CBC, 256, IntegId.HMAC_SHA2_384_192, PrfId.HMAC_SHA2_384, 20),
    IkeSuite(EncrId.AES_CBC, 128, IntegId.HMAC_SHA2_512_256, PrfId.HMAC_SHA2_512, 31),
    IkeSuite(EncrId.AES_GCM_16, 128, None, PrfId.HMAC_SHA2_256, DhGroup.ECP_256),
    IkeSuite(EncrId.AES_GCM_16, 256, None, PrfId.HMAC_SHA2_384, DhGroup.ECP_384),
]


def ike_proposals() -> SaPayload:
    return SaPayload(
        (
            Proposal(
                1,
                ProtocolId.IKE,
                b"",
                (
                    Transform.of(T.ENCR, EncrId.AES_CBC, 128),
                    Transform.of(T.ENCR, EncrId.AES_CBC, 256),
                    Transform.of(T.INTEG, IntegId.HMAC_SHA1_96),
                    Transform.of(T.PRF, PrfId.HMAC_SHA1),
                    Transform.of(T.DH, DhGroup.MODP_1024),
                    Transform.of(T.DH, DhGroup.MODP_2048),
                ),
            ),
            Proposal(
                2,
                ProtocolId.IKE,
                b"",
                (
                    Transform.of(T.ENCR, EncrId.AES_GCM_16, 256),
                    Transform.of(T.PRF, PrfId.HMAC_SHA2_384),
                    Transform.of(T.DH, DhGroup.ECP_384),
                ),
            ),
        )
    )


def ike_sa_init_request() -> Message:
    return Message(
        ExchangeType.IKE_SA_INIT,
        0,
        0x0102030405060708,
        0,
        initiator=True,
        response=False,
        payloads=[
            ike_proposals(),
            KePayload(DhGroup.MODP_1024, bytes(range(128))),
            NoncePayload(bytes(range(32))),
            NotifyPayload(NotifyType.NAT_DETECTION_SOURCE_IP, b"s" * 20),
            NotifyPayload(NotifyType.NAT_DETECTION_DESTINATION_IP, b"d" * 20),
            VendorIdPayload(b"cgwd"),
        ],
    )


def ike_sa_init_response() -> Message:
    return Message(
        ExchangeType.IKE_SA_INIT,
        0,
        0x0102030405060708,
        0x1112131415161718,
        initiator=False,
        response=True,
        payloads=[
            SaPayload((Proposal(2, ProtocolId.IKE, b"", ike_proposals().proposals[1].transforms),)),
            KePayload(DhGroup.ECP_384, bytes(96)),
            NoncePayload(bytes(range(64))),
            CertReqPayload(4, b"\x01" * 20),
            NotifyPayload(16430),
            UnknownPayload(200, False, b"future"),
        ],
    )


def ike_auth_request() -> Message:
    esp = Proposal(
        1,
        ProtocolId.ESP,
        b"\xc0\x01\x02\x03",
        (
            Transform.of(T.ENCR, EncrId.AES_GCM_16, 128),
            Transform.of(T.ESN, 0),
        ),
    )
    return Message(
        ExchangeType.IKE_AUTH,
        1,
        0x0102030405060708,
        0x1112131415161718,
        initiator=True,
        response=False,
        payloads=[
            IdiPayload.ipv4("198.51.100.7"),
            NotifyPayload(NotifyType.INITIAL_CONTACT),
            IdrPayload(2, b"aws.example"),
            AuthPayload(AuthMethod.SHARED_KEY_MIC, b"\xaa" * 20),
            SaPayload((esp,)),
            TsiPayload((TrafficSelector.any_ipv4(),)),
            TsrPayload(
                (
                    TrafficSelector(
                        IPv4Address("10.0.0.0"), IPv4Address("10.0.255.255"), 6, 80, 443
                    ),
                    TrafficSelector(IPv6Address("2001:db8::"), IPv6Address("2001:db8::ffff")),
                )
            ),
        ],
    )


def informational_request() -> Message:
    return Message(
        ExchangeType.INFORMATIONAL,
        7,
        0x0102030405060708,
        0x1112131415161718,
        initiator=False,
        response=False,
        payloads=[
            DeletePayload(ProtocolId.ESP, (b"\xc0\x01\x02\x03", b"\xc0\x01\x02\x04")),
            DeletePayload(ProtocolId.IKE),
            NotifyPayload(NotifyType.REKEY_SA, b"", ProtocolId.ESP, b"\xc0\x01\x02\x03"),
        ],
    )


def all_messages() -> list[Message]:
    return [
        ike_sa_init_request(),
        ike_sa_init_response(),
        ike_auth_request(),
        informational_request(),
    ]
