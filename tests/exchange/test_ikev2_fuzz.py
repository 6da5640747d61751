"""Bad input against the IKEv2 exchange handlers (not just the codec).

Three levels: arbitrary datagrams; byte mutations of every message of a real exchange;
and, deepest, well-formed but nonsensical payload combinations sent *authenticated* over an
established IKE SA, so that they reach the handlers. Nothing may escape the session
(its last-resort guard counts ``internal_error``, which must stay 0), and the tunnel must
survive anything that is not a legitimate DELETE of it.
"""

from __future__ import annotations

from ipaddress import IPv4Address
from typing import Any

from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from ikev2_pair import AWS_IP, CGW_IP, Pair, config_for
from scapy.contrib.ikev2 import (
    IKEv2,
    IKEv2_KE,
    IKEv2_Nonce,
    IKEv2_Proposal,
    IKEv2_SA,
    IKEv2_Transform,
)

from cgwd.ike.constants import ExchangeType, NotifyType, ProtocolId
from cgwd.ike.rng import SeededRng
from cgwd.ike.v2.message import Message, encode_message
from cgwd.ike.v2.payloads import (
    DeletePayload,
    IdiPayload,
    KePayload,
    NoncePayload,
    NotifyPayload,
    Proposal,
    SaPayload,
    TrafficSelector,
    Transform,
    TsiPayload,
    TsrPayload,
)
from cgwd.ike.v2.session import IkeSession, Outgoing

FUZZ = settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


def _established() -> Pair:
    pair = Pair()
    pair.establish()
    assert pair.cgw.session.status()["phase2"] == "Established"
    return pair


def _recorded_exchange() -> list[tuple[str, Outgoing]]:
    """Every datagram of an establishment, child rekey and DPD, with its sender."""
    pair = Pair(config_for(CGW_IP, AWS_IP, child_rekey_time=20.0, rekey_jitter=0.0, dpd_delay=5.0))
    seen: list[tuple[str, Outgoing]] = []

    def record(sender: str, out: Outgoing) -> bool:
        seen.append((sender, out))
        return True

    pair.filter = record
    pair.establish()
    pair.run_for(30)
    return seen


RECORDED = _recorded_exchange()


@FUZZ
@given(data=st.binary(max_size=400), port=st.sampled_from([500, 4500]))
def test_arbitrary_datagrams(data: bytes, port: int) -> None:
    pair = _established()
    for ep, src in ((pair.cgw, AWS_IP), (pair.aws, CGW_IP)):
        ep.session.receive_datagram(data, (src, port), (ep.ip, port), pair.now)
        ep.session.handle_timer(pair.now)
        assert ep.session.counters["internal_error"] == 0
    pair.pump()
    assert pair.cgw.session.status()["phase2"] == "Established"


@FUZZ
@given(
    index=st.integers(min_value=0, max_value=len(RECORDED) - 1),
    flips=st.lists(st.tuples(st.integers(0, 2000), st.integers(1, 255)), max_size=4),
    cut=st.one_of(st.none(), st.integers(0, 2000)),
    extra=st.binary(max_size=16),
)
def test_mutated_messages_of_a_real_exchange(
    index: int, flips: list[tuple[int, int]], cut: int | None, extra: bytes
) -> None:
    """Mutations of recorded messages, replayed into a fresh pair at the matching point."""
    sender, out = RECORDED[index]
    data = bytearray(out.data)
    for pos, xor in flips:
        if data:
            data[pos % len(data)] ^= xor
    if cut is not None:
        data = data[: cut % (len(data) + 1)]
    data += extra
    pair = _established()
    receiver = pair.aws if sender == "cgw" else pair.cgw
    src = CGW_IP if sender == "cgw" else AWS_IP
    receiver.session.receive_datagram(
        bytes(data), (src, out.src_port), (receiver.ip, out.dst[1]), pair.now
    )
    pair.pump()
    pair.run_for(15)
    for ep in (pair.cgw, pair.aws):
        assert ep.session.counters["internal_error"] == 0
    assert pair.cgw.session.status()["phase2"] == "Established"


# -- authenticated nonsense -------------------------------------------------------------

