"""Two IKEv2 sessions wired together in memory: fake clock, seeded Rng, fake dataplanes.

`Pair` carries datagrams between the two sessions (optionally dropping, duplicating or
holding some back, and optionally rewriting the CGW's source like a NAT would), applies
their dataplane events to a `FakeDataplane` each, and advances a fake clock to the next
deadline when nothing is in flight. `packets_lost` models a continuous packet stream: at
each step both sides "send" one packet on their current outbound SA, and it is lost if the
other side has no inbound SA with that SPI and the same keys. Between those steps, every
single dataplane operation is checked too (`RecordingDataplane.outbound_gaps`): a tunnel
must never be left without a current outbound SA while a rekey replaces it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from ipaddress import IPv4Address, IPv4Interface
from typing import Any

from cgwd.config.aws import AwsTunnel, DeadPeerDetection, PhaseSettings
from cgwd.config.proposals import proposals_for
from cgwd.dataplane.base import SaId, SaParams, TunnelSpec, UnknownSaError
from cgwd.dataplane.fake import FakeDataplane
from cgwd.ike.constants import ProtocolId
from cgwd.ike.events import Event, IkeDown, LogEvent
from cgwd.ike.host import apply_sa_event
from cgwd.ike.rng import SeededRng
from cgwd.ike.v2.sa import IkeSessionConfig
from cgwd.ike.v2.session import IkeSession, Outgoing
from cgwd.ike.v2.wire import proposals_from_config
from cgwd.secret import Secret

CGW_IP = "192.0.2.1"
AWS_IP = "198.51.100.1"
NAT_PUBLIC_IP = "203.0.113.7"
TUNNEL = "vti1"


def aws_tunnel(
    *,
    p1: tuple[tuple[str, ...], tuple[str, ...], tuple[int, ...]] = ((), (), ()),
    p2: tuple[tuple[str, ...], tuple[str, ...], tuple[int, ...]] = ((), (), ()),
) -> AwsTunnel:
    """An AWS tunnel record; empty tuples mean AWS's full supported set."""
    return AwsTunnel(
        index=1,
        customer_gateway_outside_ip=IPv4Address(CGW_IP),
        vpn_gateway_outside_ip=IPv4Address(AWS_IP),
        customer_gateway_inside_ip=IPv4Address("169.254.10.2"),
        vpn_gateway_inside_ip=IPv4Address("169.254.10.1"),
        inside_cidr=None,
        pre_shared_key=Secret("test_psk_1234"),
        ike_version="ikev2",
        phase1=PhaseSettings(
            encryption_allowed=p1[0], integrity_allowed=p1[1], dh_groups_allowed=p1[2]
        ),
        phase2=PhaseSettings(
            encryption_allowed=p2[0], integrity_allowed=p2[1], dh_groups_allowed=p2[2]
        ),
        dpd=DeadPeerDetection(),
    )


def config_for(
    local: str,
    remote: str,
    tunnel: AwsTunnel | None = None,
    **overrides: Any,
) -> IkeSessionConfig:
    # A given tunnel states exactly what that side allows ("file" mode); none: everything.
    if tunnel is None:
        ps = proposals_for(aws_tunnel(), "ikev2")
    else:
        ps = proposals_for(tunnel, "ikev2", mode="file")
    cfg = IkeSessionConfig(
        tunnel=TUNNEL,
        local_address=IPv4Address(local),
        remote_address=IPv4Address(remote),
        psk=Secret("test_psk_1234"),
        ike_proposals=proposals_from_config(ps.ike, ProtocolId.IKE),
        esp_proposals=proposals_from_config(ps.esp, ProtocolId.ESP),
    )
    return replace(cfg, **overrides)


class RecordingDataplane(FakeDataplane):
    """A `FakeDataplane` with an operation log, checked after every operation.

    ``outbound_gaps`` lists the operations after which a tunnel that had a current outbound
    SA had none (traffic would be dropped: make-before-break broken); ``bad_removals`` the
    removals of SAs that were not installed.
    """

    def __init__(self, *, seed: int | None = None) -> None:
        super().__init__(seed=seed)
        self.ops: list[tuple[str, SaId]] = []
        self.outbound_gaps: list[tuple[str, SaId]] = []
        self.bad_removals: list[SaId] = []

    async def add_sa(self, sa: SaId, params: SaParams) -> None:
        await super().add_sa(sa, params)
        self._log("add", sa)

    async def remove_sa(self, sa: SaId) -> None:
        try:
            await super().remove_sa(sa)
        except UnknownSaError:
            self.bad_removals.append(sa)
            raise
        self._log("remove", sa)

    def _log(self, op: str, sa: SaId) -> None:
        self.ops.append((op, sa))
        if self.current_outbound(sa.tunnel) is None and any(
            o == "add" and s.direction == "out" and s.tunnel == sa.tunnel for o, s in self.ops
        ):
            self.outbound_gaps.append((op, sa))


@dataclass
class Endpoint:
    name: str
    ip: str
    session: IkeSession
    dataplane: RecordingDataplane
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


Filter = Callable[[str, Outgoing], bool]  # (sender name, datagram) -> deliver?


