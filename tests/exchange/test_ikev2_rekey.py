"""CREATE_CHILD_SA in memory: Child and IKE SA rekeys from either side, collisions decided
by the nonce rule, make-before-break with a continuous packet stream."""

from __future__ import annotations

import pytest
from ikev2_pair import AWS_IP, CGW_IP, Pair, aws_tunnel, config_for

from cgwd.ike.constants import ExchangeType
from cgwd.ike.events import ChildSaInstalled, IkeEstablished, LogEvent
from cgwd.ike.v2.message import decode_header
from cgwd.ike.v2.sa import IkeSessionConfig
from cgwd.ike.v2.session import Outgoing


def _cfg(local: str, remote: str, child: float, ike: float, **kw: object) -> IkeSessionConfig:
    return config_for(
        local,
        remote,
        child_rekey_time=child,
        child_lifetime=child * 3,
        ike_rekey_time=ike,
        ike_lifetime=ike * 3,
        rekey_jitter=0.0,
        dpd_delay=1000.0,
        **kw,
    )


def _pair(cgw: tuple[float, float], aws: tuple[float, float], seed: int = 1) -> Pair:
    return Pair(_cfg(CGW_IP, AWS_IP, *cgw), _cfg(AWS_IP, CGW_IP, *aws), seed=seed)


def _one_matching_child(pair: Pair) -> tuple[int, int]:
    c, a = pair.cgw.session.status(), pair.aws.session.status()
    assert len(c["children"]) == 1 and len(a["children"]) == 1, (c["children"], a["children"])
    cc, ac = c["children"][0], a["children"][0]
    assert cc["spi_in"] == ac["spi_out"] and cc["spi_out"] == ac["spi_in"]
    assert c["ike"]["spi_i"] == a["ike"]["spi_i"] and c["ike"]["spi_r"] == a["ike"]["spi_r"]
    # Exactly the current SAs are installed on each side.
    for ep in (pair.cgw, pair.aws):
        assert len(ep.installed()) == 2, ep.installed()
    return int(cc["spi_in"], 16), int(cc["spi_out"], 16)


@pytest.mark.parametrize("side", ["cgw", "aws"])
def test_child_rekey_from_either_side_loses_nothing(side: str) -> None:
    fast, slow = (100.0, 10_000.0), (10_000.0, 10_000.0)
    pair = _pair(fast if side == "cgw" else slow, fast if side == "aws" else slow)
    pair.establish()
    before = _one_matching_child(pair)
    pair.run_for(150)
    after = _one_matching_child(pair)
    assert set(before).isdisjoint(after)
    rekeyer = pair.cgw if side == "cgw" else pair.aws
    assert "child_rekeyed" in rekeyer.log_names()
    # PFS: the rekeyed child used a DH group (the strongest both offer: ECP-521).
    assert rekeyer.session.status()["children"][0]["pfs_group"] == 21
    assert pair.lost_packets == 0 and pair.sent_packets > 10
    pair.assert_make_before_break()
    installs = [e for e in rekeyer.events if isinstance(e, ChildSaInstalled)]
    assert installs[-1].rekey_of is not None


def test_repeated_rekeys_of_both_kinds_from_both_sides() -> None:
    pair = _pair((100.0, 330.0), (140.0, 470.0))
    pair.establish()
    pair.run_for(2000)
    _one_matching_child(pair)
    c_names, a_names = pair.cgw.log_names(), pair.aws.log_names()
    assert c_names.count("child_rekeyed") >= 10 and a_names.count("child_rekeyed") >= 10
    assert c_names.count("ike_rekeyed") >= 5
    assert pair.lost_packets == 0
    pair.assert_make_before_break()
    assert not pair.cgw.downs() and not pair.aws.downs()
    assert len(pair.cgw.session.ike_sas) == 1 and len(pair.aws.session.ike_sas) == 1