spi4 = st.binary(min_size=4, max_size=4)
notify_types = st.one_of(
    st.sampled_from([int(t) for t in NotifyType]), st.integers(min_value=0, max_value=65535)
)
notifies = st.builds(
    NotifyPayload,
    notify_types,
    st.binary(max_size=40),
    st.sampled_from([0, 1, 3]),
    st.one_of(st.just(b""), spi4),
)
transforms = st.builds(
    Transform.of,
    st.integers(1, 5),
    st.one_of(st.integers(0, 40), st.integers(0, 65535)),
    st.one_of(st.none(), st.sampled_from([128, 192, 256]), st.integers(0, 65535)),
)
proposals = st.builds(
    Proposal,
    st.integers(1, 3),
    st.sampled_from([1, 3, 2]),
    st.one_of(st.just(b""), spi4, st.binary(min_size=8, max_size=8)),
    st.lists(transforms, min_size=1, max_size=6).map(tuple),
)
addresses = st.integers(0, 2**32 - 1).map(IPv4Address)
selectors = st.builds(
    TrafficSelector,
    addresses,
    addresses,
    st.integers(0, 255),
    st.integers(0, 65535),
    st.integers(0, 65535),
)
payload = st.one_of(
    notifies,
    st.builds(SaPayload, st.lists(proposals, min_size=1, max_size=3).map(tuple)),
    st.builds(KePayload, st.sampled_from([2, 14, 19, 21, 0, 99]), st.binary(max_size=300)),
    st.builds(NoncePayload, st.binary(max_size=300)),
    st.builds(TsiPayload, st.lists(selectors, min_size=1, max_size=3).map(tuple)),
    st.builds(TsrPayload, st.lists(selectors, min_size=1, max_size=3).map(tuple)),
    st.builds(
        DeletePayload, st.just(ProtocolId.ESP), st.lists(spi4, min_size=1, max_size=3).map(tuple)
    ),
    st.builds(IdiPayload, st.integers(1, 11), st.binary(max_size=20)),
)
exchanges = st.sampled_from(
    [ExchangeType.CREATE_CHILD_SA, ExchangeType.INFORMATIONAL, ExchangeType.IKE_AUTH, 40]
)


@FUZZ
@given(exchange=exchanges, payloads=st.lists(payload, max_size=7), to_cgw=st.booleans())
def test_authenticated_nonsense_reaches_handlers_safely(
    exchange: int, payloads: list[Any], to_cgw: bool
) -> None:
    pair = _established()
    sender, receiver = (pair.aws, pair.cgw) if to_cgw else (pair.cgw, pair.aws)
    sa = sender.session.current_ike()
    assert sa is not None
    msg = Message(
        exchange,
        sa.tm.next_request_mid,
        sa.spi_i_int,
        sa.spi_r_int,
        initiator=sa.initiator,
        response=False,
        payloads=payloads,
    )
    try:
        data = encode_message(msg, sa.sk_out, SeededRng(3))
    except ValueError:
        assume(False)
        return
    sa.tm.next_request_mid += 1  # the sender's window moves on as if it had sent it
    receiver.session.receive_datagram(
        data, (sender.ip, sa.local_port), (receiver.ip, sa.remote_port), pair.now
    )
    replies = receiver.session.datagrams_to_send()
    assert receiver.session.counters["internal_error"] == 0
    assert len(replies) <= 1
    pair.run_for(40)  # rekeys/DPD/deadlines set off by whatever was accepted run their course
    for ep in (pair.cgw, pair.aws):
        assert ep.session.counters["internal_error"] == 0
    # An accepted request may legitimately create or delete Child SAs (the session then
    # recreates its tunnel); the IKE SA and one working tunnel survive all of it.
    st_c = pair.cgw.session.status()
    assert st_c["phase1"] == "Established", st_c
    pair.run_for(10)
    assert pair.cgw.session.status()["phase2"] == "Established"


