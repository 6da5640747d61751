"""Every format and generation, on fixtures written to the reference (tests/data/aws/).

Expected values are typed in by hand from the fixtures (the IOS, strongSwan and Openswan
files describe the same connection as the generic sample, so they share its README table).
"""

from __future__ import annotations

import json
from ipaddress import IPv4Address, IPv4Network, IPv6Network
from pathlib import Path

import pytest

from cgwd.config.aws import AwsTunnel
from cgwd.config.importers import detect_format, load_aws_config, parse_aws_config
from cgwd.errors import ConfigError
from cgwd.secret import Secret

DATA = Path(__file__).parents[2] / "data" / "aws"


def addresses(t: AwsTunnel) -> tuple[str, ...]:
    return tuple(
        str(x)
        for x in (
            t.customer_gateway_outside_ip,
            t.vpn_gateway_outside_ip,
            t.inside_cidr,
            t.customer_gateway_inside_ip,
            t.vpn_gateway_inside_ip,
        )
    )


SAMPLE_ADDRESSES = [
    ("198.51.100.92", "203.0.113.66", "169.254.141.36/30", "169.254.141.38", "169.254.141.37"),
    ("198.51.100.92", "203.0.113.189", "169.254.27.180/30", "169.254.27.182", "169.254.27.181"),
]
SAMPLE_PSKS = ["sVbYmmbuv_1I4wJ2RvidkZboWOfs.8FW", "jNXXhCxPi5P_QefxceYSOlbTG.p8bYsE"]


@pytest.mark.parametrize(
    ("name", "fmt"),
    [
        ("aws-generic-static-ikev1.txt", "aws-generic-text"),
        ("aws-generic-2009-bgp.txt", "aws-generic-text"),
        ("aws-generic-2015-static.txt", "aws-generic-text"),
        ("aws-generic-2021-tgw-bgp-ikev2.txt", "aws-generic-text"),
        ("aws-describe-vpn-connections-static.xml", "aws-customer-gateway-xml"),
        ("aws-customer-gateway-tgw-bgp-ipv6-no-psk.xml", "aws-customer-gateway-xml"),
        ("aws-cli-describe-vpn-connections.json", "aws-cli-json"),
        ("aws-cisco-ios-static-ikev1.txt", "aws-cisco-ios"),
        ("aws-cisco-ios-tgw-bgp-ikev2.txt", "aws-cisco-ios"),
        ("aws-strongswan-static-ikev1.txt", "aws-strongswan"),
        ("aws-openswan-static.txt", "aws-openswan"),
    ],
)
def test_detection(name: str, fmt: str) -> None:
    assert detect_format((DATA / name).read_bytes()) == fmt


def test_generic_2009_bgp() -> None:
    conn = load_aws_config(DATA / "aws-generic-2009-bgp.txt")
    assert (conn.vpn_connection_id, conn.vpn_gateway_id, conn.customer_gateway_id) == (
        "vpn-1a2b3c4d",
        "vgw-5e6f7a8b",
        "cgw-9c0d1e2f",
    )
    assert conn.routing == "bgp"
    t1, t2 = conn.tunnels
    assert addresses(t1) == (
        "192.0.2.45",
        "198.51.100.17",
        "169.254.255.0/30",
        "169.254.255.2",
        "169.254.255.1",
    )
    assert addresses(t2) == (
        "192.0.2.45",
        "198.51.100.18",
        "169.254.255.4/30",
        "169.254.255.6",
        "169.254.255.5",
    )
    assert t1.pre_shared_key == Secret("Vd3kq9LmNb7Xw2Rt_PzA.cH4")
    assert t2.pre_shared_key == Secret("Tq8._Zs2Kp5YhWm3NcLx7Bv1")
    for t in conn.tunnels:
        assert t.ike_version is None  # no IKE version line in 2009
        assert t.tunnel_mtu is None  # nor an MTU
        assert t.tcp_mss_adjustment == 1387
        assert t.phase1.dh_group == 2  # from "Perfect Forward Secrecy" in #1
        assert t.phase2.dh_group == 2
        assert t.static_route_next_hop is None
        assert t.bgp is not None
        assert (t.bgp.customer_gateway_asn, t.bgp.neighbor_asn, t.bgp.hold_time_seconds) == (
            65000,
            7224,
            30,
        )
    assert t1.bgp is not None and t1.bgp.neighbor_ip == IPv4Address("169.254.255.1")
    assert t2.bgp is not None and t2.bgp.neighbor_ip == IPv4Address("169.254.255.5")


