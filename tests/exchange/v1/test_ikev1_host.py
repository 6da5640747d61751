"""The IKEv1 session driven by the asyncio `IkeHost` (the same host as IKEv2) over real UDP
sockets on loopback, with fake dataplanes: the tunnel comes up, DPD runs on the host's
timer, and terminating one end removes the SAs at the other."""

from __future__ import annotations

import asyncio
import socket
from dataclasses import replace
from ipaddress import IPv4Address, IPv4Interface

from ikev1_pair import config_for

from cgwd.dataplane.base import TunnelSpec
from cgwd.dataplane.fake import FakeDataplane
from cgwd.ike.clock import MonotonicClock
from cgwd.ike.events import ChildSaInstalled, Event, IkeDown
from cgwd.ike.host import IkeHost
from cgwd.ike.rng import SystemRng
from cgwd.ike.v1.session import Ikev1Session


def _free_port(address: str) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind((address, 0))
        return int(s.getsockname()[1])


async def _run() -> None:
    a_ip, b_ip = "127.0.0.1", "127.0.0.2"
    p1 = _free_port(a_ip)
    p2 = p1 + 1 if p1 < 65535 else p1 - 1
    clock = MonotonicClock()
    seen: dict[str, list[Event]] = {"a": [], "b": []}
    hosts: list[IkeHost] = []
    dps: list[FakeDataplane] = []
    sessions: list[Ikev1Session] = []
    for name, local, remote in (("a", a_ip, b_ip), ("b", b_ip, a_ip)):
        dp = FakeDataplane()
        spec = TunnelSpec(
            "vti1", IPv4Interface("169.254.0.2/30"), IPv4Address("169.254.0.1"), 1400,
            IPv4Address(local), IPv4Address(remote),
        )  # fmt: skip
        await dp.open_tunnel(spec)
        host = IkeHost(
            dp, clock, IPv4Address(local), ports=(p1, p2),
            on_event=lambda _s, ev, name=name: seen[name].append(ev),
        )  # fmt: skip
        await host.start()
        cfg = replace(
            config_for(local, remote),
            local_id=IPv4Address(local),
            remote_id=IPv4Address(remote),
            remote_port=p1,
            ike_port=p1,
            nat_t_port=p2,
            dpd_delay=0.3,
        )
        session = Ikev1Session(cfg, SystemRng(), lambda dp=dp: dp.allocate_spi("vti1"), clock.now())
        host.add_session(session)
        hosts.append(host)
        dps.append(dp)
        sessions.append(session)
    try:
        hosts[0].initiate(sessions[0])
        for _ in range(100):
            await asyncio.sleep(0.05)
            await hosts[0].drain_actions()
            await hosts[1].drain_actions()
            if all(dp.current_outbound("vti1") is not None for dp in dps):
                break
        out_a, out_b = dps[0].current_outbound("vti1"), dps[1].current_outbound("vti1")
        assert out_a is not None and out_b is not None, [h.counters for h in hosts]
        peer_in = next(sa for sa in dps[1].installed("vti1") if sa.spi == out_a.spi)
        assert peer_in.direction == "in"
        assert dps[0].params(out_a).keymat == dps[1].params(peer_in).keymat
        assert any(isinstance(e, ChildSaInstalled) for e in seen["a"])
        sent_before = hosts[0].counters.sent
        await asyncio.sleep(1.0)
        assert hosts[0].counters.sent > sent_before  # R-U-THERE on the host's timer
        assert sessions[1].counters["dpd_answered"] >= 1
        assert not any(isinstance(e, IkeDown) for e in seen["a"] + seen["b"])
        await hosts[0].close(delete=True, grace=0.3)
        for _ in range(40):
            await asyncio.sleep(0.05)
            await hosts[1].drain_actions()
            if not dps[1].installed("vti1"):
                break
        assert not dps[1].installed("vti1")
        assert [e.reason for e in seen["b"] if isinstance(e, IkeDown)] == ["deleted_by_peer"]
    finally:
        for h in hosts:
            await h.close(delete=False)


def test_ikev1_session_on_the_shared_host_over_loopback_udp() -> None:
    asyncio.run(_run())
