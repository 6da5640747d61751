"""The emulated AWS side (cgwd.lab) against a strongSwan customer gateway.

A charon configured by these tests, independently of cgwd and of the lab's own config
generator, plays the customer gateway in the lab's ``cgw`` namespace. One lab serves the
module; the NAT and failure cases build their own small labs.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Interface, IPv4Network
from pathlib import Path

import pytest
from conftest import require_strongswan

from cgwd.cli import main
from cgwd.config.aws import AwsTunnel, AwsVpnConnection, DeadPeerDetection, PhaseSettings
from cgwd.config.load import load_configuration
from cgwd.errors import CgwdError, ConfigError
from cgwd.lab.aws_profile import EndpointPolicy
from cgwd.lab.aws_side import AwsLab, LabOptions
from cgwd.lab.strongswan import Charon, CharonSettings, wait_until
from cgwd.secret import Secret

pytestmark = [pytest.mark.netns, pytest.mark.strongswan, pytest.mark.slow]

# The XML sample's values (shared/samples/README.md), typed in by hand.
PSK1 = "so8YWGtQV.E_tNEaXSXiuNPvU0ASD036"
PSK2 = "fUhROC_FADOtJ.oKX1JXOTtzxV5R7g8b"
CGW_IP = IPv4Address("192.0.2.117")
AWS_IP = {1: IPv4Address("198.51.100.205"), 2: IPv4Address("198.51.100.38")}
AWS_INSIDE = {1: "169.254.212.85", 2: "169.254.57.241"}
CGW_INSIDE = {1: "169.254.212.86", 2: "169.254.57.242"}
PSK = {1: PSK1, 2: PSK2}


@dataclass(frozen=True)
class Peer:
    """One tunnel as the customer gateway sees it."""

    aws_ip: IPv4Address
    psk: str
    cgw_inside: str


PEERS = {i: Peer(AWS_IP[i], PSK[i], CGW_INSIDE[i]) for i in (1, 2)}
# A second VPN connection of the same gateway: the generic text sample's AWS side.
PEERS_B = {
    1: Peer(IPv4Address("203.0.113.66"), "sVbYmmbuv_1I4wJ2RvidkZboWOfs.8FW", "169.254.141.38"),
    2: Peer(IPv4Address("203.0.113.189"), "jNXXhCxPi5P_QefxceYSOlbTG.p8bYsE", "169.254.27.182"),
}


def sample_connection(
    peers: Mapping[int, Peer] = PEERS, vpn_id: str = "vpn-0f5b2f2f59f927ac6"
) -> AwsVpnConnection:
    def tunnel(index: int, cidr: str) -> AwsTunnel:
        net = IPv4Network(cidr)
        return AwsTunnel(
            index=index,
            customer_gateway_outside_ip=CGW_IP,
            vpn_gateway_outside_ip=peers[index].aws_ip,
            customer_gateway_inside_ip=net.network_address + 2,
            vpn_gateway_inside_ip=net.network_address + 1,
            inside_cidr=net,
            pre_shared_key=Secret(peers[index].psk),
            ike_version=None,
            phase1=PhaseSettings("AES128", "SHA1", 2, 28800),
            phase2=PhaseSettings("AES128", "SHA1", 2, 3600),
            dpd=DeadPeerDetection(interval_seconds=10, retries=3),
        )

    return AwsVpnConnection(
        format="aws-customer-gateway-xml",
        vpn_connection_id=vpn_id,
        vpn_gateway_id="vgw-054fabef64955d4f5",
        customer_gateway_id="cgw-0731d3a014b4c4442",
        routing="static",
        tunnels=(
            tunnel(1, str(IPv4Interface(f"{peers[1].cgw_inside}/30").network)),
            tunnel(2, str(IPv4Interface(f"{peers[2].cgw_inside}/30").network)),
        ),
    )


# Strongest first, as a customer gateway should offer (and not AWS's pick).
CGW_IKE = "aes256gcm16-prfsha384-ecp384,aes256-sha256-modp2048,aes128-sha1-modp1024"
CGW_ESP = "aes256gcm16-ecp384,aes256-sha256-modp2048,aes128-sha1-modp1024"


def cgw_swanctl(
    lab: AwsLab, version: int, tunnels: tuple[int, ...] = (1, 2), peers: Mapping[int, Peer] = PEERS
) -> str:
    """The customer gateway's swanctl.conf, written out by hand (not by cgwd.lab)."""
    conns, secrets = [], []
    for i in tunnels:
        conns.append(f"""    t{i} {{
        version = {version}
        local_addrs = {lab.cgw_local_ip}
        remote_addrs = {peers[i].aws_ip}
        proposals = {CGW_IKE if version == 2 else "aes256-sha256-modp2048,aes128-sha1-modp1024"}
        dpd_delay = 2s
        dpd_timeout = 4s
        local {{
            auth = psk
            id = {CGW_IP}
        }}
        remote {{
            auth = psk
            id = {peers[i].aws_ip}
        }}
        children {{
            t{i} {{
                local_ts = 0.0.0.0/0
                remote_ts = 0.0.0.0/0
                esp_proposals = {CGW_ESP}
                dpd_action = clear
            }}
        }}
    }}""")
        secrets.append(f"""    ike-{i} {{
        id-1 = {CGW_IP}
        id-2 = {peers[i].aws_ip}
        secret = {peers[i].psk}
    }}""")
    return "connections {\n" + "\n".join(conns) + "\n}\nsecrets {\n" + "\n".join(secrets) + "\n}\n"