class Pair:
    """``cgw`` (192.0.2.1) and ``aws`` (198.51.100.1), each with its own session."""

    def __init__(
        self,
        cgw_config: IkeSessionConfig | None = None,
        aws_config: IkeSessionConfig | None = None,
        *,
        seed: int = 1,
        nat: bool = False,
    ) -> None:
        self.now = 1000.0
        self.loop = asyncio.new_event_loop()
        self.nat = nat
        self.nat_port_base = 40000  # the NAT maps the CGW's port p to public port base + p
        self.nat_dropped = 0  # datagrams to a public port the NAT no longer maps
        self.filter: Filter | None = None
        self.hold: Filter | None = None  # True: keep the datagram back until release()
        self.held: list[tuple[Endpoint, Endpoint, Outgoing]] = []
        self.delivered = 0
        self.lost_packets = 0
        self.sent_packets = 0
        cgw_cfg = cgw_config or config_for(CGW_IP, AWS_IP)
        aws_cfg = aws_config or config_for(AWS_IP, NAT_PUBLIC_IP if nat else CGW_IP)
        self.cgw = self._endpoint("cgw", CGW_IP, cgw_cfg, seed)
        self.aws = self._endpoint("aws", AWS_IP, aws_cfg, seed + 1000)

    def _endpoint(self, name: str, ip: str, cfg: IkeSessionConfig, seed: int) -> Endpoint:
        dp = RecordingDataplane(seed=seed)
        spec = TunnelSpec(
            TUNNEL,
            IPv4Interface("169.254.10.2/30"),
            IPv4Address("169.254.10.1"),
            1400,
            cfg.local_address,
            cfg.remote_address,
        )
        self.loop.run_until_complete(dp.open_tunnel(spec))
        session = IkeSession(cfg, SeededRng(seed), lambda: dp.allocate_spi(TUNNEL), self.now)
        return Endpoint(name, ip, session, dp)

    def close(self) -> None:
        self.loop.close()

    # -- moving things ----------------------------------------------------------

    def _drain(self, ep: Endpoint) -> None:
        ep.outbox.extend(ep.session.datagrams_to_send())
        for ev in ep.session.events():
            ep.events.append(ev)
            self._apply(ep, ev)

    def _apply(self, ep: Endpoint, ev: Event) -> None:
        # What IkeHost does with each event, in the order the session emitted them.
        self.loop.run_until_complete(apply_sa_event(ep.dataplane, ev))

    def release(self) -> None:
        """Deliver the held-back datagrams now (then pump)."""
        held, self.held = self.held, []
        for sender, receiver, out in held:
            self._deliver(sender, receiver, out, held=True)
        self.pump()

    def _deliver(
        self, sender: Endpoint, receiver: Endpoint, out: Outgoing, *, held: bool = False
    ) -> None:
        if self.filter is not None and not self.filter(sender.name, out):
            return
        if not held and self.hold is not None and self.hold(sender.name, out):
            self.held.append((sender, receiver, out))
            return
        src_ip, src_port = sender.ip, out.src_port
        if self.nat and sender is self.cgw:
            src_ip, src_port = NAT_PUBLIC_IP, self.nat_port_base + out.src_port  # port-rewriting
        dst_port = out.dst[1]
        if self.nat and receiver is self.cgw:
            dst_port = dst_port - self.nat_port_base
            if dst_port not in (
                receiver.session.config.ike_port,
                receiver.session.config.nat_t_port,
            ):
                self.nat_dropped += 1  # a mapping the NAT has forgotten (it rebound)
                return
        self.delivered += 1
        receiver.session.receive_datagram(
            out.data, (src_ip, src_port), (receiver.ip, dst_port), self.now
        )

    def pump(self, max_rounds: int = 200) -> None:
        """Deliver datagrams until both outboxes are empty."""
        for _ in range(max_rounds):
            self._drain(self.cgw)
            self._drain(self.aws)
            self._stream()
            if not self.cgw.outbox and not self.aws.outbox:
                return
            for sender, receiver in ((self.cgw, self.aws), (self.aws, self.cgw)):
                batch, sender.outbox = sender.outbox, []
                for out in batch:
                    self._deliver(sender, receiver, out)
        raise AssertionError("message storm: outboxes never emptied")

    def _stream(self) -> None:
        """One packet each way on the current outbound SA; count those that would be lost."""
        for a, b in ((self.cgw, self.aws), (self.aws, self.cgw)):
            out = a.current_out()
            if out is None or not any(sa.direction == "in" for sa in b.installed()):
                continue  # not up yet on one side: nothing is "lost" before the first SA
            self.sent_packets += 1
            keys = a.dataplane.params(out).keymat
            peer_in = SaId(TUNNEL, "in", out.spi)
            if peer_in not in b.installed() or b.dataplane.params(peer_in).keymat != keys:
                self.lost_packets += 1

    def advance(self, until: float) -> None:
        """Run timers and deliveries until the clock reaches ``until``."""
        self.pump()
        while True:
            deadlines = [
                d
                for d in (self.cgw.session.next_deadline(), self.aws.session.next_deadline())
                if d is not None
            ]
            nxt = min(deadlines) if deadlines else None
            if nxt is None or nxt > until:
                self.now = max(self.now, until)
                self.pump()
                return
            self.now = max(self.now, nxt)
            for ep in (self.cgw, self.aws):
                d = ep.session.next_deadline()
                if d is not None and d <= self.now:
                    ep.session.handle_timer(self.now)
            self.pump()

    def run_for(self, seconds: float) -> None:
        self.advance(self.now + seconds)

    def assert_make_before_break(self) -> None:
        """No dataplane operation so far left a tunnel without a current outbound SA, and
        no removal named an SA that was not installed."""
        for ep in (self.cgw, self.aws):
            dp = ep.dataplane
            assert not dp.outbound_gaps, (ep.name, dp.outbound_gaps[:3], len(dp.ops))
            assert not dp.bad_removals, (ep.name, dp.bad_removals)

    def establish(self) -> None:
        self.cgw.session.initiate(self.now)
        self.pump()
