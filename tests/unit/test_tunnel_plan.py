"""The per-tunnel plan: MTU/MSS per AWS's table, rekey before AWS, precedence of values."""

from __future__ import annotations

from dataclasses import dataclass, replace
from ipaddress import IPv4Address, IPv4Interface, IPv4Network
from pathlib import Path
from typing import Any

import pytest
from config_fixtures import PSK1, PSK2, connection
from hypothesis import given, settings
from hypothesis import strategies as st

from cgwd.config.aws import AwsVpnConnection, PhaseSettings
from cgwd.config.model import CgwdConfig, ConnectionConfig, DaemonConfig
from cgwd.config.tunnel_plan import (
    MtuMss,
    PlanError,
    check_connections,
    mtu_mss,
    plan_connection,
    rekey_plan,
)

# aws-behaviour.md §8, copied: suite -> ((MTU, MSS), (MTU, MSS) with NAT-T).
AWS_TABLE = {
    "aes128gcm16": ((1446, 1406), (1438, 1398)),
    "aes256gcm16": ((1446, 1406), (1438, 1398)),
    "aes128-sha1": ((1438, 1398), (1422, 1382)),
    "aes256-sha1": ((1438, 1398), (1422, 1382)),
    "aes128-sha256": ((1438, 1398), (1422, 1382)),
    "aes256-sha256": ((1438, 1398), (1422, 1382)),
    "aes128-sha384": ((1422, 1382), (1422, 1382)),
    "aes256-sha384": ((1422, 1382), (1422, 1382)),
    "aes128-sha512": ((1422, 1382), (1406, 1366)),
    "aes256-sha512": ((1422, 1382), (1406, 1366)),
}


@pytest.mark.parametrize("suite", sorted(AWS_TABLE))
@pytest.mark.parametrize("natt", [False, True])
def test_mtu_mss_reproduces_the_aws_table(suite: str, natt: bool) -> None:
    mtu, mss = AWS_TABLE[suite][natt]
    result = mtu_mss(suite, natt)
    assert (result.mtu, result.mss) == (mtu, mss)
    assert result.mss_ipv6 == mss - 20  # IPv6 inner MSS: 20 less


def test_mtu_mss_accepts_suite_objects_and_aws_pairs() -> None:
    @dataclass
    class Suite:
        name: str

    assert mtu_mss(Suite("aes256-sha512"), True).mtu == 1406
    assert mtu_mss(("AES128-GCM-16", None), False).mtu == 1446
    assert mtu_mss(("AES256", "SHA2-384"), True).mss == 1382


def test_mtu_mss_on_a_pppoe_path() -> None:
    # 1492 - 20 IP - 8 ESP - 8 IV - 16 ICV = 1440 -> 4-byte aligned payload+2 -> 1438.
    assert mtu_mss("aes128gcm16", False, outer_mtu=1492).mtu == 1438
    # 1492 - 20 - 8 UDP - 8 - 16 IV - 12 ICV = 1428 -> 16-byte blocks: 1424 - 2 = 1422.
    assert mtu_mss("aes128-sha1", True, outer_mtu=1492).mtu == 1406 + 16


def test_default_rekey_times_match_the_guidance() -> None:
    # aws-behaviour.md §4: Phase 2 <= 3000 s, Phase 1 <= 28000 s, jitter downwards only.
    p2 = rekey_plan(3600, 270, 100, what="CHILD SA")
    assert p2.rekey_max == 3000 and p2.aws_earliest == 3060
    assert p2.rekey_min == 3000 - 180
    p1 = rekey_plan(28800, 270, 100, what="IKE SA")
    assert p1.rekey_max == 28800 - 540 - 288 <= 28000
    assert p1.rekey_min < p1.rekey_max
    assert p2.rekey_after(0.0) == 3000 and p2.rekey_after(0.999999) >= p2.rekey_min
    assert "between 3060 and 3330 s of its 3600 s lifetime" in p2.reason


def test_extreme_aws_margins_fall_back_to_half_the_lifetime() -> None:
    plan = rekey_plan(900, 450, 100, what="CHILD SA")
    assert plan.aws_earliest == 0
    assert plan.rekey_max == 450 and 0 < plan.rekey_min < 450
    assert "collision" in plan.reason


