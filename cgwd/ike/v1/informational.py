"""Informational exchanges (RFC 2409 §5.7): DPD (RFC 3706), DELETE, notifies.

Protected messages are HDR*, HASH(1), N/D with HASH(1) = prf(SKEYID_a, M-ID | N/D) and an
IV of hash(last phase 1 block | M-ID). Only such authenticated messages act on SAs;
unprotected notifies (sent before keys exist) are logged, and may only end a Main Mode
that is still being negotiated.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from cgwd.ike.decode_errors import IkeDecodeError
from cgwd.ike.v1 import quick_mode
from cgwd.ike.v1.constants import ERROR_NOTIFY_MAX, Exchange, Notify, ProtocolId
from cgwd.ike.v1.keys import phase2_iv, qm_hash1
from cgwd.ike.v1.message import Header, Message, decode_message, encode_chain, encode_message
from cgwd.ike.v1.payloads import AnyPayload, DeletePayload, HashPayload, NotifyPayload
from cgwd.ike.v1.sa import CHILD_RETRY_DELAY, ChildSa, IsakmpSa

if TYPE_CHECKING:
    from cgwd.ike.v1.session import Ikev1Session


def _name(n: int) -> str:
    try:
        return Notify(n).name
    except ValueError:
        return str(n)


def send(session: Ikev1Session, sa: IsakmpSa, payloads: list[AnyPayload]) -> None:
    """One protected Informational message on ``sa``."""
    assert sa.suite is not None and sa.keys is not None
    while True:
        mid = int.from_bytes(session.rng.bytes(4), "big")
        if mid and mid not in sa.seen_mids:
            break
    sa.remember_mid(mid)
    h = qm_hash1(sa.suite, sa.keys.skeyid_a, mid, encode_chain(payloads))
    msg = Message(sa.cky_i, sa.cky_r, Exchange.INFORMATIONAL, mid, [HashPayload(h), *payloads])
    raw, _ = encode_message(msg, sa.keys.enc_key, phase2_iv(sa.suite, sa.iv, mid))
    session.send(sa, raw)


def send_notify(session: Ikev1Session, sa: IsakmpSa, ntype: int, protocol: int) -> None:
    send(session, sa, [NotifyPayload(ntype, protocol)])


def send_plain_notify(  # noqa: PLR0917
    session: Ikev1Session,
    cky_i: bytes,
    cky_r: bytes,
    ntype: int,
    dst: tuple[str, int],
    src_port: int,
) -> None:
    """An unprotected Informational notify (before keys exist, RFC 2408 §5.5)."""
    msg = Message(cky_i, cky_r, Exchange.INFORMATIONAL, 0, [NotifyPayload(ntype)])
    raw, _ = encode_message(msg)
    session.send_to(raw, dst, src_port)


def send_delete_isakmp(session: Ikev1Session, sa: IsakmpSa) -> None:
    if sa.keys is None or sa.state != "established":
        return
    send(session, sa, [DeletePayload(ProtocolId.ISAKMP, (sa.cky_i + sa.cky_r,))])


def send_delete_esp(session: Ikev1Session, sa: IsakmpSa, child: ChildSa) -> None:
    """DELETE names our inbound SPI: the peer finds its outbound SA by it (RFC 2408 §3.15)."""
    if sa.keys is None:
        return
    send(session, sa, [DeletePayload(ProtocolId.ESP, (child.spi_in.to_bytes(4, "big"),))])


def dpd_timer(session: Ikev1Session, sa: IsakmpSa, now: float) -> None:
    """RFC 3706 §5.3/5.5: probe after ``dpd_delay`` of silence; each retry is a new
    R-U-THERE with the next sequence number; give up per ``dpd_retransmit``."""
    cfg = session.config
    if sa is not session.current or not sa.dpd_peer:
        return
    if sa.dpd_outstanding:
        if sa.dpd_next is None or now < sa.dpd_next:
            return
        if cfg.dpd_retransmit.gives_up_after(sa.dpd_sent):
            session.log(
                "dpd_timeout",
                f"DPD timed out after {sa.dpd_sent - 1} retransmits",
                "warning",
            )
            sa.dpd_outstanding.clear()
            sa.dpd_next = None
            session.isakmp_lost(sa, "dpd_timeout", now, children=True)
            return
        sa.dpd_sent += 1
        _send_r_u_there(session, sa, now)
        return
    if now >= sa.last_heard + cfg.dpd_delay:
        sa.dpd_sent = 1
        _send_r_u_there(session, sa, now)


def _send_r_u_there(session: Ikev1Session, sa: IsakmpSa, now: float) -> None:
    if sa.dpd_seq == 0:  # RFC 3706 §7: start from a random value
        sa.dpd_seq = int.from_bytes(session.rng.bytes(2), "big") + 1
    sa.dpd_seq = (sa.dpd_seq + 1) & 0xFFFFFFFF
    sa.dpd_outstanding.add(sa.dpd_seq)
    sa.dpd_next = now + session.config.dpd_retransmit.interval(sa.dpd_sent)
    session.counters["dpd_sent"] += 1
    send(
        session,
        sa,
        [
            NotifyPayload(
                Notify.R_U_THERE, ProtocolId.ISAKMP, sa.cookies, sa.dpd_seq.to_bytes(4, "big")
            )
        ],
    )


def receive_plain(session: Ikev1Session, data: bytes, hdr: Header, now: float) -> None:
    """An unprotected Informational: logged; may end a Main Mode still being negotiated."""
    try:
        msg, _ = decode_message(data)
    except IkeDecodeError:
        session.counters["malformed"] += 1
        return
    session.counters["unprotected_notify"] += 1
    for p in msg.payloads:
        if not isinstance(p, NotifyPayload):
            continue
        session.log(
            "peer_notify",
            f"unauthenticated notify {_name(p.notify_type)} from the peer",
            "warning",
        )
        if p.notify_type > ERROR_NOTIFY_MAX:
            continue
        for sa in list(session.isakmp_sas):
            if sa.cky_i != hdr.spi_i or not sa.initiator or sa.state == "established":
                continue
            if sa.state == "dead":
                continue
            sa.peer_notified.append(p.notify_type)
            if p.notify_type == Notify.NO_PROPOSAL_CHOSEN and sa.state == "mm2":
                session.phase1_failed(
                    sa, "no_proposal_chosen", "No Proposal Match Found (peer's notify)", now
                )
            elif sa.state == "mm6":
                session.phase1_failed(
                    sa,
                    "auth_failed",
                    f"peer answered Main Mode message 5 with {_name(p.notify_type)}"
                    " (probable pre-shared key mismatch)",
                    now,
                )


def receive(  # noqa: PLR0917
    session: Ikev1Session,
    sa: IsakmpSa,
    data: bytes,
    hdr: Header,
    src: tuple[str, int],
    dst: tuple[str, int],
    now: float,
) -> None:
    assert sa.suite is not None and sa.keys is not None
    try:
        msg, _ = decode_message(data, sa.keys.enc_key, phase2_iv(sa.suite, sa.iv, hdr.message_id))
    except IkeDecodeError:
        session.counters["integrity_failed"] += 1
        return
    if not msg.payloads or not isinstance(msg.payloads[0], HashPayload):
        session.counters["unprotected"] += 1
        return
    if msg.payloads[0].data != qm_hash1(sa.suite, sa.keys.skeyid_a, hdr.message_id,
                                        msg.raw_after(0)):  # fmt: skip
        session.counters["integrity_failed"] += 1
        return
    if hdr.message_id in sa.seen_mids:
        session.counters["replayed_message_id"] += 1
        return
    sa.remember_mid(hdr.message_id)
    session.heard(sa, src, dst, now)
    for p in msg.payloads[1:]:
        if isinstance(p, NotifyPayload):
            _notify(session, sa, p, now)
        elif isinstance(p, DeletePayload):
            _delete(session, sa, p, now)


def _notify(session: Ikev1Session, sa: IsakmpSa, p: NotifyPayload, now: float) -> None:
    if p.notify_type == Notify.R_U_THERE:
        if len(p.data) != 4:
            session.counters["malformed"] += 1
            return
        session.counters["dpd_answered"] += 1
        send(
            session,
            sa,
            [NotifyPayload(Notify.R_U_THERE_ACK, ProtocolId.ISAKMP, sa.cookies, p.data)],
        )
        return
    if p.notify_type == Notify.R_U_THERE_ACK:
        seq = int.from_bytes(p.data[:4], "big") if len(p.data) == 4 else -1
        if seq in sa.dpd_outstanding:
            sa.dpd_outstanding.clear()
            sa.dpd_next = None
            sa.dpd_sent = 0
        else:
            session.counters["dpd_ack_unexpected"] += 1
        return
    level = "warning" if p.notify_type <= ERROR_NOTIFY_MAX else "info"
    session.log("peer_notify", f"peer sent notify {_name(p.notify_type)}", level)
    if p.notify_type <= ERROR_NOTIFY_MAX:
        quick_mode.refused(session, sa, p.notify_type, now)


def _delete(session: Ikev1Session, sa: IsakmpSa, p: DeletePayload, now: float) -> None:
    if p.protocol == ProtocolId.ISAKMP:
        for spi in p.spis:
            target = next(
                (
                    s
                    for s in session.isakmp_sas
                    if s.cky_i + s.cky_r == spi and s.state == "established"
                ),
                None,
            )
            if target is None:
                continue
            session.log("ike_deleted_by_peer", f"peer deleted ISAKMP SA {target.cky_i.hex()}_i")
            session.isakmp_lost(target, "deleted_by_peer", now, children=False)
        return
    if p.protocol != ProtocolId.ESP:
        return
    for spi in p.spis:
        if len(spi) != 4:
            continue
        child = session.find_child_by_spi_out(int.from_bytes(spi, "big"))
        if child is None:
            continue
        session.log("child_deleted_by_peer", f"peer deleted IPsec SA {child.spi_in:08x}_i")
        session.remove_child(child, "deleted by peer")
        if not session.live_children() and session.current is not None:
            session.child_retry_at = now + CHILD_RETRY_DELAY
