"""Normalisation to AWS vocabulary (reference §7) and the model-level rules (§8)."""

from __future__ import annotations

import re
from dataclasses import replace
from ipaddress import IPv4Address, IPv4Network, IPv6Network
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cgwd.config.importers import (
    load_aws_config,
    validate_connection,
    validate_inside_cidr,
    validate_tunnel,
)
from cgwd.config.importers import normalise as norm
from cgwd.config.importers.text import clean_lines, split_label
from cgwd.config.importers.validate import psk_problem
from cgwd.errors import ConfigError
from cgwd.secret import Secret

DATA = Path(__file__).parents[2] / "data" / "aws"


@pytest.mark.parametrize(
    ("token", "aws"),
    [
        ("aes-128-cbc", "AES128"),
        ("aes-256-cbc", "AES256"),
        ("aes 128", "AES128"),
        ("esp-aes 256", "AES256"),
        ("aes128", "AES128"),
        ("aes256", "AES256"),
        ("aes128gcm16", "AES128-GCM-16"),
        ("aes256gcm16", "AES256-GCM-16"),
        ("AES128-GCM-16", "AES128-GCM-16"),
        ("aes-cbc-256", "AES256"),
    ],
)
def test_encryption_names(token: str, aws: str) -> None:
    assert norm.encryption(token) == aws


@pytest.mark.parametrize(
    ("token", "aws"),
    [
        ("sha1", "SHA1"),
        ("hmac-sha1-96", "SHA1"),
        ("sha", "SHA1"),
        ("esp-sha-hmac", "SHA1"),
        ("sha256", "SHA2-256"),
        ("esp-sha256-hmac", "SHA2-256"),
        ("sha384", "SHA2-384"),
        ("sha512", "SHA2-512"),
        ("SHA2-512", "SHA2-512"),
    ],
)
def test_integrity_names(token: str, aws: str) -> None:
    assert norm.integrity(token) == aws


@pytest.mark.parametrize(
    ("token", "group"),
    [
        ("Group 2", 2),
        ("group14", 14),
        ("group 14", 14),
        ("Diffie-Hellman Group 2", 2),
        ("5", 5),
        ("modp1024", 2),
        ("modp1536", 5),
        ("modp2048", 14),
        ("modp3072", 15),
        ("modp4096", 16),
        ("modp6144", 17),
        ("modp8192", 18),
        ("ecp256", 19),
        ("ecp384", 20),
        ("ecp521", 21),
        ("modp1024s160", 22),
        ("modp2048s224", 23),
        ("modp2048s256", 24),
    ],
)
def test_dh_groups(token: str, group: int) -> None:
    assert norm.dh_group(token) == group


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("28800 seconds", 28800),
        ("3600", 3600),
        ("8h", 28800),
        ("1h", 3600),
        ("60m", 3600),
        ("1d", 86400),
        ("30s", 30),
        ("10", 10),
    ],
)
def test_lifetimes(text: str, seconds: int) -> None:
    assert norm.lifetime_seconds(text) == seconds


@pytest.mark.parametrize(
    ("convert", "text"),
    [
        (norm.encryption, "3des"),
        (norm.integrity, "md5"),
        (norm.dh_group, "modp768"),
        (norm.lifetime_seconds, "8 weeks"),
        (norm.lifetime_seconds, "-5"),
        (norm.integer, "1_000"),
        (norm.integer, "١٢٣"),  # non-ASCII digits
        (norm.integer, "9" * 5000),
        (norm.ipv4, "169.254.256.9"),
        (norm.ipv4, "010.1.1.1"),
        (norm.ipv4_interface, "169.254.1.2 255.255.0.255"),
        (norm.flag, "maybe"),
    ],
)
def test_unknown_tokens_are_errors(convert: object, text: str) -> None:
    assert callable(convert)
    with pytest.raises(ValueError):
        convert(text)