def test_child_rekey_collision_keeps_one_child_for_every_nonce_order() -> None:
    deleted_by: set[str] = set()
    for seed in range(1, 9):
        pair = _pair((100.0, 10_000.0), (100.0, 10_000.0), seed=seed)
        pair.establish()
        pair.run_for(150)
        _one_matching_child(pair)
        for ep in (pair.cgw, pair.aws):
            assert "child_rekey_collision" in ep.log_names(), ep.log_names()
            if "redundant_child_deleted" in ep.log_names():
                deleted_by.add(ep.name)
        assert pair.lost_packets == 0, seed
        assert not pair.cgw.downs() and not pair.aws.downs()
        # The tunnel keeps working: the next rekey is an ordinary one.
        pair.run_for(120)
        _one_matching_child(pair)
        pair.assert_make_before_break()
    # Both orderings of the four nonces occurred and each side lost the tie-break sometimes.
    assert deleted_by == {"cgw", "aws"}


def test_ike_rekey_from_either_side_and_collision() -> None:
    for cgw_ike, aws_ike in ((100.0, 10_000.0), (10_000.0, 100.0), (100.0, 100.0)):
        for seed in (1, 2, 3):
            pair = _pair((10_000.0, cgw_ike), (10_000.0, aws_ike), seed=seed)
            pair.establish()
            first = pair.cgw.session.status()["ike"]["spi_i"]
            pair.run_for(150)
            child = _one_matching_child(pair)
            assert pair.cgw.session.status()["ike"]["spi_i"] != first
            assert len(pair.cgw.session.ike_sas) == 1 and len(pair.aws.session.ike_sas) == 1
            rekeys = [e for e in pair.cgw.events if isinstance(e, IkeEstablished) and e.rekey]
            assert rekeys
            assert not pair.cgw.downs() and not pair.aws.downs()
            if cgw_ike == aws_ike:  # both rekeyed at once: one redundant IKE SA deleted
                names = pair.cgw.log_names() + pair.aws.log_names()
                assert "ike_rekey_collision" in names
                assert names.count("redundant_ike_deleted") == 1
            # Children moved over and the new IKE SA carries further exchanges.
            pair.cgw.session.children[next(iter(pair.cgw.session.children))].rekey_at = pair.now
            pair.run_for(5)
            assert _one_matching_child(pair) != child
            assert pair.lost_packets == 0
            pair.assert_make_before_break()


def _is(out: Outgoing, exchange: int, response: bool) -> bool:
    h = decode_header(out.data)
    return h.exchange_type == exchange and h.response == response


@pytest.mark.parametrize("held", ["cgw_response", "cgw_request"])
def test_collision_when_the_winner_deletes_before_the_loser_completes(held: str) -> None:
    """strongSwan's order: the peer completes its rekey and deletes the old SA before our
    exchange completes (our response held back), or before it even sees our request.
    Whatever the nonces say, one Child SA must remain on both sides, and it must carry
    traffic both ways."""
    outcomes: set[str] = set()
    for seed in range(1, 9):
        pair = _pair((100.0, 10_000.0), (100.0, 10_000.0), seed=seed)
        pair.establish()
        state = {"armed": True}

        def hold(sender: str, out: Outgoing, state: dict[str, bool] = state) -> bool:
            if not state["armed"]:
                return False
            if held == "cgw_response":
                hit = sender == "aws" and _is(out, ExchangeType.CREATE_CHILD_SA, True)
            else:
                hit = sender == "cgw" and _is(out, ExchangeType.CREATE_CHILD_SA, False)
            if hit:
                state["armed"] = False
            return hit

        pair.hold = hold
        pair.run_for(100.5)
        assert pair.held, seed
        pair.pump()
        pair.release()
        pair.run_for(40)  # any grace period for the peer's delete passes
        _one_matching_child(pair)
        assert pair.lost_packets <= 2, seed  # the held exchange itself may race a packet
        assert not pair.cgw.downs() and not pair.aws.downs()
        outcomes.add("cgw" if "redundant_child_deleted" in pair.cgw.log_names() else "aws-or-none")
        pair.run_for(120)  # and the next rekey is an ordinary one
        _one_matching_child(pair)
        pair.assert_make_before_break()


