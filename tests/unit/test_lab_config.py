"""cgwd.lab without namespaces: swanctl output parsing and the AWS endpoint's configuration."""

from __future__ import annotations

from dataclasses import replace
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cgwd.config.aws import AwsTunnel, AwsVpnConnection, DeadPeerDetection, PhaseSettings
from cgwd.errors import ConfigError
from cgwd.lab.aws_profile import (
    EndpointPolicy,
    allowed_set,
    endpoint_swanctl_conf,
    esp_proposals,
    ike_proposals,
)
from cgwd.lab.strongswan import (
    CharonSettings,
    parse_list_sas,
    parse_pretty,
    render_strongswan_conf,
    swanctl_section,
)
from cgwd.secret import Secret

# Captured from `swanctl --list-sas --pretty` (strongSwan 5.9.8), SPIs and addresses edited.
LIST_SAS = """\
list-sa event {
  tunnel1 {
    uniqueid = 3
    version = 2
    state = ESTABLISHED
    local-host = 198.51.100.205
    local-port = 4500
    local-id = 198.51.100.205
    remote-host = 192.0.2.117
    remote-port = 61234
    remote-id = CN=odd id {with braces}, O=x
    initiator-spi = 854d179af902466a
    responder-spi = 2ef11af86a978766
    nat-remote = yes
    nat-any = yes
    encr-alg = AES_CBC
    encr-keysize = 128
    integ-alg = HMAC_SHA1_96
    prf-alg = PRF_HMAC_SHA1
    dh-group = MODP_1024
    established = 4
    rekey-time = 14072
    child-sas {
      tunnel1-2 {
        name = tunnel1
        uniqueid = 2
        reqid = 1
        state = INSTALLED
        mode = TUNNEL
        protocol = ESP
        encap = yes
        spi-in = ee4dba6b
        spi-out = 429656b4
        encr-alg = AES_GCM_16
        encr-keysize = 256
        bytes-in = 840
        packets-in = 10
        bytes-out = 672
        packets-out = 8
        local-ts = [
          0.0.0.0/0
        ]
        remote-ts = [
          0.0.0.0/0
        ]
      }
    }
  }
}
list-sa event {
  tunnel2 {
    uniqueid = 4
    version = 1
    state = CONNECTING
    local-host = 198.51.100.38
    child-sas {
    }
  }
}
list-sas reply {
}
"""


def test_list_sas_parsed() -> None:
    sas = parse_list_sas(LIST_SAS)
    assert [sa.name for sa in sas] == ["tunnel1", "tunnel2"]
    first, second = sas
    assert first.established and first.version == 2 and first.uniqueid == 3
    assert (first.remote_host, first.remote_port) == ("192.0.2.117", 61234)
    assert first.remote_id == "CN=odd id {with braces}, O=x"
    assert first.nat_remote and not first.nat_local
    assert (first.encr_alg, first.encr_keysize, first.dh_group) == ("AES_CBC", 128, "MODP_1024")
    (child,) = first.children
    assert child.name == "tunnel1" and child.state == "INSTALLED" and child.encap
    assert (child.spi_in, child.spi_out) == ("ee4dba6b", "429656b4")
    assert (child.packets_in, child.bytes_out) == (10, 672)
    assert child.local_ts == ("0.0.0.0/0",) and child.remote_ts == ("0.0.0.0/0",)
    assert first.installed_children("tunnel1") == [child]
    assert not second.established and second.children == () and second.version == 1


def test_truncated_and_garbage_output() -> None:
    assert parse_list_sas("") == []
    assert parse_list_sas("connecting to 'unix:///x' failed: No such file\n") == []
    # A cut-off listing yields only what was complete.
    cut = LIST_SAS[: LIST_SAS.index("list-sa event {\n  tunnel2")] + "list-sa event {\n  t {\n"
    assert [sa.name for sa in parse_list_sas(cut)] == ["tunnel1"]


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=st.sampled_from(list("ab =[]{}\n 0")), max_size=300))
def test_parser_never_raises(text: str) -> None:
    parse_pretty(text)
    parse_list_sas(text)


def test_swanctl_section_rendering() -> None:
    text = swanctl_section(
        "c",
        {
            "a": 1,
            "b": True,
            "l": ("x", "y"),
            "s": Secret("p.s_k"),
            "q": 'a b"c',
            "n": None,
            "sub": {"k": "v"},
        },
    )
    assert text == (
        "c {\n    a = 1\n    b = yes\n    l = x,y\n    s = p.s_k\n"
        '    q = "a b\\"c"\n    sub {\n        k = v\n    }\n}'
    )


def _tunnel(**changes: object) -> AwsTunnel:
    t = AwsTunnel(
        index=1,
        customer_gateway_outside_ip=IPv4Address("192.0.2.117"),
        vpn_gateway_outside_ip=IPv4Address("198.51.100.205"),
        customer_gateway_inside_ip=None,
        vpn_gateway_inside_ip=None,
        inside_cidr=IPv4Network("169.254.212.84/30"),
        pre_shared_key=Secret("so8YWGtQV.E_tNEaXSXiuNPvU0ASD036"),
        ike_version=None,
        phase1=PhaseSettings("AES128", "SHA1", 2, 28800),
        phase2=PhaseSettings("AES128", "SHA1", 2, 3600),
        dpd=DeadPeerDetection(interval_seconds=10, retries=3),
    )
    return replace(t, **changes)  # type: ignore[arg-type]