def test_scapy_crafted_ike_sa_init_oddities() -> None:
    """IKE_SA_INIT requests built by an independent encoder (scapy), each subtly wrong:
    answered with an error or dropped, never a half-open SA with bad parameters."""
    pair = Pair()
    cgw = pair.cgw.session

    def request(*payloads: Any, spi: bytes = b"\x11" * 8) -> bytes:
        pkt = IKEv2(init_SPI=spi, exch_type=34, flags="Initiator")
        for p in payloads:
            pkt = pkt / p
        return bytes(pkt)

    def transform(ttype: int, tid: int, length: int | None = None) -> Any:
        t = IKEv2_Transform(transform_type=ttype, transform_id=tid)
        if length is not None:
            t.key_length = length
        return t

    good = [transform(1, 20, 256), transform(2, 7), transform(4, 21)]
    cases = {
        "no KE": request(
            IKEv2_SA(prop=IKEv2_Proposal(trans=good, trans_nb=3)), IKEv2_Nonce(nonce=b"n" * 32)
        ),
        "wrong KE group": request(
            IKEv2_SA(prop=IKEv2_Proposal(trans=good, trans_nb=3)),
            IKEv2_KE(group=14, ke=b"\x01" * 256),
            IKEv2_Nonce(nonce=b"n" * 32),
        ),
        "no key length": request(
            IKEv2_SA(
                prop=IKEv2_Proposal(
                    trans=[transform(1, 20), transform(2, 7), transform(4, 21)], trans_nb=3
                )
            ),
            IKEv2_KE(group=21, ke=b"\x01" * 132),
            IKEv2_Nonce(nonce=b"n" * 32),
        ),
        "short nonce": request(
            IKEv2_SA(prop=IKEv2_Proposal(trans=good, trans_nb=3)),
            IKEv2_KE(group=21, ke=b"\x01" * 132),
            IKEv2_Nonce(nonce=b"n" * 8),
        ),
        "invalid ECP point": request(
            IKEv2_SA(prop=IKEv2_Proposal(trans=good, trans_nb=3)),
            IKEv2_KE(group=21, ke=b"\x00" * 132),
            IKEv2_Nonce(nonce=b"n" * 32),
        ),
        "transform count lies": request(
            IKEv2_SA(prop=IKEv2_Proposal(trans=good, trans_nb=7)),
            IKEv2_KE(group=21, ke=b"\x01" * 132),
            IKEv2_Nonce(nonce=b"n" * 32),
        ),
    }
    for name, data in cases.items():
        cgw.receive_datagram(data, (AWS_IP, 500), (CGW_IP, 500), pair.now)
        replies = cgw.datagrams_to_send()
        assert cgw.counters["internal_error"] == 0, name
        assert not cgw.ike_sas, name  # no half-open SA from any of them
        for r in replies:  # whatever is answered is a bare error/cookie notify
            parsed = IKEv2(r.data)
            assert parsed.exch_type == 34 and parsed.resp_SPI == b"\x00" * 8, name
    # After all that, a real peer still gets in.
    pair.aws.session.initiate(pair.now)
    pair.pump()
    assert pair.cgw.session.status()["phase2"] == "Established"


def test_replayed_init_does_not_duplicate_state() -> None:
    pair = Pair()
    s = IkeSession(config_for(AWS_IP, CGW_IP), SeededRng(77), lambda: 4096, pair.now)
    s.initiate(pair.now)
    (req,) = s.datagrams_to_send()
    for _ in range(50):
        pair.cgw.session.receive_datagram(req.data, (AWS_IP, 500), (CGW_IP, 500), pair.now)
    replies = pair.cgw.session.datagrams_to_send()
    assert len(pair.cgw.session.ike_sas) == 1
    assert len({r.data for r in replies}) == 1  # the cached response, every time
    assert pair.cgw.session.counters["retransmit_answered"] == 49


def test_half_open_hard_limit_bounds_memory() -> None:
    cfg = config_for(CGW_IP, AWS_IP, half_open_cookie_threshold=10_000, half_open_limit=16)
    pair = Pair(cgw_config=cfg)
    cgw = pair.cgw.session
    for i in range(100):
        s = IkeSession(config_for(AWS_IP, CGW_IP), SeededRng(70_000 + i), lambda: 4096, pair.now)
        s.initiate(pair.now)
        (req,) = s.datagrams_to_send()
        cgw.receive_datagram(req.data, (AWS_IP, 500), (CGW_IP, 500), pair.now)
    assert len(cgw.ike_sas) == 16
    assert cgw.counters["half_open_limit"] == 84
    pair.run_for(31)  # half_open_timeout
    assert not cgw.ike_sas