def test_split_label_and_hygiene() -> None:
    assert split_label("Customer Gateway:        : 192.0.2.45") == (
        "Customer Gateway",
        "192.0.2.45",
    )
    assert split_label("Virtual Private  Gateway ASN          : 64512") == (
        "Virtual Private Gateway ASN",
        "64512",
    )
    assert split_label("Your Virtual Private Gateway ID          :") == (
        "Your Virtual Private Gateway ID",
        "",
    )
    assert split_label("no colon here") is None
    lines = list(clean_lines("a\r\n\t\t\r\n  b \t\rc\n \n"))
    assert [(line.number, line.text) for line in lines] == [(1, "a"), (3, "  b"), (4, "c")]


def test_psk_rule() -> None:
    assert psk_problem("sVbYmmbuv_1I4wJ2RvidkZboWOfs.8FW") is None
    assert psk_problem("a" * 64) is None
    assert psk_problem("12345678") is None
    assert psk_problem("a" * 65) == "pre-shared key must be 8-64 characters long, this one has 65"
    assert psk_problem("abcdefg") is not None
    assert (
        psk_problem("abcd efgh") == "pre-shared key character 5 of 9 is not one of A-Z a-z 0-9 . _"
    )
    assert psk_problem("0bcdefgh") == "pre-shared key must not start with 0"
    assert psk_problem(Secret(b"abc\xffdefg")) is not None


@given(st.text(alphabet="ABCabc019._-+ $é", min_size=0, max_size=70))
@settings(max_examples=300, deadline=None)
def test_psk_rule_matches_the_reference_regex(psk: str) -> None:
    valid = re.fullmatch(r"[A-Za-z1-9._][A-Za-z0-9._]{7,63}", psk) is not None
    problem = psk_problem(psk)
    assert (problem is None) == valid
    if problem is not None and len(psk) >= 10:
        assert psk not in problem


@pytest.mark.parametrize(
    ("cidr", "ok"),
    [
        ("169.254.141.36/30", True),
        ("169.254.0.0/30", False),
        ("169.254.5.0/30", False),
        ("169.254.6.0/30", True),
        ("169.254.5.4/30", True),
        ("169.254.169.252/30", False),
        ("169.254.10.0/29", False),
        ("10.0.0.0/30", False),
    ],
)
def test_inside_cidr_rule(cidr: str, ok: bool) -> None:
    if ok:
        validate_inside_cidr(IPv4Network(cidr))
    else:
        with pytest.raises(ConfigError):
            validate_inside_cidr(IPv4Network(cidr))


def test_validate_connection_after_overrides() -> None:
    """The config loader re-validates a connection after applying user overrides."""
    conn = load_aws_config(DATA / "aws-generic-static-ikev1.txt")
    validate_connection(conn)
    t1, t2 = conn.tunnels
    bad_lifetime = replace(t1, phase2=replace(t1.phase2, lifetime_seconds=30000))
    with pytest.raises(ConfigError, match="phase 2 lifetime 30000 s"):
        validate_tunnel(bad_lifetime)
    same_outside = replace(t2, vpn_gateway_outside_ip=IPv4Address("203.0.113.66"))
    with pytest.raises(ConfigError, match="same AWS outside IP"):
        validate_connection(replace(conn, tunnels=(t1, same_outside)))
    ipv6 = replace(t1, inside_ipv6_cidr=IPv6Network("fe80::/126"))
    with pytest.raises(ConfigError, match=r"inside fd00::/8"):
        validate_tunnel(ipv6)
    gcm_in_phase1 = replace(t1, phase1=replace(t1.phase1, dh_group=5, dh_groups_allowed=(5,)))
    with pytest.raises(ConfigError, match="DH group 5 is not allowed in phase 1"):
        validate_tunnel(gcm_in_phase1)
    validate_tunnel(replace(t1, phase2=replace(t1.phase2, dh_group=5, dh_groups_allowed=(5,))))
