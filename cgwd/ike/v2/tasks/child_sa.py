"""CREATE_CHILD_SA for Child SAs: rekey with PFS and re-creation (RFC 7296 §1.3, §2.8).

    HDR, SK {[N(REKEY_SA)], SA, Ni, [KEi], TSi, TSr}  -->
                                 <--  HDR, SK {SA, Nr, [KEr], TSi, TSr}

`ChildCreate` is the initiator's task (a rekey when it has an ``old`` Child SA);
`respond_create_child_sa` handles the peer's request and hands IKE SA rekeys to
`ike_rekey`. Collisions are not decided here: both sides' results go to the session, which
applies the nonce rule (`task_manager.redundant_exchange`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from cgwd.ike.constants import ExchangeType, NotifyType, ProtocolId, name_of
from cgwd.ike.crypto import InvalidKeyExchange, dh_group
from cgwd.ike.crypto.kex import DhPrivate
from cgwd.ike.v2 import negotiation as neg
from cgwd.ike.v2 import wire
from cgwd.ike.v2.payloads import KePayload, NoncePayload
from cgwd.ike.v2.sa import ChildSa, IkeSa
from cgwd.ike.v2.states import ChildState, IkeState
from cgwd.ike.v2.tasks.base import Outcome, SessionOps, Task
from cgwd.ike.v2.tasks.child_keys import make_child
from cgwd.ike.v2.tasks.ike_auth import respond_child

PEER_DELETE_GRACE = 30.0  # the peer deletes the SA it replaced by then, or we do
TEMPORARY_RETRY = 5.0  # §2.25: TEMPORARY_FAILURE -> try again a little later
FAILED_RETRY = 60.0


class ChildCreate(Task):
    """Rekey ``old`` (or create a fresh Child SA when ``old`` is None) with PFS ``group``."""

    exchange = ExchangeType.CREATE_CHILD_SA

    def __init__(
        self, session: SessionOps, sa: IkeSa, old: ChildSa | None, group: int | None = None
    ) -> None:
        super().__init__(session, sa)
        self.old = old
        groups = neg.dh_groups(session.config.esp_proposals)
        self.group = group if group is not None else (groups[0] if groups else None)
        self.name = "CHILD_REKEY" if old is not None else "CHILD_CREATE"
        self.spi_in: int | None = None
        self.dh: DhPrivate | None = None
        self.ni = b""
        self.offered: list[neg.Proposal] = []

    def applicable(self) -> bool:
        if self.sa.state not in (IkeState.ESTABLISHED,):
            return False
        if self.old is None:
            return True
        return self.old.state == ChildState.INSTALLED and self.old.child_id in self.session.children

    def build(self, now: float) -> Sequence[Any]:
        cfg, session = self.session.config, self.session
        if self.old is not None:
            self.old.state = ChildState.REKEYING
        self.spi_in = session.allocate_spi()
        self.ni = session.rng.bytes(cfg.nonce_bytes)
        spi = self.spi_in.to_bytes(4, "big")
        self.offered = wire.numbered(cfg.esp_proposals, spi, strip_dh=self.group is None)
        payloads: list[Any] = []
        if self.old is not None:
            payloads.append(
                wire.notify(
                    NotifyType.REKEY_SA, b"", ProtocolId.ESP, self.old.spi_in.to_bytes(4, "big")
                )
            )
        payloads += [wire.sa_payload(self.offered), NoncePayload(self.ni)]
        if self.group is not None:
            self.dh = dh_group(self.group).generate(session.rng)
            payloads.append(KePayload(self.group, self.dh.public_bytes()))
        ts_local = self.old.ts_local if self.old is not None else cfg.local_ts
        ts_remote = self.old.ts_remote if self.old is not None else cfg.remote_ts
        payloads += wire.ts_payloads(ts_local, ts_remote)
        return payloads

    def _retry(self, delay: float, now: float, group: int | None = None) -> Outcome:
        sa, old, session = self.sa, self.old, self.session
        if old is not None and old.successor is not None and old.successor in session.children:
            # The peer rekeyed it while ours failed: its successor stands (§2.8.1), the
            # peer deletes the old SA.
            old.state = ChildState.REKEYED
            old.delete_deadline = now + PEER_DELETE_GRACE
            return Outcome.DONE
        if old is not None and old.state == ChildState.REKEYING:
            old.state = ChildState.INSTALLED
        if old is None and delay >= FAILED_RETRY and not session.has_live_children():
            # The tunnel has no Child SA and cannot get one over this IKE SA (e.g. a PFS
            # group mismatch, which only shows from the first rekey on, aws-behaviour.md
            # §4): start over with a new IKE SA, whose IKE_AUTH Child SA needs no PFS.
            session.ike_failed(sa, "child_create_failed", now)
            return Outcome.DONE
        g = self.group if group is None else group

        def again(t: float) -> None:
            if sa.state == IkeState.ESTABLISHED:
                session.queue_task(sa, ChildCreate(session, sa, old, g))

        session.later(now + delay, again)
        return Outcome.DONE

    def process(self, msg: wire.Received, now: float) -> Outcome:
        session = self.session
        error = msg.error_notify()
        what = "rekey" if self.old is not None else "creation"
        if error is not None:
            if error == NotifyType.INVALID_KE_PAYLOAD:
                data = msg.notify(NotifyType.INVALID_KE_PAYLOAD)
                wanted = int.from_bytes(data.data[:2], "big") if data and len(data.data) >= 2 else 0
                if wanted in neg.dh_groups(session.config.esp_proposals) and wanted != self.group:
                    session.log(
                        "invalid_ke_payload", f"Child SA {what}: peer wants PFS group {wanted}"
                    )
                    return self._retry(0.0, now, wanted)
            if error == NotifyType.TEMPORARY_FAILURE:
                session.log(
                    "child_rekey_deferred", f"peer answered TEMPORARY_FAILURE to Child SA {what}"
                )
                return self._retry(TEMPORARY_RETRY, now)
            if error == NotifyType.CHILD_SA_NOT_FOUND and self.old is not None:
                if self.old.successor in session.children:
                    # The peer rekeyed it too and already deleted it (§2.8.1): its
                    # successor is the tunnel's Child SA now.
                    session.log("child_rekey_collision", "(CHILD_REKEY) collision as CHILD_DELETE")
                    return Outcome.DONE
                session.log(
                    "child_rekey_failed", "peer no longer has the Child SA; creating a new one"
                )
                session.remove_child(self.old, "peer lost it")
                self.old = None
                return self._retry(0.0, now)
            session.log(
                "child_create_failed",
                f"Phase 2 was unable to establish ({what}): peer answered "
                f"{name_of(NotifyType, error)}"
                + (" (check the PFS groups)" if error == NotifyType.NO_PROPOSAL_CHOSEN else ""),
                "warning",
            )
            return self._retry(FAILED_RETRY, now)
        return self._complete(msg, now)

    def _complete(self, msg: wire.Received, now: float) -> Outcome:
        session, sa = self.session, self.sa
        proposals = msg.proposals()
        chosen = (
            None
            if proposals is None
            else neg.accept_choice(proposals, self.offered, strip_dh=self.group is None)
        )
        nr = msg.nonce()
        tsi, tsr = msg.selectors(True), msg.selectors(False)
        shared = None
        problem = None
        if chosen is None or nr is None or tsi is None or tsr is None or len(chosen.spi) != 4:
            problem = "answer is not one of our proposals or lacks Nr/TS"
        elif self.group is not None:
            ke = msg.ke()
            if ke is None or ke.group != self.group or wire.dh_of(chosen) != self.group:
                problem = "answer lacks the KE of the negotiated PFS group"
            else:
                assert self.dh is not None
                try:
                    shared = self.dh.shared_secret(ke.data)
                except InvalidKeyExchange as exc:
                    problem = f"bad KE: {exc}"
        if problem is None and chosen is not None:
            try:
                suite = wire.esp_suite_of(chosen)
            except ValueError as exc:
                problem = str(exc)
        if problem is not None or chosen is None or nr is None or tsi is None or tsr is None:
            session.log(
                "child_create_failed", f"Phase 2 was unable to establish: {problem}", "warning"
            )
            return self._retry(FAILED_RETRY, now)
        if self.old is not None and self.old.state != ChildState.REKEYING:
            # Deleted meanwhile (by the peer): still install, the session sorts it out.
            pass
        assert self.spi_in is not None
        child = make_child(
            session.config,
            sa,
            child_id=session.new_child_id(),
            suite=suite,
            spi_in=self.spi_in,
            spi_out=int.from_bytes(chosen.spi, "big"),
            ni=self.ni,
            nr=nr,
            we_initiated=True,
            ts_local=tuple(tsi),
            ts_remote=tuple(tsr),
            now=now,
            shared_secret=shared,
            pfs_group=self.group,
            rekeyed_from=None if self.old is None else self.old.child_id,
        )
        if self.old is not None:
            session.child_rekey_finished(self.old, child, now)
        else:
            session.install_child(child)
            session.log("child_established", f"Child SA created ({child.suite.name})")
        return Outcome.DONE

    def abort(self) -> None:
        """Dropped unsent or cut short (e.g. the IKE SA was rekeyed meanwhile): the Child
        SA must still be rekeyed, so make its rekey due again (on the current IKE SA)."""
        old = self.old
        if old is None:
            return
        if old.state == ChildState.REKEYING:
            old.state = ChildState.INSTALLED
        if old.state == ChildState.INSTALLED and old.rekey_at is None:
            old.rekey_at = old.created_at


def respond_create_child_sa(
    session: SessionOps, sa: IkeSa, msg: wire.Received, now: float
) -> list[Any]:
    """The responder's CREATE_CHILD_SA: IKE SA rekey, Child SA rekey or a new Child SA."""
    from cgwd.ike.v2.tasks.ike_rekey import respond_ike_rekey  # noqa: PLC0415 (cycle)

    proposals, ni = msg.proposals(), msg.nonce()
    if not proposals or ni is None:
        return [wire.notify(NotifyType.INVALID_SYNTAX)]
    if proposals[0].protocol == ProtocolId.IKE:
        return respond_ike_rekey(session, sa, msg, now)
    if sa.state != IkeState.ESTABLISHED:
        return [wire.notify(NotifyType.TEMPORARY_FAILURE)]  # §2.25: e.g. our IKE rekey in flight
    old = None
    rekey = msg.notify(NotifyType.REKEY_SA)
    if rekey is not None:
        old = (
            session.child_by_spi_out(int.from_bytes(rekey.spi, "big"))
            if len(rekey.spi) == 4
            else None
        )
        if old is None:
            return [wire.notify(NotifyType.CHILD_SA_NOT_FOUND, b"", ProtocolId.ESP, rekey.spi)]
        if old.state == ChildState.DELETING:
            return [wire.notify(NotifyType.TEMPORARY_FAILURE)]  # §2.25.1
    cfg = session.config
    ke = msg.ke()
    shared = None
    group = None
    if ke is not None:
        chosen = neg.select_proposal(proposals, cfg.esp_proposals)
        if chosen is None:
            # The peer's KE group may be one we do not list first: only a real mismatch of
            # groups should be answered with INVALID_KE_PAYLOAD (§1.3).
            session.log(
                "child_create_failed",
                "Phase 2 was unable to establish: no acceptable ESP proposal (check PFS groups)",
                "warning",
            )
            return [wire.notify(NotifyType.NO_PROPOSAL_CHOSEN)]
        group = wire.dh_of(chosen)
        if group is None or group != ke.group:
            want = group if group is not None else 0
            return [wire.notify(NotifyType.INVALID_KE_PAYLOAD, want.to_bytes(2, "big"))]
        dh = dh_group(group).generate(session.rng)
        try:
            shared = dh.shared_secret(ke.data)
        except InvalidKeyExchange:
            return [wire.notify(NotifyType.INVALID_SYNTAX)]
        ke_out: list[Any] = [KePayload(group, dh.public_bytes())]
    else:
        chosen = neg.select_proposal(proposals, cfg.esp_proposals, strip_dh=True)
        ke_out = []
    nr = session.rng.bytes(cfg.nonce_bytes)
    payloads, child = respond_child(
        session,
        sa,
        msg,
        now,
        ni=ni,
        nr=nr,
        in_ike_auth=False,
        shared=shared,
        pfs_group=group,
        chosen=chosen,
        rekeyed_from=None if old is None else old.child_id,
        delay_outbound=old is not None,
    )
    if child is None:
        return payloads
    if old is not None:
        session.child_rekey_answered(old, child, now)
    else:
        session.log("child_established", f"Child SA created by the peer ({child.suite.name})")
    # SA, Nr, [KEr], TSi, TSr
    return [payloads[0], NoncePayload(nr), *ke_out, *payloads[1:]]
