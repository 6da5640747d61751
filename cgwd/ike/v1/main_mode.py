"""Main Mode with pre-shared keys (RFC 2409 §5, §5.4), both roles, with NAT-T (RFC 3947).

    Initiator                          Responder
    HDR, SA, VID(NAT-T, DPD)     -->
                                 <--   HDR, SA, VID
    HDR, KE, Ni, NAT-D, NAT-D    -->
                                 <--   HDR, KE, Nr, NAT-D, NAT-D
    HDR*, IDii, HASH_I [, N(IC)] -->   (port 4500 from here when a NAT was detected)
                                 <--   HDR*, IDir, HASH_R

With a pre-shared key, messages 5 and 6 are encrypted with keys derived from it, so a wrong
key shows up as a message 5/6 that does not decrypt to payloads or whose hash does not
verify: reported as ``auth_failed`` (probable pre-shared key mismatch).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from cgwd.ike.crypto.dh import dh_group
from cgwd.ike.crypto.kex import InvalidKeyExchange
from cgwd.ike.decode_errors import IkeDecodeError, IntegrityError
from cgwd.ike.v1 import informational
from cgwd.ike.v1.constants import (
    NAT_T_DRAFT_VIDS,
    NONCE_MAX,
    NONCE_MIN,
    VID_DPD,
    VID_NAT_T_DRAFT_02N,
    VID_NAT_T_DRAFT_03,
    VID_NAT_T_RFC,
    Exchange,
    Flag,
    IdType,
    Notify,
    Payload,
    ProtocolId,
)
from cgwd.ike.v1.keys import derive_phase1_keys, hash_i, hash_r, nat_d_hash, phase1_iv
from cgwd.ike.v1.message import Header, Message, decode_message, encode_message
from cgwd.ike.v1.payloads import (
    AnyPayload,
    HashPayload,
    IdPayload,
    KePayload,
    NatDPayload,
    NoncePayload,
    NotifyPayload,
    Proposal,
    SaPayload,
    VendorIdPayload,
)
from cgwd.ike.v1.proposals import choose_phase1, phase1_answer, phase1_offer
from cgwd.ike.v1.sa import IsakmpSa

if TYPE_CHECKING:
    from cgwd.ike.v1.session import Ikev1Session

ZERO = bytes(8)
PSK_HINT = "probable pre-shared key mismatch"


def payload_body(msg: Message, index: int) -> bytes:
    """The body (without generic header) of payload ``index`` as received."""
    off = msg.offsets[index]
    length = int.from_bytes(msg.chain[off + 2 : off + 4], "big")
    return msg.chain[off + 4 : off + length]


def _vendor_ids(sa: IsakmpSa, msg: Message) -> None:
    for p in msg.payloads:
        if isinstance(p, VendorIdPayload):
            if p.data == VID_NAT_T_RFC:
                sa.nat_t = "rfc"
            elif p.data in NAT_T_DRAFT_VIDS and sa.nat_t is None:
                sa.nat_t = "draft"
            elif p.data[:16] == VID_DPD[:16]:
                sa.dpd_peer = True


def start(session: Ikev1Session, now: float, rekey_of: bytes | None) -> None:
    """Send Main Mode message 1 for a new ISAKMP SA."""
    cfg = session.config
    sa = IsakmpSa(
        cky_i=session.cookie(),
        cky_r=ZERO,
        initiator=True,
        created_at=now,
        remote_ip=str(cfg.remote_address),
        remote_port=cfg.remote_port,
        local_port=cfg.ike_port,
    )
    sa.initial_contact = not session.ever_established  # RFC 2407 §4.6.3.3, aws §2
    sa.rekey_of = rekey_of
    offer = phase1_offer(cfg.phase1_suites, cfg.ike_lifetime)
    sa.sai_b = offer.body()
    payloads: list[AnyPayload] = [
        offer,
        VendorIdPayload(VID_NAT_T_RFC),
        VendorIdPayload(VID_NAT_T_DRAFT_03),
        VendorIdPayload(VID_NAT_T_DRAFT_02N),
        VendorIdPayload(VID_DPD),
    ]
    raw, _ = encode_message(Message(sa.cky_i, ZERO, Exchange.MAIN_MODE, 0, payloads))
    sa.state = "mm2"
    session.isakmp_sas.append(sa)
    sa.flight.sent(raw, now, cfg.retransmit.interval(1))
    session.send(sa, raw)
    if rekey_of is None:
        session.log("ike_initiating", f"initiating Main Mode to {cfg.remote_address}")


def gave_up(session: Ikev1Session, sa: IsakmpSa, now: float) -> None:
    """Retransmissions of ``sa``'s last Main Mode message went unanswered."""
    if not sa.initiator:
        session.log("ike_half_open_timeout", "deleting un-established Phase 1 IKE_SA", "warning")
        session.drop_isakmp(sa)
        return
    if sa.state == "mm6":
        session.phase1_failed(
            sa,
            "auth_failed",
            f"no valid answer to Main Mode message 5 ({PSK_HINT}?)",
            now,
        )
    else:
        session.phase1_failed(
            sa, "retransmit_timeout", f"Main Mode timed out waiting for message {sa.state[2:]}", now
        )


