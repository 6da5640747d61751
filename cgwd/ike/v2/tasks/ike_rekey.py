"""CREATE_CHILD_SA rekeying the IKE SA (RFC 7296 §1.3.2, §2.18, collisions §2.8.2).

    HDR, SK {SA, Ni, KEi}  -->  <--  HDR, SK {SA, Nr, KEr}

The new IKE SA takes over the Child SAs; the initiator of the rekey then deletes the old
IKE SA. Its message IDs start again at zero.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from cgwd.ike.constants import ExchangeType, NotifyType, ProtocolId, name_of
from cgwd.ike.crypto import InvalidKeyExchange, derive_rekeyed_ike_keys, dh_group
from cgwd.ike.crypto.kex import DhPrivate
from cgwd.ike.v2 import negotiation as neg
from cgwd.ike.v2 import wire
from cgwd.ike.v2.payloads import KePayload, NoncePayload
from cgwd.ike.v2.sa import IkeSa
from cgwd.ike.v2.states import IkeState
from cgwd.ike.v2.tasks.base import Outcome, SessionOps, Task
from cgwd.ike.v2.tasks.ike_init import set_keys

RETRY_TEMPORARY = 5.0
RETRY_FAILED = 60.0


def _successor(old: IkeSa, spi_i: bytes, spi_r: bytes, initiator: bool, now: float) -> IkeSa:
    new = IkeSa(spi_i=spi_i, spi_r=spi_r, initiator=initiator, created_at=now)
    new.remote_ip, new.remote_port, new.local_port = old.remote_ip, old.remote_port, old.local_port
    new.nat_local, new.nat_remote, new.nat_t = old.nat_local, old.nat_remote, old.nat_t
    new.rekeyed_from = old.spi_i
    new.last_heard = now
    return new


def _derive(
    old: IkeSa, new: IkeSa, chosen: neg.Proposal, shared: Any, *, ni: bytes, nr: bytes
) -> None:
    suite = wire.ike_suite_of(chosen)
    assert old.sk_d is not None
    keys = derive_rekeyed_ike_keys(
        suite, old.sk_d, shared, ni, nr, new.spi_i, new.spi_r, old_prf_id=old.prf_id
    )
    new.ni, new.nr = ni, nr
    new.created_by = (ni, nr)
    set_keys(new, suite, keys)


class IkeRekey(Task):
    """Our rekey of ``sa`` (same DH group as it was built with unless told otherwise)."""

    name = "IKE_REKEY"
    exchange = ExchangeType.CREATE_CHILD_SA

    def __init__(self, session: SessionOps, sa: IkeSa, group: int | None = None) -> None:
        super().__init__(session, sa)
        if group is None:
            # The group the IKE SA was built with (an established SA always has a suite).
            group = (
                sa.suite.dh_group
                if sa.suite is not None
                else neg.dh_groups(session.config.ike_proposals)[0]
            )
        self.group = group
        self.spi_i = b""
        self.ni = b""
        self.dh: DhPrivate | None = None
        self.offered: list[neg.Proposal] = []

    def applicable(self) -> bool:
        return self.sa.state == IkeState.ESTABLISHED and self.sa.successor is None

    def build(self, now: float) -> Sequence[Any]:
        session = self.session
        self.sa.state = IkeState.REKEYING
        self.spi_i = session.rng.bytes(8)
        self.ni = session.rng.bytes(session.config.nonce_bytes)
        self.offered = wire.numbered(session.config.ike_proposals, self.spi_i)
        self.dh = dh_group(self.group).generate(session.rng)
        return [
            wire.sa_payload(self.offered),
            NoncePayload(self.ni),
            KePayload(self.group, self.dh.public_bytes()),
        ]

    def _retry(self, delay: float, now: float, group: int | None = None) -> Outcome:
        self.abort()
        sa, session = self.sa, self.session

        def again(t: float) -> None:
            if sa.state == IkeState.ESTABLISHED and sa.successor is None:
                session.queue_task(sa, IkeRekey(session, sa, group))

        session.later(now + delay, again)
        return Outcome.DONE

    def abort(self) -> None:
        if self.sa.state == IkeState.REKEYING:
            self.sa.state = IkeState.ESTABLISHED

    def process(self, msg: wire.Received, now: float) -> Outcome:
        session, sa = self.session, self.sa
        error = msg.error_notify()
        if error is not None:
            if error == NotifyType.INVALID_KE_PAYLOAD:
                n = msg.notify(NotifyType.INVALID_KE_PAYLOAD)
                wanted = int.from_bytes(n.data[:2], "big") if n and len(n.data) >= 2 else 0
                if wanted in neg.dh_groups(self.offered) and wanted != self.group:
                    return self._retry(0.0, now, wanted)
            delay = RETRY_TEMPORARY if error == NotifyType.TEMPORARY_FAILURE else RETRY_FAILED
            session.log(
                "ike_rekey_failed",
                f"IKE SA rekey: peer answered {name_of(NotifyType, error)}",
                "warning",
            )
            return self._retry(delay, now)
        proposals, nr, ke = msg.proposals(), msg.nonce(), msg.ke()
        chosen = None if proposals is None else neg.accept_choice(proposals, self.offered)
        if (
            chosen is None
            or nr is None
            or ke is None
            or ke.group != self.group
            or wire.dh_of(chosen) != self.group
            or len(chosen.spi) != 8
        ):
            session.log("ike_rekey_failed", "IKE SA rekey: unusable answer", "warning")
            return self._retry(RETRY_FAILED, now)
        assert self.dh is not None
        try:
            shared = self.dh.shared_secret(ke.data)
            new = _successor(sa, self.spi_i, chosen.spi, True, now)
            _derive(sa, new, chosen, shared, ni=self.ni, nr=nr)
        except (InvalidKeyExchange, ValueError) as exc:
            session.log("ike_rekey_failed", f"IKE SA rekey: {exc}", "warning")
            return self._retry(RETRY_FAILED, now)
        session.ike_rekey_finished(sa, new, now, ours=True)
        return Outcome.DONE


def respond_ike_rekey(session: SessionOps, sa: IkeSa, msg: wire.Received, now: float) -> list[Any]:
    """The responder's side of an IKE SA rekey."""
    if sa.state not in (IkeState.ESTABLISHED, IkeState.REKEYING) or sa.successor is not None:
        return [wire.notify(NotifyType.TEMPORARY_FAILURE)]
    if sa.tm.active is not None and getattr(sa.tm.active, "name", "") == "CHILD_REKEY":
        return [wire.notify(NotifyType.TEMPORARY_FAILURE)]  # finish our Child rekey first
    proposals, ni, ke = msg.proposals(), msg.nonce(), msg.ke()
    if proposals is None or ni is None or ke is None:
        return [wire.notify(NotifyType.INVALID_SYNTAX)]
    chosen = neg.select_proposal(proposals, session.config.ike_proposals)
    if chosen is None or len(chosen.spi) != 8 or chosen.protocol != ProtocolId.IKE:
        session.log("no_proposal_chosen", "IKE SA rekey: no acceptable proposal", "warning")
        return [wire.notify(NotifyType.NO_PROPOSAL_CHOSEN)]
    group = wire.dh_of(chosen)
    if group is None or group != ke.group:
        return [wire.notify(NotifyType.INVALID_KE_PAYLOAD, (group or 0).to_bytes(2, "big"))]
    nr = session.rng.bytes(session.config.nonce_bytes)
    dh = dh_group(group).generate(session.rng)
    spi_r = session.rng.bytes(8)
    try:
        shared = dh.shared_secret(ke.data)
        new = _successor(sa, chosen.spi, spi_r, False, now)
        _derive(sa, new, chosen, shared, ni=ni, nr=nr)
    except (InvalidKeyExchange, ValueError):
        return [wire.notify(NotifyType.NO_PROPOSAL_CHOSEN)]
    session.ike_rekey_finished(sa, new, now, ours=False)
    answer = neg.Proposal(chosen.number, chosen.protocol, spi_r, chosen.transforms)
    return [wire.sa_payload([answer]), NoncePayload(nr), KePayload(group, dh.public_bytes())]
