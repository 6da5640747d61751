"""The asyncio host of IKE sessions: UDP 500/4500 sockets, one timer per session, and the
dataplane actions the sessions ask for.

Flow: every datagram, timer expiry and API call is fed to the session with ``now`` from the
host's clock; then `IkeHost.pump` drains the session (datagrams to send, events) and re-arms
the session's one timer from ``next_deadline()`` (aioquic style). Any session with the
`Session` surface is served (IKEv2 `IkeSession`, IKEv1 `Ikev1Session`).

Apply, then send. Dataplane operations are async and must happen in the order the session
emitted them (make-before-break), so each session has one FIFO worker that applies its
dataplane events one after the other. The datagrams a pump produced go through the same
worker, right after that pump's last SA installation: a peer may use a new SA as soon as
it has our message (the IKE_AUTH or CREATE_CHILD_SA response, Quick Mode message 2 or 3),
so the SA must be in the dataplane before the message leaves. Removals queued after the
datagrams follow them. A pump that installs nothing, while the worker is idle, sends at
once; otherwise its datagrams wait their turn, so a session's datagrams never overtake
each other (nor a retransmission the install it depends on).

Sockets: one unconnected UDP socket on local:500 and one on local:4500, both with
SO_REUSEPORT so that the userspace dataplane can own connected 4500 sockets towards each
peer (which the kernel prefers); IKE datagrams arriving there come back to us through
`Dataplane.set_ike_receiver` with the non-ESP marker still on. On port 4500 we send and
expect the non-ESP marker (RFC 3948 §2.2); NAT keepalives and stray ESP are dropped and
counted. With the kernel dataplane both sockets bypass IPsec and the 4500 one hands
ESP-in-UDP to the kernel (`Dataplane.needs_ike_socket_bypass`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from ipaddress import IPv4Address
from typing import Any, Protocol

from cgwd.dataplane.base import Dataplane, DataplaneError, SaId
from cgwd.esp.natt import NON_ESP_MARKER, UdpPayloadKind, classify
from cgwd.ike.clock import Clock
from cgwd.ike.events import (
    ChildOutboundReady,
    ChildSaInstalled,
    ChildSaRemoved,
    Event,
    IkeDown,
    IkeEstablished,
    InboundSpiReleased,
    LogEvent,
)

log = logging.getLogger("cgwd.ike")

IKE_PORT = 500  # RFC 7296 §2
NAT_T_PORT = 4500  # RFC 3948, RFC 7296 §2.23
MAX_DATAGRAM = 65535

_DATAPLANE_EVENTS = (ChildSaInstalled, ChildOutboundReady, ChildSaRemoved, InboundSpiReleased)
_INSTALLS = (ChildSaInstalled, ChildOutboundReady)


class SessionConfig(Protocol):
    """What the host reads of a session's policy."""

    @property
    def tunnel(self) -> str: ...
    @property
    def remote_address(self) -> IPv4Address: ...


class Datagram(Protocol):
    """One IKE/ISAKMP message to send (the host adds the non-ESP marker on NAT-T)."""

    @property
    def data(self) -> bytes: ...
    @property
    def dst(self) -> tuple[str, int]: ...
    @property
    def src_port(self) -> int: ...


class Session(Protocol):
    """What the host needs of an IKE session (`cgwd.ike.v2.session.IkeSession`,
    `cgwd.ike.v1.session.Ikev1Session`): sans-I/O, fed with ``now``, drained after each
    input. None of these may raise on bad input (the sessions count and drop it)."""

    @property
    def config(self) -> SessionConfig: ...
    def initiate(self, now: float) -> None: ...
    def terminate(self, now: float) -> None: ...
    def receive_datagram(
        self, data: bytes, src: tuple[str, int], dst: tuple[str, int], now: float
    ) -> None: ...
    def handle_timer(self, now: float) -> None: ...
    def note_traffic(self, at: float) -> None: ...
    def datagrams_to_send(self) -> Sequence[Datagram]: ...
    def events(self) -> Sequence[Event]: ...
    def next_deadline(self) -> float | None: ...
    def status(self, now: float | None = None) -> dict[str, Any]: ...


# The sink gets the session it was registered with; typed Any so that a sink serving one
# session class may annotate it (a Callable[[Session, ...]] would refuse such a sink).
EventSink = Callable[[Any, Event], None]


