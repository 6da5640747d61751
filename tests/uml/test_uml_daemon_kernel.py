"""`cgwd run` with the kernel dataplane end to end, inside a user-mode Linux guest (this
host's kernel has no ESP): two strongSwan charons (kernel-netlink) play AWS's endpoints,
a LAN host behind cgwd reaches a VPC host behind them. One guest, the scenario
(tests/uml/scenario_daemon_kernel.py) run twice (`VARIANTS`); the assertions are here, one
test per property."""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterator
from typing import Any

import pytest
from uml_guest import UmlGuest, uml_available  # type: ignore[import-not-found]

try:
    from tests.conftest import require, require_root, require_strongswan
except ImportError:  # pragma: no cover - depends on how pytest was started
    from conftest import (  # type: ignore[no-redef]
        require,
        require_root,
        require_strongswan,
    )

pytestmark = [pytest.mark.uml, pytest.mark.slow, pytest.mark.strongswan]

T1, T2 = "vpc01-t1", "vpc01-t2"
# The XML sample download's tunnels, as AWS wrote them (not computed with cgwd's code).
AWS_T1, AWS_T2 = "198.51.100.205", "198.51.100.38"
# AWS's MTU/MSS table for the suites the endpoints accept: tunnel 1 AES-GCM, tunnel 2
# AES-CBC + HMAC-SHA1; without NAT-T, and with (forced) NAT-T.
EXPECTED_MSS = {False: {T1: 1406, T2: 1398}, True: {T1: 1398, T2: 1382}}  # by NAT-T
EXPECTED_MTU = {False: {T1: 1446, T2: 1438}, True: {T1: 1438, T2: 1422}}
TCP_TIMESTAMPS = 12  # bytes of options Linux subtracts from the MSS it reports
# Longest run of lost pings (0.1 s apart) allowed; measured in UML (docs/kernel-dataplane.md):
# 0-0.1 s, 0 s and 3.4-3.6 s.
GRACEFUL_BOUND = 1.0  # the endpoint stops and DELETEs cgwd's SAs
FAILBACK_BOUND = 1.0  # tunnel 1 comes back and takes the routes again
DEAD_PEER_BOUND = 6.0  # the endpoint vanishes: cgwd's DPD (2 s x 2 here) notices in 4 s


@pytest.fixture(scope="module")
def guest() -> Iterator[UmlGuest]:
    require_root()
    require_strongswan()
    ok, reason = uml_available()
    require(ok, reason)
    with UmlGuest() as g:
        yield g


# Two runs: IKEv2 with raw ESP (AWS's default without NAT), and IKEv1 with ESP in UDP
# (NAT-T forced: the IKE sockets' ESPINUDP path), each with its own endpoints and daemon.
VARIANTS = {"ikev2-raw-esp": "", "ikev1-nat-t": "ikev1 encap"}


@pytest.fixture(scope="module", params=list(VARIANTS))
def doc(guest: UmlGuest, request: pytest.FixtureRequest) -> dict[str, Any]:
    args = VARIANTS[request.param]
    result = guest.python(f"tests/uml/scenario_daemon_kernel.py {args}", timeout=240)
    lines = result.output.strip().splitlines()
    assert result.rc == 0 and lines, result.output
    observed: dict[str, Any] = json.loads(lines[-1])
    assert observed["force_encap"] is ("encap" in args)
    assert "error" not in observed, json.dumps(observed, indent=1)[-8000:]
    return observed