def _connection(tunnel: AwsTunnel, fmt: str = "aws-customer-gateway-xml") -> AwsVpnConnection:
    return AwsVpnConnection(
        format=fmt,  # type: ignore[arg-type]
        vpn_connection_id="vpn-1",
        vpn_gateway_id="vgw-1",
        customer_gateway_id="cgw-1",
        routing="static",
        tunnels=(tunnel, replace(tunnel, index=2)),
    )


def test_text_download_gets_the_full_aws_set_lowest_first() -> None:
    t = _tunnel()
    p1 = allowed_set(_connection(t), t.phase1, 1)
    ike = ike_proposals(p1, "any")
    # 2 CBC ciphers x 4 integrity, then 2 GCM ciphers x 4 PRFs; lowest first.
    assert len(ike) == 16
    groups = (
        "modp1024-modp2048-modp3072-modp4096-modp6144-modp8192-ecp256-ecp384-ecp521"
        "-modp1024s160-modp2048s224-modp2048s256"
    )
    assert ike[0] == f"aes128-sha1-{groups}"
    assert ike[7] == f"aes256-sha512-{groups}"
    assert ike[8] == f"aes128gcm16-prfsha1-{groups}"
    assert ike[15] == f"aes256gcm16-prfsha512-{groups}"
    assert not any("gcm" in p for p in ike_proposals(p1, "ikev1"))
    esp = esp_proposals(allowed_set(_connection(t), t.phase2, 2))
    assert len(esp) == 10
    assert esp[0].startswith("aes128-sha1-modp1024-modp1536-modp2048-")
    assert esp[-1].startswith("aes256gcm16-modp1024-modp1536-")


def test_cli_json_tunnel_options_restrict_the_set() -> None:
    phase = PhaseSettings(
        "AES256-GCM-16",
        "SHA2-384",
        20,
        28800,
        encryption_allowed=("AES256-GCM-16",),
        integrity_allowed=("SHA2-384",),
        dh_groups_allowed=(21, 20),
    )
    t = _tunnel(phase1=phase)
    algs = allowed_set(_connection(t, "aws-cli-json"), t.phase1, 1)
    assert ike_proposals(algs, "ikev2") == ["aes256gcm16-prfsha384-ecp384-ecp521"]


def test_endpoint_conf() -> None:
    t = _tunnel()
    conf = endpoint_swanctl_conf(
        _connection(t),
        t,
        EndpointPolicy(dpd_delay=2, ike_proposals="aes256-sha256-modp2048"),
        customer_gateway_ip=IPv4Address("192.0.2.117"),
        updown=None,
    )
    assert "proposals = aes256-sha256-modp2048\n" in conf
    assert "version = 0\n" in conf  # AWS answers IKEv1 and IKEv2 unless restricted
    assert "dpd_delay = 2s\n" in conf and "dpd_action = clear\n" in conf
    assert "replay_window = 1024\n" in conf
    assert "local_ts = 0.0.0.0/0\n" in conf and "remote_ts = 0.0.0.0/0\n" in conf
    assert "start_action = none\n" in conf  # AWS's default startup action "add"
    # Rekey in the margin window: 3600 - 270 (rand 270), 28800 - 270.
    assert "life_time = 3600s\n" in conf and "rekey_time = 3330s\n" in conf
    assert "rekey_time = 28530s\n" in conf and "rand_time = 270s\n" in conf
    assert "secret = so8YWGtQV.E_tNEaXSXiuNPvU0ASD036\n" in conf
    assert "id = 192.0.2.117\n" in conf and "local_addrs = 198.51.100.205\n" in conf


def test_endpoint_conf_errors() -> None:
    t = _tunnel()
    with pytest.raises(ConfigError, match="IKEv2"):
        endpoint_swanctl_conf(
            _connection(t),
            t,
            EndpointPolicy(startup_action="start", ike_version="ikev1"),
            customer_gateway_ip=IPv4Address("192.0.2.117"),
            updown=None,
        )
    no_psk = _tunnel(pre_shared_key=None)
    with pytest.raises(ConfigError, match="pre-shared key"):
        endpoint_swanctl_conf(
            _connection(no_psk),
            no_psk,
            EndpointPolicy(),
            customer_gateway_ip=IPv4Address("192.0.2.117"),
            updown=None,
        )
    with pytest.raises(ConfigError, match="lifetime"):
        endpoint_swanctl_conf(
            _connection(t),
            t,
            EndpointPolicy(phase2_lifetime=500, rekey_margin=270),
            customer_gateway_ip=IPv4Address("192.0.2.117"),
            updown=None,
        )


def test_strongswan_conf_follows_the_recipe() -> None:
    text = render_strongswan_conf(CharonSettings(), Path("/x/charon.vici"), Path("/x/charon.log"))
    load = next(line.split("=", 1)[1].split() for line in text.splitlines() if "load =" in line)
    assert load[0] == "openssl"
    assert load.index("openssl") < load.index("aes") and load.index("openssl") < load.index("gcm")
    assert {"kernel-libipsec", "kernel-netlink", "socket-default", "vici"} <= set(load)
    assert "socket = unix:///x/charon.vici\n" in text
    assert "install_routes = no\n" in text
    # kernel-libipsec's own 0/0 route table is consulted after main (priority 32766).
    assert "routing_table_prio = 32768\n" in text
    # One setting per line: strongSwan rejects "{ a = 1; b = 2 }".
    assert ";" not in text.replace("%H:%M:%S", "")