def start_cgw(
    lab: AwsLab,
    workdir: Path,
    version: int,
    tunnels: tuple[int, ...] = (1, 2),
    peers: Mapping[int, Peer] = PEERS,
) -> Charon:
    cgw = lab.ns["cgw"]
    charon = Charon(
        cgw,
        workdir,
        name=f"cgw-v{version}",
        settings=CharonSettings(retransmit_timeout=1.0, retransmit_tries=2, retransmit_base=1.0),
        swanctl_conf=cgw_swanctl(lab, version, tunnels, peers),
    )
    charon.start()
    # Route-based, as cgwd does it: inside addresses on the tunnel device, VPC routed in.
    for i in tunnels:
        cgw.ip("addr", "add", f"{peers[i].cgw_inside}/30", "dev", "ipsec0")
    cgw.ip("route", "add", str(lab.options.vpc_cidr), "dev", "ipsec0")
    return charon


@pytest.fixture(scope="module")
def lab() -> Iterator[AwsLab]:
    require_strongswan()
    with AwsLab(sample_connection(), LabOptions.for_tests()) as built:
        yield built


@pytest.fixture
def cgw_dir(lab: AwsLab) -> Path:
    # Short path: the vici socket path must fit in sun_path.
    return lab.workdir / f"cgw{os.urandom(2).hex()}"


def packets_in(lab: AwsLab, index: int) -> int:
    child = lab.tunnel_child(index)
    return child.packets_in if child else -1


@pytest.mark.parametrize("version", [2, 1])
def test_each_tunnel_carries_traffic(lab: AwsLab, cgw_dir: Path, version: int) -> None:
    cgw = start_cgw(lab, cgw_dir, version)
    try:
        for i in (1, 2):
            other = 3 - i
            assert cgw.initiate(f"t{i}")
            child = lab.wait_tunnel_up(i)
            assert lab.tunnel_child(other) is None
            ike = next(sa for sa in lab.list_sas(i) if sa.established)
            assert ike.version == version
            assert ike.remote_host == str(CGW_IP) and ike.local_host == str(AWS_IP[i])
            # The lab's endpoint picks the lowest suite the customer gateway offers, as AWS.
            assert (ike.encr_alg, ike.encr_keysize, ike.integ_alg) == (
                "AES_CBC",
                128,
                "HMAC_SHA1_96",
            )
            assert ike.dh_group == "MODP_1024"
            assert child.encr_alg == "AES_CBC" and child.integ_alg == "HMAC_SHA1_96"
            assert child.local_ts == ("0.0.0.0/0",) and child.remote_ts == ("0.0.0.0/0",)
            assert child.raw.get("replay-window") in (None, "1024")  # not printed by 5.9.8
            lab.wait_return_path(i, up=True)
            assert not lab.return_path_up(other)

            before = packets_in(lab, i)
            assert lab.ping("lan", lab.vpc_host_ip, count=3)
            assert lab.ping("cgw", AWS_INSIDE[i], source=CGW_INSIDE[i])
            assert packets_in(lab, i) >= before + 5
            assert lab.ping("vpc", lab.options.lan_host.ip)

            cgw.terminate(ike=f"t{i}")
            lab.wait_tunnel_down(i, timeout=10)
            lab.wait_return_path(i, up=False)
            assert not lab.ping("lan", lab.vpc_host_ip, count=1)
    finally:
        cgw.stop()


