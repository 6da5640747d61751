"""`Dataplane.release_spi` in every implementation (the conformance suite's harnesses): a
released reservation no longer blocks the SPI for other tunnels, and releasing what is
not reserved (installed, released already) changes nothing."""

from __future__ import annotations

import pytest
from test_dataplane_conformance import Harness, harness, params, spec

from cgwd.dataplane.base import SaExistsError, SaId, UnknownTunnelError

__all__ = ["harness"]  # the fixture, imported to be used here


def test_released_spis_are_free_again_and_installed_ones_stay(harness: Harness) -> None:
    async def body() -> tuple[bool, bool, bool]:
        dp = harness.make()
        try:
            await dp.open_tunnel(spec("cgc0", 10))
            await dp.open_tunnel(spec("cgc1", 11))
            reserved, installed = dp.allocate_spi("cgc0"), dp.allocate_spi("cgc0")
            await dp.add_sa(SaId("cgc0", "in", installed), params())
            with pytest.raises(SaExistsError):  # reserved by cgc0
                await dp.add_sa(SaId("cgc1", "in", reserved), params())
            dp.release_spi("cgc0", reserved)
            dp.release_spi("cgc0", reserved)  # twice: no-op
            dp.release_spi("cgc0", installed)  # installed: no-op
            with pytest.raises(UnknownTunnelError):
                dp.release_spi("nope", reserved)
            await dp.add_sa(SaId("cgc1", "in", reserved), params(fill=2))
            taken_by_cgc1 = SaId("cgc1", "in", reserved) in _inbound(dp, "cgc1", reserved)
            with pytest.raises(SaExistsError):  # still cgc0's, still installed
                await dp.add_sa(SaId("cgc1", "in", installed), params())
            counters_ok = dp.sa_counters(SaId("cgc0", "in", installed)) is not None
            return taken_by_cgc1, counters_ok, True
        finally:
            await dp.close()

    assert harness.run(body) == (True, True, True)


def _inbound(dp: object, tunnel: str, spi: int) -> set[SaId]:
    # sa_counters raises for SAs that are not installed: use it as the probe.
    try:
        dp.sa_counters(SaId(tunnel, "in", spi))  # type: ignore[attr-defined]
    except Exception:
        return set()
    return {SaId(tunnel, "in", spi)}
