"""The asyncio IKE host over real UDP sockets on loopback, with fake dataplanes.

Two hosts (127.0.0.1 and 127.0.0.2, the same two free high ports on each, so nothing binds
500/4500 in the root namespace) run one session each; the tunnel must come up, its SAs
land in each FakeDataplane, and terminating one end removes them at the other.
"""

from __future__ import annotations

import asyncio
import socket
from dataclasses import replace
from ipaddress import IPv4Address, IPv4Interface

from ikev2_pair import aws_tunnel

from cgwd.config.proposals import proposals_for
from cgwd.dataplane.base import SaId, SaParams, TunnelSpec
from cgwd.dataplane.fake import FakeDataplane
from cgwd.esp.suites import suite_by_name
from cgwd.ike.clock import MonotonicClock
from cgwd.ike.constants import ProtocolId
from cgwd.ike.events import ChildSaInstalled, Event, IkeDown, InboundSpiReleased
from cgwd.ike.host import IkeHost
from cgwd.ike.rng import SystemRng
from cgwd.ike.v2.sa import IkeSessionConfig
from cgwd.ike.v2.session import IkeSession
from cgwd.ike.v2.wire import proposals_from_config
from cgwd.secret import Secret

GCM = suite_by_name("aes128gcm16")


def _free_port(address: str) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind((address, 0))
        return int(s.getsockname()[1])


def _config(local: str, remote: str, port: int) -> IkeSessionConfig:
    ps = proposals_for(aws_tunnel(), "ikev2")
    return IkeSessionConfig(
        tunnel="t1",
        local_address=IPv4Address(local),
        remote_address=IPv4Address(remote),
        psk=Secret("loopback_psk_1"),
        ike_proposals=proposals_from_config(ps.ike, ProtocolId.IKE),
        esp_proposals=proposals_from_config(ps.esp, ProtocolId.ESP),
        remote_port=port,
        ike_port=port,
        nat_t_port=port + 1 if port < 65535 else port - 1,
    )


async def _esp_arriving(dps: list[FakeDataplane], clock: MonotonicClock, seconds: float) -> None:
    """ESP through every inbound SA every 50 ms for ``seconds``."""
    for _ in range(int(seconds / 0.05)):
        for dp in dps:
            for sa in dp.installed("t1"):
                if sa.direction == "in":
                    dp.record_traffic(sa, clock.now())
        await asyncio.sleep(0.05)