def receive(  # noqa: PLR0917
    session: Ikev1Session,
    data: bytes,
    hdr: Header,
    src: tuple[str, int],
    dst: tuple[str, int],
    now: float,
) -> None:
    sa = None
    for s in session.isakmp_sas:
        if s.cky_i != hdr.spi_i or s.state == "dead":
            continue
        if s.cky_r == hdr.spi_r or (s.initiator and s.state == "mm2" and hdr.spi_r != ZERO):
            sa = s
            break
        if not s.initiator and hdr.spi_r == ZERO:  # message 1 again (our message 2 lost)
            sa = s
            break
    if sa is None:
        if hdr.spi_r == ZERO and not hdr.encrypted:
            _respond_mm1(session, data, src, dst, now)
        else:
            session.counters["unknown_spi"] += 1
        return
    if data == sa.flight.peer_last:
        session.answer_duplicate(sa, sa.flight, now)
        return
    handler = {
        (True, "mm2"): _initiator_mm2,
        (True, "mm4"): _initiator_mm4,
        (True, "mm6"): _initiator_mm6,
        (False, "mm3"): _responder_mm3,
        (False, "mm5"): _responder_mm5,
    }.get((sa.initiator, sa.state))
    if handler is None:
        session.counters["unexpected_message"] += 1
        return
    handler(session, sa, data, hdr, src, dst, now)


def _plain(session: Ikev1Session, data: bytes) -> Message | None:
    try:
        msg, _ = decode_message(data)
    except IkeDecodeError:
        session.counters["malformed"] += 1
        return None
    if msg.flags & Flag.ENCRYPTION:
        session.counters["malformed"] += 1
        return None
    return msg


def _nat_d(session: Ikev1Session, sa: IsakmpSa, remote: tuple[str, int]) -> list[AnyPayload]:
    """NAT-D for the peer's address as we send to it, then ours (RFC 3947 §3.2)."""
    if sa.nat_t is None:
        return []
    assert sa.suite is not None
    ptype = Payload.NAT_D if sa.nat_t == "rfc" else Payload.NAT_D_DRAFT
    cfg = session.config
    theirs = nat_d_hash(sa.suite, sa.cky_i, sa.cky_r, _ip(remote[0]), remote[1])
    if cfg.force_encap:  # RFC 3947 §3.2 permits a fake local hash to force encapsulation
        ours = session.rng.bytes(len(theirs))
    else:
        ours = nat_d_hash(sa.suite, sa.cky_i, sa.cky_r, cfg.local_address.packed, sa.local_port)
    return [NatDPayload(theirs, ptype), NatDPayload(ours, ptype)]


