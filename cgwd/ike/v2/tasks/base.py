"""The shape of an exchange task and what tasks may ask of their session.

A task is created for one role (strongSwan style): an initiator task builds a request and
processes the response; the responder side of every exchange is a handler function in the
same module as the initiator task, taking the request and returning the response payloads.
Tasks never send anything themselves: the session encodes, sends, retransmits (through the
task manager) and applies what they decide through the `SessionOps` protocol.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Protocol

from cgwd.ike.retransmit import RetransmitPolicy
from cgwd.ike.v2.sa import ChildSa, IkeSa, IkeSessionConfig

if TYPE_CHECKING:
    from cgwd.ike.events import Event
    from cgwd.ike.rng import Rng
    from cgwd.ike.v2.wire import Received


class Outcome(enum.Enum):
    DONE = "done"  # exchange over (successfully or not); the task decided what follows
    RETRY = "retry"  # rebuild and resend the request with the same message ID (§1.2, §2.6)


class SessionOps(Protocol):
    """What tasks and responder handlers may use from their session."""

    config: IkeSessionConfig
    rng: Rng
    children: dict[int, ChildSa]

    def allocate_spi(self) -> int: ...

    def emit(self, event: Event) -> None: ...

    def log(self, name: str, message: str, level: str = "info", **fields: Any) -> None: ...

    def new_child_id(self) -> int: ...

    def install_child(self, child: ChildSa, *, delay_outbound: bool = False) -> None: ...

    def remove_child(self, child: ChildSa, reason: str) -> None: ...

    def ike_established(self, sa: IkeSa, now: float, *, rekey: bool = False) -> None: ...

    def ike_failed(self, sa: IkeSa, reason: str, now: float) -> None: ...

    def ike_gone(self, sa: IkeSa, reason: str, now: float) -> None: ...

    def child_by_spi_out(self, spi: int) -> ChildSa | None: ...

    def child_deleted_by_peer(self, child: ChildSa, now: float) -> None: ...

    def child_rekey_answered(self, old: ChildSa, new: ChildSa, now: float) -> None: ...

    def ike_rekey_finished(self, old: IkeSa, new: IkeSa, now: float, *, ours: bool) -> None: ...

    def later(self, at: float, action: Callable[[float], None]) -> None: ...

    def queue_task(self, sa: IkeSa, task: Task, *, front: bool = False) -> None: ...

    def child_rekey_finished(self, old: ChildSa, new: ChildSa, now: float) -> None: ...

    def current_ike(self) -> IkeSa | None: ...

    def has_live_children(self) -> bool: ...


class Task:
    """Base class of initiator tasks. Subclasses set ``name``, ``exchange`` and override
    `build` and `process` (and `give_up` when the exchange being lost matters).

    Neither method may raise for anything a peer sends: malformed or unacceptable responses
    are handled inside (logged, SA failed) and reported as `Outcome.DONE`.
    """

    name = "task"
    exchange = 0
    spi_in: int | None = None
    """The inbound SPI this exchange allocated, if any: the session releases it once the
    task is neither queued nor active and no SA was installed with it."""

    def __init__(self, session: SessionOps, sa: IkeSa) -> None:
        self.session = session
        self.sa = sa

    @property
    def policy(self) -> RetransmitPolicy:
        return self.session.config.retransmit

    def build(self, now: float) -> Sequence[Any]:
        raise NotImplementedError

    def on_sent(self, raw: bytes) -> None:
        """The request as encoded (IKE_SA_INIT keeps it for AUTH, §2.15)."""

    def applicable(self) -> bool:
        """False if the task became pointless while queued (it is then dropped)."""
        return True

    def process(self, msg: Received, now: float) -> Outcome:
        raise NotImplementedError

    def give_up(self, now: float) -> None:
        """Retransmissions are exhausted: the peer is considered dead (§2.4)."""
        self.session.ike_failed(self.sa, "retransmit_timeout", now)

    def abort(self) -> None:
        """The IKE SA is going away: release anything reserved (e.g. inbound SPIs)."""

    def __repr__(self) -> str:
        return f"<{self.name}>"
