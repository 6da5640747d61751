"""Apply, then send: the host sends the message that enables a new SA only once the
dataplane has installed that SA.

Two `IkeHost`s over loopback UDP (free high ports, nothing on 500/4500), each with a
`RecordingDataplane` whose ``add_sa`` takes 100 ms (a slow dataplane: thread hops, netlink).
One shared log records, in real order, each finished ``add_sa`` and each datagram a host
receives. A peer that gets the IKE_AUTH response (IKEv2) or Quick Mode message 2 or 3
(IKEv1) may send on the new SA at once, so the sender's SA must be in the log before that
message's arrival. Without the host's ordering the message overtakes the slow install.

A scripted `Session` then pins down the queue itself: a pump's removals follow its
datagrams, a pump that installs nothing is sent at once when nothing is queued, and a
later datagram never overtakes an earlier one still waiting for its install.
"""

from __future__ import annotations

import asyncio
import socket
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv4Interface
from typing import Any

from ikev2_pair import RecordingDataplane, aws_tunnel

from cgwd.config.proposals import proposals_for
from cgwd.dataplane.base import SaId, SaParams, TunnelSpec
from cgwd.esp.natt import NON_ESP_MARKER
from cgwd.esp.suites import suite_by_name
from cgwd.ike.clock import MonotonicClock
from cgwd.ike.constants import ProtocolId
from cgwd.ike.events import ChildSaInstalled, ChildSaRemoved, Event
from cgwd.ike.host import IkeHost, Session
from cgwd.ike.rng import SystemRng
from cgwd.ike.v1.proposals import from_config
from cgwd.ike.v1.sa import Ikev1SessionConfig
from cgwd.ike.v1.session import Ikev1Session
from cgwd.ike.v2.sa import IkeSessionConfig
from cgwd.ike.v2.session import IkeSession, Outgoing
from cgwd.ike.v2.wire import proposals_from_config
from cgwd.secret import Secret

TUNNEL = "t1"
SLOW_ADD = 0.1  # seconds each add_sa takes
IKE_AUTH = 35  # RFC 7296 §3.1 exchange type
QUICK_MODE = 32  # RFC 2408 §3.1 / RFC 2409 §5.5
RESPONSE_FLAG = 0x20  # RFC 7296 §3.1
A_IP, B_IP = "127.0.0.1", "127.0.0.2"
PEER = IPv4Address(B_IP)

Log = list[tuple[str, str, Any]]  # ("added", host, SaId) | ("recv", host, (exchange, flags))


class SlowDataplane(RecordingDataplane):
    def __init__(self, name: str, log: Log) -> None:
        super().__init__()
        self.name = name
        self.shared_log = log

    async def add_sa(self, sa: SaId, params: SaParams) -> None:
        await asyncio.sleep(SLOW_ADD)
        await super().add_sa(sa, params)
        self.shared_log.append(("added", self.name, sa))

    async def remove_sa(self, sa: SaId) -> None:
        await super().remove_sa(sa)
        self.shared_log.append(("removed", self.name, sa))


