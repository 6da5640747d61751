"""Quick Mode with PFS (RFC 2409 §5.5), both roles, for one ESP SA pair per tunnel.

    Initiator                                     Responder
    HDR*, HASH(1), SA, Ni, KE, IDci, IDcr   -->
                                            <--   HDR*, HASH(2), SA, Nr, KE, IDci, IDcr
                                                  [, N(RESPONDER-LIFETIME)]
    HDR*, HASH(3)                           -->

Each Quick Mode has its own CBC IV chain, starting from hash(last phase 1 block | M-ID)
(RFC 2409 App. B). Make-before-break: the responder installs its inbound SA with message 2
and its outbound SA with message 3; the initiator installs both with message 2, and when
it replaces an SA it switches outbound a moment later, so the peer has its inbound SA.
Messages 2 and 3 enable the SAs installed with them: `cgwd.ike.host.IkeHost` sends them
only once those installs are applied.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from cgwd.dataplane.base import SaId, SaParams
from cgwd.ike.buffer import Reader
from cgwd.ike.crypto.dh import dh_group
from cgwd.ike.crypto.kex import InvalidKeyExchange
from cgwd.ike.decode_errors import IkeDecodeError
from cgwd.ike.v1 import informational
from cgwd.ike.v1.constants import (
    NONCE_MAX,
    NONCE_MIN,
    EncapMode,
    Exchange,
    Notify,
    P2Attr,
    ProtocolId,
)
from cgwd.ike.v1.keys import keymat, phase2_iv, qm_hash1, qm_hash2, qm_hash3
from cgwd.ike.v1.message import Header, Message, decode_message, encode_chain, encode_message
from cgwd.ike.v1.payloads import (
    AnyPayload,
    Attribute,
    HashPayload,
    IdPayload,
    KePayload,
    NoncePayload,
    NotifyPayload,
    Proposal,
    SaPayload,
    decode_attributes,
)
from cgwd.ike.v1.proposals import Phase2Choice, choose_phase2, phase2_answer, phase2_offer
from cgwd.ike.v1.sa import (
    OUTBOUND_SWITCH_DELAY,
    ChildSa,
    IsakmpSa,
    QuickMode,
)
from cgwd.secret import Secret

if TYPE_CHECKING:
    from cgwd.ike.v1.session import Ikev1Session


RETRY_AFTER_REFUSAL = 1.0


def _encap_mode(sa: IsakmpSa) -> int:
    if not sa.encapsulated:
        return EncapMode.TUNNEL
    return EncapMode.UDP_TUNNEL if sa.nat_t != "draft" else EncapMode.UDP_TUNNEL_DRAFT


def _pfs_group(session: Ikev1Session, sa: IsakmpSa) -> int | None:
    """The one PFS group to offer: the phase 1 group if allowed, else the strongest; after
    each refusal the next one (a Quick Mode carries one KE, so groups are tried in turn)."""
    groups = list(session.config.pfs_groups)
    if not groups:
        return None
    assert sa.suite is not None
    if sa.suite.group in groups:
        groups.remove(sa.suite.group)
        groups.insert(0, sa.suite.group)
    return groups[session.pfs_index % len(groups)]


def refused(session: Ikev1Session, sa: IsakmpSa, notify: int, now: float) -> None:
    """The peer answered with an authenticated error notify while our Quick Mode was in
    flight on ``sa``: that Quick Mode failed (try the next PFS group on a proposal error)."""
    pending = [
        q for q in session.quick_modes.values()
        if q.initiator and q.state == "sent1" and q.cky_i == sa.cky_i
    ]  # fmt: skip
    if len(pending) != 1:
        return
    if notify == Notify.NO_PROPOSAL_CHOSEN:
        session.pfs_index += 1
    _fail_qm(session, pending[0], f"peer sent notify {notify}", now, retry=RETRY_AFTER_REFUSAL)


def _new_mid(session: Ikev1Session, sa: IsakmpSa) -> int:
    while True:
        mid = int.from_bytes(session.rng.bytes(4), "big")
        if mid and (sa.cky_i, mid) not in session.quick_modes and mid not in sa.seen_mids:
            sa.remember_mid(mid)
            return mid


def start(session: Ikev1Session, sa: IsakmpSa, now: float, rekey_of: int | None) -> None:
    """Send Quick Mode message 1 on ``sa`` (for a new SA, or replacing child ``rekey_of``)."""
    cfg = session.config
    assert sa.suite is not None and sa.keys is not None
    mid = _new_mid(session, sa)
    qm = QuickMode(
        mid=mid,
        cky_i=sa.cky_i,
        initiator=True,
        created_at=now,
        iv=phase2_iv(sa.suite, sa.iv, mid),
        spi_in=session.allocate_spi(),
        rekey_of=rekey_of,
    )
    qm.group = _pfs_group(session, sa)
    qm.encap_mode = _encap_mode(sa)
    qm.ni = session.rng.bytes(cfg.nonce_bytes)
    rest: list[AnyPayload] = [
        phase2_offer(cfg.esp_suites, qm.spi_in, cfg.child_lifetime, qm.group, qm.encap_mode),
        NoncePayload(qm.ni),
    ]
    if qm.group:
        qm.dh = dh_group(qm.group).generate(session.rng)
        rest.append(KePayload(qm.dh.public_bytes()))
    rest += [IdPayload.subnet(cfg.local_ts), IdPayload.subnet(cfg.remote_ts)]
    h = qm_hash1(sa.suite, sa.keys.skeyid_a, mid, encode_chain(rest))
    msg = Message(sa.cky_i, sa.cky_r, Exchange.QUICK_MODE, mid, [HashPayload(h), *rest])
    raw, qm.iv = encode_message(msg, sa.keys.enc_key, qm.iv)
    qm.flight.sent(raw, now, cfg.retransmit.interval(1))
    qm.forget_at = now + cfg.retransmit.total_time() + 1.0
    session.quick_modes[(sa.cky_i, mid)] = qm
    session.send(sa, raw)


def timer(session: Ikev1Session, key: tuple[bytes, int], qm: QuickMode, now: float) -> None:
    sa = next((s for s in session.isakmp_sas if s.cky_i == key[0]), None)
    if sa is None:
        del session.quick_modes[key]
        return
    policy = session.config.retransmit
    if session.retransmit_due(qm.flight, policy, now, sa):
        del session.quick_modes[key]
        session.abandon_quick_mode(qm)
        if qm.initiator:
            session.log("child_create_failed", "Phase 2 was unable to establish", "warning")
            old = None if qm.rekey_of is None else session.children.get(qm.rekey_of)
            if old is not None and old.state == "rekeying":
                old.state = "installed"
                old.rekey_at = now + 5.0
            elif not session.live_children():
                session.child_retry_at = now + 5.0
        elif qm.child_id is not None:
            child = session.children.get(qm.child_id)
            if child is not None and not child.out_installed:
                session.remove_child(child, "Quick Mode not completed")
                old = None if qm.rekey_of is None else session.children.get(qm.rekey_of)
                if old is not None and old.state == "installed" and old.rekey_at is None:
                    old.rekey_at = now + 5.0
        return
    if now >= qm.forget_at and qm.flight.next_at is None:
        del session.quick_modes[key]


def _decrypt(
    session: Ikev1Session, sa: IsakmpSa, data: bytes, iv: bytes
) -> tuple[Message, bytes] | None:
    assert sa.keys is not None
    try:
        msg, last = decode_message(data, sa.keys.enc_key, iv)
    except IkeDecodeError:
        session.counters["integrity_failed"] += 1
        return None
    if not msg.payloads or not isinstance(msg.payloads[0], HashPayload):
        session.counters["malformed"] += 1
        return None
    return msg, last


def receive(  # noqa: PLR0917
    session: Ikev1Session,
    sa: IsakmpSa,
    data: bytes,
    hdr: Header,
    src: tuple[str, int],
    dst: tuple[str, int],
    now: float,
) -> None:
    if not hdr.encrypted or hdr.message_id == 0:
        session.counters["unprotected"] += 1
        return
    qm = session.quick_modes.get((sa.cky_i, hdr.message_id))
    if qm is None:
        if hdr.message_id in sa.seen_mids:
            session.counters["replayed_message_id"] += 1
            return
        _respond_qm1(session, sa, data, hdr, src, dst, now)
        return
    if data == qm.flight.peer_last:
        session.answer_duplicate(sa, qm.flight, now)
        return
    if qm.initiator and qm.state == "sent1":
        _initiator_qm2(session, sa, qm, data, src, dst, now)
    elif not qm.initiator and qm.state == "sent2":
        _responder_qm3(session, sa, qm, data, src, dst, now)
    else:
        session.counters["unexpected_message"] += 1


def _keymats(
    session: Ikev1Session, sa: IsakmpSa, qm: QuickMode, g_qm: Secret | None
) -> tuple[Secret, Secret]:
    assert sa.suite is not None and sa.keys is not None and qm.suite is not None
    n = qm.suite.keymat_bytes
    args = (sa.suite, sa.keys.skeyid_d, ProtocolId.ESP)
    k_in = keymat(*args, qm.spi_in, qm.ni, qm.nr, n, g_qm)
    k_out = keymat(*args, qm.spi_out, qm.ni, qm.nr, n, g_qm)
    return k_in, k_out


def _make_child(
    session: Ikev1Session, sa: IsakmpSa, qm: QuickMode, keys: tuple[Secret, Secret], now: float
) -> ChildSa:
    cfg = session.config
    assert qm.suite is not None
    encap = sa.udp_encap()
    return ChildSa(
        child_id=session.new_child_id(),
        spi_in=qm.spi_in,
        spi_out=qm.spi_out,
        suite=qm.suite,
        created_at=now,
        initiated_by_us=qm.initiator,
        in_sa=SaId(cfg.tunnel, "in", qm.spi_in),
        out_sa=SaId(cfg.tunnel, "out", qm.spi_out),
        in_params=SaParams(qm.suite, keys[0], replay_window=cfg.replay_window, encap=encap),
        out_params=SaParams(qm.suite, keys[1], replay_window=cfg.replay_window, encap=encap),
        pfs_group=qm.group,
        lifetime=qm.lifetime,
        nonces=(qm.ni, qm.nr),
        replaces=qm.rekey_of,
    )


def _responder_lifetime(msg: Message) -> int | None:
    """RFC 2407 §4.6.3.1: RESPONDER-LIFETIME carries life type/duration attributes."""
    for p in msg.payloads:
        if isinstance(p, NotifyPayload) and p.notify_type == Notify.RESPONDER_LIFETIME:
            try:
                attrs = decode_attributes(Reader(p.data, "RESPONDER-LIFETIME"))
            except IkeDecodeError:
                return None
            kind = None
            for a in attrs:
                if a.type == P2Attr.LIFE_TYPE:
                    kind = a.value
                elif a.type == P2Attr.LIFE_DURATION and kind == 1:
                    return a.value
    return None


def _initiator_qm2(  # noqa: PLR0917
    session: Ikev1Session,
    sa: IsakmpSa,
    qm: QuickMode,
    data: bytes,
    src: tuple[str, int],
    dst: tuple[str, int],
    now: float,
) -> None:
    cfg = session.config
    assert sa.suite is not None and sa.keys is not None
    got = _decrypt(session, sa, data, qm.iv)
    if got is None:
        return
    msg, last = got
    hp = msg.payloads[0]
    assert isinstance(hp, HashPayload)
    if hp.data != qm_hash2(sa.suite, sa.keys.skeyid_a, qm.mid, qm.ni, msg.raw_after(0)):
        session.counters["integrity_failed"] += 1
        return
    session.heard(sa, src, dst, now)
    for p in msg.payloads:
        if isinstance(p, NotifyPayload) and p.notify_type <= 16383:
            if p.notify_type == Notify.NO_PROPOSAL_CHOSEN:
                session.pfs_index += 1
            _fail_qm(session, qm, f"peer refused Quick Mode: notify {p.notify_type}", now,
                     retry=RETRY_AFTER_REFUSAL)  # fmt: skip
            return
    sa_p, nonce, ke = msg.first(SaPayload), msg.first(NoncePayload), msg.first(KePayload)
    choice: Phase2Choice | None = None
    if isinstance(sa_p, SaPayload):
        choice = phase2_answer(sa_p, cfg.esp_suites, qm.group, qm.encap_mode)
    if choice is None or not isinstance(nonce, NoncePayload):
        session.pfs_index += 1
        _fail_qm(session, qm, "Quick Mode answer is not one of our proposals", now)
        return
    if not NONCE_MIN <= len(nonce.data) <= NONCE_MAX:
        session.counters["malformed"] += 1
        return
    g_qm = None
    if qm.dh is not None:
        if not isinstance(ke, KePayload):
            _fail_qm(session, qm, "Quick Mode answer lacks the PFS KE payload", now)
            return
        try:
            g_qm = qm.dh.shared_secret(ke.data)
        except InvalidKeyExchange as exc:
            _fail_qm(session, qm, f"peer's PFS KE rejected: {exc}", now)
            return
    qm.nr = nonce.data
    qm.suite = choice.suite
    qm.spi_out = int.from_bytes(choice.proposal.spi, "big")
    lives = [cfg.child_lifetime, choice.lifetime, _responder_lifetime(msg)]
    qm.lifetime = min(x for x in lives if x)
    keys = _keymats(session, sa, qm, g_qm)
    qm.dh = None
    h3 = qm_hash3(sa.suite, sa.keys.skeyid_a, qm.mid, qm.ni, qm.nr)
    out = Message(sa.cky_i, sa.cky_r, Exchange.QUICK_MODE, qm.mid, [HashPayload(h3)])
    raw, qm.iv = encode_message(out, sa.keys.enc_key, last)
    qm.flight.peer_last = data
    qm.flight.sent(raw, now, None)
    qm.state = "done"
    qm.forget_at = now + 60.0
    session.send(sa, raw)  # the host sends it after applying the SAs installed below
    child = _make_child(session, sa, qm, keys, now)
    replacing = bool(session.live_children())
    session.install_child(
        child, now, outbound_at=now + OUTBOUND_SWITCH_DELAY if replacing else None
    )


def _fail_qm(
    session: Ikev1Session, qm: QuickMode, why: str, now: float, retry: float = 10.0
) -> None:
    qm.flight.next_at = None
    session.abandon_quick_mode(qm)
    qm.forget_at = now
    session.log("child_create_failed", f"Phase 2 was unable to establish: {why}", "warning")
    old = None if qm.rekey_of is None else session.children.get(qm.rekey_of)
    if old is not None and old.state == "rekeying":
        old.state = "installed"
        old.rekey_at = now + retry
    elif not session.live_children():
        session.child_retry_at = now + retry


def _respond_qm1(  # noqa: PLR0917
    session: Ikev1Session,
    sa: IsakmpSa,
    data: bytes,
    hdr: Header,
    src: tuple[str, int],
    dst: tuple[str, int],
    now: float,
) -> None:
    cfg = session.config
    assert sa.suite is not None and sa.keys is not None
    mid = hdr.message_id
    got = _decrypt(session, sa, data, phase2_iv(sa.suite, sa.iv, mid))
    if got is None:
        return
    msg, last = got
    hp = msg.payloads[0]
    assert isinstance(hp, HashPayload)
    if hp.data != qm_hash1(sa.suite, sa.keys.skeyid_a, mid, msg.raw_after(0)):
        session.counters["integrity_failed"] += 1
        return
    session.heard(sa, src, dst, now)
    sa_p, nonce, ke = msg.first(SaPayload), msg.first(NoncePayload), msg.first(KePayload)
    ids = [p for p in msg.payloads if isinstance(p, IdPayload)]
    encaps = (
        frozenset({EncapMode.UDP_TUNNEL, EncapMode.UDP_TUNNEL_DRAFT})
        if sa.encapsulated
        else frozenset({EncapMode.TUNNEL})
    )
    choice = None
    if isinstance(sa_p, SaPayload):
        choice = choose_phase2(sa_p, cfg.esp_suites, cfg.pfs_groups, encaps)
    if choice is None or not isinstance(nonce, NoncePayload) or len(ids) not in (0, 2):
        session.log("no_proposal_chosen", "No Proposal Match Found for the peer's Quick Mode")
        informational.send_notify(session, sa, Notify.NO_PROPOSAL_CHOSEN, ProtocolId.ESP)
        return
    if not NONCE_MIN <= len(nonce.data) <= NONCE_MAX:
        session.counters["malformed"] += 1
        return
    if (choice.group is not None) != isinstance(ke, KePayload):
        session.counters["malformed"] += 1
        return
    qm = QuickMode(
        mid=mid,
        cky_i=sa.cky_i,
        initiator=False,
        created_at=now,
        iv=b"",
        spi_in=session.allocate_spi(),
    )
    qm.ni = nonce.data
    qm.nr = session.rng.bytes(cfg.nonce_bytes)
    live = session.live_children()  # IKEv1 has no REKEY_SA: a new SA replaces the newest
    replaced = max(live, key=lambda c: c.created_at) if live else None
    qm.rekey_of = None if replaced is None else replaced.child_id
    if replaced is not None and replaced.state == "installed":
        replaced.rekey_at = None  # the peer rekeys it (restored if this Quick Mode fails)
    qm.group = choice.group
    qm.encap_mode = choice.encap
    qm.suite = choice.suite
    qm.spi_out = int.from_bytes(choice.proposal.spi, "big")
    qm.lifetime = min(cfg.child_lifetime, choice.lifetime or cfg.child_lifetime)
    g_qm = None
    reply_ke: list[AnyPayload] = []
    if choice.group is not None and isinstance(ke, KePayload):
        dh = dh_group(choice.group).generate(session.rng)
        try:
            g_qm = dh.shared_secret(ke.data)
        except InvalidKeyExchange:
            session.counters["invalid_ke"] += 1
            return
        reply_ke = [KePayload(dh.public_bytes())]
    keys = _keymats(session, sa, qm, g_qm)
    rest: list[AnyPayload] = [
        SaPayload(
            (
                Proposal(
                    choice.proposal.number,
                    ProtocolId.ESP,
                    qm.spi_in.to_bytes(4, "big"),
                    (choice.transform,),
                ),
            )
        ),
        NoncePayload(qm.nr),
        *reply_ke,
        *ids,
    ]
    if choice.lifetime is not None and choice.lifetime > qm.lifetime:
        attrs = (
            Attribute(P2Attr.LIFE_TYPE, 1).encode()
            + Attribute(P2Attr.LIFE_DURATION, qm.lifetime).encode()
        )
        rest.append(
            NotifyPayload(
                Notify.RESPONDER_LIFETIME, ProtocolId.ESP, qm.spi_in.to_bytes(4, "big"), attrs
            )
        )
    h2 = qm_hash2(sa.suite, sa.keys.skeyid_a, mid, qm.ni, encode_chain(rest))
    out = Message(sa.cky_i, sa.cky_r, Exchange.QUICK_MODE, mid, [HashPayload(h2), *rest])
    raw, qm.iv = encode_message(out, sa.keys.enc_key, last)
    qm.flight.peer_last = data
    qm.flight.sent(raw, now, cfg.retransmit.interval(1))
    qm.state = "sent2"
    qm.forget_at = now + 60.0
    session.quick_modes[(sa.cky_i, mid)] = qm
    sa.remember_mid(mid)
    session.send(sa, raw)  # the host sends it after applying the SAs installed below
    child = _make_child(session, sa, qm, keys, now)
    qm.child_id = child.child_id
    # Outbound only once HASH(3) proves the peer has the SA (a replayed message 1 never
    # gets that far).
    session.install_child(child, now, outbound_at=None, defer_outbound=True)


def _responder_qm3(  # noqa: PLR0917
    session: Ikev1Session,
    sa: IsakmpSa,
    qm: QuickMode,
    data: bytes,
    src: tuple[str, int],
    dst: tuple[str, int],
    now: float,
) -> None:
    assert sa.suite is not None and sa.keys is not None
    got = _decrypt(session, sa, data, qm.iv)
    if got is None:
        return
    msg, _ = got
    hp = msg.payloads[0]
    assert isinstance(hp, HashPayload)
    if hp.data != qm_hash3(sa.suite, sa.keys.skeyid_a, qm.mid, qm.ni, qm.nr):
        session.counters["integrity_failed"] += 1
        return
    session.heard(sa, src, dst, now)
    qm.flight.next_at = None
    qm.flight.peer_last = data
    qm.state = "done"
    child = None if qm.child_id is None else session.children.get(qm.child_id)
    if child is not None:
        session.outbound_ready(child, now)
