"""What an IKE session reports to its host, drained with ``session.events()``.

The host applies dataplane actions (`ChildSaInstalled`, `ChildSaRemoved`) in the order they
come, logs `LogEvent`s under their ``name`` (AWS's tunnel-log vocabulary, aws-behaviour.md
§11), and feeds `IkeEstablished`/`IkeDown` to the tunnel supervisor. Events carry SPIs and
suite names but never key material except inside `SaParams.keymat`, a `Secret`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from cgwd.dataplane.base import SaId, SaParams

LogLevel = Literal["debug", "info", "warning", "error"]


@dataclass(frozen=True)
class IkeEstablished:
    """An IKE SA finished IKE_AUTH (or replaced its predecessor by a rekey)."""

    spi_i: int
    spi_r: int
    initiator: bool
    suite: str
    rekey: bool = False


@dataclass(frozen=True)
class IkeDown:
    """The session has no usable IKE SA any more; ``reason`` uses the §11 event names.

    ``retry_in`` is when the session itself will re-initiate (None: it waits for the peer or
    for an explicit ``initiate``).
    """

    reason: str
    retry_in: float | None = None


@dataclass(frozen=True)
class ChildSaInstalled:
    """Install ``inbound`` first, then ``outbound`` (which becomes the tunnel's current SA).

    ``outbound`` is None when the outbound half is installed later (the responder of a rekey
    keeps sending on the old SA until the initiator has switched, see `ChildOutboundReady`).
    """

    child_id: int
    inbound: SaId
    inbound_params: SaParams
    outbound: SaId | None
    outbound_params: SaParams | None
    rekey_of: int | None = None


@dataclass(frozen=True)
class ChildOutboundReady:
    """Install the delayed outbound half of a Child SA (make it the tunnel's current SA)."""

    child_id: int
    outbound: SaId
    outbound_params: SaParams


@dataclass(frozen=True)
class ChildSaRemoved:
    """Remove these SAs (those that were installed); the Child SA is gone."""

    child_id: int
    sa_ids: tuple[SaId, ...]
    reason: str


@dataclass(frozen=True)
class InboundSpiReleased:
    """Free the reservation of ``sa.spi``, an inbound SPI allocated for an exchange that
    failed or was abandoned (no SA was installed with it; see `Dataplane.release_spi`)."""

    sa: SaId


@dataclass(frozen=True)
class LogEvent:
    """A line for the log; ``name`` is a stable event name (§11) for matching."""

    name: str
    message: str
    level: LogLevel = "info"
    fields: dict[str, str | int | float] = field(default_factory=dict)


Event = (
    IkeEstablished
    | IkeDown
    | ChildSaInstalled
    | ChildOutboundReady
    | ChildSaRemoved
    | InboundSpiReleased
    | LogEvent
)