class WatchingHost(IkeHost):
    """Logs the exchange type and flags of every datagram before handling it."""

    def __init__(self, name: str, log: Log, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.name = name
        self.shared_log = log

    def datagram_received(
        self, data: bytes, remote: tuple[str, int], local: tuple[str, int]
    ) -> None:
        ike = data[len(NON_ESP_MARKER) :] if data.startswith(NON_ESP_MARKER) else data
        if len(ike) >= 28:  # RFC 7296 §3.1 / RFC 2408 §3.1: the 28-octet header
            self.shared_log.append(("recv", self.name, (ike[18], ike[19])))
        super().datagram_received(data, remote, local)


def _free_port(address: str) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind((address, 0))
        return int(s.getsockname()[1])


def _v2_session(local: str, remote: str, port: int, dp: SlowDataplane) -> Session:
    ps = proposals_for(aws_tunnel(), "ikev2")
    cfg = IkeSessionConfig(
        tunnel=TUNNEL,
        local_address=IPv4Address(local),
        remote_address=IPv4Address(remote),
        psk=Secret("loopback_psk_1"),
        ike_proposals=proposals_from_config(ps.ike, ProtocolId.IKE),
        esp_proposals=proposals_from_config(ps.esp, ProtocolId.ESP),
        remote_port=port,
        ike_port=port,
        nat_t_port=port + 1,
    )
    return IkeSession(cfg, SystemRng(), lambda: dp.allocate_spi(TUNNEL), 0.0)


def _v1_session(local: str, remote: str, port: int, dp: SlowDataplane) -> Session:
    p1, esp, groups = from_config(proposals_for(aws_tunnel(), "ikev1"))
    cfg = Ikev1SessionConfig(
        tunnel=TUNNEL,
        local_address=IPv4Address(local),
        remote_address=IPv4Address(remote),
        psk=Secret("loopback_psk_1"),
        phase1_suites=p1,
        esp_suites=esp,
        pfs_groups=groups,
        local_id=IPv4Address(local),
        remote_id=IPv4Address(remote),
        remote_port=port,
        ike_port=port,
        nat_t_port=port + 1,
    )
    return Ikev1Session(cfg, SystemRng(), lambda: dp.allocate_spi(TUNNEL), 0.0)


async def _establish(version: int) -> tuple[Log, list[SlowDataplane]]:
    """Bring a tunnel up from host ``a`` to host ``b``; the shared log and both dataplanes."""
    port = _free_port(A_IP)
    while port >= 65535:
        port = _free_port(A_IP)
    log: Log = []
    clock = MonotonicClock()
    hosts: list[WatchingHost] = []
    dps: list[SlowDataplane] = []
    sessions: list[Session] = []
    try:
        for name, local, remote in (("a", A_IP, B_IP), ("b", B_IP, A_IP)):
            dp = SlowDataplane(name, log)
            spec = TunnelSpec(
                TUNNEL, IPv4Interface("169.254.0.2/30"), IPv4Address("169.254.0.1"), 1400,
                IPv4Address(local), IPv4Address(remote),
            )  # fmt: skip
            await dp.open_tunnel(spec)
            host = WatchingHost(name, log, dp, clock, IPv4Address(local), ports=(port, port + 1))
            hosts.append(host)
            dps.append(dp)
            await host.start()
            make = _v2_session if version == 2 else _v1_session
            session = make(local, remote, port, dp)
            host.add_session(session)
            sessions.append(session)
        hosts[0].initiate(sessions[0])
        for _ in range(100):
            await asyncio.sleep(0.05)
            if all(dp.current_outbound(TUNNEL) is not None for dp in dps):
                break
        for host in hosts:
            await asyncio.wait_for(host.drain_actions(), 5.0)
    finally:
        for host in hosts:
            await host.close(delete=False)
    assert all(dp.current_outbound(TUNNEL) is not None for dp in dps), [h.counters for h in hosts]
    return log, dps


def _received(log: Log, host: str, exchange: int, *, response: bool | None = None) -> list[int]:
    """Log positions of ``host``'s arrivals of ``exchange`` messages (requests, responses
    or both)."""
    return [
        i
        for i, (kind, who, what) in enumerate(log)
        if kind == "recv"
        and who == host
        and what[0] == exchange
        and (response is None or bool(what[1] & RESPONSE_FLAG) == response)
    ]


def _added(log: Log, host: str, sa: SaId) -> int:
    return log.index(("added", host, sa))


def test_ikev2_auth_response_leaves_after_the_responders_child_sa_is_installed() -> None:
    log, (dp_a, dp_b) = asyncio.run(_establish(2))
    out_a, out_b = dp_a.current_outbound(TUNNEL), dp_b.current_outbound(TUNNEL)
    assert out_a is not None and out_b is not None
    auth_response = _received(log, "a", IKE_AUTH, response=True)
    assert auth_response, log
    # The responder's inbound SA (where the initiator now sends) and its outbound SA, in that
    # order, both before the response that completes the initiator's Child SA arrives.
    b_in = _added(log, "b", SaId(TUNNEL, "in", out_a.spi))
    b_out = _added(log, "b", out_b)
    assert b_in < b_out < auth_response[0], log


def test_ikev1_quick_mode_messages_2_and_3_leave_after_the_sas_they_enable() -> None:
    log, (dp_a, dp_b) = asyncio.run(_establish(1))
    out_a, out_b = dp_a.current_outbound(TUNNEL), dp_b.current_outbound(TUNNEL)
    assert out_a is not None and out_b is not None
    qm_at_a = _received(log, "a", QUICK_MODE)  # message 2
    qm_at_b = _received(log, "b", QUICK_MODE)  # messages 1 and 3
    assert len(qm_at_a) >= 1 and len(qm_at_b) >= 2, log
    # Message 2 lets the initiator send on the responder's new inbound SA.
    assert _added(log, "b", SaId(TUNNEL, "in", out_a.spi)) < qm_at_a[0], log
    # Message 3 lets the responder switch to its outbound SA: the initiator's inbound one
    # (and its own outbound one, added after it) must be in place by then.
    a_in = _added(log, "a", SaId(TUNNEL, "in", out_b.spi))
    assert a_in < _added(log, "a", out_a) < qm_at_b[1], log


# -- the queue, with a scripted session -------------------------------------------------

GCM = suite_by_name("aes128gcm16")


@dataclass(frozen=True)
class _Config:
    tunnel: str = TUNNEL
    remote_address: IPv4Address = PEER


@dataclass
class ScriptedSession:
    """A `Session` whose next pump yields whatever the test staged."""

    config: _Config = field(default_factory=_Config)
    staged_events: list[Event] = field(default_factory=list)
    staged_out: list[Outgoing] = field(default_factory=list)

    def initiate(self, now: float) -> None:
        pass

    def terminate(self, now: float) -> None:
        pass

    def receive_datagram(
        self, data: bytes, src: tuple[str, int], dst: tuple[str, int], now: float
    ) -> None:
        pass

    def handle_timer(self, now: float) -> None:
        pass

    def datagrams_to_send(self) -> list[Outgoing]:
        out, self.staged_out = self.staged_out, []
        return out

    def events(self) -> list[Event]:
        out, self.staged_events = self.staged_events, []
        return out

    def next_deadline(self) -> float | None:
        return None

    def status(self, now: float | None = None) -> dict[str, Any]:
        return {}


class RecordingTransport:
    def __init__(self, log: Log) -> None:
        self.log = log

    def sendto(self, data: bytes, addr: tuple[str, int]) -> None:
        self.log.append(("sent", "a", data))

    def is_closing(self) -> bool:
        return False

    def close(self) -> None:
        pass


def _child(child_id: int, spi: int) -> tuple[ChildSaInstalled, ChildSaRemoved]:
    params = SaParams(GCM, Secret(bytes(GCM.keymat_bytes)))
    sa_in, sa_out = SaId(TUNNEL, "in", spi), SaId(TUNNEL, "out", spi + 1)
    return (
        ChildSaInstalled(child_id, sa_in, params, sa_out, params),
        ChildSaRemoved(child_id, (sa_in, sa_out), "rekeyed"),
    )


async def _scripted() -> tuple[Log, list[Log]]:
    log: Log = []
    dp = SlowDataplane("a", log)
    spec = TunnelSpec(
        TUNNEL, IPv4Interface("169.254.0.2/30"), IPv4Address("169.254.0.1"), 1400,
        IPv4Address(A_IP), IPv4Address(B_IP),
    )  # fmt: skip
    await dp.open_tunnel(spec)
    host = IkeHost(dp, MonotonicClock(), IPv4Address(A_IP), ports=(40000, 40001))
    host._transports[40000] = RecordingTransport(log)  # type: ignore[assignment]
    session = ScriptedSession()
    host.add_session(session)
    install_a, remove_a = _child(1, 0x1000)
    install_b, remove_b = _child(2, 0x2000)
    install_c, _ = _child(3, 0x3000)

    def pump(events: list[Event], *datagrams: bytes) -> None:
        session.staged_events = events
        session.staged_out = [Outgoing(d, (B_IP, 40000), 40000) for d in datagrams]
        host.pump(session)

    snapshots: list[Log] = []
    pump([install_a], b"m1")
    await host.drain_actions()
    # A rekey that completes: the successor in, the message out, then the old SA goes.
    pump([install_b, remove_a], b"m2")
    await host.drain_actions()
    # Nothing to install and nothing queued: sent within the pump itself.
    pump([remove_b], b"m3")
    snapshots.append(list(log))
    await host.drain_actions()
    # An install in flight: the next pump's datagram (a retransmission) waits behind it.
    pump([install_c], b"m4")
    pump([], b"m4-again")
    snapshots.append(list(log))
    await host.drain_actions()
    host._transports.clear()
    await host.close(delete=False)
    return log, snapshots


def test_the_queue_orders_installs_datagrams_and_removals() -> None:
    log, (after_m3_pump, after_m4_pumps) = asyncio.run(_scripted())
    install_a, remove_a = _child(1, 0x1000)
    install_b, remove_b = _child(2, 0x2000)
    install_c, _ = _child(3, 0x3000)

    def ops(ev: ChildSaInstalled | ChildSaRemoved) -> list[tuple[str, str, Any]]:
        if isinstance(ev, ChildSaInstalled):
            assert ev.outbound is not None
            return [("added", "a", ev.inbound), ("added", "a", ev.outbound)]
        return [("removed", "a", sa) for sa in ev.sa_ids if sa.direction == "out"] + [
            ("removed", "a", sa) for sa in ev.sa_ids if sa.direction == "in"
        ]

    expected = [
        *ops(install_a),
        ("sent", "a", b"m1"),
        *ops(install_b),
        ("sent", "a", b"m2"),
        *ops(remove_a),
        ("sent", "a", b"m3"),
        *ops(remove_b),
        *ops(install_c),
        ("sent", "a", b"m4"),
        ("sent", "a", b"m4-again"),
    ]
    assert log == expected
    assert after_m3_pump[-1] == ("sent", "a", b"m3")
    assert ("sent", "a", b"m4-again") not in after_m4_pumps
