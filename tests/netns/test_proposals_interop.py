"""cgwd's proposal sets against an AWS-like strongSwan endpoint, default and restricted.

The lab's endpoint (cgwd.lab, written from aws-behaviour.md §6 independently of
cgwd.config.proposals) accepts AWS's default set or a restricted one and, like AWS, picks
the lowest suite it accepts. A strongSwan customer gateway offers exactly the strings
`cgwd.config.proposals` produces. This shows that the default offer ("proposals = aws")
negotiates whatever the tunnel options are restricted to, that the strongSwan names are
valid, that PFS works on CHILD_SA rekey (the first CHILD_SA is made without DH), and that
offering only what a download prints fails against a restricted tunnel.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import replace
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path

import pytest
from conftest import require_strongswan

from cgwd.config.aws import AwsTunnel, AwsVpnConnection, DeadPeerDetection, PhaseSettings
from cgwd.config.proposals import ProposalSet, proposals_for, quick_mode_pfs_group
from cgwd.errors import CgwdError
from cgwd.lab.aws_profile import AlgorithmSet, esp_proposals, ike_proposals
from cgwd.lab.aws_side import AwsLab, LabOptions
from cgwd.lab.strongswan import Charon, CharonSettings, wait_until
from cgwd.secret import Secret

pytestmark = [pytest.mark.netns, pytest.mark.strongswan, pytest.mark.slow]

PSK = "so8YWGtQV.E_tNEaXSXiuNPvU0ASD036"
CGW_IP = IPv4Address("192.0.2.117")
AWS_IP = IPv4Address("198.51.100.205")


def sample() -> AwsVpnConnection:
    net = IPv4Network("169.254.212.84/30")
    minimum = PhaseSettings("AES128", "SHA1", 2, 28800, ("AES128",), ("SHA1",), (2,))
    tunnel = AwsTunnel(
        index=1,
        customer_gateway_outside_ip=CGW_IP,
        vpn_gateway_outside_ip=AWS_IP,
        customer_gateway_inside_ip=net.network_address + 2,
        vpn_gateway_inside_ip=net.network_address + 1,
        inside_cidr=net,
        pre_shared_key=Secret(PSK),
        ike_version=None,
        phase1=minimum,
        phase2=replace(minimum, lifetime_seconds=3600),
        dpd=DeadPeerDetection(interval_seconds=10, retries=3),
    )
    second = replace(
        tunnel,
        index=2,
        vpn_gateway_outside_ip=IPv4Address("198.51.100.38"),
        inside_cidr=IPv4Network("169.254.57.240/30"),
        customer_gateway_inside_ip=IPv4Address("169.254.57.242"),
        vpn_gateway_inside_ip=IPv4Address("169.254.57.241"),
    )
    return AwsVpnConnection(
        format="aws-customer-gateway-xml",
        vpn_connection_id="vpn-0f5b2f2f59f927ac6",
        vpn_gateway_id="vgw-054fabef64955d4f5",
        customer_gateway_id="cgw-0731d3a014b4c4442",
        routing="static",
        tunnels=(tunnel, second),
    )


@pytest.fixture(scope="module")
def lab() -> Iterator[AwsLab]:
    require_strongswan()
    with AwsLab(sample(), LabOptions.for_tests(tunnels=(1,), lan=False)) as built:
        yield built


def cgw_conf(lab: AwsLab, version: int, ike: str, esp: str) -> str:
    return f"""connections {{
    t1 {{
        version = {version}
        local_addrs = {lab.cgw_local_ip}
        remote_addrs = {AWS_IP}
        proposals = {ike}
        local {{
            auth = psk
            id = {CGW_IP}
        }}
        remote {{
            auth = psk
            id = {AWS_IP}
        }}
        children {{
            t1 {{
                local_ts = 0.0.0.0/0
                remote_ts = 0.0.0.0/0
                esp_proposals = {esp}
            }}
        }}
    }}
}}
secrets {{
    ike-1 {{
        id-1 = {CGW_IP}
        id-2 = {AWS_IP}
        secret = {PSK}
    }}
}}
"""


def offer(ps: ProposalSet, phase1_group: int | None = None) -> tuple[int, str, str]:
    """strongSwan settings for what cgwd offers. IKEv1 Quick Mode uses one PFS group."""
    if ps.ike_version == "ikev2":
        return 2, ps.ike_strongswan(), ps.esp_strongswan()
    return 1, ps.ike_strongswan(), ps.esp_strongswan(quick_mode_pfs_group(ps, phase1_group))


def restrict(lab: AwsLab, version: str, p1: AlgorithmSet | None, p2: AlgorithmSet | None) -> None:
    lab.reconfigure(
        1,
        replace(
            lab.options.policy(1),
            ike_version=version,  # type: ignore[arg-type]
            ike_proposals=None if p1 is None else ",".join(ike_proposals(p1, version)),  # type: ignore[arg-type]
            esp_proposals=None if p2 is None else ",".join(esp_proposals(p2)),
        ),
    )


def negotiate(lab: AwsLab, workdir: Path, version: int, ike: str, esp: str) -> Charon:
    charon = Charon(
        lab.ns["cgw"],
        workdir,
        name=f"cgw{os.urandom(2).hex()}",
        settings=CharonSettings(retransmit_timeout=1.0, retransmit_tries=1, retransmit_base=1.0),
        swanctl_conf=cgw_conf(lab, version, ike, esp),
    )
    charon.start()
    return charon


@pytest.fixture
def workdir(lab: AwsLab) -> Path:
    return lab.workdir / f"p{os.urandom(2).hex()}"


CASES = {
    "ikev2-aws-default": ("ikev2", None, None),
    "ikev2-gcm-sha384-ecp384": (
        "ikev2",
        AlgorithmSet(("AES256-GCM-16",), ("SHA2-384",), (20,)),
        AlgorithmSet(("AES256-GCM-16",), ("SHA2-256",), (20,)),
    ),
    "ikev2-cbc-sha512-group24-pfs5": (
        "ikev2",
        AlgorithmSet(("AES256",), ("SHA2-512",), (24,)),
        AlgorithmSet(("AES128",), ("SHA2-256",), (5,)),
    ),
    "ikev1-aws-default": ("ikev1", None, None),
    "ikev1-aes256-sha256-group14": (
        "ikev1",
        AlgorithmSet(("AES256",), ("SHA2-256",), (14,)),
        AlgorithmSet(("AES256",), ("SHA2-256",), (14,)),
    ),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_default_offer_negotiates_with_any_aws_restriction(
    lab: AwsLab, workdir: Path, case: str
) -> None:
    version, p1, p2 = CASES[case]
    restrict(lab, version, p1, p2)
    ps = proposals_for(lab.connection.tunnels[0], version)  # type: ignore[arg-type]
    phase1_group = p1.dh_groups[0] if p1 else 2  # AWS (the lab) picks its lowest: group 2
    cgw = negotiate(lab, workdir, *offer(ps, phase1_group))
    try:
        assert cgw.initiate("t1"), cgw.log_tail()
        child = lab.wait_tunnel_up(1)
        ike = next(sa for sa in lab.list_sas(1) if sa.established)
        assert ike.version == (2 if version == "ikev2" else 1)
        if p1 is not None:
            expected_encr = {"AES256-GCM-16": ("AES_GCM_16", 256), "AES256": ("AES_CBC", 256)}
            assert (ike.encr_alg, ike.encr_keysize) == expected_encr[p1.encryption[0]]
            expected_dh = {20: "ECP_384", 24: "MODP_2048_256", 14: "MODP_2048"}
            assert ike.dh_group == expected_dh[p1.dh_groups[0]]
        if p2 is not None:
            expected_esp = {"AES256-GCM-16": ("AES_GCM_16", 256), "AES256": ("AES_CBC", 256)}
            expected_esp["AES128"] = ("AES_CBC", 128)
            assert (child.encr_alg, child.encr_keysize) == expected_esp[p2.encryption[0]]
        # The PFS group is only negotiated on a CHILD_SA rekey (IKEv2) or in Quick Mode
        # (IKEv1): rekey from the customer gateway and check the group AWS allows.
        old_spi = child.spi_in
        cgw.rekey(child="t1")
        wait_until(
            lambda: (c := lab.tunnel_child(1)) is not None and c.spi_in != old_spi,
            timeout=15,
            what="the rekeyed CHILD_SA",
        )
        rekeyed = lab.tunnel_child(1)
        assert rekeyed is not None
        if p2 is not None:
            expected_pfs = {20: "ECP_384", 5: "MODP_1536", 14: "MODP_2048"}
            assert rekeyed.dh_group == expected_pfs[p2.dh_groups[0]]
        else:
            assert rekeyed.dh_group is not None
    finally:
        cgw.stop()


def test_offering_only_the_downloads_minimum_fails_against_a_restricted_tunnel(
    lab: AwsLab, workdir: Path
) -> None:
    p1 = AlgorithmSet(("AES256-GCM-16",), ("SHA2-384",), (20,))
    restrict(lab, "ikev2", p1, p1)
    minimum = proposals_for(lab.connection.tunnels[0], "ikev2", mode="file")
    assert minimum.ike_strongswan() == "aes128-sha1-prfsha1-modp1024"
    cgw = negotiate(lab, workdir, *offer(minimum))
    try:
        with pytest.raises(CgwdError):
            cgw.initiate("t1", timeout=8)
        assert lab.tunnel_child(1) is None
        assert "NO_PROPOSAL_CHOSEN" in cgw.log_text() or "no proposal" in lab.log(1).lower()
    finally:
        cgw.stop()