def test_generic_2015_tab_padding_static() -> None:
    conn = load_aws_config(DATA / "aws-generic-2015-static.txt")
    assert conn.vpn_connection_id == "vpn-3f4e5d6c"
    assert conn.routing == "static"
    t1, t2 = conn.tunnels
    assert addresses(t1) == (
        "203.0.113.200",
        "198.51.100.140",
        "169.254.44.16/30",
        "169.254.44.18",
        "169.254.44.17",
    )
    assert t2.inside_cidr == IPv4Network("169.254.44.20/30")
    assert t1.static_route_next_hop == IPv4Address("169.254.44.17")
    assert t2.static_route_next_hop == IPv4Address("169.254.44.21")
    assert t1.pre_shared_key == Secret("Hq2.nW8xRk_Lp4ZsTj9Vc")
    for t in conn.tunnels:
        assert t.ike_version is None
        assert (t.tunnel_mtu, t.tcp_mss_adjustment) == (1436, 1387)
        assert t.phase1.dh_group == 2
        assert t.phase1.lifetime_seconds == 28800


def test_generic_2021_tgw_bgp_ikev2() -> None:
    conn = load_aws_config(DATA / "aws-generic-2021-tgw-bgp-ikev2.txt")
    assert conn.vpn_connection_id == "vpn-0d4c3b2a19f8e7d65"
    assert conn.vpn_gateway_id is None  # Transit Gateway: empty value
    assert conn.customer_gateway_id == "cgw-05a6b7c8d9e0f1a2b"
    assert conn.routing == "bgp"
    t1, t2 = conn.tunnels
    assert addresses(t1) == (
        "192.0.2.230",
        "203.0.113.7",
        "169.254.88.12/30",
        "169.254.88.14",
        "169.254.88.13",
    )
    assert t2.inside_cidr == IPv4Network("169.254.120.0/30")
    assert t2.pre_shared_key == Secret("Ke4.yU7_wB2nGh6Rf1Vs9Qz3Lt")
    for t in conn.tunnels:
        assert t.ike_version == "ikev2"
        assert (t.phase1.dh_group, t.phase2.dh_group) == (14, 14)
        assert t.bgp is not None
        # "Virtual Private  Gateway ASN" (two spaces) and the trailing blank after 65101.
        assert (t.bgp.customer_gateway_asn, t.bgp.neighbor_asn) == (65101, 64512)
    assert t1.bgp is not None and t1.bgp.neighbor_ip == IPv4Address("169.254.88.13")


def test_xml_tgw_bgp_ipv6_without_psk() -> None:
    conn = load_aws_config(DATA / "aws-customer-gateway-tgw-bgp-ipv6-no-psk.xml")
    assert conn.vpn_connection_id == "vpn-0e1f2a3b4c5d6e7f8"
    assert conn.vpn_gateway_id is None  # <vpn_gateway_id />
    assert conn.routing == "bgp"
    t1, t2 = conn.tunnels
    assert t1.pre_shared_key is None and t2.pre_shared_key is None
    assert sum("PSK not available" in w for w in conn.warnings) == 2
    assert t1.inside_ipv6_cidr == IPv6Network("fd00:77:1::/126")  # prefix_length 128 in the file
    assert t2.inside_ipv6_cidr == IPv6Network("fd00:77:2::/126")
    assert t1.vpn_gateway_outside_ip == IPv4Address("203.0.113.250")  # file order, not sorted
    assert t2.vpn_gateway_outside_ip == IPv4Address("203.0.113.99")
    assert t1.bgp is not None
    assert (t1.bgp.customer_gateway_asn, t1.bgp.neighbor_asn, t1.bgp.hold_time_seconds) == (
        65010,
        64512,
        30,
    )
    assert t1.bgp.neighbor_ip == IPv4Address("169.254.66.9")
    assert t2.bgp is not None and t2.bgp.neighbor_ip == IPv4Address("169.254.201.5")