@settings(max_examples=300, deadline=None)
@given(
    p2=st.integers(900, 3600),
    margin_frac=st.floats(0, 1),
    fuzz=st.integers(0, 100),
)
def test_rekey_comes_before_aws_whenever_possible(p2: int, margin_frac: float, fuzz: int) -> None:
    margin = 60 + int((p2 // 2 - 60) * margin_frac)
    plan = rekey_plan(p2, margin, fuzz, what="CHILD SA")
    assert 1 <= plan.rekey_min <= plan.rekey_max < p2
    # AWS's earliest rekey: lifetime - margin * (1 + fuzz).
    earliest = p2 - margin - margin * fuzz / 100
    if plan.rekey_max > p2 // 2:
        assert plan.rekey_max + 60 <= earliest
    else:
        assert plan.rekey_max == p2 // 2


# --- planning a connection ----------------------------------------------------------------


def conn(**kw: Any) -> ConnectionConfig:
    base: dict[str, Any] = {"name": "vpc01", "aws_config": "/etc/cgwd/vpn.txt"}
    return ConnectionConfig.model_validate(base | kw)


def plan(aws: AwsVpnConnection | None = None, daemon: DaemonConfig | None = None, **kw: Any):  # type: ignore[no-untyped-def]
    return plan_connection(conn(**kw), aws or connection(), daemon or DaemonConfig())


def test_addresses_interfaces_and_defaults() -> None:
    p = plan(routes=["10.99.0.0/16"])
    t1, t2 = p.tunnels
    assert (t1.interface, t2.interface) == ("vpc01-t1", "vpc01-t2")
    assert t1.local_inside == IPv4Interface("169.254.141.38/30")
    assert t1.remote_inside == IPv4Address("169.254.141.37")
    assert t2.local_inside == IPv4Interface("169.254.27.182/30")
    assert t1.remote_address == IPv4Address("203.0.113.66")
    assert t1.identity == IPv4Address("198.51.100.92") and t1.local_address is None
    assert t1.psk.reveal() == PSK1.encode() and t2.psk.reveal() == PSK2.encode()
    assert t1.replay_window == 1024
    assert (t1.dpd.interval, t1.dpd.retries, t1.dpd.dead_after) == (10, 3, 30)
    assert (t1.phase1.lifetime, t1.phase2.lifetime) == (28800, 3600)
    assert t1.dataplane == "auto"
    assert t1.ike_version == "ikev1"  # what the sample file says
    # Before negotiation: the worst case of the offered suites with NAT-T (SHA2-512).
    assert (t1.mtu, t1.mss, t1.mss_ipv6) == (1406, 1366, 1346)
    assert t1.mtu_override is None and t1.mss_override is None
    assert t1.mtu_mss_for("aes128gcm16", False).mtu == 1446


def test_custom_interface_names() -> None:
    p = plan(interfaces=["aws0", "aws1"])
    assert [t.interface for t in p.tunnels] == ["aws0", "aws1"]


@pytest.mark.parametrize(
    ("preference", "metrics", "multipath"),
    [("prefer-1", (100, 101), False), ("prefer-2", (101, 100), False), ("ecmp", (100, 100), True)],
)
def test_route_metrics_follow_the_preference(
    preference: str, metrics: tuple[int, int], multipath: bool
) -> None:
    p = plan(routes=["10.99.0.0/16", "10.98.0.0/16"], tunnel_preference=preference)
    for t, metric in zip(p.tunnels, metrics, strict=True):
        assert [r.network for r in t.routes] == [
            IPv4Network("10.99.0.0/16"),
            IPv4Network("10.98.0.0/16"),
        ]
        assert {(r.metric, r.multipath) for r in t.routes} == {(metric, multipath)}


def test_ike_version_precedence() -> None:
    assert plan(ike_version=2).tunnels[0].ike_version == "ikev2"
    unknown = connection(ike_version=None)
    t = plan(unknown).tunnels[0]
    assert t.ike_version == "ikev2" and "default" in t.ike_version_reason
    assert plan(unknown, ike_version=1).tunnels[0].ike_version == "ikev1"
    v2_only = replace(
        unknown,
        tunnels=tuple(replace(x, ike_versions_allowed=("ikev2",)) for x in unknown.tunnels),  # type: ignore[arg-type]
    )
    assert plan(v2_only).tunnels[0].ike_version == "ikev2"
    with pytest.raises(PlanError) as info:
        plan(v2_only, ike_version=1)
    assert info.value.key == ("ike_version",)


def test_config_overrides_file_values_and_warns_for_ikev1_lifetimes() -> None:
    p = plan(phase1_lifetime=14400, phase2_lifetime=1800, dpd_interval=5, dpd_retries=6)
    t = p.tunnels[0]
    assert (t.phase1.lifetime, t.phase2.lifetime) == (14400, 1800)
    assert (t.dpd.interval, t.dpd.retries) == (5, 6)
    assert "from cgwd.toml" in t.dpd.reason
    assert any("must match AWS's" in w for w in p.warnings)


def test_rekey_margin_and_fuzz_from_the_file() -> None:
    aws = connection()
    custom = replace(
        aws,
        tunnels=tuple(
            replace(t, rekey_margin_seconds=600, rekey_fuzz_percentage=0) for t in aws.tunnels
        ),  # type: ignore[arg-type]
    )
    t = plan(custom).tunnels[0]
    assert t.phase2.aws_earliest == 3000 and t.phase2.rekey_max == 2940
    with pytest.raises(PlanError) as info:
        plan(custom, phase2_lifetime=1000)
    assert info.value.key == ("aws_rekey_margin",)


def test_mtu_and_mss_overrides() -> None:
    t = plan(mtu=1400).tunnels[0]
    assert (t.mtu, t.mss, t.mss_ipv6) == (1400, 1360, 1340)
    assert t.mtu_mss_for("aes128gcm16", False) == MtuMss(1400, 1360, 1340)
    assert "fragmented" not in t.mtu_reason
    assert "fragmented after encryption" in plan(mtu=1440).tunnels[0].mtu_reason
    # Only the MSS fixed: the MTU still follows the negotiated suite.
    t = plan(mss=1300).tunnels[0]
    assert (t.mtu, t.mss, t.mss_ipv6) == (1406, 1300, 1280)
    assert t.mtu_mss_for("aes128gcm16", False) == MtuMss(1446, 1300, 1280)
    t = plan(mtu=1400, mss=1300).tunnels[0]
    assert t.mtu_mss_for("aes256-sha512", True) == MtuMss(1400, 1300, 1280)


def test_dataplane_and_local_address() -> None:
    t = plan(dataplane="userspace", local_address="10.0.0.5").tunnels[0]
    assert t.dataplane == "userspace" and t.local_address == IPv4Address("10.0.0.5")
    assert t.identity == IPv4Address("198.51.100.92")  # behind NAT the ID stays public
    assert plan(daemon=DaemonConfig(dataplane="kernel")).tunnels[0].dataplane == "kernel"


def test_planning_errors_carry_the_key() -> None:
    with pytest.raises(ValueError, match="link-local"):
        conn(routes=["169.254.141.0/24"])
    assert plan(routes=["0.0.0.0/0"]).tunnels[0].routes[0].network == IPv4Network("0.0.0.0/0")
    with pytest.raises(PlanError) as info:
        plan(connection(psk=None))
    assert info.value.key == ("aws_config",)
    no_inside = connection()
    no_inside = replace(
        no_inside,
        tunnels=tuple(replace(t, inside_cidr=None) for t in no_inside.tunnels),  # type: ignore[arg-type]
    )
    with pytest.raises(PlanError, match="no inside addresses"):
        plan(no_inside)
    with pytest.raises(PlanError) as info:
        plan(connection_id="vpn-00000000000000000")
    assert info.value.key == ("connection_id",)


def test_warnings() -> None:
    assert any("no routes" in w for w in plan().warnings)
    covering = plan(routes=["0.0.0.0/0"]).warnings
    assert any("covers AWS endpoint 203.0.113.66" in w for w in covering)
    assert any(
        "AWS ECMP" in w for w in plan(routes=["10.0.0.0/8"], tunnel_preference="ecmp").warnings
    )


def test_psk_override_and_no_secret_in_reprs() -> None:
    p = plan(pre_shared_keys=[PSK2, PSK1])
    assert p.tunnels[0].psk.reveal() == PSK2.encode()
    assert any("differs from the AWS file" in w for w in p.warnings)
    text = repr(p) + str(p.tunnels) + " ".join(p.warnings)
    assert PSK1 not in text and PSK2 not in text


def test_check_connections_refuses_shared_endpoints_and_inside_ranges() -> None:
    a = plan()
    b = plan_connection(conn(name="vpc02"), connection(), DaemonConfig())
    with pytest.raises(PlanError) as info:
        check_connections([a, b])
    assert info.value.key == ("connection", 1, "aws_config")
    d = plan_connection(
        conn(name="vpc02"),
        connection(
            aws_ips=("192.0.2.1", "192.0.2.2"), insides=("169.254.1.0/30", "169.254.9.0/30")
        ),
        DaemonConfig(),
    )
    check_connections([a, d])


def test_whole_config_model_round_trip() -> None:
    cfg = CgwdConfig.model_validate({"connection": [{"name": "a", "aws_config": Path("/x")}]})
    assert cfg.connections[0].interface_names() == ("a-t1", "a-t2")


# --- robustness: whatever a valid import holds, planning fails only with PlanError ----------

ENC = st.sampled_from(["AES128", "AES256", "AES128-GCM-16", "AES256-GCM-16"])
INTEG = st.sampled_from(["SHA1", "SHA2-256", "SHA2-384", "SHA2-512"])


@st.composite
def phases(draw: st.DrawFn, groups: list[int], lifetimes: tuple[int, int]) -> PhaseSettings:
    enc = draw(st.lists(ENC, max_size=4, unique=True))
    integ = draw(st.lists(INTEG, max_size=4, unique=True))
    dh = draw(st.lists(st.sampled_from(groups), max_size=4, unique=True))
    return PhaseSettings(
        enc[0] if enc else None,
        integ[0] if integ else None,
        dh[0] if dh else None,
        draw(st.none() | st.integers(*lifetimes)),
        tuple(enc),
        tuple(integ),
        tuple(dh),
    )


@st.composite
def imports(draw: st.DrawFn) -> AwsVpnConnection:
    aws = connection(ike_version=draw(st.sampled_from([None, "ikev1", "ikev2"])))
    fmt = draw(st.sampled_from(["aws-generic-text", "aws-cli-json", "aws-strongswan"]))
    tunnels = []
    for t in aws.tunnels:
        tunnels.append(
            replace(
                t,
                phase1=draw(phases([2, *range(14, 25)], (900, 28800))),
                phase2=draw(phases([2, 5, *range(14, 25)], (900, 3600))),
                ike_versions_allowed=tuple(
                    draw(st.lists(st.sampled_from(["ikev1", "ikev2"]), max_size=2, unique=True))
                ),
                rekey_margin_seconds=draw(st.none() | st.integers(60, 1800)),
                rekey_fuzz_percentage=draw(st.none() | st.integers(0, 100)),
                pre_shared_key=draw(st.sampled_from([t.pre_shared_key, None])),
                inside_cidr=draw(st.sampled_from([t.inside_cidr, None])),
            )
        )
    return replace(aws, format=fmt, tunnels=(tunnels[0], tunnels[1]))  # type: ignore[arg-type]


SETTINGS = st.fixed_dictionaries(
    {},
    optional={
        "ike_version": st.sampled_from([1, 2]),
        "proposals": st.sampled_from(["aws", "file"]),
        "phase1_lifetime": st.integers(900, 28800),
        "phase2_lifetime": st.integers(900, 3600),
        "aws_rekey_margin": st.integers(60, 1800),
        "mtu": st.integers(576, 1500),
        "pre_shared_keys": st.just([PSK1, PSK2]),
    },
)


@settings(max_examples=300, deadline=None)
@given(aws=imports(), settings_=SETTINGS)
def test_planning_any_import_raises_only_plan_error(
    aws: AwsVpnConnection, settings_: dict[str, Any]
) -> None:
    try:
        config = conn(**settings_)
    except ValueError:
        return  # the model refused the combination (e.g. phase 2 >= phase 1)
    try:
        result = plan_connection(config, aws, DaemonConfig())
    except PlanError as exc:
        assert exc.key and exc.message
        return
    for t in result.tunnels:
        assert t.proposals.esp and (t.proposals.ike or t.proposals.ikev1)
        assert 1 <= t.phase2.rekey_min <= t.phase2.rekey_max < t.phase2.lifetime
        assert 576 <= t.mtu <= 1500