@dataclass(frozen=True)
class _Send:
    """The datagrams of one pump, sent by the worker once the installs queued before them
    are applied."""

    datagrams: tuple[Datagram, ...]


@dataclass
class HostCounters:
    received: int = 0
    sent: int = 0
    unknown_peer: int = 0
    not_ike_on_4500: int = 0
    send_errors: int = 0
    dataplane_errors: int = 0


@dataclass
class _Slot:
    session: Session
    timer: asyncio.TimerHandle | None = None
    actions: asyncio.Queue[Event | _Send] = field(default_factory=asyncio.Queue)
    worker: asyncio.Task[None] | None = None
    busy: bool = False  # the worker is applying or sending one job
    inbound: set[SaId] = field(default_factory=set)  # the session's installed inbound SAs

    def idle(self) -> bool:
        return not self.busy and self.actions.empty()


class _Protocol(asyncio.DatagramProtocol):
    def __init__(self, host: IkeHost, local: tuple[str, int]) -> None:
        self._host = host
        self._local = local

    def datagram_received(self, data: bytes, addr: tuple[str | int, int]) -> None:
        self._host.datagram_received(data, (str(addr[0]), int(addr[1])), self._local)

    def error_received(self, exc: Exception) -> None:
        log.debug("IKE socket %s:%d error: %s", *self._local, exc)