JSON_FILE = DATA / "aws-cli-describe-vpn-connections.json"


def test_json_needs_a_connection_id_when_several() -> None:
    with pytest.raises(ConfigError) as info:
        load_aws_config(JSON_FILE)
    assert "vpn-0f5b2f2f59f927ac6" in str(info.value)
    assert "vpn-0e1f2a3b4c5d6e7f8" in str(info.value)
    with pytest.raises(ConfigError, match="no connection vpn-0123456789abcdef0"):
        load_aws_config(JSON_FILE, connection_id="vpn-0123456789abcdef0")


def test_json_tunnel_options_win_and_match_by_outside_ip() -> None:
    conn = load_aws_config(JSON_FILE, connection_id="vpn-0f5b2f2f59f927ac6")
    assert conn.format == "aws-cli-json"
    assert conn.routing == "static"
    t1, t2 = conn.tunnels
    # Tunnel 1 (198.51.100.205) is the second TunnelOptions entry and only has addresses+PSK.
    assert t1.vpn_gateway_outside_ip == IPv4Address("198.51.100.205")
    assert t1.pre_shared_key == Secret("so8YWGtQV.E_tNEaXSXiuNPvU0ASD036")
    assert (t1.phase1.encryption, t1.phase1.lifetime_seconds, t1.ike_version) == (
        "AES128",
        28800,
        None,
    )
    # Tunnel 2 (198.51.100.38) was customised: the first TunnelOptions entry.
    assert t2.vpn_gateway_outside_ip == IPv4Address("198.51.100.38")
    assert t2.ike_version == "ikev2"
    assert t2.phase1.encryption == "AES256"
    assert t2.phase1.encryption_allowed == ("AES256", "AES128")
    assert (t2.phase1.integrity, t2.phase1.dh_group) == ("SHA2-256", 14)
    assert (t2.phase2.encryption, t2.phase2.dh_groups_allowed) == ("AES256-GCM-16", (14, 19))
    assert (t2.phase1.lifetime_seconds, t2.phase2.lifetime_seconds) == (14400, 1800)
    assert (t2.dpd.timeout_seconds, t2.dpd.action, t2.dpd.interval_seconds) == (40, "restart", 10)
    assert (t2.rekey_margin_seconds, t2.rekey_fuzz_percentage, t2.replay_window_size) == (
        270,
        100,
        1024,
    )
    assert t2.startup_action == "start"
    assert any("tunnel 2: Phase1LifetimeSeconds" in w and "28800" in w for w in conn.warnings)
    assert not any("tunnel 1" in w for w in conn.warnings)


def test_json_tgw_psk_in_secrets_manager() -> None:
    conn = load_aws_config(JSON_FILE, connection_id="vpn-0e1f2a3b4c5d6e7f8")
    assert (conn.transit_gateway_id, conn.vpn_gateway_id, conn.routing) == (
        "tgw-0123456789abcdef0",
        None,
        "bgp",
    )
    assert all(t.pre_shared_key is None for t in conn.tunnels)
    assert "tunnel 2: the PSK is kept in AWS Secrets Manager (arn:aws:secretsmanager:" in (
        " ".join(conn.warnings)
    )
    assert sum("PSK not available" in w for w in conn.warnings) == 2
    assert conn.tunnels[1].inside_ipv6_cidr == IPv6Network("fd00:77:2::/126")


def test_json_single_vpn_connection() -> None:
    doc = json.loads(JSON_FILE.read_text())
    single = json.dumps({"VpnConnection": doc["VpnConnections"][0]})
    conn = parse_aws_config(single)
    assert conn.vpn_connection_id == "vpn-0f5b2f2f59f927ac6"
    assert conn.tunnels[1].phase2.lifetime_seconds == 1800