def test_restricted_endpoint_negotiates_its_suite(lab: AwsLab, cgw_dir: Path) -> None:
    lab.reconfigure(
        1, ike_proposals="aes256gcm16-prfsha384-ecp384", esp_proposals="aes256gcm16-ecp384"
    )
    cgw = start_cgw(lab, cgw_dir, 2, tunnels=(1,))
    try:
        assert cgw.initiate("t1")
        child = lab.wait_tunnel_up(1)
        ike = next(sa for sa in lab.list_sas(1) if sa.established)
        assert (ike.encr_alg, ike.encr_keysize, ike.prf_alg) == (
            "AES_GCM_16",
            256,
            "PRF_HMAC_SHA2_384",
        )
        assert ike.dh_group == "ECP_384"
        assert (child.encr_alg, child.encr_keysize) == ("AES_GCM_16", 256)
        assert lab.ping("lan", lab.vpc_host_ip)
    finally:
        cgw.stop()
        lab.reconfigure(1)
        lab.wait_tunnel_down(1, timeout=10)


def test_endpoint_restart_and_dpd(lab: AwsLab, cgw_dir: Path) -> None:
    cgw = start_cgw(lab, cgw_dir, 2, tunnels=(1,))
    try:
        assert cgw.initiate("t1")
        lab.wait_tunnel_up(1)
        # A graceful restart sends DELETE: the customer gateway's SA goes at once.
        lab.restart_endpoint(1)
        cgw.wait_child_down("t1", timeout=5)
        assert not lab.return_path_up(1)
        assert cgw.initiate("t1")
        lab.wait_tunnel_up(1)
        assert lab.ping("lan", lab.vpc_host_ip)
        # A crash sends nothing: only the customer gateway's DPD notices.
        lab.kill_endpoint(1)
        assert not lab.return_path_up(1)
        cgw.wait_child_down("t1", timeout=15)
        lab.start_endpoint(1)
        assert cgw.initiate("t1")
        lab.wait_tunnel_up(1)
        # The other way round: the customer gateway vanishes, the endpoint's DPD clears.
        cgw.kill()
        lab.wait_tunnel_down(1, timeout=lab.options.dead_peer_after + 5)
        lab.wait_return_path(1, up=False)
        assert "DPD" in lab.log(1) or "retransmit" in lab.log(1)
    finally:
        cgw.stop()


@pytest.mark.parametrize("version", [2, 1])
def test_cut_tunnel1_moves_traffic_to_tunnel2(lab: AwsLab, cgw_dir: Path, version: int) -> None:
    cgw = start_cgw(lab, cgw_dir, version)
    try:
        assert cgw.initiate("t1") and cgw.initiate("t2")
        lab.wait_tunnel_up(1)
        lab.wait_tunnel_up(2)
        assert lab.ping("lan", lab.vpc_host_ip)
        lab.cut(1)
        assert lab.is_cut(1) and not lab.is_cut(2)
        dead_after = lab.options.dead_peer_after + 5
        lab.wait_tunnel_down(1, timeout=dead_after)
        lab.wait_return_path(1, up=False)
        cgw.wait_child_down("t1", timeout=dead_after)
        before = packets_in(lab, 2)
        assert lab.ping("lan", lab.vpc_host_ip, count=3)
        assert packets_in(lab, 2) >= before + 3
        assert lab.tunnel_child(2) is not None
        lab.restore(1)
        assert not lab.is_cut(1)
        assert cgw.initiate("t1")
        lab.wait_tunnel_up(1)
        lab.wait_return_path(1, up=True)
        assert lab.ping("lan", lab.vpc_host_ip)
    finally:
        lab.restore(1)
        cgw.stop()


def _charons_using(workdir: Path) -> list[str]:
    """Running charons whose configuration lives under ``workdir``."""
    found = []
    for proc in Path("/proc").iterdir():
        try:
            if os.readlink(proc / "exe") != "/usr/lib/ipsec/charon":
                continue
            if str(workdir).encode() in (proc / "environ").read_bytes():
                found.append(f"charon pid {proc.name}")
        except OSError:
            continue
    return found


def _leftovers(prefix: str, pids: list[int], workdir: Path) -> list[str]:
    found = _charons_using(workdir)
    names = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=True)
    found += [n for n in names.stdout.split() if n.startswith(prefix + "-")]
    found += [f"pid {p}" for p in pids if Path(f"/proc/{p}").exists()]
    mounts = Path("/proc/self/mountinfo").read_text()
    found += [line for line in mounts.splitlines() if f"/run/netns/{prefix}-" in line]
    return found