class IkeHost:
    """Runs IKE sessions on one local address.

    Args:
        dataplane: where Child SAs are installed; also hands us IKE datagrams it receives.
        clock: the monotonic clock whose readings are passed to the sessions as ``now``.
        local_address: the address to bind ports 500 and 4500 on.
        on_event: optional callback for every event (after the host has acted on it).
        ports: the UDP ports to bind for IKE and NAT-T (the sessions' ``ike_port`` and
            ``nat_t_port``); tests use others.
    """

    def __init__(
        self,
        dataplane: Dataplane,
        clock: Clock,
        local_address: IPv4Address,
        *,
        on_event: EventSink | None = None,
        ports: tuple[int, int] = (IKE_PORT, NAT_T_PORT),
    ) -> None:
        self.dataplane = dataplane
        self.clock = clock
        self.local_address = local_address
        self.ports = ports
        self.counters = HostCounters()
        self._on_event = on_event
        self._slots: dict[str, _Slot] = {}  # peer IP -> session
        self._transports: dict[int, asyncio.DatagramTransport] = {}
        self._loop: asyncio.AbstractEventLoop | None = None

    async def start(self) -> None:
        """Bind the sockets and register with the dataplane.

        With a dataplane that `needs_ike_socket_bypass` (the kernel's), both sockets get
        per-socket IPsec bypass policies and the NAT-T one UDP_ENCAP_ESPINUDP
        (`cgwd.net.xfrm.ike_socket.prepare_ike_socket`).

        Raises:
            OSError: binding failed.
            XfrmError: the kernel refused a socket option (the message says which).
        """
        self._loop = asyncio.get_running_loop()
        for port in self.ports:
            sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            try:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
                sock.bind((str(self.local_address), port))
                if self.dataplane.needs_ike_socket_bypass:
                    from cgwd.net.xfrm.ike_socket import prepare_ike_socket  # noqa: PLC0415

                    prepare_ike_socket(sock, nat_t=port == self.ports[1])
            except BaseException:
                sock.close()
                raise
            local = (str(self.local_address), port)
            transport, _ = await self._loop.create_datagram_endpoint(
                lambda local=local: _Protocol(self, local),  # type: ignore[misc]
                sock=sock,
            )
            self._transports[port] = transport
        self.dataplane.set_ike_receiver(self.datagram_received)

    def add_session(self, session: Session) -> None:
        """Serve ``session`` (its peer is ``session.config.remote_address``)."""
        slot = _Slot(session)
        self._slots[str(session.config.remote_address)] = slot
        slot.worker = asyncio.get_running_loop().create_task(self._apply_actions(slot))
        self.pump(session)

    def session_for(self, peer: IPv4Address) -> Session | None:
        slot = self._slots.get(str(peer))
        return None if slot is None else slot.session

    def initiate(self, session: Session) -> None:
        session.initiate(self.clock.now())
        self.pump(session)

    async def remove_session(self, session: Session, *, delete: bool = True) -> None:
        """Stop serving one session (a tunnel removed by a reload): DELETE its SAs first if
        ``delete``, apply the resulting dataplane actions, then forget it."""
        key = str(session.config.remote_address)
        slot = self._slots.get(key)
        if slot is None or slot.session is not session:
            return
        if delete:
            session.terminate(self.clock.now())
            self.pump(session)
        if slot.timer is not None:
            slot.timer.cancel()
            slot.timer = None
        await slot.actions.join()
        del self._slots[key]
        if slot.worker is not None:
            slot.worker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await slot.worker

    async def close(self, *, delete: bool = True, grace: float = 1.0) -> None:
        """Stop every session (sending DELETEs first if ``delete``) and close the sockets."""
        if delete:
            for slot in self._slots.values():
                slot.session.terminate(self.clock.now())
                self.pump(slot.session)
            # Give DELETE responses a moment; the sessions drop their SAs regardless.
            await asyncio.sleep(min(grace, 0.2) if not self._slots else grace)
        for slot in self._slots.values():
            if slot.timer is not None:
                slot.timer.cancel()
            await slot.actions.join()
            if slot.worker is not None:
                slot.worker.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await slot.worker
        self._slots.clear()
        self.dataplane.set_ike_receiver(None)
        for transport in self._transports.values():
            transport.close()
        self._transports.clear()

    # -- input --------------------------------------------------------------------

    def datagram_received(
        self, data: bytes, remote: tuple[str, int], local: tuple[str, int]
    ) -> None:
        self.counters.received += 1
        if local[1] != self.ports[0]:
            kind, payload = classify(data)
            if kind is not UdpPayloadKind.IKE:
                self.counters.not_ike_on_4500 += 1
                return
            data = bytes(payload)
        slot = self._slots.get(remote[0])
        if slot is None:
            self.counters.unknown_peer += 1
            return
        slot.session.receive_datagram(data, remote, local, self.clock.now())
        self.pump(slot.session)

    def _on_timer(self, slot: _Slot) -> None:
        slot.timer = None
        now = self.clock.now()
        self._note_traffic(slot, now)
        slot.session.handle_timer(now)
        self.pump(slot.session)

    def _note_traffic(self, slot: _Slot, now: float) -> None:
        """Tell the session when ESP last arrived on its Child SAs, so that it probes the
        peer's liveness only when the tunnel is idle (the sessions see IKE, not ESP)."""
        latest: float | None = None
        for sa in list(slot.inbound):
            try:
                used = self.dataplane.sa_counters(sa).last_used
            except DataplaneError:  # removed meanwhile, or the kernel would not say
                continue
            if used is not None and (latest is None or used > latest):
                latest = used
        if latest is not None:
            # Never later than now, whatever the dataplane's clock says.
            slot.session.note_traffic(min(latest, now))

    # -- output -------------------------------------------------------------------

    def pump(self, session: Session) -> None:
        """Queue the session's dataplane actions and datagrams, re-arm its timer, and (after
        the dataplane worker has had its turn) log and report its events.

        The datagrams are sent after this pump's SA installations have been applied (see
        the module docstring); if it installs nothing and the worker is idle, right away.
        """
        slot = self._slots.get(str(session.config.remote_address))
        events = session.events()
        datagrams = tuple(session.datagrams_to_send())
        if slot is None:
            self._send(datagrams)
        else:
            actions = [e for e in events if isinstance(e, _DATAPLANE_EVENTS)]
            last_install = max(
                (i for i, e in enumerate(actions) if isinstance(e, _INSTALLS)), default=-1
            )
            if datagrams and last_install < 0 and slot.idle():
                self._send(datagrams)
                datagrams = ()
            for event in actions[: last_install + 1]:
                slot.actions.put_nowait(event)
            if datagrams:
                slot.actions.put_nowait(_Send(datagrams))
            for event in actions[last_install + 1 :]:
                slot.actions.put_nowait(event)
        if events and self._loop is not None:
            self._loop.call_soon(self._report, session, events)
        elif events:
            self._report(session, events)
        if slot is None:
            return
        if slot.timer is not None:
            slot.timer.cancel()
            slot.timer = None
        deadline = session.next_deadline()
        if deadline is not None and self._loop is not None:
            delay = max(0.0, deadline - self.clock.now())
            slot.timer = self._loop.call_later(delay, self._on_timer, slot)

    def _send(self, datagrams: Sequence[Datagram]) -> None:
        for out in datagrams:
            transport = self._transports.get(out.src_port)
            if transport is None or transport.is_closing():
                self.counters.send_errors += 1
                continue
            nat_t = out.src_port != self.ports[0]
            payload = NON_ESP_MARKER + out.data if nat_t else out.data
            try:
                transport.sendto(payload, out.dst)
                self.counters.sent += 1
            except OSError as exc:
                self.counters.send_errors += 1
                log.warning("sending IKE to %s:%d failed: %s", *out.dst, exc)

    def _report(self, session: Session, events: Sequence[Event]) -> None:
        for event in events:
            self._log_event(session, event)
            if self._on_event is not None:
                self._on_event(session, event)

    def _log_event(self, session: Session, event: Event) -> None:
        tunnel = session.config.tunnel
        if isinstance(event, LogEvent):
            level = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING}
            log.log(
                level.get(event.level, logging.ERROR),
                "%s %s: %s",
                tunnel,
                event.name,
                event.message,
            )
        elif isinstance(event, IkeEstablished):
            log.info(
                "%s ike_established: %s IKE SA %016x_i %016x_r (%s)%s",
                tunnel,
                "initiated" if event.initiator else "responded",
                event.spi_i,
                event.spi_r,
                event.suite,
                " by rekey" if event.rekey else "",
            )
        elif isinstance(event, IkeDown):
            log.warning(
                "%s ike_down: %s%s",
                tunnel,
                event.reason,
                "" if event.retry_in is None else f", retrying in {event.retry_in:.1f} s",
            )

    async def _apply_actions(self, slot: _Slot) -> None:
        """The session's one worker: applies its dataplane events and sends its queued
        datagrams, strictly in queue order."""
        while True:
            job = await slot.actions.get()
            slot.busy = True
            try:
                if isinstance(job, _Send):
                    self._send(job.datagrams)
                else:
                    await self._apply(job)
                    _track_inbound(slot.inbound, job)
            except DataplaneError as exc:
                self.counters.dataplane_errors += 1
                log.error("%s dataplane: %s", slot.session.config.tunnel, exc)
            except Exception as exc:  # a bug must not stop this session's later actions
                self.counters.dataplane_errors += 1
                log.error(
                    "%s dataplane: internal error: %s: %s",
                    slot.session.config.tunnel,
                    type(exc).__name__,
                    exc,
                )
            finally:
                slot.busy = False
                slot.actions.task_done()

    async def _apply(self, event: Event) -> None:
        await apply_sa_event(self.dataplane, event)

    async def drain_actions(self) -> None:
        """Wait until every queued dataplane action has been applied and every queued
        datagram sent (for tests)."""
        for slot in list(self._slots.values()):
            await slot.actions.join()