def check_same_connection_as_generic_sample(name: str) -> list[AwsTunnel]:
    conn = load_aws_config(DATA / name)
    assert conn.vpn_connection_id == "vpn-027ce4abbdce5c106"
    assert conn.vpn_gateway_id == "vgw-0bab21a9566185382"
    assert conn.customer_gateway_id == "cgw-0e20ca18c550b4fc3"
    assert conn.routing == "static"
    for t, psk in zip(conn.tunnels, SAMPLE_PSKS, strict=True):
        assert t.pre_shared_key == Secret(psk)
        assert (t.phase1.encryption, t.phase1.integrity, t.phase1.dh_group) == ("AES128", "SHA1", 2)
        assert (t.phase2.encryption, t.phase2.integrity, t.phase2.dh_group) == ("AES128", "SHA1", 2)
        assert (t.phase1.lifetime_seconds, t.phase2.lifetime_seconds) == (28800, 3600)
        assert t.dpd.interval_seconds == 10
        assert t.dpd.retries is None  # none of these carries a retry count
    return list(conn.tunnels)


def test_cisco_ios_ikev1_static() -> None:
    tunnels = check_same_connection_as_generic_sample("aws-cisco-ios-static-ikev1.txt")
    for t, expected in zip(tunnels, SAMPLE_ADDRESSES, strict=True):
        assert addresses(t) == expected
        assert t.static_route_next_hop == IPv4Address(expected[4])  # the ip sla target
        assert t.ike_version == "ikev1"
        assert (t.tcp_mss_adjustment, t.tunnel_mtu) == (1379, None)
        assert (t.clear_df_bit, t.fragmentation_before_encryption) == (True, True)
        assert t.replay_window_size == 128


def test_cisco_ios_ikev2_bgp() -> None:
    conn = load_aws_config(DATA / "aws-cisco-ios-tgw-bgp-ikev2.txt")
    assert (conn.vpn_connection_id, conn.vpn_gateway_id) == ("vpn-0d4c3b2a19f8e7d65", None)
    assert conn.routing == "bgp"
    t1, t2 = conn.tunnels
    assert addresses(t2) == (
        "192.0.2.230",
        "203.0.113.8",
        "169.254.120.0/30",
        "169.254.120.2",
        "169.254.120.1",
    )
    assert t1.pre_shared_key == Secret("aQ7_rT2.vX9kLm4Np8Zc3Hw5Jd")
    for t in conn.tunnels:
        assert t.ike_version == "ikev2"
        assert (t.phase1.dh_group, t.phase2.dh_group, t.phase1.lifetime_seconds) == (14, 14, 28800)
        assert t.bgp is not None
        assert (t.bgp.customer_gateway_asn, t.bgp.neighbor_asn, t.bgp.hold_time_seconds) == (
            65101,
            64512,
            30,
        )
    assert t2.bgp is not None and t2.bgp.neighbor_ip == IPv4Address("169.254.120.1")


def test_strongswan_static_ikev1() -> None:
    tunnels = check_same_connection_as_generic_sample("aws-strongswan-static-ikev1.txt")
    for t, expected in zip(tunnels, SAMPLE_ADDRESSES, strict=True):
        assert addresses(t) == expected
        assert t.ike_version == "ikev1"
        assert (t.tunnel_mtu, t.tcp_mss_adjustment) == (1419, None)  # MSS clamped to PMTU
        assert (t.dpd.timeout_seconds, t.dpd.action) == (30, "restart")
        assert (t.clear_df_bit, t.fragmentation_before_encryption) == (None, None)


def test_openswan_policy_based() -> None:
    tunnels = check_same_connection_as_generic_sample("aws-openswan-static.txt")
    for t, expected in zip(tunnels, SAMPLE_ADDRESSES, strict=True):
        assert str(t.customer_gateway_outside_ip) == expected[0]
        assert str(t.vpn_gateway_outside_ip) == expected[1]
        assert (t.inside_cidr, t.customer_gateway_inside_ip, t.vpn_gateway_inside_ip) == (
            None,
            None,
            None,
        )
        assert (t.tunnel_mtu, t.ike_version) == (None, None)
        assert (t.dpd.timeout_seconds, t.dpd.action) == (30, "restart")


