"""IKE_AUTH with pre-shared keys and the first Child SA (RFC 7296 §1.2, §2.15, §2.17).

    HDR, SK {IDi, [N(INITIAL_CONTACT)], AUTH, SA, TSi, TSr}  -->
                                      <--  HDR, SK {IDr, AUTH, SA, TSi, TSr}

The Child SA carries no key exchange, so DH transforms are left out of the SA payload and
ignored in the peer's (§1.2). A Child SA failure (NO_PROPOSAL_CHOSEN, TS_UNACCEPTABLE)
leaves the IKE SA up (§1.2); for a route-based AWS tunnel an IKE SA without its Child SA
is useless, so the initiator then deletes it and retries later.
"""

from __future__ import annotations

import hmac
from collections.abc import Sequence
from typing import Any

from cgwd.ike.constants import AuthMethod, ExchangeType, NotifyType, ProtocolId, name_of
from cgwd.ike.crypto import auth_signed_octets, psk_auth
from cgwd.ike.v2 import negotiation as neg
from cgwd.ike.v2 import wire
from cgwd.ike.v2.payloads import AuthPayload
from cgwd.ike.v2.sa import ChildSa, IkeSa
from cgwd.ike.v2.states import IkeState
from cgwd.ike.v2.tasks.base import Outcome, SessionOps, Task
from cgwd.ike.v2.tasks.child_keys import make_child


def _auth_data(session: SessionOps, sa: IkeSa, *, of_initiator: bool, id_body: bytes) -> bytes:
    """AUTH for the initiator's or the responder's side of ``sa`` (§2.15)."""
    assert sa.sk_pi is not None and sa.sk_pr is not None
    if of_initiator:
        octets = auth_signed_octets(sa.prf_id, sa.init_request, sa.nr, sa.sk_pi, id_body)
    else:
        octets = auth_signed_octets(sa.prf_id, sa.init_response, sa.ni, sa.sk_pr, id_body)
    return psk_auth(sa.prf_id, session.config.psk, octets)


def _verify_peer(
    session: SessionOps, sa: IkeSa, msg: wire.Received, *, peer_is_initiator: bool
) -> str | None:
    """None if the peer's ID and AUTH check out, else why not (for the log)."""
    ident = msg.identity(peer_is_initiator)
    auth = msg.auth()
    if ident is None or auth is None:
        return "no ID or AUTH payload"
    if not wire.peer_id_matches(ident, session.config.peer_id):
        return f"peer identity {ident} is not {session.config.peer_id}"
    if auth.method != AuthMethod.SHARED_KEY_MIC:
        return f"peer uses authentication method {name_of(AuthMethod, auth.method)}, not PSK"
    expected = _auth_data(session, sa, of_initiator=peer_is_initiator, id_body=ident.body)
    if not hmac.compare_digest(expected, auth.data):
        return "pre-shared key mismatch (AUTH payload does not verify)"
    return None


class IkeAuth(Task):
    """The initiator's IKE_AUTH: authenticate and create the tunnel's first Child SA."""

    name = "IKE_AUTH"
    exchange = ExchangeType.IKE_AUTH

    def __init__(self, session: SessionOps, sa: IkeSa) -> None:
        super().__init__(session, sa)
        self.spi_in: int | None = None
        self.offered: list[neg.Proposal] = []

    def build(self, now: float) -> Sequence[Any]:
        cfg, sa = self.session.config, self.sa
        if self.spi_in is None:
            self.spi_in = self.session.allocate_spi()
        self.offered = wire.numbered(
            cfg.esp_proposals, self.spi_in.to_bytes(4, "big"), strip_dh=True
        )
        idi = wire.id_payload(True, cfg.our_id)
        payloads: list[Any] = [idi]
        if sa.initial_contact:
            payloads.append(wire.notify(NotifyType.INITIAL_CONTACT))
        auth = _auth_data(self.session, sa, of_initiator=True, id_body=idi.body)
        payloads += [
            AuthPayload(AuthMethod.SHARED_KEY_MIC, auth),
            wire.sa_payload(self.offered),
            *wire.ts_payloads(cfg.local_ts, cfg.remote_ts),
        ]
        return payloads

    def _fail(self, reason: str, message: str, now: float) -> Outcome:
        self.session.log(reason, message, "warning")
        self.session.ike_failed(self.sa, reason, now)
        return Outcome.DONE

    def process(self, msg: wire.Received, now: float) -> Outcome:
        sa, session = self.sa, self.session
        if msg.auth() is None:
            error = msg.error_notify()
            if error == NotifyType.AUTHENTICATION_FAILED:
                return self._fail(
                    "auth_failed",
                    "peer rejected our authentication (check the pre-shared key and our identity)",
                    now,
                )
            named = "no AUTH payload" if error is None else name_of(NotifyType, error)
            return self._fail("ike_auth_failed", f"IKE_AUTH failed: {named}", now)
        problem = _verify_peer(session, sa, msg, peer_is_initiator=False)
        if problem is not None:
            return self._fail("auth_failed", problem, now)
        session.ike_established(sa, now)
        if sa.state == IkeState.DEAD:
            return Outcome.DONE  # a duplicate of the peer's simultaneous IKE SA, deleted
        # -- the Child SA --
        error = msg.error_notify()
        if error is not None:
            reasons: dict[int, str] = {
                NotifyType.NO_PROPOSAL_CHOSEN: "no_proposal_chosen",
                NotifyType.TS_UNACCEPTABLE: "ts_unacceptable",
            }
            reason = reasons.get(error, "child_create_failed")
            session.log(
                "child_create_failed",
                f"Phase 2 was unable to establish: peer answered {name_of(NotifyType, error)}",
                "warning",
            )
            session.ike_failed(sa, reason, now)
            return Outcome.DONE
        proposals = msg.proposals()
        chosen = (
            None if proposals is None else neg.accept_choice(proposals, self.offered, strip_dh=True)
        )
        tsi, tsr = msg.selectors(True), msg.selectors(False)
        if chosen is None or tsi is None or tsr is None:
            return self._child_fail("peer's Child SA answer is not one of our proposals", now)
        if not neg.within(tsi, session.config.local_ts) or not neg.within(
            tsr, session.config.remote_ts
        ):
            return self._child_fail("peer's traffic selectors are wider than ours", now)
        try:
            suite = wire.esp_suite_of(chosen)
        except ValueError as exc:
            return self._child_fail(str(exc), now)
        if chosen.protocol != ProtocolId.ESP or len(chosen.spi) != 4:
            return self._child_fail("Child SA answer is not ESP with a 4-octet SPI", now)
        assert self.spi_in is not None
        child = make_child(
            session.config,
            sa,
            child_id=session.new_child_id(),
            suite=suite,
            spi_in=self.spi_in,
            spi_out=int.from_bytes(chosen.spi, "big"),
            ni=sa.ni,
            nr=sa.nr,
            we_initiated=True,
            ts_local=tuple(tsi),
            ts_remote=tuple(tsr),
            now=now,
        )
        session.install_child(child)
        return Outcome.DONE

    def _child_fail(self, message: str, now: float) -> Outcome:
        self.session.log(
            "child_create_failed", f"Phase 2 was unable to establish: {message}", "warning"
        )
        self.session.ike_failed(self.sa, "child_create_failed", now)
        return Outcome.DONE


