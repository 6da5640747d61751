"""The two reference samples, checked against the tables in /work/shared/samples/README.md.

Every expected value below is typed in from those tables, never computed by the parser.
"""

from __future__ import annotations

from ipaddress import IPv4Address, IPv4Network
from pathlib import Path

import pytest

from cgwd.config.aws import AwsTunnel, AwsVpnConnection
from cgwd.config.importers import detect_format, load_aws_config, parse_aws_config
from cgwd.secret import Secret

DATA = Path(__file__).parents[2] / "data" / "aws"
GENERIC = DATA / "aws-generic-static-ikev1.txt"
XML = DATA / "aws-describe-vpn-connections-static.xml"

# Tunnel, CGW outside, AWS outside, inside CIDR, CGW inside, AWS inside (= next hop), PSK
GENERIC_TUNNELS = [
    (
        1,
        "198.51.100.92",
        "203.0.113.66",
        "169.254.141.36/30",
        "169.254.141.38",
        "169.254.141.37",
        "sVbYmmbuv_1I4wJ2RvidkZboWOfs.8FW",
    ),
    (
        2,
        "198.51.100.92",
        "203.0.113.189",
        "169.254.27.180/30",
        "169.254.27.182",
        "169.254.27.181",
        "jNXXhCxPi5P_QefxceYSOlbTG.p8bYsE",
    ),
]
XML_TUNNELS = [
    (
        1,
        "192.0.2.117",
        "198.51.100.205",
        "169.254.212.84/30",
        "169.254.212.86",
        "169.254.212.85",
        "so8YWGtQV.E_tNEaXSXiuNPvU0ASD036",
    ),
    (
        2,
        "192.0.2.117",
        "198.51.100.38",
        "169.254.57.240/30",
        "169.254.57.242",
        "169.254.57.241",
        "fUhROC_FADOtJ.oKX1JXOTtzxV5R7g8b",
    ),
]


def check_tunnel(
    t: AwsTunnel, row: tuple[int, str, str, str, str, str, str], *, next_hop: bool = True
) -> None:
    index, cgw_out, aws_out, cidr, cgw_in, aws_in, psk = row
    assert t.index == index
    assert t.customer_gateway_outside_ip == IPv4Address(cgw_out)
    assert t.vpn_gateway_outside_ip == IPv4Address(aws_out)
    assert t.inside_cidr == IPv4Network(cidr)
    assert t.customer_gateway_inside_ip == IPv4Address(cgw_in)
    assert t.vpn_gateway_inside_ip == IPv4Address(aws_in)
    if next_hop:
        assert t.static_route_next_hop == IPv4Address(aws_in)
    assert t.pre_shared_key == Secret(psk)
    assert t.bgp is None


def check_minimum_defaults(t: AwsTunnel) -> None:
    """The rows common to both samples: AES128/SHA1/group 2, 28800 s and 3600 s, DPD 10/3."""
    assert (t.phase1.encryption, t.phase1.integrity, t.phase1.dh_group) == ("AES128", "SHA1", 2)
    assert t.phase1.lifetime_seconds == 28800
    assert (t.phase2.encryption, t.phase2.integrity, t.phase2.dh_group) == ("AES128", "SHA1", 2)
    assert t.phase2.lifetime_seconds == 3600
    assert t.phase1.encryption_allowed == ("AES128",)
    assert t.phase2.dh_groups_allowed == (2,)
    assert (t.dpd.interval_seconds, t.dpd.retries) == (10, 3)
    assert (t.dpd.timeout_seconds, t.dpd.action) == (None, None)
    assert t.tcp_mss_adjustment == 1379
    assert t.clear_df_bit is True
    assert t.fragmentation_before_encryption is True
    assert t.rekey_margin_seconds is None
    assert t.replay_window_size is None
    assert t.startup_action is None
    assert t.inside_ipv6_cidr is None


def check_generic(conn: AwsVpnConnection) -> None:
    assert conn.format == "aws-generic-text"
    assert conn.vpn_connection_id == "vpn-027ce4abbdce5c106"
    assert conn.vpn_gateway_id == "vgw-0bab21a9566185382"
    assert conn.customer_gateway_id == "cgw-0e20ca18c550b4fc3"
    assert conn.transit_gateway_id is None
    assert conn.routing == "static"
    assert conn.warnings == ()
    for tunnel, row in zip(conn.tunnels, GENERIC_TUNNELS, strict=True):
        check_tunnel(tunnel, row)
        check_minimum_defaults(tunnel)
        assert tunnel.ike_version == "ikev1"
        assert tunnel.ike_versions_allowed == ("ikev1",)
        assert tunnel.tunnel_mtu == 1436


def check_xml(conn: AwsVpnConnection) -> None:
    assert conn.format == "aws-customer-gateway-xml"
    assert conn.vpn_connection_id == "vpn-0f5b2f2f59f927ac6"
    assert conn.vpn_gateway_id == "vgw-054fabef64955d4f5"
    assert conn.customer_gateway_id == "cgw-0731d3a014b4c4442"
    assert conn.routing == "static"
    assert conn.warnings == ()
    for tunnel, row in zip(conn.tunnels, XML_TUNNELS, strict=True):
        check_tunnel(tunnel, row)
        check_minimum_defaults(tunnel)
        assert tunnel.ike_version is None  # <mode>main</mode> does not prove IKEv1
        assert tunnel.ike_versions_allowed == ()
        assert tunnel.tunnel_mtu is None


def test_generic_sample() -> None:
    check_generic(load_aws_config(GENERIC))


def test_xml_sample_keeps_file_order() -> None:
    check_xml(load_aws_config(XML))


@pytest.mark.parametrize("path", [GENERIC, XML])
def test_crlf_bom_and_str_input(path: Path) -> None:
    data = path.read_bytes()
    expected = load_aws_config(path)
    crlf = data.replace(b"\n", b"\r\n")
    variants: list[str | bytes] = [
        crlf,
        b"\xef\xbb\xbf" + crlf,
        data.decode(),
        "\ufeff" + data.decode(),
    ]
    for variant in variants:
        conn = parse_aws_config(variant)
        check = check_generic if path == GENERIC else check_xml
        check(conn)
        assert conn.to_json(show_secrets=True) == expected.to_json(show_secrets=True)


def test_detect_format() -> None:
    assert detect_format(GENERIC.read_bytes()) == "aws-generic-text"
    assert detect_format(XML.read_text()) == "aws-customer-gateway-xml"


def test_shipped_samples_are_byte_exact_copies() -> None:
    shipped = Path(__file__).parents[3] / "config" / "aws"
    for path in (GENERIC, XML):
        assert (shipped / path.name).read_bytes() == path.read_bytes()
    # An editor that strips trailing blanks or expands TABs would defeat the sample.
    generic = GENERIC.read_bytes()
    assert b"IKEv1 \n" in generic
    assert b"\t\t\n" in generic
    assert b"\r" not in generic


def test_json_rendering_hides_psk() -> None:
    rendered = str(load_aws_config(GENERIC).to_json())
    assert "sVbYmmbuv" not in rendered
    assert "jNXXhCxPi5P" not in rendered
