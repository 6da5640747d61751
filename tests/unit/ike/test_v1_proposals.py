"""IKEv1 SA payload offers and matching (RFC 2409 App. A, RFC 2407 §4.5, RFC 3947 §5.1)."""

from __future__ import annotations

from ipaddress import IPv4Address

from cgwd.config.aws import AwsTunnel, DeadPeerDetection, PhaseSettings
from cgwd.config.proposals import proposals_for
from cgwd.esp.suites import suite_by_name
from cgwd.ike.v1.constants import EncapMode, EspTransform, P1Attr, P1Hash, P2Attr, ProtocolId
from cgwd.ike.v1.keys import Phase1Suite
from cgwd.ike.v1.payloads import Attribute, Proposal, SaPayload, Transform
from cgwd.ike.v1.proposals import (
    choose_phase1,
    choose_phase2,
    from_config,
    parse_esp_transform,
    parse_phase1_transform,
    phase1_answer,
    phase1_offer,
    phase2_answer,
    phase2_offer,
)

AWS = Phase1Suite(128, P1Hash.SHA1, 2)
GOV = Phase1Suite(256, P1Hash.SHA2_256, 14)


def test_phase1_offer_carries_the_lifetime_in_seconds() -> None:
    sa = phase1_offer((AWS, GOV), 28800)
    (p,) = sa.proposals
    assert p.protocol == ProtocolId.ISAKMP and len(p.transforms) == 2
    attrs = {a.type: a.value for a in p.transforms[0].attributes}
    assert attrs[P1Attr.LIFE_TYPE] == 1 and attrs[P1Attr.LIFE_DURATION] == 28800
    assert attrs[P1Attr.ENCRYPTION] == 7 and attrs[P1Attr.KEY_LENGTH] == 128
    assert attrs[P1Attr.HASH] == 2 and attrs[P1Attr.AUTH_METHOD] == 1
    assert attrs[P1Attr.GROUP_DESCRIPTION] == 2


def test_phase1_choice_and_answer() -> None:
    offer = phase1_offer((GOV, AWS), 3600)
    chosen = choose_phase1(offer, (AWS,))
    assert chosen is not None and chosen[2] == AWS and chosen[3] == 3600
    answer = SaPayload((Proposal(1, ProtocolId.ISAKMP, b"", (chosen[1],)),))
    assert phase1_answer(answer, (GOV, AWS)) == (AWS, 3600)
    assert phase1_answer(answer, (GOV,)) is None  # not something we offered
    assert phase1_answer(offer, (GOV, AWS)) is None  # two transforms is no answer
    assert choose_phase1(offer, (Phase1Suite(256, P1Hash.SHA1, 20),)) is None


def test_phase1_transform_rejects_what_we_do_not_do() -> None:
    base = list(phase1_offer((AWS,), 100).proposals[0].transforms[0].attributes)
    xauth = [Attribute(a.type, 65001) if a.type == P1Attr.AUTH_METHOD else a for a in base]
    assert parse_phase1_transform(Transform(1, 1, tuple(xauth))) is None
    des = [Attribute(a.type, 5) if a.type == P1Attr.ENCRYPTION else a for a in base]
    assert parse_phase1_transform(Transform(1, 1, tuple(des))) is None
    kb = [*base, Attribute(P1Attr.LIFE_TYPE, 2), Attribute(P1Attr.LIFE_DURATION, 4608000)]
    assert parse_phase1_transform(Transform(1, 1, tuple(kb))) == (AWS, 100)  # kB ignored


def test_phase2_offer_and_choices() -> None:
    suites = (suite_by_name("aes256gcm16"), suite_by_name("aes128-sha1"))
    offer = phase2_offer(suites, 0x01020304, 3600, 2, EncapMode.UDP_TUNNEL)
    (p,) = offer.proposals
    assert p.spi == bytes([1, 2, 3, 4]) and p.protocol == ProtocolId.ESP
    gcm, cbc = p.transforms
    assert gcm.transform_id == EspTransform.ESP_AES_GCM_16
    assert P2Attr.AUTH_ALGORITHM not in {a.type for a in gcm.attributes}
    assert parse_esp_transform(cbc) == (suite_by_name("aes128-sha1"), 3600, 2, 3)
    choice = choose_phase2(offer, (suites[1],), (2, 14), frozenset({3, 61443}))
    assert choice is not None and choice.suite == suites[1] and choice.group == 2
    assert choose_phase2(offer, suites, (14,), frozenset({3})) is None  # PFS group
    assert choose_phase2(offer, suites, (2,), frozenset({1})) is None  # encapsulation
    answer = SaPayload((Proposal(1, ProtocolId.ESP, b"\0\0\1\0", (cbc,)),))
    got = phase2_answer(answer, suites, 2, 3)
    assert got is not None and got.suite == suites[1] and got.lifetime == 3600
    assert phase2_answer(answer, suites, 14, 3) is None


def test_draft_encapsulation_value_is_understood() -> None:
    t = Transform(
        1,
        EspTransform.ESP_AES,
        (
            Attribute(P2Attr.ENCAPSULATION_MODE, EncapMode.UDP_TUNNEL_DRAFT),
            Attribute(P2Attr.AUTH_ALGORITHM, 5),
            Attribute(P2Attr.KEY_LENGTH, 256),
        ),
    )
    assert parse_esp_transform(t) == (suite_by_name("aes256-sha256"), None, None, 61443)


def test_from_config_default_aws_set() -> None:
    tunnel = AwsTunnel(
        index=1,
        customer_gateway_outside_ip=IPv4Address("192.0.2.1"),
        vpn_gateway_outside_ip=IPv4Address("198.51.100.1"),
        customer_gateway_inside_ip=None,
        vpn_gateway_inside_ip=None,
        inside_cidr=None,
        pre_shared_key=None,
        ike_version="ikev1",
        phase1=PhaseSettings(),
        phase2=PhaseSettings(),
        dpd=DeadPeerDetection(),
    )
    p1, esp, groups = from_config(proposals_for(tunnel, "ikev1"))
    assert AWS in p1 and GOV in p1 and len(p1) == 26
    assert suite_by_name("aes128-sha1") in esp and suite_by_name("aes256gcm16") in esp
    assert 2 in groups and 14 in groups
