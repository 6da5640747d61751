"""Hostile input to established IKEv1 sessions: random, truncated and mutated datagrams
(also with the right cookies, so they reach decryption and the handlers) are dropped and
counted; nothing raises, and no unauthenticated message changes any SA."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from ikev1_pair import AWS_IP, CGW_IP, V1Pair, assert_tunnel_up

from cgwd.ike.v1.session import Outgoing

_PAIRS: list[V1Pair] = []
_RECORDED: list[bytes] = []


def _pair() -> V1Pair:
    """One established pair whose traffic (MM, QM, DPD, a rekey) was recorded."""
    if not _PAIRS:
        pair = V1Pair(seed=3)

        def record(sender: str, out: Outgoing) -> bool:
            if sender == "aws":
                _RECORDED.append(out.data)
            return True

        pair.filter = record
        pair.establish()
        for c in pair.aws.session.children.values():
            c.rekey_at = pair.now + 5
        pair.run_for(40)
        pair.filter = None
        _PAIRS.append(pair)
    return _PAIRS[0]


def _snapshot(pair: V1Pair) -> tuple[object, ...]:
    s = pair.cgw.session
    return (s.current, tuple(s.isakmp_sas), tuple(s.children), frozenset(pair.cgw.installed()))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_mutated_and_random_datagrams_are_dropped(data: st.DataObject) -> None:
    pair = _pair()
    before = _snapshot(pair)
    session = pair.cgw.session
    assert session.current is not None
    cookies = session.current.cky_i + session.current.cky_r
    kind = data.draw(st.sampled_from(["random", "mutated", "cookies", "truncated"]))
    if kind == "random":
        blob = data.draw(st.binary(max_size=400))
    else:
        base = bytearray(data.draw(st.sampled_from(_RECORDED)))
        if kind == "cookies":
            base[:16] = cookies
            base[19] = data.draw(st.sampled_from([2, 5, 32, 4, 1, 99]))
        for _ in range(data.draw(st.integers(min_value=1, max_value=4))):
            pos = data.draw(st.integers(min_value=16, max_value=len(base) - 1))
            base[pos] ^= data.draw(st.integers(min_value=1, max_value=255))
        if kind == "truncated":
            base = base[: data.draw(st.integers(min_value=0, max_value=len(base)))]
            if len(base) >= 28 and data.draw(st.booleans()):
                base[24:28] = len(base).to_bytes(4, "big")
        blob = bytes(base)
    port = data.draw(st.sampled_from([500, 4500]))
    session.receive_datagram(blob, (AWS_IP, port), (CGW_IP, port), pair.now)
    pair.cgw.outbox.extend(session.datagrams_to_send())
    pair.cgw.outbox.clear()  # whatever it answers does not matter here
    session.events()
    assert session.counters["internal_error"] == 0
    assert _snapshot(pair) == before


def test_still_working_after_the_fuzzing() -> None:
    pair = _pair()
    pair.pump()
    assert_tunnel_up(pair)
    pair.run_for(30)  # DPD and timers still run on the same SAs
    assert_tunnel_up(pair)
    assert pair.cgw.session.counters["internal_error"] == 0
    assert not pair.cgw.downs()


def test_replayed_authenticated_messages_change_nothing() -> None:
    """Every message AWS ever sent, replayed verbatim (authentic, but stale)."""
    pair = _pair()
    before = _snapshot(pair)
    for blob in _RECORDED:
        pair.cgw.session.receive_datagram(blob, (AWS_IP, 4500), (CGW_IP, 4500), pair.now)
    pair.cgw.session.datagrams_to_send()
    pair.cgw.session.events()
    assert _snapshot(pair) == before
    assert pair.cgw.session.counters["internal_error"] == 0


def test_replays_after_the_exchanges_are_forgotten_change_nothing() -> None:
    """A Quick Mode message 1 replayed long after its exchange ended is not a new one
    (message IDs are remembered for the ISAKMP SA's life)."""
    pair = _pair()
    pair.run_for(90)
    before = _snapshot(pair)
    for blob in _RECORDED:
        pair.cgw.session.receive_datagram(blob, (AWS_IP, 4500), (CGW_IP, 4500), pair.now)
    pair.cgw.session.datagrams_to_send()
    assert not [e for e in pair.cgw.session.events() if type(e).__name__ == "ChildSaInstalled"]
    assert _snapshot(pair) == before
    assert pair.cgw.session.counters["replayed_message_id"] >= 1