def test_child_rekey_queued_behind_an_ike_rekey_still_happens() -> None:
    """Our Child rekey falls due while our IKE SA rekey is in flight (its response held
    back): it waits in the old IKE SA's queue and must move to the new IKE SA instead of
    being lost (the Child SA would otherwise just expire)."""
    pair = _pair((100.0, 99.9), (10_000.0, 10_000.0))
    pair.establish()
    first = _one_matching_child(pair)
    state = {"armed": True}

    def hold(sender: str, out: Outgoing) -> bool:
        if state["armed"] and sender == "aws" and _is(out, ExchangeType.CREATE_CHILD_SA, True):
            state["armed"] = False
            return True
        return False

    pair.hold = hold
    pair.run_for(100.5)
    assert pair.held
    assert pair.cgw.session.status()["phase1"] == "Rekeying"
    pair.release()
    pair.run_for(10)
    second = _one_matching_child(pair)
    assert set(first).isdisjoint(second)
    assert "ike_rekeyed" in pair.cgw.log_names() and "child_rekeyed" in pair.cgw.log_names()
    pair.run_for(400)
    assert not pair.cgw.downs() and "child_expired" not in pair.cgw.log_names()
    pair.assert_make_before_break()


def test_rekey_times_are_jittered_downwards_only() -> None:
    cfg = config_for(CGW_IP, AWS_IP, child_rekey_time=1000.0, ike_rekey_time=5000.0)
    seen_child, seen_ike = set(), set()
    for seed in range(20):
        pair = Pair(cfg, seed=seed)
        pair.establish()
        st = pair.cgw.session.status(pair.now)
        child, ike = st["children"][0]["rekey_in"], st["ike"]["rekey_in"]
        assert 900.0 <= child <= 1000.0 and 4500.0 <= ike <= 5000.0  # rekey_jitter = 0.1
        seen_child.add(child)
        seen_ike.add(ike)
    assert len(seen_child) > 10 and len(seen_ike) > 10  # actually jittered


def test_pfs_group_mismatch_is_reported_and_the_tunnel_recovers() -> None:
    """aws-behaviour.md §4's PFS trap: IKE_AUTH's Child SA needs no PFS, so a PFS group
    mismatch shows only at the first rekey. It is logged (child_create_failed, naming the
    PFS groups); once the Child SA expires, a new IKE SA brings a new Child SA."""
    t_c = aws_tunnel(p1=(("AES128",), ("SHA1",), (14,)), p2=(("AES128",), ("SHA1",), (14,)))
    t_a = aws_tunnel(p1=(("AES128",), ("SHA1",), (14,)), p2=(("AES128",), ("SHA1",), (19,)))
    pair = Pair(
        config_for(CGW_IP, AWS_IP, t_c, child_rekey_time=100.0, child_lifetime=300.0,
                   rekey_jitter=0.0),
        config_for(AWS_IP, CGW_IP, t_a, child_rekey_time=10_000.0, child_lifetime=30_000.0),
    )  # fmt: skip
    pair.establish()
    pair.run_for(250)
    failures = [
        e for e in pair.cgw.events if isinstance(e, LogEvent) and e.name == "child_create_failed"
    ]
    assert failures and "PFS" in failures[0].message
    assert pair.cgw.session.status()["phase2"] == "Established"  # the old one still works
    pair.run_for(100)  # lifetime reached: down, then up again with a fresh IKE SA
    # Whichever end first fails to create a Child SA over the IKE SA deletes it.
    (down,) = pair.cgw.downs()
    assert down.reason in ("child_create_failed", "deleted_by_peer")
    pair.run_for(10)
    assert pair.cgw.session.status()["phase2"] == "Established"
    _one_matching_child(pair)


def test_responder_of_a_child_rekey_makes_before_it_breaks() -> None:
    """strongSwan/AWS's order as rekey initiator: CREATE_CHILD_SA, then DELETE of the old
    Child SA. Our dataplane operations must be: new inbound, new outbound (current), then
    the old outbound and the old inbound, in that order."""
    pair = _pair((10_000.0, 10_000.0), (100.0, 10_000.0))
    pair.establish()
    old_in, old_out = _one_matching_child(pair)
    start = len(pair.cgw.dataplane.ops)
    pair.run_for(150)
    new_in, new_out = _one_matching_child(pair)
    ops = [(op, sa.direction, sa.spi) for op, sa in pair.cgw.dataplane.ops[start:]]
    assert ops == [
        ("add", "in", new_in),
        ("add", "out", new_out),
        ("remove", "out", old_out),
        ("remove", "in", old_in),
    ]
    pair.assert_make_before_break()