def _ip(text: str) -> bytes:
    return bytes(int(x) for x in text.split("."))


def _detect_nat(
    session: Ikev1Session, sa: IsakmpSa, msg: Message, src: tuple[str, int], dst: tuple[str, int]
) -> None:
    """RFC 3947 §3.2: the first NAT-D is us as the peer saw us, the others are the peer."""
    if sa.nat_t is None:
        return
    assert sa.suite is not None
    hashes = [p.data for p in msg.payloads if isinstance(p, NatDPayload)]
    if len(hashes) < 2:
        return
    me = nat_d_hash(sa.suite, sa.cky_i, sa.cky_r, session.config.local_address.packed, dst[1])
    peer = nat_d_hash(sa.suite, sa.cky_i, sa.cky_r, _ip(src[0]), src[1])
    sa.nat_local = hashes[0] != me
    sa.nat_remote = peer not in hashes[1:]
    if sa.nat_local or sa.nat_remote or session.config.force_encap:
        session.log(
            "nat_detected",
            "NAT detected ("
            + ("we are behind it" if sa.nat_local else "peer side or forced encapsulation")
            + "): moving to UDP port 4500",
        )
        if sa.initiator:  # RFC 3947 §4: the initiator floats with message 5
            sa.local_port = sa.remote_port = session.config.nat_t_port
            sa.floated = True


def _ke_nonce(session: Ikev1Session, msg: Message) -> tuple[bytes, bytes] | None:
    ke = msg.first(KePayload)
    nonce = msg.first(NoncePayload)
    if not isinstance(ke, KePayload) or not isinstance(nonce, NoncePayload):
        session.counters["malformed"] += 1
        return None
    if not NONCE_MIN <= len(nonce.data) <= NONCE_MAX:
        session.counters["malformed"] += 1
        return None
    return ke.data, nonce.data


def _initiator_mm2(  # noqa: PLR0917
    session: Ikev1Session,
    sa: IsakmpSa,
    data: bytes,
    hdr: Header,
    src: tuple[str, int],
    dst: tuple[str, int],
    now: float,
) -> None:
    msg = _plain(session, data)
    if msg is None or hdr.spi_r == ZERO:
        return
    sa_p = msg.first(SaPayload)
    answer = (
        None
        if not isinstance(sa_p, SaPayload)
        else phase1_answer(sa_p, session.config.phase1_suites)
    )
    if answer is None:
        session.counters["bad_proposal"] += 1
        session.phase1_failed(
            sa, "no_proposal_chosen", "Main Mode answer is not one of our proposals", now
        )
        return
    cfg = session.config
    sa.cky_r = hdr.spi_r
    sa.suite, life = answer
    sa.lifetime = min(cfg.ike_lifetime, life or cfg.ike_lifetime)
    _vendor_ids(sa, msg)
    sa.dh = dh_group(sa.suite.group).generate(session.rng)
    sa.g_xi = sa.dh.public_bytes()
    sa.ni = session.rng.bytes(cfg.nonce_bytes)
    payloads: list[AnyPayload] = [KePayload(sa.g_xi), NoncePayload(sa.ni)]
    payloads += _nat_d(session, sa, (sa.remote_ip, sa.remote_port))
    raw, _ = encode_message(Message(sa.cky_i, sa.cky_r, Exchange.MAIN_MODE, 0, payloads))
    sa.flight.peer_last = data
    sa.flight.sent(raw, now, cfg.retransmit.interval(1))
    sa.state = "mm4"
    session.send(sa, raw)


