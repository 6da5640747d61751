"""Proposal sets: AWS's supported suites strongest first, restrictions, IANA/strongSwan names."""

from __future__ import annotations

from dataclasses import replace

import pytest
from config_fixtures import phase, tunnel

from cgwd.config.aws import (
    ENCRYPTION_ALGORITHMS,
    INTEGRITY_ALGORITHMS,
    PHASE1_DH_GROUPS,
    PHASE2_DH_GROUPS,
    AwsTunnel,
    PhaseSettings,
)
from cgwd.config.proposals import (
    ENCRYPTION_ORDER,
    IKEV1_DEFAULT_PHASE1,
    IKEV1_MAX_TRANSFORMS,
    INTEGRITY_ORDER,
    PHASE1_DH_ORDER,
    PHASE2_DH_ORDER,
    EspProposal,
    Ikev1Transform,
    Ikev2Proposal,
    ProposalError,
    esp_suite_name,
    parse_esp_suite_name,
    proposals_for,
    quick_mode_pfs_group,
)

T = tunnel(1, "203.0.113.66", "169.254.141.36/30")
# ECP 21-19 and MODP 18-14 first, then 24-22, (5,) 2: aws-behaviour.md §6, by hand.
STRONG_DH = "ecp521-ecp384-ecp256-modp8192-modp6144-modp4096-modp3072-modp2048"
WEAK_DH = "modp2048s256-modp2048s224-modp1024s160"
ALL_P1_DH = f"{STRONG_DH}-{WEAK_DH}-modp1024"
ALL_P2_DH = f"{STRONG_DH}-{WEAK_DH}-modp1536-modp1024"


def restricted(
    t: AwsTunnel, p1: PhaseSettings | None = None, p2: PhaseSettings | None = None
) -> AwsTunnel:
    return replace(t, phase1=p1 or t.phase1, phase2=p2 or t.phase2)


def test_orders_cover_exactly_the_aws_vocabulary() -> None:
    assert sorted(ENCRYPTION_ORDER) == sorted(ENCRYPTION_ALGORITHMS)
    assert sorted(INTEGRITY_ORDER) == sorted(INTEGRITY_ALGORITHMS)
    assert sorted(PHASE1_DH_ORDER) == sorted(PHASE1_DH_GROUPS)
    assert sorted(PHASE2_DH_ORDER) == sorted(PHASE2_DH_GROUPS)


def test_ikev2_default_is_every_aws_suite_strongest_first_aead_apart() -> None:
    ps = proposals_for(T, "ikev2")
    assert ps.origin == "every suite AWS supports, strongest first"
    assert ps.ike_strongswan().split(",") == [
        "aes256gcm16-aes128gcm16-prfsha512-prfsha384-prfsha256-prfsha1-" + ALL_P1_DH,
        "aes256-aes128-sha512-sha384-sha256-sha1-prfsha512-prfsha384-prfsha256-prfsha1-"
        + ALL_P1_DH,
    ]
    assert ps.esp_strongswan().split(",") == [
        "aes256gcm16-aes128gcm16-" + ALL_P2_DH,
        "aes256-aes128-sha512-sha384-sha256-sha1-" + ALL_P2_DH,
    ]
    assert ps.ike[0].integrity == ()  # RFC 5282 §8: no INTEG transform with AEAD
    assert ps.ikev1 == ()


def test_text_downloads_minimum_does_not_restrict() -> None:
    # The Generic text prints AES128/SHA1/DH2 even for customised tunnels.
    assert proposals_for(T, "ikev2", fmt="aws-generic-text") == proposals_for(T, "ikev2")