def test_nat_and_teardown(tmp_path: Path) -> None:
    require_strongswan()
    lab = AwsLab(
        sample_connection(),
        LabOptions.for_tests(nat=True, tunnels=(1,), lan=False, nat_udp_timeout=5),
    )
    lab.start()
    try:
        assert lab.cgw_local_ip != CGW_IP
        cgw = start_cgw(lab, lab.workdir / "cgw", 2, tunnels=(1,))
        try:
            assert cgw.initiate("t1")
            lab.wait_tunnel_up(1)
            ike = next(sa for sa in lab.list_sas(1) if sa.established)
            # AWS sees the file's CGW address (the NAT's), and knows the peer is behind NAT.
            assert ike.remote_host == str(CGW_IP) and ike.nat_remote
            cgw_ike = next(sa for sa in cgw.list_sas() if sa.established)
            assert cgw_ike.local_host == str(lab.cgw_local_ip) and cgw_ike.nat_local
            assert lab.ping("cgw", lab.vpc_host_ip, source=CGW_INSIDE[1])
            timeout = lab.run("nat", "sysctl", "-n", "net.netfilter.nf_conntrack_udp_timeout")
            assert timeout.stdout.strip() == "5"
        finally:
            cgw.stop()
        pids = [pid for ep in lab.endpoints.values() if (pid := ep.charon.pid)]
        assert pids
    finally:
        lab.close()
    assert _leftovers(lab.topology.prefix, pids, lab.workdir) == []
    assert not lab.workdir.exists()


def test_failed_build_leaves_nothing() -> None:
    require_strongswan()
    lab = AwsLab(
        sample_connection(),
        LabOptions.for_tests(tunnels=(1, 2), ike_proposals={2: "no-such-algorithm"}),
    )
    with pytest.raises(CgwdError, match="aws2"):
        lab.start()
    pids = [pid for ep in lab.endpoints.values() if (pid := ep.charon.pid)]
    assert _leftovers(lab.topology.prefix, pids, lab.workdir) == []
    assert not lab.workdir.exists()


def test_overlapping_addresses_rejected_before_building() -> None:
    with pytest.raises(ConfigError, match="overlap"):
        AwsLab(
            sample_connection(),
            LabOptions(
                vpc_cidr=IPv4Network("10.20.0.0/16"), vpc_host=IPv4Interface("10.20.5.10/24")
            ),
        )


def test_wait_until_times_out() -> None:
    with pytest.raises(CgwdError, match="timed out"):
        wait_until(lambda: False, 0.2, 0.05, "nothing")


def test_cli_lab_up_status_down(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    require_strongswan()
    sample = Path(__file__).parents[1] / "data" / "aws" / "aws-describe-vpn-connections-static.xml"
    aws_file = tmp_path / "vpn.xml"
    aws_file.write_bytes(sample.read_bytes())
    aws_file.chmod(0o600)
    state_dir = tmp_path / "st"
    assert (
        main(
            [
                "lab",
                "up",
                "--aws-config",
                str(aws_file),
                "--state-dir",
                str(state_dir),
                "--no-lan",
                "--fast",
                "--json",
            ]
        )
        == 0
    )
    state = json.loads(capsys.readouterr().out)
    pids = [t["charon_pid"] for t in state["tunnels"]]
    try:
        assert state["cgw"]["outside_ip"] == str(CGW_IP)
        assert [t["aws_outside_ip"] for t in state["tunnels"]] == [str(AWS_IP[1]), str(AWS_IP[2])]
        assert (
            main(["lab", "up", "--aws-config", str(aws_file), "--state-dir", str(state_dir)]) == 1
        )
        assert "already up" in capsys.readouterr().err
        # The generated cgwd.toml is a valid configuration for this lab.
        loaded = load_configuration(Path(state["cgwd_config"]))
        assert [str(r) for r in loaded.config.connections[0].routes] == [state["vpc_cidr"]]
        assert main(["lab", "status", "--state-dir", str(state_dir)]) == 0
        assert capsys.readouterr().out.count("charon running") == 2
    finally:
        assert main(["lab", "down", "--state-dir", str(state_dir)]) == 0
    for pid in pids:  # they were our children: reap them
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, 0)
    assert _leftovers(state["prefix"], pids, Path(state["workdir"])) == []
    assert not state_dir.exists() or not any(state_dir.iterdir())
    assert main(["lab", "down", "--state-dir", str(state_dir)]) == 0