def _derive(session: Ikev1Session, sa: IsakmpSa, peer_ke: bytes) -> bool:
    assert sa.dh is not None and sa.suite is not None
    try:
        shared = sa.dh.shared_secret(peer_ke)
    except InvalidKeyExchange as exc:
        session.counters["invalid_ke"] += 1
        session.log("invalid_ke", f"peer's KE rejected: {exc}", "warning")
        return False
    sa.keys = derive_phase1_keys(
        sa.suite, session.config.psk, sa.ni, sa.nr, shared, sa.cky_i, sa.cky_r
    )
    sa.iv = phase1_iv(sa.suite, sa.g_xi, sa.g_xr)
    sa.dh = None
    return True


def _initiator_mm4(  # noqa: PLR0917
    session: Ikev1Session,
    sa: IsakmpSa,
    data: bytes,
    hdr: Header,
    src: tuple[str, int],
    dst: tuple[str, int],
    now: float,
) -> None:
    msg = _plain(session, data)
    if msg is None:
        return
    kn = _ke_nonce(session, msg)
    if kn is None:
        return
    sa.g_xr, sa.nr = kn
    if not _derive(session, sa, sa.g_xr):
        return
    _detect_nat(session, sa, msg, src, dst)
    cfg = session.config
    assert sa.suite is not None and sa.keys is not None
    ident = IdPayload.ipv4(cfg.our_id)
    h = hash_i(
        sa.suite, sa.keys.skeyid, sa.g_xi, sa.g_xr, sa.cky_i, sa.cky_r, sa.sai_b, ident.body()
    )
    payloads: list[AnyPayload] = [ident, HashPayload(h)]
    if sa.initial_contact:
        payloads.append(
            NotifyPayload(Notify.INITIAL_CONTACT, ProtocolId.ISAKMP, sa.cky_i + sa.cky_r)
        )
    raw, last = encode_message(
        Message(sa.cky_i, sa.cky_r, Exchange.MAIN_MODE, 0, payloads), sa.keys.enc_key, sa.iv
    )
    sa.iv = last
    sa.flight.peer_last = data
    sa.flight.sent(raw, now, cfg.retransmit.interval(1))
    sa.state = "mm6"
    session.send(sa, raw)


def _verify_id(session: Ikev1Session, ident: IdPayload, *, peer: bool) -> bool:
    want = session.config.peer_id if peer else session.config.our_id
    if ident.id_type == IdType.IPV4_ADDR and ident.data == want.packed:
        return True
    session.log(
        "peer_id_mismatch",
        f"peer identified as type {ident.id_type} {ident.data.hex()}, expected {want}",
        "warning",
    )
    return False


def _decrypt_last_pair(  # noqa: PLR0917
    session: Ikev1Session,
    sa: IsakmpSa,
    data: bytes,
    hdr: Header,
    number: int,
    bad_key: Callable[[str], None],
) -> tuple[Message, bytes] | None:
    """Main Mode message 5 or 6 (``number``), the first under the new keys (RFC 2409
    5): decrypted with the last IV it leaves, or None (counted). One that does not decrypt
    means the peer derived other keys, almost always from another PSK: ``bad_key(why)``
    reports that, the initiator's and the responder's way."""
    assert sa.keys is not None
    if not hdr.encrypted:
        session.counters["unprotected"] += 1
        return None
    try:
        return decode_message(data, sa.keys.enc_key, sa.iv)
    except IntegrityError:
        session.counters["integrity_failed"] += 1
        bad_key(f"Main Mode message {number} does not decrypt ({PSK_HINT})")
        return None
    except IkeDecodeError:
        session.counters["malformed"] += 1
        return None


