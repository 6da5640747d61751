"""Two IKEv1 sessions wired together in memory: fake clock, seeded Rng, fake dataplanes.

`V1Pair` carries datagrams between ``cgw`` and ``aws`` (optionally dropping, duplicating
or rewriting them like a port-translating NAT), applies each side's dataplane events to a
`FakeDataplane`, and advances the clock to the next deadline when nothing is in flight.
The packet stream check: at every step each side "sends" on its current outbound SA, and
the packet counts as lost unless the other side has an inbound SA with that SPI and keys.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from ipaddress import IPv4Address, IPv4Interface
from typing import Any

from cgwd.config.aws import AwsTunnel, DeadPeerDetection, PhaseSettings
from cgwd.config.proposals import proposals_for
from cgwd.dataplane.base import SaId, TunnelSpec
from cgwd.dataplane.fake import FakeDataplane
from cgwd.ike.events import (
    ChildOutboundReady,
    ChildSaInstalled,
    ChildSaRemoved,
    Event,
    IkeDown,
    LogEvent,
)
from cgwd.ike.rng import SeededRng
from cgwd.ike.v1.proposals import from_config
from cgwd.ike.v1.sa import Ikev1SessionConfig
from cgwd.ike.v1.session import Ikev1Session, Outgoing
from cgwd.secret import Secret

CGW_IP = "192.0.2.1"
AWS_IP = "198.51.100.1"
NAT_PUBLIC_IP = "203.0.113.7"
TUNNEL = "vti1"
PSK = "test_psk_1234"


def aws_tunnel(
    *,
    p1: tuple[tuple[str, ...], tuple[str, ...], tuple[int, ...]] = ((), (), ()),
    p2: tuple[tuple[str, ...], tuple[str, ...], tuple[int, ...]] = ((), (), ()),
) -> AwsTunnel:
    return AwsTunnel(
        index=1,
        customer_gateway_outside_ip=IPv4Address(CGW_IP),
        vpn_gateway_outside_ip=IPv4Address(AWS_IP),
        customer_gateway_inside_ip=IPv4Address("169.254.10.2"),
        vpn_gateway_inside_ip=IPv4Address("169.254.10.1"),
        inside_cidr=None,
        pre_shared_key=Secret(PSK),
        ike_version="ikev1",
        phase1=PhaseSettings(
            encryption_allowed=p1[0], integrity_allowed=p1[1], dh_groups_allowed=p1[2]
        ),
        phase2=PhaseSettings(
            encryption_allowed=p2[0], integrity_allowed=p2[1], dh_groups_allowed=p2[2]
        ),
        dpd=DeadPeerDetection(),
    )


def config_for(
    local: str, remote: str, tunnel: AwsTunnel | None = None, **overrides: Any
) -> Ikev1SessionConfig:
    """A tunnel given states exactly what that side allows ("file" mode)."""
    if tunnel is None:
        ps = proposals_for(aws_tunnel(), "ikev1")
    else:
        ps = proposals_for(tunnel, "ikev1", mode="file")
    p1, esp, groups = from_config(ps)
    cfg = Ikev1SessionConfig(
        tunnel=TUNNEL,
        local_address=IPv4Address(local),
        remote_address=IPv4Address(remote),
        psk=Secret(PSK),
        phase1_suites=p1,
        esp_suites=esp,
        pfs_groups=groups,
        local_id=IPv4Address(CGW_IP if local != AWS_IP else AWS_IP),
        remote_id=IPv4Address(AWS_IP if local != AWS_IP else CGW_IP),
    )
    return replace(cfg, **overrides)


@dataclass
class End:
    name: str
    ip: str
    session: Ikev1Session
    dataplane: FakeDataplane
    events: list[Event] = field(default_factory=list)
    outbox: list[Outgoing] = field(default_factory=list)

    def log_names(self) -> list[str]:
        return [e.name for e in self.events if isinstance(e, LogEvent)]

    def downs(self) -> list[IkeDown]:
        return [e for e in self.events if isinstance(e, IkeDown)]

    def installed(self) -> set[SaId]:
        return self.dataplane.installed(TUNNEL)

    def current_out(self) -> SaId | None:
        return self.dataplane.current_outbound(TUNNEL)


Filter = Callable[[str, Outgoing], bool]  # (sender, datagram) -> deliver?


class V1Pair:
    def __init__(
        self,
        cgw_config: Ikev1SessionConfig | None = None,
        aws_config: Ikev1SessionConfig | None = None,
        *,
        seed: int = 1,
        nat: bool = False,
    ) -> None:
        self.now = 1000.0
        self.loop = asyncio.new_event_loop()
        self.nat = nat
        self.filter: Filter | None = None
        self.duplicate: Filter | None = None
        self.sent_packets = 0
        self.lost_packets = 0
        self.cgw = self._end("cgw", CGW_IP, cgw_config or config_for(CGW_IP, AWS_IP), seed)
        aws_cfg = aws_config or config_for(AWS_IP, NAT_PUBLIC_IP if nat else CGW_IP)
        self.aws = self._end("aws", AWS_IP, aws_cfg, seed + 1000)

    def _end(self, name: str, ip: str, cfg: Ikev1SessionConfig, seed: int) -> End:
        dp = FakeDataplane(seed=seed)
        spec = TunnelSpec(
            TUNNEL,
            IPv4Interface("169.254.10.2/30"),
            IPv4Address("169.254.10.1"),
            1400,
            cfg.local_address,
            cfg.remote_address,
        )
        self.loop.run_until_complete(dp.open_tunnel(spec))
        session = Ikev1Session(cfg, SeededRng(seed), lambda: dp.allocate_spi(TUNNEL), self.now)
        return End(name, ip, session, dp)

    def close(self) -> None:
        self.loop.close()

    def _drain(self, end: End) -> None:
        end.outbox.extend(end.session.datagrams_to_send())
        run = self.loop.run_until_complete
        for ev in end.session.events():
            end.events.append(ev)
            if isinstance(ev, ChildSaInstalled):
                run(end.dataplane.add_sa(ev.inbound, ev.inbound_params))
                if ev.outbound is not None and ev.outbound_params is not None:
                    run(end.dataplane.add_sa(ev.outbound, ev.outbound_params))
            elif isinstance(ev, ChildOutboundReady):
                run(end.dataplane.add_sa(ev.outbound, ev.outbound_params))
            elif isinstance(ev, ChildSaRemoved):
                for sa in ev.sa_ids:
                    run(end.dataplane.remove_sa(sa))

    def deliver(self, sender: End, receiver: End, out: Outgoing) -> None:
        if self.filter is not None and not self.filter(sender.name, out):
            return
        src_ip, src_port = sender.ip, out.src_port
        if self.nat and sender is self.cgw:
            src_ip, src_port = NAT_PUBLIC_IP, 40000 + out.src_port
        dst_port = out.dst[1]
        if self.nat and receiver is self.cgw:
            dst_port -= 40000
        times = 2 if self.duplicate is not None and self.duplicate(sender.name, out) else 1
        for _ in range(times):
            receiver.session.receive_datagram(
                out.data, (src_ip, src_port), (receiver.ip, dst_port), self.now
            )

    def pump(self, max_rounds: int = 200) -> None:
        for _ in range(max_rounds):
            self._drain(self.cgw)
            self._drain(self.aws)
            self._stream()
            if not self.cgw.outbox and not self.aws.outbox:
                return
            for sender, receiver in ((self.cgw, self.aws), (self.aws, self.cgw)):
                batch, sender.outbox = sender.outbox, []
                for out in batch:
                    self.deliver(sender, receiver, out)
        raise AssertionError("message storm: outboxes never emptied")

    def _stream(self) -> None:
        for a, b in ((self.cgw, self.aws), (self.aws, self.cgw)):
            out = a.current_out()
            if out is None or not any(sa.direction == "in" for sa in b.installed()):
                continue
            self.sent_packets += 1
            keys = a.dataplane.params(out).keymat
            peer_in = SaId(TUNNEL, "in", out.spi)
            if peer_in not in b.installed() or b.dataplane.params(peer_in).keymat != keys:
                self.lost_packets += 1

    def advance(self, until: float) -> None:
        self.pump()
        while True:
            ds = [d for d in (self.cgw.session.next_deadline(), self.aws.session.next_deadline())
                  if d is not None]  # fmt: skip
            nxt = min(ds) if ds else None
            if nxt is None or nxt > until:
                self.now = max(self.now, until)
                self.pump()
                return
            self.now = max(self.now, nxt)
            for end in (self.cgw, self.aws):
                d = end.session.next_deadline()
                if d is not None and d <= self.now:
                    end.session.handle_timer(self.now)
            self.pump()

    def run_for(self, seconds: float) -> None:
        self.advance(self.now + seconds)

    def establish(self) -> None:
        """Initiate from ``cgw`` and let half a second pass."""
        self.cgw.session.initiate(self.now)
        self.run_for(0.5)


def assert_tunnel_up(pair: V1Pair) -> None:
    """Each side's outbound SA is the other's inbound SA, with the same keys and suite."""
    cgw, aws = pair.cgw, pair.aws
    out_c, out_a = cgw.current_out(), aws.current_out()
    assert out_c is not None and out_a is not None
    assert SaId(TUNNEL, "in", out_c.spi) in aws.installed()
    assert SaId(TUNNEL, "in", out_a.spi) in cgw.installed()
    pc, pa = cgw.dataplane.params(out_c), aws.dataplane.params(SaId(TUNNEL, "in", out_c.spi))
    assert pc.keymat == pa.keymat and pc.suite == pa.suite
    assert pc.keymat != aws.dataplane.params(out_a).keymat