def _track_inbound(inbound: set[SaId], applied: Event) -> None:
    """Keep ``inbound`` (a session's installed inbound SAs) up to date with an event that
    was just applied."""
    if isinstance(applied, ChildSaInstalled):
        inbound.add(applied.inbound)
    elif isinstance(applied, ChildSaRemoved):
        inbound.difference_update(applied.sa_ids)


async def apply_sa_event(dp: Dataplane, event: Event) -> None:
    """Apply one dataplane event of a session (others are ignored).

    Make before break: an install adds the inbound SA before the outbound one (which then
    becomes current); a removal takes the outbound SAs out before the inbound ones. The
    sessions emit a successor's outbound half before the removal of the SA it replaces, so
    a tunnel always has a current outbound SA across a rekey. Removing an SA that is not
    installed (any more), or releasing an SPI that is no longer reserved, is logged at
    debug level, not raised.

    Raises:
        DataplaneError: an install failed.
    """
    if isinstance(event, ChildSaInstalled):
        await dp.add_sa(event.inbound, event.inbound_params)
        if event.outbound is not None and event.outbound_params is not None:
            await dp.add_sa(event.outbound, event.outbound_params)
    elif isinstance(event, ChildOutboundReady):
        await dp.add_sa(event.outbound, event.outbound_params)
    elif isinstance(event, ChildSaRemoved):
        for sa in sorted(event.sa_ids, key=lambda s: s.direction != "out"):
            try:
                await dp.remove_sa(sa)
            except DataplaneError as exc:
                log.debug("removing %s: %s", sa, exc)
    elif isinstance(event, InboundSpiReleased):
        try:
            dp.release_spi(event.sa.tunnel, event.sa.spi)
        except DataplaneError as exc:
            log.debug("releasing %s: %s", event.sa, exc)
