"""Leaf parts of the IKEv2 engine: backoff schedules, negotiation, task manager, states."""

from __future__ import annotations

from ipaddress import IPv4Address

import pytest

from cgwd.ike.retransmit import (
    DPD_POLICY,
    ReconnectBackoff,
    RetransmitPolicy,
    jitter_from_bytes,
)
from cgwd.ike.v2 import negotiation as n
from cgwd.ike.v2.states import (
    CHILD_MOVES,
    IKE_MOVES,
    ChildEv,
    ChildState,
    IkeEv,
    IkeState,
    LocalProtocolError,
    status_word,
    step,
)
from cgwd.ike.v2.task_manager import (
    GiveUp,
    RequestKind,
    Retransmit,
    TaskManager,
    redundant_exchange,
)


def test_retransmit_intervals_double_and_cap() -> None:
    p = RetransmitPolicy(initial=1.0, factor=2.0, max_interval=5.0, tries=4)
    assert [p.interval(k) for k in range(1, 6)] == [1.0, 2.0, 4.0, 5.0, 5.0]
    assert not p.gives_up_after(4)
    assert p.gives_up_after(5)
    assert p.total_time() == 17.0


def test_dpd_policy_concludes_in_about_thirty_seconds() -> None:
    assert DPD_POLICY.total_time() == 30.0


def test_reconnect_backoff_caps_and_jitters_downwards() -> None:
    b = ReconnectBackoff(base=1.0, factor=2.0, cap=60.0, jitter_fraction=0.5)
    assert b.delay(0, 0.0) == 0.0
    assert [b.delay(k, 0.0) for k in (1, 2, 3, 7, 100)] == [1.0, 2.0, 4.0, 60.0, 60.0]
    assert b.delay(7, 0.5) == 45.0
    with pytest.raises(ValueError):
        b.delay(1, 1.0)
    assert 0.0 <= jitter_from_bytes(b"\xff\xff\xff\xff") < 1.0
    assert jitter_from_bytes(b"\x00\x00") == 0.0


def _t(ttype: int, tid: int, bits: int | None = None) -> n.Transform:
    return n.Transform(ttype, tid, bits)


GCM256 = _t(n.ENCR, 20, 256)
CBC128 = _t(n.ENCR, 12, 128)
CBC256 = _t(n.ENCR, 12, 256)
SHA1_96 = _t(n.INTEG, 2)
SHA256_128 = _t(n.INTEG, 12)
NO_ESN = _t(n.ESN, 0)


def _esp(num: int, *ts: n.Transform) -> n.Proposal:
    return n.Proposal(num, n.PROTO_ESP, b"\x00\x00\x01\x00", ts)


def test_select_prefers_our_order_and_keeps_peer_number_and_spi() -> None:
    ours = [_esp(1, GCM256, NO_ESN), _esp(2, CBC256, CBC128, SHA256_128, SHA1_96, NO_ESN)]
    peer = [
        n.Proposal(1, n.PROTO_ESP, b"abcd", (CBC128, SHA1_96, NO_ESN)),
        n.Proposal(2, n.PROTO_ESP, b"abcd", (GCM256, NO_ESN)),
    ]
    chosen = n.select_proposal(peer, ours)
    assert chosen == n.Proposal(2, n.PROTO_ESP, b"abcd", (GCM256, NO_ESN))
    assert n.accept_choice([chosen], peer) == chosen


def test_key_length_must_match() -> None:
    ours = [_esp(1, CBC256, SHA1_96, NO_ESN)]
    peer = [_esp(1, CBC128, SHA1_96, NO_ESN)]
    assert n.select_proposal(peer, ours) is None


def test_integ_none_equals_absent_and_dh_stripped_in_ike_auth() -> None:
    ours = [_esp(1, GCM256, NO_ESN, _t(n.DH, 19))]
    peer = [_esp(1, GCM256, _t(n.INTEG, 0), NO_ESN)]
    assert n.select_proposal(peer, ours) is None  # DH 19 vs none
    chosen = n.select_proposal(peer, ours, strip_dh=True)
    assert chosen is not None and chosen.single(n.INTEG) is None
    assert chosen.single(n.ENCR) == GCM256


def test_accept_choice_rejects_unoffered_or_multiple_transforms() -> None:
    offered = [_esp(1, CBC128, SHA1_96, NO_ESN)]
    assert n.accept_choice([_esp(1, CBC256, SHA1_96, NO_ESN)], offered) is None
    assert n.accept_choice([_esp(2, CBC128, SHA1_96, NO_ESN)], offered) is None
    assert n.accept_choice([_esp(1, CBC128, SHA1_96, SHA256_128, NO_ESN)], offered) is None
    assert n.accept_choice([], offered) is None


