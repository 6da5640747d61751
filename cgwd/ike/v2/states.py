"""IKE SA and Child SA life cycles as transition tables (h11 style).

Legal moves are data; `step` applies one or raises `LocalProtocolError` (a bug on our side,
never something a peer can trigger: handlers check the state before acting on a message).
`status_word` maps a state to the four words AWS's tunnel logs use (aws-behaviour.md §11).
"""

from __future__ import annotations

import enum
from typing import Literal, TypeVar


class LocalProtocolError(Exception):
    """An illegal state transition was attempted by our own code."""


class IkeState(enum.Enum):
    CONNECTING = "connecting"  # IKE_SA_INIT/IKE_AUTH in progress
    ESTABLISHED = "established"
    REKEYING = "rekeying"  # a CREATE_CHILD_SA for this IKE SA is in flight
    REKEYED = "rekeyed"  # replaced by a new IKE SA; only its DELETE remains
    DELETING = "deleting"  # we sent DELETE for it
    DEAD = "dead"


class IkeEv(enum.Enum):
    AUTHENTICATED = "authenticated"
    REKEY_STARTED = "rekey_started"
    REKEY_ABORTED = "rekey_aborted"
    REPLACED = "replaced"
    DELETE = "delete"
    GONE = "gone"


IKE_MOVES: dict[IkeState, dict[IkeEv, IkeState]] = {
    IkeState.CONNECTING: {IkeEv.AUTHENTICATED: IkeState.ESTABLISHED, IkeEv.GONE: IkeState.DEAD},
    IkeState.ESTABLISHED: {
        IkeEv.REKEY_STARTED: IkeState.REKEYING,
        IkeEv.REPLACED: IkeState.REKEYED,
        IkeEv.DELETE: IkeState.DELETING,
        IkeEv.GONE: IkeState.DEAD,
    },
    IkeState.REKEYING: {
        IkeEv.REKEY_ABORTED: IkeState.ESTABLISHED,
        IkeEv.REPLACED: IkeState.REKEYED,
        IkeEv.DELETE: IkeState.DELETING,
        IkeEv.GONE: IkeState.DEAD,
    },
    IkeState.REKEYED: {IkeEv.DELETE: IkeState.DELETING, IkeEv.GONE: IkeState.DEAD},
    IkeState.DELETING: {IkeEv.GONE: IkeState.DEAD},
    IkeState.DEAD: {},
}


class ChildState(enum.Enum):
    CREATING = "creating"
    INSTALLED = "installed"
    REKEYING = "rekeying"  # our CREATE_CHILD_SA(REKEY_SA) for it is in flight
    REKEYED = "rekeyed"  # a successor exists; this one waits for its DELETE
    DELETING = "deleting"
    GONE = "gone"


class ChildEv(enum.Enum):
    INSTALLED = "installed"
    REKEY_STARTED = "rekey_started"
    REKEY_ABORTED = "rekey_aborted"
    REPLACED = "replaced"
    DELETE = "delete"
    GONE = "gone"


CHILD_MOVES: dict[ChildState, dict[ChildEv, ChildState]] = {
    ChildState.CREATING: {ChildEv.INSTALLED: ChildState.INSTALLED, ChildEv.GONE: ChildState.GONE},
    ChildState.INSTALLED: {
        ChildEv.REKEY_STARTED: ChildState.REKEYING,
        ChildEv.REPLACED: ChildState.REKEYED,
        ChildEv.DELETE: ChildState.DELETING,
        ChildEv.GONE: ChildState.GONE,
    },
    ChildState.REKEYING: {
        ChildEv.REKEY_ABORTED: ChildState.INSTALLED,
        ChildEv.REPLACED: ChildState.REKEYED,
        ChildEv.DELETE: ChildState.DELETING,
        ChildEv.GONE: ChildState.GONE,
    },
    ChildState.REKEYED: {ChildEv.DELETE: ChildState.DELETING, ChildEv.GONE: ChildState.GONE},
    ChildState.DELETING: {ChildEv.GONE: ChildState.GONE},
    ChildState.GONE: {},
}

S = TypeVar("S", IkeState, ChildState)
E = TypeVar("E", IkeEv, ChildEv)


def step(table: dict[S, dict[E, S]], state: S, event: E) -> S:
    """The state after ``event``; raises `LocalProtocolError` if the move is not legal."""
    try:
        return table[state][event]
    except KeyError:
        raise LocalProtocolError(f"{event.value} is not legal in state {state.value}") from None


StatusWord = Literal["Established", "Rekeying", "Negotiating", "Down"]


def status_word(state: IkeState | ChildState | None) -> StatusWord:
    """AWS's vocabulary for a phase's state (aws-behaviour.md §11)."""
    if state in (IkeState.ESTABLISHED, ChildState.INSTALLED, IkeState.REKEYED, ChildState.REKEYED):
        return "Established"
    if state in (IkeState.REKEYING, ChildState.REKEYING):
        return "Rekeying"
    if state in (IkeState.CONNECTING, ChildState.CREATING):
        return "Negotiating"
    return "Down"


def diagram(table: dict[S, dict[E, S]]) -> str:
    """The table as Graphviz ``dot`` text (for the docs; generated from the same data)."""
    lines = ["digraph {"]
    for src, moves in table.items():
        for ev, dst in moves.items():
            lines.append(f'  "{src.value}" -> "{dst.value}" [label="{ev.value}"];')
    lines.append("}")
    return "\n".join(lines)
