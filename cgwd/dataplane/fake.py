"""An in-memory `Dataplane` for unit and exchange tests and ``--dry-run``.

It keeps exactly the state a real dataplane keeps (tunnels, SAs, the current outbound SA,
reserved SPIs, counters) and enforces the same rules and errors, so the conformance suite
runs unchanged against it. No packets move; tests inspect `tunnels`, `installed` and
`current_outbound`, and feed IKE datagrams with `deliver_ike`. ``clock`` drives the expiry
of unused SPI reservations (`SPI_RESERVATION_TTL`).
"""

from __future__ import annotations

import copy
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from cgwd.dataplane.base import (
    MAX_SPI,
    MIN_SPI,
    SPI_RESERVATION_TTL,
    IkeReceiver,
    SaExistsError,
    SaId,
    SaParams,
    TunnelExistsError,
    TunnelSpec,
    UnknownSaError,
    UnknownTunnelError,
)
from cgwd.esp.sa import SaCounters


@dataclass
class FakeSa:
    """One installed SA as the fake records it."""

    params: SaParams
    counters: SaCounters = field(default_factory=SaCounters)


@dataclass
class FakeTunnel:
    spec: TunnelSpec
    sas: dict[SaId, FakeSa] = field(default_factory=dict)
    outbound_order: list[SaId] = field(default_factory=list)  # last = current
    reserved_spis: dict[int, float] = field(default_factory=dict)  # SPI -> allocated at


class FakeDataplane:
    """In-memory dataplane. ``seed`` makes SPI allocation reproducible."""

    kind = "fake"
    needs_ike_socket_bypass = False

    def __init__(
        self, *, seed: int | None = None, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.tunnels: dict[str, FakeTunnel] = {}
        self._rng = random.Random(seed)  # noqa: S311 -- test double, not security relevant
        self._clock = clock
        self._ike_receiver: IkeReceiver | None = None
        self.closed = False

    # -- Dataplane -----------------------------------------------------------------

    async def open_tunnel(self, spec: TunnelSpec) -> None:
        if spec.name in self.tunnels:
            raise TunnelExistsError(f"tunnel {spec.name} is already open")
        self.tunnels[spec.name] = FakeTunnel(spec)

    async def close_tunnel(self, name: str) -> None:
        self._tunnel(name)
        del self.tunnels[name]

    def allocate_spi(self, tunnel: str) -> int:
        t = self._tunnel(tunnel)
        now = self._clock()
        for spi in [s for s, at in t.reserved_spis.items() if now - at > SPI_RESERVATION_TTL]:
            del t.reserved_spis[spi]
        while True:
            spi = self._rng.randint(MIN_SPI, MAX_SPI)
            if not self._spi_in_use(spi):
                t.reserved_spis[spi] = now
                return spi

    def release_spi(self, tunnel: str, spi: int) -> None:
        self._tunnel(tunnel).reserved_spis.pop(spi, None)

    async def add_sa(self, sa: SaId, params: SaParams) -> None:
        t = self._tunnel(sa.tunnel)
        if sa in t.sas:
            raise SaExistsError(f"SA {sa} is already installed")
        if sa.direction == "in":
            other = self._inbound_owner(sa.spi)
            if other is not None and other != sa.tunnel:
                raise SaExistsError(f"inbound SPI 0x{sa.spi:08x} is in use by tunnel {other}")
        t.sas[sa] = FakeSa(params)
        if sa.direction == "out":
            t.outbound_order.append(sa)
        else:
            t.reserved_spis.pop(sa.spi, None)

    async def remove_sa(self, sa: SaId) -> None:
        t = self._tunnel(sa.tunnel)
        if sa not in t.sas:
            raise UnknownSaError(f"no SA {sa}")
        del t.sas[sa]
        if sa.direction == "out":
            t.outbound_order.remove(sa)

    def sa_counters(self, sa: SaId) -> SaCounters:
        t = self._tunnel(sa.tunnel)
        if sa not in t.sas:
            raise UnknownSaError(f"no SA {sa}")
        return copy.deepcopy(t.sas[sa].counters)

    def set_ike_receiver(self, callback: IkeReceiver | None) -> None:
        self._ike_receiver = callback

    def record_traffic(self, sa: SaId, at: float, size: int = 100) -> None:
        """What a real datapath does for each packet through an SA: count it, note when."""
        counters = self._tunnel(sa.tunnel).sas[sa].counters
        counters.packets += 1
        counters.bytes += size
        counters.last_used = at

    async def close(self) -> None:
        self.tunnels.clear()
        self.closed = True

    # -- inspection and injection for tests ----------------------------------------

    def current_outbound(self, tunnel: str) -> SaId | None:
        """The SA outbound traffic of ``tunnel`` would use now, if any."""
        order = self._tunnel(tunnel).outbound_order
        return order[-1] if order else None

    def installed(self, tunnel: str) -> set[SaId]:
        return set(self._tunnel(tunnel).sas)

    def params(self, sa: SaId) -> SaParams:
        t = self._tunnel(sa.tunnel)
        if sa not in t.sas:
            raise UnknownSaError(f"no SA {sa}")
        return t.sas[sa].params

    def deliver_ike(self, datagram: bytes, remote: tuple[str, int], local: tuple[str, int]) -> bool:
        """Hand a datagram to the IKE receiver as a real dataplane would; False if none."""
        if self._ike_receiver is None:
            return False
        self._ike_receiver(datagram, remote, local)
        return True

    # -- internals -----------------------------------------------------------------

    def _tunnel(self, name: str) -> FakeTunnel:
        try:
            return self.tunnels[name]
        except KeyError:
            raise UnknownTunnelError(f"no tunnel {name}") from None

    def _inbound_owner(self, spi: int) -> str | None:
        for name, t in self.tunnels.items():
            if spi in t.reserved_spis or SaId(name, "in", spi) in t.sas:
                return name
        return None

    def _spi_in_use(self, spi: int) -> bool:
        return self._inbound_owner(spi) is not None