def test_dh_groups_in_order() -> None:
    ps = [
        n.Proposal(1, n.PROTO_IKE, b"", (_t(n.DH, 21), _t(n.DH, 19))),
        n.Proposal(2, n.PROTO_IKE, b"", (_t(n.DH, 19), _t(n.DH, 14), _t(n.DH, 0))),
    ]
    assert n.dh_groups(ps) == [21, 19, 14]


def test_narrowing() -> None:
    net = n.Selector(IPv4Address("10.0.0.0"), IPv4Address("10.0.255.255"))
    assert n.narrow([n.ANY_IPV4], [net]) == [net]
    assert n.narrow([net], [n.ANY_IPV4]) == [net]
    other = n.Selector(IPv4Address("192.0.2.0"), IPv4Address("192.0.2.255"))
    assert n.narrow([other], [net]) == []
    assert n.within([net], [n.ANY_IPV4])
    assert not n.within([n.ANY_IPV4], [net])
    tcp = n.Selector(IPv4Address(0), IPv4Address(0xFFFFFFFF), 6, 80, 80)
    assert n.intersect(tcp, n.Selector(IPv4Address(0), IPv4Address(5), 17)) is None
    assert str(n.ANY_IPV4) == "0.0.0.0/0"


class _Task:
    def __init__(self, name: str, policy: RetransmitPolicy) -> None:
        self.name = name
        self.policy = policy


def test_task_manager_window_retransmit_and_give_up() -> None:
    tm: TaskManager[_Task] = TaskManager()
    a = _Task("a", RetransmitPolicy(initial=1.0, factor=2.0, max_interval=4.0, tries=2))
    b = _Task("b", a.policy)
    tm.queue(a)
    tm.queue(b)
    assert tm.next_task() is a
    assert tm.sent(a, b"req-a", 10.0) == 0
    assert tm.next_task() is None  # window of one
    assert tm.next_deadline() == 11.0
    assert tm.on_timer(10.5) is None
    assert tm.on_timer(11.0) == Retransmit(b"req-a", 0, 2)
    assert tm.next_deadline() == 13.0
    assert tm.on_timer(13.0) == Retransmit(b"req-a", 0, 3)
    assert tm.on_timer(17.0) == GiveUp(a, 0)
    assert tm.next_deadline() is None
    assert tm.next_task() is b
    tm.sent(b, b"req-b", 20.0)
    assert tm.matches_response(1) is None
    assert tm.matches_response(0) is b
    tm.complete()
    assert tm.next_request_mid == 1


def test_task_manager_peer_requests_and_cache() -> None:
    tm: TaskManager[_Task] = TaskManager()
    assert tm.classify_request(0) is RequestKind.NEW
    assert tm.classify_request(1) is RequestKind.INVALID
    tm.answered(0, b"resp0")
    assert tm.classify_request(0) is RequestKind.RETRANSMIT
    assert tm.cached_response() == b"resp0"
    assert tm.classify_request(1) is RequestKind.NEW
    tm.answered(1, b"resp1")
    assert tm.classify_request(0) is RequestKind.INVALID


def test_nonce_rule() -> None:
    # RFC 7296 §2.8.1: the exchange holding the lowest of the four nonces made the redundant SA.
    assert redundant_exchange((b"\x05", b"\x09"), (b"\x07", b"\x06")) == "ours"
    assert redundant_exchange((b"\x05", b"\x09"), (b"\x07", b"\x01")) == "theirs"
    assert redundant_exchange((b"\x01\x00", b"\x09"), (b"\x01", b"\x09")) == "theirs"


def test_state_tables() -> None:
    s = step(IKE_MOVES, IkeState.CONNECTING, IkeEv.AUTHENTICATED)
    assert s is IkeState.ESTABLISHED and status_word(s) == "Established"
    with pytest.raises(LocalProtocolError):
        step(IKE_MOVES, IkeState.DEAD, IkeEv.AUTHENTICATED)
    c = step(CHILD_MOVES, ChildState.INSTALLED, ChildEv.REKEY_STARTED)
    assert status_word(c) == "Rekeying"
    assert status_word(None) == "Down"
    for table in (IKE_MOVES, CHILD_MOVES):
        for moves in table.values():  # type: ignore[attr-defined]
            for dst in moves.values():
                assert dst in table
