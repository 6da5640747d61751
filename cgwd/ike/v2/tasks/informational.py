"""INFORMATIONAL exchanges (RFC 7296 §1.4, §2.4): liveness checks and DELETE.

    HDR, SK {}                    -->  <--  HDR, SK {}                   (liveness / DPD)
    HDR, SK {D(ESP, SPIs)}        -->  <--  HDR, SK {D(ESP, our SPIs)}   (Child SA, §1.4.1)
    HDR, SK {D(IKE)}              -->  <--  HDR, SK {}                   (IKE SA and its children)

Only messages that passed the SK integrity check reach these handlers, so nothing
unauthenticated can delete an SA.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from cgwd.ike.constants import ExchangeType, NotifyType, ProtocolId, name_of
from cgwd.ike.retransmit import RetransmitPolicy
from cgwd.ike.v2 import wire
from cgwd.ike.v2.payloads import DeletePayload
from cgwd.ike.v2.sa import ChildSa, IkeSa
from cgwd.ike.v2.states import ChildState, IkeState
from cgwd.ike.v2.tasks.base import Outcome, SessionOps, Task


class Dpd(Task):
    """An empty INFORMATIONAL request: the peer must answer it (§2.4)."""

    name = "DPD"
    exchange = ExchangeType.INFORMATIONAL

    @property
    def policy(self) -> RetransmitPolicy:
        return self.session.config.dpd_retransmit

    def build(self, now: float) -> Sequence[Any]:
        return []

    def process(self, msg: wire.Received, now: float) -> Outcome:
        return Outcome.DONE

    def give_up(self, now: float) -> None:
        tries = self.policy.tries
        self.session.log("dpd_timeout", f"DPD timed out after {tries} retransmits", "warning")
        self.session.ike_failed(self.sa, "dpd_timeout", now)


class DeleteChild(Task):
    """Delete one of our Child SAs: we name our inbound SPI, the peer answers with its own."""

    name = "CHILD_DELETE"
    exchange = ExchangeType.INFORMATIONAL

    def __init__(self, session: SessionOps, sa: IkeSa, child: ChildSa, reason: str) -> None:
        super().__init__(session, sa)
        self.child = child
        self.reason = reason

    def applicable(self) -> bool:
        return self.child.state != ChildState.GONE and self.child.child_id in self.session.children

    def build(self, now: float) -> Sequence[Any]:
        if self.child.state != ChildState.DELETING:
            self.child.state = ChildState.DELETING
        return [DeletePayload(ProtocolId.ESP, (self.child.spi_in.to_bytes(4, "big"),))]

    def process(self, msg: wire.Received, now: float) -> Outcome:
        self.session.remove_child(self.child, self.reason)
        return Outcome.DONE


class DeleteIke(Task):
    """Delete an IKE SA (and with it, at the peer, the Child SAs it still owns)."""

    name = "IKE_DELETE"
    exchange = ExchangeType.INFORMATIONAL

    def __init__(self, session: SessionOps, sa: IkeSa, reason: str) -> None:
        super().__init__(session, sa)
        self.reason = reason

    @property
    def policy(self) -> RetransmitPolicy:
        return self.session.config.dpd_retransmit

    def applicable(self) -> bool:
        return self.sa.state != IkeState.DEAD

    def build(self, now: float) -> Sequence[Any]:
        self.sa.state = IkeState.DELETING
        return [DeletePayload(ProtocolId.IKE)]

    def process(self, msg: wire.Received, now: float) -> Outcome:
        self.session.ike_gone(self.sa, self.reason, now)
        return Outcome.DONE

    def give_up(self, now: float) -> None:
        self.session.ike_gone(self.sa, self.reason, now)


def respond_informational(
    session: SessionOps, sa: IkeSa, msg: wire.Received, now: float
) -> list[Any]:
    """Answer liveness checks, DELETEs and notifies."""
    for n in msg.msg.notifies():
        if n.type < 16384:
            session.log(
                "peer_error_notify", f"peer reported {name_of(NotifyType, n.type)}", "warning"
            )
    ours: list[bytes] = []
    for d in msg.deletes():
        if d.protocol == ProtocolId.IKE:
            session.log("ike_deleted_by_peer", "peer deleted the IKE SA")
            sa.close_after_response = "deleted_by_peer"
            return []
        if d.protocol != ProtocolId.ESP:
            continue
        for spi in d.spis:
            if len(spi) != 4:
                continue
            child = session.child_by_spi_out(int.from_bytes(spi, "big"))
            if child is None:
                continue
            ours.append(child.spi_in.to_bytes(4, "big"))
            session.child_deleted_by_peer(child, now)
    if ours:
        return [DeletePayload(ProtocolId.ESP, tuple(ours))]
    return []