async def _run() -> None:
    a_ip, b_ip = "127.0.0.1", "127.0.0.2"
    p1 = _free_port(a_ip)
    p2 = p1 + 1 if p1 < 65535 else p1 - 1
    clock = MonotonicClock()
    seen: dict[str, list[Event]] = {"a": [], "b": []}
    hosts, dps = [], []
    for name, local, remote in (("a", a_ip, b_ip), ("b", b_ip, a_ip)):
        dp = FakeDataplane()
        spec = TunnelSpec(
            "t1", IPv4Interface("169.254.0.2/30"), IPv4Address("169.254.0.1"), 1400,
            IPv4Address(local), IPv4Address(remote),
        )  # fmt: skip
        await dp.open_tunnel(spec)
        host = IkeHost(
            dp,
            clock,
            IPv4Address(local),
            ports=(p1, p2),
            on_event=lambda _s, ev, name=name: seen[name].append(ev),
        )
        await host.start()
        cfg = _config(local, remote, p1)
        session = IkeSession(
            replace(cfg, dpd_delay=0.3),
            SystemRng(),
            lambda dp=dp: dp.allocate_spi("t1"),
            clock.now(),
        )
        host.add_session(session)
        hosts.append(host)
        dps.append(dp)
    try:
        hosts[0].initiate(hosts[0].session_for(IPv4Address(b_ip)))  # type: ignore[arg-type]
        for _ in range(100):
            await asyncio.sleep(0.05)
            await hosts[0].drain_actions()
            await hosts[1].drain_actions()
            if all(dp.current_outbound("t1") is not None for dp in dps):
                break
        out_a, out_b = dps[0].current_outbound("t1"), dps[1].current_outbound("t1")
        assert out_a is not None and out_b is not None, [h.counters for h in hosts]
        assert {sa.spi for sa in dps[1].installed("t1") if sa.direction == "in"} == {out_a.spi}
        assert (
            dps[0].params(out_a).keymat
            == dps[1]
            .params(next(sa for sa in dps[1].installed("t1") if sa.spi == out_a.spi))
            .keymat
        )
        assert any(isinstance(e, ChildSaInstalled) for e in seen["a"])
        # The host's one timer drives DPD: liveness exchanges happen while idle.
        sent_before = hosts[0].counters.sent
        await asyncio.sleep(1.0)
        assert hosts[0].counters.sent > sent_before
        assert not any(isinstance(e, IkeDown) for e in seen["a"] + seen["b"])
        # While ESP arrives on the inbound SAs (the datapath's counters say when), neither
        # end probes: the peer is evidently alive (RFC 7296 2.4).
        await _esp_arriving(dps, clock, seconds=0.4)  # lets a probe under way finish
        sent_before = [h.counters.sent for h in hosts]
        await _esp_arriving(dps, clock, seconds=1.5)
        assert [h.counters.sent for h in hosts] == sent_before
        # Terminating one end deletes the SAs at the other.
        await hosts[0].close(delete=True, grace=0.3)
        for _ in range(40):
            await asyncio.sleep(0.05)
            await hosts[1].drain_actions()
            if not dps[1].installed("t1"):
                break
        assert not dps[1].installed("t1")
        assert [e.reason for e in seen["b"] if isinstance(e, IkeDown)] == ["deleted_by_peer"]
    finally:
        for h in hosts:
            await h.close(delete=False)


def test_two_hosts_over_loopback_udp() -> None:
    asyncio.run(_run())


class _BuggyDataplane(FakeDataplane):
    """Fails one operation with an error no dataplane should raise (a bug)."""

    def release_spi(self, tunnel: str, spi: int) -> None:
        raise RuntimeError("bug in release_spi")


def test_an_unexpected_dataplane_error_does_not_stop_later_actions() -> None:
    """A dataplane bug in one action is logged and counted; the session's later actions
    (here: the install that follows) are still applied, in order."""

    async def run() -> tuple[int, set[SaId], SaId | None]:
        dp = _BuggyDataplane()
        spec = TunnelSpec(
            "t1", IPv4Interface("169.254.0.2/30"), IPv4Address("169.254.0.1"), 1400,
            IPv4Address("127.0.0.1"), IPv4Address("127.0.0.2"),
        )  # fmt: skip
        await dp.open_tunnel(spec)
        host = IkeHost(dp, MonotonicClock(), IPv4Address("127.0.0.1"))
        cfg = _config("127.0.0.1", "127.0.0.2", 40000)
        session = IkeSession(cfg, SystemRng(), lambda: dp.allocate_spi("t1"), 0.0)
        host.add_session(session)
        spi_in, spi_out = dp.allocate_spi("t1"), 0x1234
        keymat = Secret(bytes(GCM.keymat_bytes))
        events: list[Event] = [
            InboundSpiReleased(SaId("t1", "in", dp.allocate_spi("t1"))),
            ChildSaInstalled(
                1, SaId("t1", "in", spi_in), SaParams(GCM, keymat),
                SaId("t1", "out", spi_out), SaParams(GCM, keymat),
            ),
        ]  # fmt: skip
        slot = host._slots["127.0.0.2"]
        for event in events:
            slot.actions.put_nowait(event)
        try:
            await asyncio.wait_for(host.drain_actions(), 5.0)  # a dead worker never drains
        finally:
            await asyncio.wait_for(host.close(delete=False), 5.0)
        return host.counters.dataplane_errors, dp.installed("t1"), dp.current_outbound("t1")

    errors, installed, current = asyncio.run(run())
    assert errors == 1
    assert len(installed) == 2 and current == SaId("t1", "out", 0x1234)
