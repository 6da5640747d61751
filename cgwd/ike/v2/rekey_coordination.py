"""Rekey outcomes and collisions of the IKEv2 session (RFC 7296 §2.8, §2.8.1, §2.8.2, §2.18).

A mixin of `IkeSession`: what happens when a Child or IKE SA rekey completes, initiated by
either side, including both sides rekeying the same SA at once. The nonce rule itself is
`task_manager.redundant_exchange`; this module only applies its verdict: the redundant SA
is deleted by whoever created it, the survivor's initiator deletes the old SA, and outbound
traffic moves to an SA only once the peer is known to have it installed (make before
break).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from cgwd.ike.events import Event, IkeEstablished
from cgwd.ike.v2.sa import ChildSa, IkeSa
from cgwd.ike.v2.states import ChildState, IkeState
from cgwd.ike.v2.task_manager import redundant_exchange
from cgwd.ike.v2.tasks.informational import DeleteChild, DeleteIke

PEER_DELETE_GRACE = 30.0  # how long the rekey initiator has to delete the old SA (§2.8)
CHILD_RECREATE_DELAY = 1.0  # the peer deleted our only Child SA: make a new one after this

if TYPE_CHECKING:
    from cgwd.ike.v2.tasks.base import SessionOps, Task


class RekeyCoordination:
    """Rekey completion and collision handling, mixed into `IkeSession`."""

    children: dict[int, ChildSa]
    ike_sas: list[IkeSa]
    _current: IkeSa | None
    _child_retry_at: float | None

    if TYPE_CHECKING:  # provided by IkeSession

        def log(self, name: str, message: str, level: str = "info", **fields: Any) -> None: ...
        def emit(self, event: Event) -> None: ...
        def install_child(self, child: ChildSa, *, delay_outbound: bool = False) -> None: ...
        def remove_child(self, child: ChildSa, reason: str) -> None: ...
        def _owner(self, child: ChildSa) -> IkeSa: ...
        def _queue_current(self, task: Task) -> None: ...
        def _queue_on(self, sa: IkeSa, task: Task) -> None: ...
        def _outbound_ready(self, child: ChildSa) -> None: ...
        def _live_children(self) -> list[ChildSa]: ...
        def _schedule_ike_rekey(self, sa: IkeSa, now: float) -> None: ...
        def _ops(self) -> SessionOps: ...

    def child_rekey_finished(self, old: ChildSa, new: ChildSa, now: float) -> None:
        """Our CREATE_CHILD_SA(REKEY_SA) for ``old`` completed with ``new``."""
        theirs = self._peer_successor(old, exclude=new)
        if theirs is None:
            self.install_child(new)
            if old.child_id in self.children:
                old.state = ChildState.REKEYED
                old.successor = new.child_id
                old.rekey_at = None
                self._queue_current(DeleteChild(self._ops(), self._owner(old), old, "rekeyed"))
            self.log("child_rekeyed", f"Child SA rekeyed: {old.spi_in:08x}_i -> {new.spi_in:08x}_i")
            return
        self.install_child(new, delay_outbound=True)
        new.outbound_at = None
        self._resolve_child_collision(old, ours=new, theirs=theirs)

    def child_rekey_answered(self, old: ChildSa, new: ChildSa, now: float) -> None:
        """We answered the peer's rekey of ``old`` with ``new`` (installed, outbound delayed)."""
        if old.state == ChildState.REKEYING:
            # Our own rekey of it is in flight: decided when it completes (§2.8.1).
            self.log(
                "child_rekey_collision", "(CHILD_REKEY) collision: both sides rekey the Child SA"
            )
            # Until then the peer's SA is the successor, in case the peer deletes the old
            # one before our exchange completes.
            old.successor = new.child_id
            return
        ours = self._our_successor(old)
        if ours is not None and old.state in (ChildState.REKEYED, ChildState.DELETING):
            self.log("child_rekey_collision", "(CHILD_REKEY) collision after our rekey completed")
            self._resolve_child_collision(old, ours=ours, theirs=new)
            return
        if old.state == ChildState.INSTALLED:
            old.state = ChildState.REKEYED
            old.successor = new.child_id
            old.rekey_at = None
            old.delete_deadline = now + PEER_DELETE_GRACE
        self.log(
            "child_rekeyed",
            f"Child SA rekeyed by the peer: {old.spi_in:08x}_i -> {new.spi_in:08x}_i",
        )

    def child_deleted_by_peer(self, child: ChildSa, now: float) -> None:
        self.remove_child(child, "deleted by peer")
        if not self._live_children() and self._current is not None:
            self.log("child_deleted", "peer deleted the Child SA; creating a new one")
            self._child_retry_at = now + CHILD_RECREATE_DELAY

    def ike_rekey_finished(self, old: IkeSa, new: IkeSa, now: float, *, ours: bool) -> None:
        """An IKE SA rekey of ``old`` produced ``new`` (§2.18); collisions per §2.8.2."""
        new.state = IkeState.ESTABLISHED
        self.ike_sas.append(new)
        if not ours and old.state == IkeState.REKEYING:
            old.peer_rekey = new  # ours is in flight: decide when it completes
            self.log("ike_rekey_collision", "IKE SA rekey collision: both sides rekey")
            return
        theirs = old.peer_rekey if ours else None
        if not ours and old.successor is not None:
            # The peer's rekey arrived after ours had completed: still a collision.
            mine = old.successor
            assert mine.created_by is not None and new.created_by is not None
            if redundant_exchange(mine.created_by, new.created_by) == "ours":
                self.log("redundant_ike_deleted", "redundant IKE SA is being deleted (ours)")
                self._ike_switch(mine, new, now)
                self._queue_on(mine, DeleteIke(self._ops(), mine, "redundant IKE SA"))
            else:
                new.delete_deadline = now + PEER_DELETE_GRACE
            return
        if theirs is not None:
            assert new.created_by is not None and theirs.created_by is not None
            if redundant_exchange(new.created_by, theirs.created_by) == "ours":
                self.log("redundant_ike_deleted", "redundant IKE SA is being deleted (ours)")
                self._ike_switch(old, theirs, now)
                self._queue_on(new, DeleteIke(self._ops(), new, "redundant IKE SA"))
                old.state = IkeState.REKEYED
                old.delete_deadline = now + PEER_DELETE_GRACE
            else:
                self._ike_switch(old, new, now)
                theirs.delete_deadline = now + PEER_DELETE_GRACE
                old.state = IkeState.REKEYED
                self._queue_on(old, DeleteIke(self._ops(), old, "rekeyed"))
            return
        self._ike_switch(old, new, now)
        old.state = IkeState.REKEYED
        if ours:
            self._queue_on(old, DeleteIke(self._ops(), old, "rekeyed"))
        else:
            old.delete_deadline = now + PEER_DELETE_GRACE

    def _peer_successor(self, old: ChildSa, exclude: ChildSa) -> ChildSa | None:
        for c in self.children.values():
            if (
                c is not exclude
                and c.rekeyed_from == old.child_id
                and not c.initiated_by_us
                and c.state != ChildState.GONE
            ):
                return c
        return None

    def _our_successor(self, old: ChildSa) -> ChildSa | None:
        for c in self.children.values():
            if c.rekeyed_from == old.child_id and c.initiated_by_us and c.state != ChildState.GONE:
                return c
        return None

    def _resolve_child_collision(self, old: ChildSa, *, ours: ChildSa, theirs: ChildSa) -> None:
        """Both sides rekeyed ``old``: keep one successor by the nonce rule (§2.8.1)."""
        owner = self._owner(old)
        if redundant_exchange(ours.created_by, theirs.created_by) == "ours":
            self.log(
                "redundant_child_deleted",
                "redundant SA is being deleted (our rekey lost the nonce rule)",
            )
            # The peer's SA wins. The peer has it installed once it deletes the old SA
            # (the winner's initiator does, §2.8.1): switch then, or at outbound_at.
            if old.state == ChildState.GONE or old.child_id not in self.children:
                self._outbound_ready(theirs)
            old.successor = theirs.child_id
            ours.rekey_at = None
            owner.tm.queue(DeleteChild(self._ops(), owner, ours, "redundant"), front=True)
            if old.state not in (ChildState.DELETING, ChildState.GONE):
                old.state = ChildState.REKEYED
                old.rekey_at = None
                old.delete_deadline = theirs.created_at + PEER_DELETE_GRACE
        else:
            self.log(
                "child_rekey_collision",
                "our rekey won the nonce rule; the peer deletes its redundant SA",
            )
            self._outbound_ready(ours)
            theirs.outbound_at = None
            theirs.rekey_at = None
            theirs.delete_deadline = ours.created_at + PEER_DELETE_GRACE
            old.successor = ours.child_id
            if old.state not in (ChildState.DELETING, ChildState.GONE):
                old.state = ChildState.REKEYED
                old.rekey_at = None
                owner.tm.queue(DeleteChild(self._ops(), owner, old, "rekeyed"))

    def _ike_switch(self, old: IkeSa, new: IkeSa, now: float) -> None:
        """``new`` (a rekey of ``old``) becomes current and owns the Child SAs."""
        for c in self.children.values():
            if c.ike_spi_i == old.spi_i:
                c.ike_spi_i = new.spi_i
        old.successor = new
        old.rekey_at = old.expire_at = None
        if self._current is old or self._current is None:
            self._current = new
        new.established_at = now
        new.last_heard = now
        self._schedule_ike_rekey(new, now)
        self.emit(IkeEstablished(new.spi_i_int, new.spi_r_int, new.initiator, new.suite_name, True))
        self.log("ike_rekeyed", f"IKE SA rekeyed: {old.spi_i_int:016x}_i -> {new.spi_i_int:016x}_i")