def test_strongswan_uncommented_leftupdown_must_agree() -> None:
    text = (DATA / "aws-strongswan-static-ikev1.txt").read_text()
    edited = text.replace(
        '#leftupdown="/etc/ipsec.d/aws-updown.sh -ln Tunnel1 -ll 169.254.141.38/30',
        'leftupdown="/etc/ipsec.d/aws-updown.sh -ln Tunnel1 -ll 169.254.141.42/30',
    )
    assert edited != text
    with pytest.raises(ConfigError) as info:
        parse_aws_config(edited)
    assert "tunnel 1" in str(info.value)
    assert "contradicts" in str(info.value)


def test_connection_id_must_match_other_formats() -> None:
    with pytest.raises(ConfigError, match="not vpn-0aaaaaaaaaaaaaaaa"):
        load_aws_config(DATA / "aws-generic-2015-static.txt", connection_id="vpn-0aaaaaaaaaaaaaaaa")


def test_xml_empty_gateway_id_element() -> None:
    text = (DATA / "aws-customer-gateway-tgw-bgp-ipv6-no-psk.xml").read_text()
    edited = text.replace("<vpn_gateway_id />", "<vpn_gateway_id></vpn_gateway_id>")
    assert edited != text
    assert parse_aws_config(edited).vpn_gateway_id is None


@pytest.mark.parametrize(
    ("name", "distractors"),
    [
        (
            "aws-generic-static-ikev1.txt",
            ["UDP port 4500", "DH groups like 2, 14-18", "Next hop  "],
        ),
        (
            "aws-generic-2009-bgp.txt",
            ["(0.0.0.0/0)", "Customer Gateway:        :", "VPN Gateway ASN"],
        ),
        ("aws-generic-2015-static.txt", ["\t: sha1", "Perfect Forward Secrecy  : Diffie"]),
        ("aws-generic-2021-tgw-bgp-ikev2.txt", ["Virtual Private  Gateway ASN", "NOTE: If you"]),
        ("aws-cisco-ios-static-ikev1.txt", ["! ip route 10.0.0.0 255.255.0.0 Tunnel1 track 100"]),
        ("aws-strongswan-static-ikev1.txt", ["(e.g. 192.168.1.0/24)", "<VPC CIDR>", "<LOCAL IP>"]),
        ("aws-strongswan-static-ikev1.txt", ["\t#leftupdown=", "169.254.x", "aws-updown.sh"]),
        ("aws-openswan-static.txt", ['203.0.113.66: PSK "', "<LOCAL NETWORK>"]),
    ],
)
def test_fixtures_keep_their_traps(name: str, distractors: list[str]) -> None:
    """The fixtures must keep what makes them hard; an editor 'cleaning' them breaks this."""
    text = (DATA / name).read_text()
    for distractor in distractors:
        assert distractor in text


def test_openswan_wins_detection_over_keyexchange() -> None:
    """Openswan's conn may say keyexchange=ike, but only Openswan has phase2alg=."""
    text = (DATA / "aws-openswan-static.txt").read_text()
    edited = text.replace("\tkeyingtries=%forever\n", "\tkeyingtries=%forever\n\tkeyexchange=ike\n")
    assert edited != text
    assert detect_format(edited) == "aws-openswan"
    assert parse_aws_config(edited).tunnels[0].ike_version is None


def test_strongswan_and_openswan_say_routing_is_assumed() -> None:
    for name in ("aws-strongswan-static-ikev1.txt", "aws-openswan-static.txt"):
        conn = load_aws_config(DATA / name)
        assert any("assuming static" in w for w in conn.warnings)


@pytest.mark.parametrize("name", sorted(p.name for p in DATA.glob("aws-*")))
def test_import_json_document_is_serialisable_and_redacted(name: str) -> None:
    connection_id = "vpn-0f5b2f2f59f927ac6" if name.endswith(".json") else None
    conn = load_aws_config(DATA / name, connection_id=connection_id)
    rendered = json.dumps(conn.to_json())
    for tunnel in conn.tunnels:
        if tunnel.pre_shared_key is not None:
            assert tunnel.pre_shared_key.reveal().decode() not in rendered
            assert tunnel.pre_shared_key.reveal().decode() not in repr(conn)
    assert json.loads(rendered)["format"] == conn.format