def test_aws_initiates_and_rekeys(lab: AwsLab, cgw_dir: Path) -> None:
    cgw = start_cgw(lab, cgw_dir, 2, tunnels=(2,))
    try:
        # Startup action "start": the AWS endpoint initiates as soon as it has the config.
        lab.reconfigure(2, startup_action="start")
        lab.wait_tunnel_up(2)
        ike = next(sa for sa in lab.list_sas(2) if sa.established)
        assert ike.initiator and ike.version == 2
        lab.reconfigure(2)
        cgw.terminate(ike="t2")
        lab.wait_tunnel_down(2, timeout=10)
        # ... or on request.
        assert lab.initiate(2)
        child = lab.wait_tunnel_up(2)
        ike = next(sa for sa in lab.list_sas(2) if sa.established)
        assert ike.initiator
        assert cgw.wait_child_up("t2")
        # AWS-initiated CHILD_SA rekey: new SPIs, traffic keeps flowing.
        lab.rekey(2)
        wait_until(
            lambda: (c := lab.tunnel_child(2)) is not None and c.spi_in != child.spi_in,
            10,
            0.2,
            "rekeyed CHILD_SA",
        )
        assert lab.ping("lan", lab.vpc_host_ip)
        lab.rekey(2, ike=True)
        wait_until(
            lambda: any(sa.established and sa.uniqueid != ike.uniqueid for sa in lab.list_sas(2)),
            10,
            0.2,
            "rekeyed IKE_SA",
        )
        assert lab.ping("lan", lab.vpc_host_ip)
        # No secret in what the lab describes or logs.
        for text in (json.dumps(lab.describe()), lab.log(1), lab.log(2)):
            assert PSK1 not in text and PSK2 not in text
    finally:
        cgw.stop()
        lab.wait_tunnel_down(2, timeout=10)


def test_wrong_psk_and_no_common_proposal_fail_cleanly(lab: AwsLab, cgw_dir: Path) -> None:
    cgw = start_cgw(lab, cgw_dir, 2, tunnels=(1,))
    mark = lab.endpoint(1).charon.log_mark()
    try:
        lab.reconfigure(1, psk=Secret("wrong_key.12345678"))
        assert not cgw.initiate("t1", timeout=5, check=False)
        assert lab.tunnel_child(1) is None
        log = "\n".join(lab.endpoint(1).charon.log_since(mark))
        assert "MAC mismatched" in log  # strongSwan's words for a PSK mismatch (AWS: auth_failed)
        assert "wrong_key" not in log

        mark = lab.endpoint(1).charon.log_mark()
        lab.reconfigure(1, EndpointPolicy(dpd_delay=2), ike_proposals="aes128-sha1-modp8192")
        assert not cgw.initiate("t1", timeout=5, check=False)
        log = "\n".join(lab.endpoint(1).charon.log_since(mark))
        assert "received proposals unacceptable" in log  # AWS: no_proposal_chosen
    finally:
        cgw.stop()
        lab.reconfigure(1)


def test_second_connection_attached(lab: AwsLab, cgw_dir: Path) -> None:
    options = LabOptions.for_tests(
        vpc_cidr=IPv4Network("10.98.0.0/16"), vpc_host=IPv4Interface("10.98.0.10/24")
    )
    lab_b = AwsLab(sample_connection(PEERS_B, "vpn-027ce4abbdce5c106"), options, attach_to=lab)
    lab_b.start()
    try:
        assert lab_b.ns["cgw"] is lab.ns["cgw"] and lab_b.ns["vpc"] is not lab.ns["vpc"]
        assert lab_b.cgw_local_ip == lab.cgw_local_ip
        cgw = start_cgw(lab, cgw_dir, 2, tunnels=(2,), peers=PEERS_B)
        try:
            cgw.netns.ip("route", "add", "10.98.0.0/16", "dev", "ipsec0")
            assert cgw.initiate("t2")
            lab_b.wait_tunnel_up(2)
            assert lab.tunnel_child(1) is None and lab.tunnel_child(2) is None
            assert lab.ping("lan", IPv4Address("10.98.0.10"))
            assert not lab.ping("lan", lab.vpc_host_ip, count=1)  # the other VPC
            lab_b.cut(2)
            assert lab_b.is_cut(2) and lab.is_cut(2) is False
            lab_b.wait_tunnel_down(2, timeout=15)
            lab_b.restore(2)
        finally:
            cgw.stop()
        # An attached lab may not reuse the other lab's addresses.
        with pytest.raises(ConfigError, match="overlap"):
            AwsLab(sample_connection(PEERS_B), LabOptions(), attach_to=lab)
    finally:
        lab_b.close()
    assert _leftovers(lab_b.topology.prefix, [], lab_b.workdir) == []
    assert lab.ping("cgw", lab.options.lan_host.ip)  # the first lab is untouched