def respond_ike_auth(session: SessionOps, sa: IkeSa, msg: wire.Received, now: float) -> list[Any]:
    """The responder's IKE_AUTH. On authentication failure the answer is
    N(AUTHENTICATION_FAILED) and the session closes the IKE SA after sending it."""
    cfg = session.config
    problem = _verify_peer(session, sa, msg, peer_is_initiator=True)
    if problem is not None:
        session.log("auth_failed", f"peer failed authentication: {problem}", "warning")
        session.ike_failed(sa, "auth_failed", now)
        return [wire.notify(NotifyType.AUTHENTICATION_FAILED)]
    sa.initial_contact = msg.notify(NotifyType.INITIAL_CONTACT) is not None
    idr = wire.id_payload(False, cfg.our_id)
    auth = _auth_data(session, sa, of_initiator=False, id_body=idr.body)
    payloads: list[Any] = [idr, AuthPayload(AuthMethod.SHARED_KEY_MIC, auth)]
    session.ike_established(sa, now)
    child_payloads, _ = respond_child(session, sa, msg, now, ni=sa.ni, nr=sa.nr, in_ike_auth=True)
    return payloads + child_payloads


def respond_child(
    session: SessionOps,
    sa: IkeSa,
    msg: wire.Received,
    now: float,
    *,
    ni: bytes,
    nr: bytes,
    in_ike_auth: bool,
    shared: Any = None,
    pfs_group: int | None = None,
    chosen: neg.Proposal | None = None,
    rekeyed_from: int | None = None,
    delay_outbound: bool = False,
) -> tuple[list[Any], ChildSa | None]:
    """SA, TSi, TSr of a responder creating a Child SA (or the error notify instead),
    and the Child SA, which is installed already."""
    cfg = session.config
    proposals = msg.proposals()
    if chosen is None:
        chosen = (
            None
            if proposals is None
            else neg.select_proposal(proposals, cfg.esp_proposals, strip_dh=in_ike_auth)
        )
    if chosen is None or chosen.protocol != ProtocolId.ESP or len(chosen.spi) != 4:
        session.log(
            "child_create_failed",
            "Phase 2 was unable to establish: no acceptable ESP proposal",
            "warning",
        )
        session.log("no_proposal_chosen", "no proposal chosen for the Child SA", "warning")
        return [wire.notify(NotifyType.NO_PROPOSAL_CHOSEN)], None
    tsi_in, tsr_in = msg.selectors(True), msg.selectors(False)
    tsi = neg.narrow(tsi_in or [], cfg.remote_ts)
    tsr = neg.narrow(tsr_in or [], cfg.local_ts)
    if not tsi or not tsr:
        session.log("ts_unacceptable", "peer's traffic selectors do not fit ours", "warning")
        return [wire.notify(NotifyType.TS_UNACCEPTABLE)], None
    try:
        suite = wire.esp_suite_of(chosen)
    except ValueError:
        return [wire.notify(NotifyType.NO_PROPOSAL_CHOSEN)], None
    spi_in = session.allocate_spi()
    child = make_child(
        cfg,
        sa,
        child_id=session.new_child_id(),
        suite=suite,
        spi_in=spi_in,
        spi_out=int.from_bytes(chosen.spi, "big"),
        ni=ni,
        nr=nr,
        we_initiated=False,
        ts_local=tuple(tsr),
        ts_remote=tuple(tsi),
        now=now,
        shared_secret=shared,
        pfs_group=pfs_group,
        rekeyed_from=rekeyed_from,
    )
    session.install_child(child, delay_outbound=delay_outbound)
    answer = neg.Proposal(
        chosen.number, chosen.protocol, spi_in.to_bytes(4, "big"), chosen.transforms
    )
    return [wire.sa_payload([answer]), *wire.ts_payloads(tsi, tsr)], child