def _initiator_mm6(  # noqa: PLR0917
    session: Ikev1Session,
    sa: IsakmpSa,
    data: bytes,
    hdr: Header,
    src: tuple[str, int],
    dst: tuple[str, int],
    now: float,
) -> None:
    assert sa.keys is not None and sa.suite is not None
    decrypted = _decrypt_last_pair(
        session, sa, data, hdr, 6, lambda why: session.phase1_failed(sa, "auth_failed", why, now)
    )
    if decrypted is None:
        return
    msg, last = decrypted
    idx = next((i for i, p in enumerate(msg.payloads) if isinstance(p, IdPayload)), None)
    hp = msg.first(HashPayload)
    if idx is None or not isinstance(hp, HashPayload):
        session.counters["malformed"] += 1
        return
    idir_b = payload_body(msg, idx)
    want = hash_r(sa.suite, sa.keys.skeyid, sa.g_xi, sa.g_xr, sa.cky_i, sa.cky_r, sa.sai_b, idir_b)
    if hp.data != want:
        session.counters["auth_failed"] += 1
        session.phase1_failed(
            sa, "auth_failed", f"HASH_R in Main Mode message 6 does not verify ({PSK_HINT})", now
        )
        return
    ident = msg.payloads[idx]
    assert isinstance(ident, IdPayload)
    if not _verify_id(session, ident, peer=True):
        session.phase1_failed(sa, "auth_failed", "the peer's ID is not the expected one", now)
        return
    sa.iv = last
    sa.flight.peer_last = data
    session.heard(sa, src, dst, now)
    session.phase1_established(sa, now)


# ------------------------------------------------------------------ responder


def _respond_mm1(
    session: Ikev1Session, data: bytes, src: tuple[str, int], dst: tuple[str, int], now: float
) -> None:
    cfg = session.config
    half_open = sum(1 for s in session.isakmp_sas if not s.initiator and s.state != "established")
    if half_open >= cfg.half_open_limit:
        session.counters["half_open_limit"] += 1
        return
    msg = _plain(session, data)
    if msg is None or msg.message_id != 0:
        return
    idx = next((i for i, p in enumerate(msg.payloads) if isinstance(p, SaPayload)), None)
    if idx is None:
        session.counters["malformed"] += 1
        return
    sa_p = msg.payloads[idx]
    assert isinstance(sa_p, SaPayload)
    chosen = choose_phase1(sa_p, cfg.phase1_suites)
    if chosen is None:
        session.log("no_proposal_chosen", "No Proposal Match Found for the peer's Main Mode")
        informational.send_plain_notify(
            session, msg.spi_i, session.cookie(), Notify.NO_PROPOSAL_CHOSEN, src, dst[1]
        )
        return
    proposal, transform, suite, life = chosen
    sa = IsakmpSa(
        cky_i=msg.spi_i,
        cky_r=session.cookie(),
        initiator=False,
        created_at=now,
        remote_ip=src[0],
        remote_port=src[1],
        local_port=dst[1],
    )
    sa.suite = suite
    sa.lifetime = min(cfg.ike_lifetime, life or cfg.ike_lifetime)
    sa.sai_b = payload_body(msg, idx)
    _vendor_ids(sa, msg)
    reply: list[AnyPayload] = [
        SaPayload((Proposal(proposal.number, proposal.protocol, b"", (transform,)),)),
    ]
    if sa.nat_t == "rfc":
        reply.append(VendorIdPayload(VID_NAT_T_RFC))
    elif sa.nat_t == "draft":
        sent = [p.data for p in msg.payloads if isinstance(p, VendorIdPayload)]
        reply.append(VendorIdPayload(next(v for v in sent if v in NAT_T_DRAFT_VIDS)))
    reply.append(VendorIdPayload(VID_DPD))
    raw, _ = encode_message(Message(sa.cky_i, sa.cky_r, Exchange.MAIN_MODE, 0, reply))
    sa.state = "mm3"
    sa.flight.peer_last = data
    sa.flight.sent(raw, now, None)  # the responder answers retransmissions only
    sa.last_heard = now
    session.isakmp_sas.append(sa)
    session.send(sa, raw)


