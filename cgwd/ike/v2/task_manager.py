"""Message IDs, retransmission, cached responses and collisions for one IKE SA.

RFC 7296 §2.1-2.2: each end numbers its requests from 0 and has (with our window of 1,
the default of §2.3) at most one outstanding; the responder answers a retransmitted
request with the same response it sent before, never processing it twice, and ignores
requests it has already answered older than that. Only the initiator of an exchange
retransmits.

The manager is generic over the task objects it queues: it needs only their ``name`` and
retransmit ``policy``. It never encodes messages itself: the session builds a request from
the task and hands the manager the datagram to (re)send. `redundant_exchange` is the one
place where the nonce rule of RFC 7296 §2.8.1 and §2.8.2 decides a collision.
"""

from __future__ import annotations

import enum
from collections import deque
from dataclasses import dataclass
from typing import Generic, Literal, Protocol, TypeVar

from cgwd.ike.retransmit import RetransmitPolicy


class TaskLike(Protocol):
    @property
    def name(self) -> str: ...

    @property
    def policy(self) -> RetransmitPolicy: ...


T = TypeVar("T", bound=TaskLike)


class RequestKind(enum.Enum):
    NEW = "new"  # the next request from the peer: process it
    RETRANSMIT = "retransmit"  # the request we answered last: resend the cached response
    INVALID = "invalid"  # anything else: drop (§2.2)


@dataclass
class _Active(Generic[T]):
    task: T
    mid: int
    datagram: bytes
    sent_count: int
    next_send: float


@dataclass(frozen=True)
class Retransmit:
    datagram: bytes
    mid: int
    sent_count: int


@dataclass(frozen=True)
class GiveUp(Generic[T]):
    task: T
    mid: int


class TaskManager(Generic[T]):
    """Request/response bookkeeping for one IKE SA (window size 1)."""

    MAX_MID = 0xFFFFFFFF

    def __init__(self) -> None:
        self.next_request_mid = 0
        self.next_peer_mid = 0
        self._active: _Active[T] | None = None
        self._queue: deque[T] = deque()
        self._cached: tuple[int, bytes] | None = None

    # -- our requests --------------------------------------------------------------

    def queue(self, task: T, *, front: bool = False) -> None:
        if front:
            self._queue.appendleft(task)
        else:
            self._queue.append(task)

    @property
    def active(self) -> T | None:
        return None if self._active is None else self._active.task

    @property
    def queued(self) -> tuple[T, ...]:
        return tuple(self._queue)

    def remove_queued(self, task: T) -> None:
        if task in self._queue:
            self._queue.remove(task)

    def next_task(self) -> T | None:
        """The task whose request should be built now, or None (busy, or nothing queued)."""
        if self._active is not None or not self._queue:
            return None
        return self._queue.popleft()

    def sent(self, task: T, datagram: bytes, now: float) -> int:
        """Record that ``task``'s request went out with the next message ID; returns it."""
        mid = self.next_request_mid
        self._active = _Active(task, mid, datagram, 1, now + task.policy.interval(1))
        return mid

    def resent_rebuilt(self, datagram: bytes, now: float) -> None:
        """The active task rebuilt its request (COOKIE / INVALID_KE_PAYLOAD, §1.2, §2.6):
        same message ID, the retransmission count starts over."""
        assert self._active is not None
        a = self._active
        self._active = _Active(a.task, a.mid, datagram, 1, now + a.task.policy.interval(1))

    def matches_response(self, mid: int) -> T | None:
        """The active task if ``mid`` answers it, else None (a stray or late response)."""
        if self._active is not None and self._active.mid == mid:
            return self._active.task
        return None

    def complete(self) -> None:
        """The active exchange is over: free the window and advance our message ID."""
        assert self._active is not None
        self._active = None
        self.next_request_mid += 1

    def abandon(self) -> None:
        """Forget the active exchange without advancing (the IKE SA is going away)."""
        self._active = None

    def clear(self) -> None:
        self._active = None
        self._queue.clear()

    # -- timers --------------------------------------------------------------------

    def on_timer(self, now: float) -> Retransmit | GiveUp[T] | None:
        a = self._active
        if a is None or now < a.next_send:
            return None
        if a.task.policy.gives_up_after(a.sent_count):
            self._active = None
            return GiveUp(a.task, a.mid)
        a.sent_count += 1
        a.next_send = now + a.task.policy.interval(a.sent_count)
        return Retransmit(a.datagram, a.mid, a.sent_count)

    def next_deadline(self) -> float | None:
        return None if self._active is None else self._active.next_send

    # -- the peer's requests -------------------------------------------------------

    def classify_request(self, mid: int) -> RequestKind:
        if mid == self.next_peer_mid:
            return RequestKind.NEW
        if self._cached is not None and mid == self._cached[0]:
            return RequestKind.RETRANSMIT
        return RequestKind.INVALID

    def answered(self, mid: int, datagram: bytes) -> None:
        """We sent ``datagram`` in response to request ``mid``: cache it, expect the next."""
        self._cached = (mid, datagram)
        self.next_peer_mid = mid + 1

    def cached_response(self) -> bytes | None:
        return None if self._cached is None else self._cached[1]


Nonces = tuple[bytes, bytes]


def redundant_exchange(ours: Nonces, theirs: Nonces) -> Literal["ours", "theirs"]:
    """Which of two colliding exchanges created the redundant SA (RFC 7296 §2.8.1, §2.8.2).

    ``ours`` and ``theirs`` are the (Ni, Nr) pairs of the exchange we initiated and of the
    one the peer initiated. The SA created by the exchange holding the lowest of the four
    nonces (compared octet by octet, a shorter prefix being lower) is redundant and is
    deleted by that exchange's initiator. Both ends evaluate the same rule and agree.
    """
    return "ours" if min(ours) < min(theirs) else "theirs"
