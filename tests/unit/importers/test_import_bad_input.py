"""Bad input: each case edits a valid fixture and checks the error names format, tunnel,
field and value (never a pre-shared key), and where it is (line, element or JSON path)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from cgwd.config.importers import load_aws_config, parse_aws_config
from cgwd.config.importers.validate import validate_lifetimes, validate_psk
from cgwd.errors import ConfigError
from cgwd.secret import Secret

DATA = Path(__file__).parents[2] / "data" / "aws"
GENERIC = "aws-generic-static-ikev1.txt"
GENERIC_BGP = "aws-generic-2021-tgw-bgp-ikev2.txt"
XML = "aws-describe-vpn-connections-static.xml"
JSON = "aws-cli-describe-vpn-connections.json"
IOS = "aws-cisco-ios-static-ikev1.txt"
SWAN = "aws-strongswan-static-ikev1.txt"
OPENSWAN = "aws-openswan-static.txt"
JSON_ID = "vpn-0f5b2f2f59f927ac6"

PSKS = [
    "sVbYmmbuv_1I4wJ2RvidkZboWOfs.8FW",
    "jNXXhCxPi5P_QefxceYSOlbTG.p8bYsE",
    "so8YWGtQV.E_tNEaXSXiuNPvU0ASD036",
    "fUhROC_FADOtJ.oKX1JXOTtzxV5R7g8b",
    "aQ7_rT2.vX9kLm4Np8Zc3Hw5Jd",
    "Ke4.yU7_wB2nGh6Rf1Vs9Qz3Lt",
]
BAD_PSK = "sVbYmmbuv_1I4wJ2Rvid-ZboWOfs.8FW"  # a '-' at position 21


def assert_no_secret(message: str, secrets: list[str] = PSKS) -> None:
    """No pre-shared key, nor any 10-character piece of one, appears in ``message``."""
    for secret in [*secrets, BAD_PSK]:
        for start in range(len(secret) - 9):
            assert secret[start : start + 10] not in message, f"PSK leaked: {message}"


@dataclass(frozen=True)
class Case:
    name: str
    file: str
    old: str
    new: str
    expect: tuple[str, ...]
    count: int = 1  # occurrences to replace (-1: all)
    where: str = "line"  # "line", "element" or "none": where the error must point
    also: tuple[tuple[str, str], ...] = ()  # further replacements (all occurrences)


CASES = [
    # Generic text: one per rule of reference §8.
    Case(
        "psk bad character",
        GENERIC,
        PSKS[0],
        BAD_PSK,
        ("aws-generic-text", "tunnel 1", "pre-shared key", "character 21 of 32"),
    ),
    Case(
        "psk leading zero",
        GENERIC,
        PSKS[1],
        "0" + PSKS[1][1:],
        ("tunnel 2", "must not start with 0"),
    ),
    Case("psk too short", GENERIC, PSKS[0], "abc", ("8-64 characters", "has 3")),
    Case("psk empty", GENERIC, PSKS[0], "", ("tunnel 1", "Pre-Shared Key", "empty value")),
    Case(
        "phase 1 lifetime range",
        GENERIC,
        "28800 seconds",
        "99999 seconds",
        ("tunnel 1", "#1 Lifetime", "phase 1 lifetime 99999 s is outside 900-28800 s"),
    ),
    Case(
        "phase 2 lifetime range",
        GENERIC,
        "3600 seconds",
        "600 seconds",
        ("tunnel 1", "#2 Lifetime", "phase 2 lifetime 600 s is outside 900-3600 s"),
    ),
    Case(
        "phase 2 not shorter",
        GENERIC,
        "28800 seconds",
        "3600 seconds",
        ("tunnel 1", "must be shorter than phase 1 lifetime 3600 s"),
    ),
    Case(
        "lifetime unit",
        GENERIC,
        "28800 seconds",
        "28800 fortnights",
        ("'28800 fortnights'", "expected a lifetime"),
    ),
    Case(
        "reserved inside cidr",
        GENERIC,
        "169.254.141.38/30",
        "169.254.3.2/30",
        ("tunnel 1", "inside CIDR 169.254.3.0/30 is reserved by AWS"),
        also=(("169.254.141.37", "169.254.3.1"),),
    ),
    Case(
        "reserved metadata cidr",
        GENERIC,
        "169.254.27.182/30",
        "169.254.169.254/30",
        ("tunnel 2", "169.254.169.252/30 is reserved"),
        also=(("169.254.27.181", "169.254.169.253"),),
    ),
    Case("inside not a /30", GENERIC, "/30", "/29", ("must be a /30",), -1),
    Case(
        "inside outside link-local",
        GENERIC,
        "169.254.141.",
        "10.254.141.",
        ("must be inside 169.254.0.0/16",),
        -1,
    ),
    Case(
        "inside prefixes disagree",
        GENERIC,
        "169.254.141.37/30",
        "169.254.141.37/29",
        (
            "tunnel 1",
            "disagrees",
        ),
    ),
    Case(
        "same inside hosts",
        GENERIC,
        "169.254.141.38/30",
        "169.254.141.37/30",
        ("are the same (169.254.141.37)",),
    ),
    Case(
        "inside host is network address",
        GENERIC,
        "169.254.141.38/30",
        "169.254.141.36/30",
        ("not a host address",),
    ),
    Case(
        "same inside cidr",
        GENERIC,
        "169.254.27.182/30",
        "169.254.141.38/30",
        ("tunnel 2", "both tunnels use the same inside CIDR 169.254.141.36/30"),
        also=(("169.254.27.181", "169.254.141.37"),),
    ),
    Case(
        "same aws outside ip",
        GENERIC,
        "203.0.113.189",
        "203.0.113.66",
        ("tunnel 2", "same AWS outside IP 203.0.113.66"),
    ),
    Case(
        "strict ipv4",
        GENERIC,
        "203.0.113.66",
        "169.254.256.9",
        ("tunnel 1", "'169.254.256.9'", "not an IPv4 address"),
    ),
    Case(
        "unknown encryption",
        GENERIC,
        "aes-128-cbc",
        "aes-512-cbc",
        ("'aes-512-cbc'", "unknown encryption algorithm"),
    ),
    Case(
        "phase 1 dh group 5",
        GENERIC,
        "  - Diffie-Hellman           : Group 2",
        "  - Diffie-Hellman           : Group 5",
        ("DH group 5 is not allowed in phase 1",),
    ),
    Case(
        "unknown dh group",
        GENERIC,
        "Diffie-Hellman           : Group 2",
        "Diffie-Hellman           : Group two",
        ("'Group two'", "unknown Diffie"),
    ),
    Case(
        "next hop not aws inside",
        GENERIC,
        "Next hop       : 169.254.141.37",
        "Next hop       : 169.254.141.38",
        ("next hop 169.254.141.38 is not the AWS inside IP",),
    ),
    Case("ike version", GENERIC, "IKEv1 ", "IKEv3 ", ("'IKEv3'", "expected IKEv1 or IKEv2")),
    Case(
        "protocol ah",
        GENERIC,
        "Protocol                 : esp",
        "Protocol                 : ah",
        ("'ah'", "supports only esp"),
    ),
    Case(
        "missing psk line",
        GENERIC,
        "  - Pre-Shared Key           : " + PSKS[1] + "\n",
        "",
        ("tunnel 2", "no pre-shared key found"),
    ),
    Case(
        "missing footer",
        GENERIC,
        "Additional Notes and Questions",
        "Further reading",
        ("tunnel 2", "without the 'Additional Notes and Questions' footer"),
    ),
    Case(
        "lost tunnel banner",  # tunnel 2's fields then repeat tunnel 1's labels
        GENERIC,
        "IPSec Tunnel #2",
        "IPSec Tunnel two",
        ("tunnel 1", "'#1 Pre-Shared Key': contradicts the value given at line 33"),
    ),
    Case(
        "tunnel numbering",
        GENERIC,
        "IPSec Tunnel #2",
        "IPSec Tunnel #3",
        ("'IPSec Tunnel #3' where tunnel #2 was expected",),
    ),
    Case("bad vpn id", GENERIC, "vpn-027ce4abbdce5c106", "vpn-02", ("'vpn-02' is not a vpn-",)),
    Case(
        "missing vpn id",
        GENERIC,
        "Your VPN Connection ID",
        "Your VPN ID",
        ("no 'Your VPN Connection ID' line",),
        where="none",
    ),
    Case("mss not a number", GENERIC, "1379 bytes", "lots", ("'lots'", "whole number")),
    Case(
        "routing differs",
        GENERIC,
        "#4: Static Routing Configuration:",
        "#4: Border Gateway Protocol (BGP) Configuration:",
        ("tunnel 2", "routing"),
    ),
    Case(
        "duplicate label",
        GENERIC,
        "  - DPD Retries              : 3\n",
        "  - DPD Retries              : 3\n  - DPD Retries              : 4\n",
        ("contradicts the value given at line",),
    ),
    Case(
        "bgp asn zero",
        GENERIC_BGP,
        "ASN          : 64512",
        "ASN          : 0",
        ("BGP ASN 0 is outside 1-4294967295",),
    ),
    Case(
        "bgp asn too big",
        GENERIC_BGP,
        "ASN          : 64512",
        "ASN          : 4294967296",
        ("4294967296",),
    ),
    Case(
        "bgp neighbour",
        GENERIC_BGP,
        "Address\t\t  : 169.254.88.13",
        "Address\t\t  : 169.254.88.14",
        ("BGP neighbour 169.254.88.14 is not the AWS inside IP 169.254.88.13",),
    ),
    Case(
        "bgp hold time",
        GENERIC_BGP,
        "Hold Time       : 30",
        "Hold Time       : 0",
        ("BGP hold time 0 s is outside",),
    ),
    # XML
    Case(
        "xml psk",
        XML,
        PSKS[2],
        BAD_PSK,
        (
            "aws-customer-gateway-xml",
            "tunnel 1",
            "ipsec_tunnel[1]/ike/pre_shared_key",
            "character 21",
        ),
        where="element",
    ),
    Case("xml malformed", XML, "</ike>", "</ikee>", ("not well-formed XML",)),
    Case(
        "xml entities",
        XML,
        '<?xml version="1.0" encoding="UTF-8"?>',
        '<?xml version="1.0"?><!DOCTYPE v [<!ENTITY a "aaaa">]>',
        ("refused",),
        where="none",
    ),
    Case(
        "xml mask",
        XML,
        "<network_mask>255.255.255.252</network_mask>",
        "<network_mask>255.255.255.248</network_mask>",
        ("network_mask", "disagree"),
        where="element",
    ),
    Case(
        "xml lifetime",
        XML,
        "<lifetime>3600</lifetime>",
        "<lifetime>7200</lifetime>",
        ("ipsec/lifetime", "phase 2 lifetime 7200 s"),
        where="element",
    ),
    Case("xml type", XML, "ipsec.1", "ipsec.2", ("cgwd supports ipsec.1 only",), where="element"),
    Case(
        "xml three tunnels",
        XML,
        "</vpn_connection>",
        "<ipsec_tunnel><customer_gateway /></ipsec_tunnel></vpn_connection>",
        ("tunnel 3",),
        where="element",
    ),
    Case(
        "xml missing element",
        XML,
        "<tcp_mss_adjustment>1379</tcp_mss_adjustment>",
        "",
        ("tunnel 1", "no TCP MSS adjustment found", "ipsec_tunnel[1]"),
        where="element",
    ),
    Case(
        "xml ipv6 blocks differ",
        "aws-customer-gateway-tgw-bgp-ipv6-no-psk.xml",
        "<ip_address>fd00:77:1::1</ip_address>",
        "<ip_address>fd00:77:1::5</ip_address>",
        ("tunnel 1", "different /126s"),
        where="element",
    ),
    Case(
        "xml ipv6 outside fd00::/8",
        "aws-customer-gateway-tgw-bgp-ipv6-no-psk.xml",
        "fd00:77:2::",
        "fe80:77:2::",
        ("tunnel 2", "must be inside fd00::/8"),
        count=-1,
        where="element",
    ),
    # CLI JSON
    Case("json syntax", JSON, '"Options": {', '"Options": {,', ("not valid JSON",)),
    Case(
        "json unmatched tunnel",
        JSON,
        '"OutsideIpAddress": "198.51.100.38",\n',
        '"OutsideIpAddress": "198.51.100.39",\n',
        ("matches no (other) tunnel", "TunnelOptions[0].OutsideIpAddress"),
        where="element",
    ),
    Case(
        "json inside cidr",
        JSON,
        '"TunnelInsideCidr": "169.254.57.240/30"',
        '"TunnelInsideCidr": "169.254.57.244/30"',
        ("disagrees",),
        where="element",
    ),
    Case(
        "json psk mismatch",
        JSON,
        '"PreSharedKey": "' + PSKS[3],
        '"PreSharedKey": "' + PSKS[0],
        ("PreSharedKey differs",),
        where="element",
    ),
    Case(
        "json dpd timeout",
        JSON,
        '"DpdTimeoutSeconds": 40',
        '"DpdTimeoutSeconds": 20',
        ("DPD timeout 20 s is below 30 s", "DpdTimeoutSeconds"),
        where="element",
    ),
    Case(
        "json dpd action",
        JSON,
        '"DpdTimeoutAction": "restart"',
        '"DpdTimeoutAction": "boom"',
        ("'boom'", "expected clear, none or restart"),
        where="element",
    ),
    Case(
        "json startup action",
        JSON,
        '"StartupAction": "start"',
        '"StartupAction": "later"',
        ("'later'", "expected add or start"),
        where="element",
    ),
    Case(
        "json rekey margin",
        JSON,
        '"RekeyMarginTimeSeconds": 270',
        '"RekeyMarginTimeSeconds": 1000',
        ("rekey margin 1000 s is outside 60 s to 900 s",),
        where="element",
    ),
    Case(
        "json fuzz",
        JSON,
        '"RekeyFuzzPercentage": 100',
        '"RekeyFuzzPercentage": 101',
        ("rekey fuzz 101 %",),
        where="element",
    ),
    Case(
        "json replay window",
        JSON,
        '"ReplayWindowSize": 1024',
        '"ReplayWindowSize": 32',
        ("replay window 32 is outside 64-2048",),
        where="element",
    ),
    Case(
        "json dh group",
        JSON,
        '"Phase1DHGroupNumbers": [\n' + " " * 28 + "{\n" + " " * 32 + '"Value": 14',
        '"Phase1DHGroupNumbers": [\n' + " " * 28 + "{\n" + " " * 32 + '"Value": 5',
        ("DH group 5 is not allowed in phase 1",),
        where="element",
    ),
    Case(
        "json lifetime type",
        JSON,
        '"Phase2LifetimeSeconds": 1800',
        '"Phase2LifetimeSeconds": 1.5',
        ("expected a string or a whole number",),
        where="element",
    ),
    Case(
        "json static routes",
        JSON,
        '"StaticRoutesOnly": true',
        '"StaticRoutesOnly": "yes"',
        ("expected true or false",),
        where="element",
    ),
    # Cisco IOS
    Case(
        "ios psk",
        IOS,
        "key " + PSKS[0],
        "key " + BAD_PSK,
        ("aws-cisco-ios", "tunnel 1", "character 21"),
    ),
    Case(
        "ios destination",
        IOS,
        "tunnel destination 203.0.113.66",
        "tunnel destination 203.0.113.67",
        ("tunnel 1", "'tunnel destination'", "contradicts"),
    ),
    Case("ios footer", IOS, "! Additional Notes and Questions", "! Notes", ("footer",)),
    Case(
        "ios transform",
        IOS,
        "esp-aes 128 esp-sha-hmac",
        "esp-aes 192 esp-sha-hmac",
        ("'esp-aes 192'", "unknown encryption"),
    ),
    # strongSwan, Openswan
    Case("swan psk quotes", SWAN, '"' + PSKS[1] + '"', PSKS[1], ("tunnel 2", "double quotes")),
    Case(
        "swan proposal",
        SWAN,
        "ike=aes128-sha1-modp1024",
        "ike=aes128-md5-modp1024",
        ("aws-strongswan", "'ike='", "unknown algorithm 'md5'"),
    ),
    Case(
        "swan lifetime",
        SWAN,
        "ikelifetime=8h",
        "ikelifetime=9h",
        ("phase 1 lifetime 32400 s is outside",),
    ),
    Case(
        "swan inside",
        SWAN,
        "sudo ip addr add 169.254.141.38/30",
        "sudo ip addr add 169.254.141.38/31",
        ("tunnel 1", "contradicts"),
    ),
    Case(
        "openswan dh",
        OPENSWAN,
        "phase2alg=aes128-sha1;modp1024",
        "phase2alg=aes128-sha1;modp768",
        ("aws-openswan", "'phase2alg='", "unknown algorithm 'modp768'"),
    ),
    Case("openswan psk", OPENSWAN, PSKS[0], "short", ("tunnel 1", "this one has 5")),
]


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_bad_input(case: Case) -> None:
    text = (DATA / case.file).read_text()
    assert case.old in text, f"fixture lacks {case.old!r}"
    edited = text.replace(case.old, case.new, case.count)
    for old, new in case.also:
        edited = edited.replace(old, new)
    connection_id = JSON_ID if case.file == JSON else None
    with pytest.raises(ConfigError) as info:
        parse_aws_config(edited, source=case.file, connection_id=connection_id)
    error = info.value
    message = str(error)
    for expected in case.expect:
        assert expected in message, f"{expected!r} not in {message!r}"
    assert message.startswith(case.file)
    assert_no_secret(message)
    if case.where == "line":
        assert error.line is not None, message
    elif case.where == "element":
        assert error.element, message


def test_crlf_errors_keep_line_numbers() -> None:
    edited = (DATA / GENERIC).read_text().replace("28800 seconds", "99999 seconds", 1)
    lines = []
    for variant in (edited, edited.replace("\n", "\r\n")):
        with pytest.raises(ConfigError) as info:
            parse_aws_config(variant)
        lines.append(info.value.line)
    assert lines == [36, 36]  # the "- Lifetime" line of tunnel 1 (cat -n)


def test_empty_value_is_not_read_from_the_next_line() -> None:
    text = (DATA / GENERIC).read_text()
    edited = text.replace(
        "  - IKE version              : IKEv1 \n", "  - IKE version              :\n"
    )
    assert edited.count("IKE version              :\n") == 2
    conn = parse_aws_config(edited)
    # Absent, not "Pre-Shared Key" from the next line.
    assert [t.ike_version for t in conn.tunnels] == [None, None]
    edited = text.replace(
        "  - Mode                     : tunnel\n", "  - Mode                     : \n"
    )
    assert [t.phase2.lifetime_seconds for t in parse_aws_config(edited).tunnels] == [3600, 3600]


def test_cgw_outside_ip_difference_is_a_warning() -> None:
    text = (DATA / GENERIC).read_text()
    edited = text.replace("198.51.100.92 \n", "198.51.100.93 \n", 1)
    conn = parse_aws_config(edited)
    assert any("different customer gateway outside IPs" in w for w in conn.warnings)


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (b"", "not an AWS VPN configuration download"),
        (b"hello\n", "not an AWS VPN configuration download"),
        (b"\xff\xfeIPSec Tunnel #1", "not UTF-8 text: undecodable byte 0xff at offset 0"),
        (b'{"VpnConnections": []}', "lists 0 VPN connections"),
        (b'{"VpnConnection": []}', "expected a JSON object"),
        (b'{"VpnConnections": ' + b"[" * 100_000, "nested too deeply"),
        (b"<vpn_connection/>", "found 0 tunnel(s)"),
        (b"<?xml version='1.0'?><other/>", "expected <vpn_connection>"),
    ],
)
def test_not_an_aws_file(data: bytes, expected: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_aws_config(data)
    assert expected in str(info.value)


def test_deeply_nested_json() -> None:
    nested = '{"VpnConnection": ' + "[" * 100_000 + "]" * 100_000 + "}"
    with pytest.raises(ConfigError, match=r"nested too deeply|expected a JSON object"):
        parse_aws_config(nested)


def test_load_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load_aws_config(tmp_path / "absent.txt")
    with pytest.raises(ConfigError, match="cannot read"):
        load_aws_config(tmp_path)
    big = tmp_path / "big.txt"
    big.write_bytes(b"x" * (2 << 20))
    with pytest.raises(ConfigError, match="larger than"):
        load_aws_config(big)


def test_public_validators() -> None:
    validate_psk(Secret(PSKS[0]))
    validate_psk(PSKS[1])
    with pytest.raises(ConfigError) as info:
        validate_psk(Secret(BAD_PSK))
    assert "character 21 of 32" in str(info.value)
    assert_no_secret(str(info.value))
    with pytest.raises(ConfigError, match="must not start with 0"):
        validate_psk(b"0abcdefgh")
    validate_lifetimes(28800, 3600)
    validate_lifetimes(None, 900)
    with pytest.raises(ConfigError, match="must be shorter"):
        validate_lifetimes(1800, 1800)
    with pytest.raises(ConfigError, match="outside 900-28800"):
        validate_lifetimes(899, None)
    with pytest.raises(ConfigError, match="outside 900-3600"):
        validate_lifetimes(None, 3601)