def test_cli_json_tunnel_options_restrict_in_strength_order() -> None:
    p1 = PhaseSettings(
        "AES128",
        "SHA2-256",
        14,
        28800,
        ("AES128", "AES256-GCM-16"),
        ("SHA2-256", "SHA2-512"),
        (14, 20),
    )
    p2 = PhaseSettings("AES256", "SHA2-256", 14, 3600, ("AES256",), ("SHA2-256",), (14, 19))
    ps = proposals_for(restricted(T, p1, p2), "ikev2", fmt="aws-cli-json")
    assert ps.origin.endswith("restricted by the file's TunnelOptions")
    assert ps.ike_strongswan() == (
        "aes256gcm16-prfsha512-prfsha256-ecp384-modp2048,"
        "aes128-sha512-sha256-prfsha512-prfsha256-ecp384-modp2048"
    )
    # A single minimum value (SHA2-256 is GovCloud's) cannot be told apart from the XML
    # fallback, so it does not restrict: offering more than AWS accepts costs nothing.
    assert ps.esp_strongswan() == "aes256-sha512-sha384-sha256-sha1-ecp256-modp2048"


def test_cli_json_fallback_to_the_xml_minimum_is_not_a_restriction() -> None:
    # TunnelOptions without Phase1EncryptionAlgorithms: the importer falls back to the XML's
    # single minimum value, which says nothing about what AWS accepts.
    assert proposals_for(T, "ikev2", fmt="aws-cli-json") == proposals_for(T, "ikev2")


def test_file_mode_offers_only_what_the_file_states() -> None:
    ps = proposals_for(T, "ikev2", mode="file")
    assert ps.ike_strongswan() == "aes128-sha1-prfsha1-modp1024"
    assert ps.esp_strongswan() == "aes128-sha1-modp1024"
    ps1 = proposals_for(T, "ikev1", mode="file")
    assert ps1.ikev1 == (Ikev1Transform("AES128", "SHA1", 2),)
    assert ps1.ike_strongswan() == "aes128-sha1-modp1024"


def test_file_mode_needs_the_values() -> None:
    empty = restricted(T, p1=PhaseSettings(lifetime_seconds=28800))
    with pytest.raises(ProposalError, match="states no phase 1 encryption"):
        proposals_for(empty, "ikev2", mode="file")
    # ... while "aws" does not care what the file leaves out.
    assert proposals_for(empty, "ikev2").ike


def test_ikev1_has_no_gcm_and_a_short_list() -> None:
    ps = proposals_for(T, "ikev1")
    assert ps.ike == ()
    assert len(ps.ikev1) == len(IKEV1_DEFAULT_PHASE1) == 26
    assert all("GCM" not in t.encryption for t in ps.ikev1)
    # The minimums AWS prints (AES128/SHA1/DH2, GovCloud AES128/SHA2-256/DH14) are offered.
    assert Ikev1Transform("AES128", "SHA1", 2) in ps.ikev1
    assert Ikev1Transform("AES128", "SHA2-256", 14) in ps.ikev1
    assert ps.ikev1[0] == Ikev1Transform("AES256", "SHA2-512", 21)
    assert ps.ikev1[-1] == Ikev1Transform("AES128", "SHA1", 2)
    # IKEv1 Main Mode message 1: header 28 + SA 12 + proposal 8 + 36 per transform
    # (8 + 7 four-byte TV attributes), well under 1280 bytes with room for vendor IDs.
    assert 28 + 12 + 8 + 36 * len(ps.ikev1) < 1100


def test_ikev1_restricted_to_gcm_only_is_an_error() -> None:
    p1 = PhaseSettings(
        "AES256-GCM-16",
        "SHA2-256",
        20,
        28800,
        ("AES256-GCM-16", "AES128-GCM-16"),
        ("SHA2-256",),
        (20,),
    )
    with pytest.raises(ProposalError, match="IKEv1 phase 1 has no AES-GCM"):
        proposals_for(restricted(T, p1), "ikev1", fmt="aws-cli-json")


def test_ikev1_restricted_product_is_capped() -> None:
    p1 = PhaseSettings(
        "AES128", "SHA1", 2, 28800, ("AES128", "AES256"), INTEGRITY_ALGORITHMS, PHASE1_DH_GROUPS
    )
    ps = proposals_for(restricted(T, p1), "ikev1", fmt="aws-cli-json")
    assert len(ps.ikev1) == IKEV1_MAX_TRANSFORMS
    assert ps.ikev1[0] == Ikev1Transform("AES256", "SHA2-512", 21)
    assert ps.warnings and "96 combinations" in ps.warnings[0]