def _tunnels(status: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {t["interface"]: t for c in status["connections"] for t in c["tunnels"]}


def test_status_shows_both_tunnels_up_with_kernel_sas(doc: dict[str, Any]) -> None:
    assert doc["status_cli_rc"] == 0, doc["status"]
    encap = doc["force_encap"]
    tunnels = _tunnels(doc["status"])
    assert sorted(tunnels) == [T1, T2]
    assert tunnels[T1]["vpn_gateway_outside_ip"] == AWS_T1
    assert tunnels[T2]["vpn_gateway_outside_ip"] == AWS_T2
    version = doc["ike_version"]  # what the scenario configured on both ends
    for name, t in tunnels.items():
        assert t["state"] == "up" and t["dataplane"] == "kernel", (name, t)
        assert t["ike"]["state"] == "established" and t["ike"]["version"] == version, name
        assert len(t["child_sas"]) == 1 and t["child_sas"][0]["udp_encap"] is encap, name
        assert (t["mtu"], t["mss"]) == (EXPECTED_MTU[encap][name], EXPECTED_MSS[encap][name])
    assert tunnels[T1]["child_sas"][0]["encryption"] == "aes128gcm16"
    assert tunnels[T2]["child_sas"][0]["integrity"] == "sha1"
    assert tunnels[T1]["active"] and not tunnels[T2]["active"]  # prefer-1
    assert "the kernel has ESP" in doc["status"]["daemon"]["dataplane_reason"]
    assert any("dataplane: kernel (configured" in line for line in doc["log_lines"])


def test_lan_pings_the_vpc_host_and_the_kernel_counts_it(doc: dict[str, Any]) -> None:
    assert doc["ping_rc"] == 0
    before, after = doc["xfrm_bytes"]["before"], doc["xfrm_bytes"]["after"]
    assert len(after) == 4  # one SA each way per tunnel
    # `ip -s xfrm state` (iproute2): the active tunnel's outbound SA carried the 5 echo
    # requests (84 bytes each), the inbound SAs the replies (AWS picks the tunnel).
    moved = {int(spi): after[spi] - before.get(spi, 0) for spi in after}
    tunnels = _tunnels(doc["status"])
    out_t1 = int(tunnels[T1]["child_sas"][0]["spi_out"], 16)
    ins = [int(t["child_sas"][0]["spi_in"], 16) for t in tunnels.values()]
    assert moved[out_t1] == 5 * 84, moved
    assert sum(moved[spi] for spi in ins) == 5 * 84, moved


def test_syn_through_the_kernel_datapath_carries_the_clamped_mss(doc: dict[str, Any]) -> None:
    mss = EXPECTED_MSS[doc["force_encap"]]
    syn = doc["syn"]
    # The LAN host offered 1460 (MTU 1500); the VPC host received tunnel 1's MSS, and the
    # SYN-ACK, back over either tunnel, was clamped too (to that tunnel's MSS).
    assert syn["mss_at_vpc_host"] == [mss[T1]], syn
    assert syn["lan_host_maxseg"] + TCP_TIMESTAMPS in (mss[T1], mss[T2]), syn
    counted = [line for line in doc["mangle"].splitlines() if "CGWD-MSS -o vpc01-t1" in line]
    assert len(counted) == 1 and counted[0].startswith("[1:60]"), doc["mangle"]
    assert any("MSS clamp: iptables-legacy" in line for line in doc["log_lines"]), doc["log_lines"]


def test_rekeys_by_either_side_lose_nothing(doc: dict[str, Any]) -> None:
    # CHILD_SA rekeyed by cgwd (`cgwd rekey`), then by charon; the IKE SA likewise.
    ping = doc["rekey_ping"]
    assert ping["sent"] >= 20 and ping["replies"] == ping["sent"], ping
    children = [set(c) for c in doc["rekey_children"]]
    for old, new in itertools.pairwise(children):
        assert new - old, children  # a new inbound SPI each time
    ikes = doc["rekey_ikes"]
    assert len(set(ikes)) == 3 and None not in ikes, ikes
    t1 = _tunnels(doc["rekey_status"])[T1]
    assert t1["state"] == "up" and t1["active"] and t1["child_sas"]
    if doc["ike_version"] == 2:  # make-before-break: the old SA goes at once
        assert all(len(c) == 1 for c in children), children
        assert {c["spi_in"] for c in t1["child_sas"]} == children[-1]
    # (IKEv1: charon's phase 1 "rekey" is a reauthentication that may still be replacing
    # Quick Mode SAs when the status is taken; the SPIs are not compared.)
    # The kernel holds exactly the SAs the status lists, one each way.
    listed = sum(len(t["child_sas"]) for t in _tunnels(doc["rekey_status"]).values())
    assert doc["rekey_sas_after"] == 2 * listed


def test_failover_when_tunnel_1s_endpoint_stops(doc: dict[str, Any]) -> None:
    ping = doc["failover_ping"]
    assert ping["sent"] >= 30 and ping["last_seq"] == ping["sent"], ping  # still flowing
    assert ping["longest_gap_seconds"] <= GRACEFUL_BOUND, ping
    after = _tunnels(doc["status_after_failover"])
    assert after[T1]["state"] != "up" and after[T2]["active"] and after[T2]["state"] == "up"
    child = after[T2]["child_sas"][0]
    before, now = doc["xfrm_bytes_failover"]["before"], doc["xfrm_bytes_failover"]["after"]
    for spi in (str(int(child["spi_out"], 16)), str(int(child["spi_in"], 16))):
        assert now[spi] >= before.get(spi, 0) + 25 * 84, (spi, before, now)


def test_failback_when_tunnel_1_returns(doc: dict[str, Any]) -> None:
    ping = doc["failback_ping"]
    assert ping["sent"] >= 20 and ping["last_seq"] == ping["sent"], ping
    assert ping["longest_gap_seconds"] <= FAILBACK_BOUND, ping


def test_failover_when_tunnel_1s_endpoint_dies_silently(doc: dict[str, Any]) -> None:
    assert doc["dead_peer_status_seconds"] <= DEAD_PEER_BOUND
    ping = doc["dead_peer_ping"]
    assert ping["last_seq"] == ping["sent"], ping  # flowing again over tunnel 2
    assert 1.0 <= ping["longest_gap_seconds"] <= DEAD_PEER_BOUND, ping
    after = _tunnels(doc["status_after_dead_peer"])
    assert after[T1]["state"] != "up" and after[T2]["active"]


def test_restart_after_a_crash_removes_the_old_state_and_comes_up(doc: dict[str, Any]) -> None:
    crashed = doc["after_crash"]
    assert crashed["sas"] == 2 and crashed["links"] == 2 and crashed["chain"], crashed
    removed = "\n".join(doc["restart_log"])
    for what in ("vti interface vpc01-t1", "vti interface vpc01-t2", "policy out 0.0.0.0/0"):
        assert what in removed, removed
    assert "removed the iptables-legacy chain CGWD-MSS a previous run left" in removed
    assert doc["restart_mangle"].count("-j CGWD-MSS") == 1  # one jump, not two
    assert doc["restart_ping_rc"] == 0


def test_sigterm_exits_0_and_leaves_nothing_of_cgwds(doc: dict[str, Any]) -> None:
    assert doc["exit_status"] == 0, doc["log_tail"]
    assert doc["stop_seconds"] < 6.0
    left = doc["leftovers"]
    assert left["xfrm_state"] == "" and left["xfrm_policy"] == "", left
    assert left["links"] == 0 and left["routes"] == "" and left["nft_tables"] == ""
    assert "CGWD-MSS" not in left["mangle"] and "CGWD-MSS" not in left["mangle6"]
    # Only what cgwd owns: the admin's rule in the same table and hook is still there.
    assert "-A FORWARD -o eth9 -m comment --comment admin -j ACCEPT" in left["mangle"]
    assert left["socket"] is False
    # cgwd deleted its IKE SA at the endpoint that was up.
    assert doc["charon2_sas_before_stop"] and doc["charon2_sas_after_stop"] == ""
    assert doc["log_problems"] == [] and doc["psk_in_log"] is False