def _responder_mm3(  # noqa: PLR0917
    session: Ikev1Session,
    sa: IsakmpSa,
    data: bytes,
    hdr: Header,
    src: tuple[str, int],
    dst: tuple[str, int],
    now: float,
) -> None:
    msg = _plain(session, data)
    if msg is None:
        return
    kn = _ke_nonce(session, msg)
    if kn is None:
        return
    assert sa.suite is not None
    sa.g_xi, sa.ni = kn
    sa.dh = dh_group(sa.suite.group).generate(session.rng)
    sa.g_xr = sa.dh.public_bytes()
    sa.nr = session.rng.bytes(session.config.nonce_bytes)
    if not _derive(session, sa, sa.g_xi):
        return
    _detect_nat(session, sa, msg, src, dst)
    payloads: list[AnyPayload] = [KePayload(sa.g_xr), NoncePayload(sa.nr)]
    payloads += _nat_d(session, sa, src)
    raw, _ = encode_message(Message(sa.cky_i, sa.cky_r, Exchange.MAIN_MODE, 0, payloads))
    sa.flight.peer_last = data
    sa.flight.sent(raw, now, None)
    sa.state = "mm5"
    session.send(sa, raw)


def _tell_initiator(
    session: Ikev1Session, sa: IsakmpSa, ntype: int, src: tuple[str, int], dst: tuple[str, int]
) -> None:
    """One unprotected notify per SA, so the initiator learns of the failure at once."""
    if ntype in sa.peer_notified:
        return
    sa.peer_notified.append(ntype)
    informational.send_plain_notify(session, sa.cky_i, sa.cky_r, ntype, src, dst[1])


def _responder_mm5(  # noqa: PLR0917
    session: Ikev1Session,
    sa: IsakmpSa,
    data: bytes,
    hdr: Header,
    src: tuple[str, int],
    dst: tuple[str, int],
    now: float,
) -> None:
    assert sa.keys is not None and sa.suite is not None

    def bad_key(why: str) -> None:
        session.log("auth_failed", why, "error")
        _tell_initiator(session, sa, Notify.PAYLOAD_MALFORMED, src, dst)

    decrypted = _decrypt_last_pair(session, sa, data, hdr, 5, bad_key)
    if decrypted is None:
        return
    msg, last = decrypted
    idx = next((i for i, p in enumerate(msg.payloads) if isinstance(p, IdPayload)), None)
    hp = msg.first(HashPayload)
    if idx is None or not isinstance(hp, HashPayload):
        session.counters["malformed"] += 1
        return
    want = hash_i(
        sa.suite,
        sa.keys.skeyid,
        sa.g_xi,
        sa.g_xr,
        sa.cky_i,
        sa.cky_r,
        sa.sai_b,
        payload_body(msg, idx),
    )
    if hp.data != want:
        session.counters["auth_failed"] += 1
        session.log(
            "auth_failed", f"HASH_I in Main Mode message 5 does not verify ({PSK_HINT})", "error"
        )
        _tell_initiator(session, sa, Notify.AUTHENTICATION_FAILED, src, dst)
        return
    ident = msg.payloads[idx]
    assert isinstance(ident, IdPayload)
    if not _verify_id(session, ident, peer=True):
        return
    sa.initial_contact = any(
        isinstance(p, NotifyPayload) and p.notify_type == Notify.INITIAL_CONTACT
        for p in msg.payloads
    )
    sa.local_port, sa.remote_port = dst[1], src[1]
    sa.floated = sa.floated or dst[1] == session.config.nat_t_port
    mine = IdPayload.ipv4(session.config.our_id)
    h = hash_r(
        sa.suite, sa.keys.skeyid, sa.g_xi, sa.g_xr, sa.cky_i, sa.cky_r, sa.sai_b, mine.body()
    )
    raw, out_last = encode_message(
        Message(sa.cky_i, sa.cky_r, Exchange.MAIN_MODE, 0, [mine, HashPayload(h)]),
        sa.keys.enc_key,
        last,
    )
    sa.iv = out_last
    sa.flight.peer_last = data
    sa.flight.sent(raw, now, None)
    session.send(sa, raw)
    session.heard(sa, src, dst, now)
    session.phase1_established(sa, now)