def test_unknown_algorithm_in_the_file_is_an_error() -> None:
    bad = restricted(T, p2=replace(phase(life=3600), encryption_allowed=("3DES",)))
    with pytest.raises(ProposalError, match="3DES"):
        proposals_for(bad, "ikev2", mode="file")


def test_iana_transform_ids() -> None:
    # RFC 7296 §3.3.2 / RFC 4868 / RFC 5282, written out by hand.
    gcm = Ikev2Proposal(("AES256-GCM-16",), (), ("SHA2-384",), (20,))
    assert gcm.iana_transforms() == ((1, 20, 256), (2, 6, None), (4, 20, None))
    assert gcm.strongswan() == "aes256gcm16-prfsha384-ecp384"
    cbc = Ikev2Proposal(("AES128",), ("SHA1",), ("SHA1",), (2,))
    assert cbc.iana_transforms() == ((1, 12, 128), (2, 2, None), (3, 2, None), (4, 2, None))
    esp = EspProposal(("AES256",), ("SHA2-512", "SHA2-256"), (14,))
    assert esp.iana_transforms() == (
        (1, 12, 256),
        (3, 14, None),
        (3, 12, None),
        (4, 14, None),
        (5, 0, None),
    )
    # RFC 2409 Appendix A: AES-CBC 7, key length 14, SHA2-256 hash 4, PSK 1, group.
    assert Ikev1Transform("AES256", "SHA2-256", 14).iana_attributes() == (
        (1, 7),
        (14, 256),
        (2, 4),
        (3, 1),
        (4, 14),
    )


@pytest.mark.parametrize(
    ("aws", "name"),
    [
        (("AES128-GCM-16", None), "aes128gcm16"),
        (("AES256-GCM-16", None), "aes256gcm16"),
        (("AES128", "SHA1"), "aes128-sha1"),
        (("AES256", "SHA2-256"), "aes256-sha256"),
        (("AES128", "SHA2-384"), "aes128-sha384"),
        (("AES256", "SHA2-512"), "aes256-sha512"),
    ],
)
def test_esp_suite_names_round_trip(aws: tuple[str, str | None], name: str) -> None:
    assert esp_suite_name(*aws) == name
    assert parse_esp_suite_name(name) == aws


@pytest.mark.parametrize("name", ["des-sha1", "aes128", "aes128gcm16-sha1", "aes128-md5", ""])
def test_unknown_esp_suite_names(name: str) -> None:
    with pytest.raises(ProposalError):
        parse_esp_suite_name(name)


def test_ikev1_quick_mode_uses_one_pfs_group() -> None:
    ps = proposals_for(T, "ikev1")
    assert quick_mode_pfs_group(ps, 14) == 14
    assert quick_mode_pfs_group(ps, None) == 21
    only_14 = replace(phase(life=3600), dh_groups_allowed=(14, 5), dh_group=14)
    ps = proposals_for(restricted(T, p2=only_14), "ikev1", fmt="aws-cli-json")
    assert quick_mode_pfs_group(ps, 20) == 14


def test_ikev1_quick_mode_transforms_are_expanded_with_one_group() -> None:
    ps = proposals_for(T, "ikev1")
    # One IKEv1 transform per cipher (x integrity): strongSwan and RFC 2407 take only the
    # first algorithm of each type from a proposal.
    assert ps.esp_strongswan(14).split(",") == [
        "aes256gcm16-modp2048",
        "aes128gcm16-modp2048",
        "aes256-sha512-modp2048",
        "aes256-sha384-modp2048",
        "aes256-sha256-modp2048",
        "aes256-sha1-modp2048",
        "aes128-sha512-modp2048",
        "aes128-sha384-modp2048",
        "aes128-sha256-modp2048",
        "aes128-sha1-modp2048",
    ]
    assert ps.esp_strongswan().endswith("aes128-sha1-ecp521")
    assert all(len(p.dh_groups) == 1 for p in ps.ikev1_esp(2))
    with pytest.raises(ProposalError, match="group 1 is not allowed"):
        ps.ikev1_esp(1)
