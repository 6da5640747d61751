"""The IKEv2 session of one tunnel: sans-I/O, driven by its host (aioquic style).

The host feeds three kinds of input, always with ``now``: datagrams
(`receive_datagram`), timer expiry (`handle_timer`) and API calls (`initiate`,
`terminate`). Afterwards it drains `datagrams_to_send` and `events` and arms one timer
for `next_deadline`. Nothing here reads a clock, draws randomness other than from the
injected `Rng`, or does I/O.

A session talks to exactly one peer (one AWS tunnel endpoint). It holds the current IKE
SA, IKE SAs on their way in (half-open, rekeyed successors) or out (rekeyed, deleting), and
the tunnel's Child SAs. Each IKE SA has its own `TaskManager` (message IDs, retransmits,
cached response). Exchange logic lives in `tasks/`; this module routes messages, keeps
timers and decides collisions and replacements.

Errors: no method raises for anything received. Malformed, unauthenticated or unexpected
messages are dropped and counted in `counters` (see `status()`); a failure inside a handler
is logged as ``internal_error`` and counted, never propagated.
"""

from __future__ import annotations

import heapq
import itertools
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from cgwd.dataplane.base import SaId
from cgwd.ike.constants import IKE_HEADER_LENGTH, ExchangeType, NotifyType, PayloadType, ProtocolId
from cgwd.ike.decode_errors import (
    IkeDecodeError,
    IntegrityError,
    UnsupportedCritical,
)
from cgwd.ike.events import (
    ChildOutboundReady,
    ChildSaInstalled,
    ChildSaRemoved,
    Event,
    IkeDown,
    IkeEstablished,
    InboundSpiReleased,
    LogEvent,
    LogLevel,
)
from cgwd.ike.retransmit import jitter_from_bytes
from cgwd.ike.rng import Rng
from cgwd.ike.v2 import wire
from cgwd.ike.v2.message import Message, decode_header, decode_message, encode_message
from cgwd.ike.v2.nat_mapping import track_peer_address
from cgwd.ike.v2.payloads import DeletePayload
from cgwd.ike.v2.rekey_coordination import RekeyCoordination
from cgwd.ike.v2.sa import ChildSa, IkeSa, IkeSessionConfig
from cgwd.ike.v2.spi_reservations import SpiAllocator, SpiReservations
from cgwd.ike.v2.states import ChildState, IkeState
from cgwd.ike.v2.status import session_status
from cgwd.ike.v2.task_manager import GiveUp, RequestKind, Retransmit, redundant_exchange
from cgwd.ike.v2.tasks.base import Outcome, Task
from cgwd.ike.v2.tasks.child_sa import ChildCreate, respond_create_child_sa
from cgwd.ike.v2.tasks.ike_auth import IkeAuth, respond_ike_auth
from cgwd.ike.v2.tasks.ike_init import (
    IkeSaInit,
    detect_nat,
    float_to_nat_t,
    respond_ike_sa_init,
)
from cgwd.ike.v2.tasks.ike_rekey import IkeRekey
from cgwd.ike.v2.tasks.informational import DeleteChild, DeleteIke, Dpd, respond_informational

ZERO_SPI = bytes(8)
OUTBOUND_SWITCH_GRACE = 5.0  # responder of a rekey: send on the new SA by then at the latest
DUPLICATE_DELETE_GRACE = 5.0  # the peer's redundant duplicate IKE SA: we delete it after


@dataclass(frozen=True)
class Outgoing:
    """A datagram to send: IKE message octets (the host adds the non-ESP marker on 4500)."""

    data: bytes
    dst: tuple[str, int]
    src_port: int


class IkeSession(RekeyCoordination):
    """IKEv2 for one tunnel. See the module docstring for the driving contract.

    Args:
        config: the tunnel's policy.
        rng: randomness for SPIs, nonces, DH values and IVs.
        spi_allocator: returns a fresh inbound ESP SPI (the dataplane's allocator).
        now: the host's clock reading at creation.
    """

    def __init__(
        self, config: IkeSessionConfig, rng: Rng, spi_allocator: SpiAllocator, now: float
    ) -> None:
        self.config = config
        self.rng = rng
        self._spis = SpiReservations(spi_allocator)
        self.ike_sas: list[IkeSa] = []
        self._current: IkeSa | None = None
        self.children: dict[int, ChildSa] = {}
        self._child_ids = itertools.count(1)
        self._out: list[Outgoing] = []
        self._events: list[Event] = []
        self._deferred: list[tuple[float, int, Callable[[float], None]]] = []
        self._deferred_seq = itertools.count()
        self._reconnect_at: float | None = None
        self._child_retry_at: float | None = None
        self._failures = 0
        self._wanted = False
        self._ever_established = False
        self._cookie_secret = rng.bytes(32)
        self.counters: Counter[str] = Counter()
        self.last_down_reason: str | None = None
        self.created_at = now

    # ================================================================ API

    def initiate(self, now: float) -> None:
        """Bring the tunnel up (and keep it up: re-initiate after losses if configured)."""
        self._wanted = True
        self._reconnect_at = None
        if self._current is not None or any(
            sa.initiator and sa.state == IkeState.CONNECTING for sa in self.ike_sas
        ):
            return
        sa = IkeSa(
            spi_i=self._nonzero_spi(),
            spi_r=ZERO_SPI,
            initiator=True,
            created_at=now,
            remote_ip=str(self.config.remote_address),
            remote_port=self.config.remote_port,
            local_port=self.config.ike_port,
        )
        sa.initial_contact = not self._ever_established  # RFC 7296 §2.4, aws-behaviour.md §2
        self.ike_sas.append(sa)
        self.log("ike_initiating", f"initiating IKE SA to {self.config.remote_address}")
        try:
            task = IkeSaInit(self, sa)
        except ValueError as exc:
            self.log("config_error", str(exc), "error")
            self._drop_ike(sa)
            return
        sa.tm.queue(task)
        self._kick(sa, now)

    def terminate(self, now: float) -> None:
        """Take the tunnel down: DELETE the IKE SA (best effort) and stop re-initiating."""
        self._wanted = False
        self._reconnect_at = None
        for sa in list(self.ike_sas):
            if sa.state in (IkeState.ESTABLISHED, IkeState.REKEYING, IkeState.REKEYED):
                self._send_delete_notice(sa)
            self._drop_ike(sa)
        self._remove_all_children("terminated")
        self._release_unheld_spis()
        if self._current is not None:
            self._current = None
            self._down("terminated", None)

    def receive_datagram(
        self, data: bytes, src: tuple[str, int], dst: tuple[str, int], now: float
    ) -> None:
        """One IKE message (without the non-ESP marker) that arrived from ``src`` at ``dst``."""
        try:
            self._receive(data, src, dst, now)
        except Exception as exc:  # last line of defence: never let a peer crash the daemon
            self.counters["internal_error"] += 1
            self.log("internal_error", f"dropped a message: {type(exc).__name__}", "error")
        self._release_unheld_spis()

    def handle_timer(self, now: float) -> None:
        """Retransmit, give up, probe, rekey, expire and re-initiate whatever is due."""
        try:
            self._timers(now)
        except Exception as exc:
            self.counters["internal_error"] += 1
            self.log("internal_error", f"timer handling failed: {type(exc).__name__}", "error")
        self._release_unheld_spis()

    def note_traffic(self, at: float) -> None:
        """ESP arrived, authenticated, on one of our Child SAs at ``at``: the peer is alive.
        RFC 7296 2.4: a liveness check is only due when nothing protected was received
        lately, so the next one waits ``dpd_delay`` from here (one already under way goes
        on)."""
        sa = self._current
        if sa is not None and at > sa.last_heard:
            sa.last_heard = at

    def datagrams_to_send(self) -> list[Outgoing]:
        out, self._out = self._out, []
        return out

    def events(self) -> list[Event]:
        out, self._events = self._events, []
        return out

    def next_deadline(self) -> float | None:
        times: list[float] = []
        for sa in self.ike_sas:
            d = sa.tm.next_deadline()
            if d is not None:
                times.append(d)
            for t in (sa.delete_deadline, sa.rekey_at, sa.expire_at):
                if t is not None:
                    times.append(t)
            if self._dpd_possible(sa):
                times.append(sa.last_heard + self.config.dpd_delay)
        for c in self.children.values():
            for t in (c.rekey_at, c.expire_at, c.delete_deadline, c.outbound_at):
                if t is not None:
                    times.append(t)
        if self._deferred:
            times.append(self._deferred[0][0])
        for t in (self._reconnect_at, self._child_retry_at):
            if t is not None:
                times.append(t)
        return min(times) if times else None

    def status(self, now: float | None = None) -> dict[str, Any]:
        """A snapshot for `cgwd status`: states in AWS's words, SPIs, suites, times. No keys."""
        return session_status(self, now)

    # ================================================================ SessionOps

    @property
    def reconnect_at(self) -> float | None:
        """When the session re-initiates next (None: not scheduled)."""
        return self._reconnect_at

    def _current_spi(self) -> bytes:
        return b"" if self._current is None else self._current.spi_i

    def _ops(self) -> IkeSession:
        return self

    def allocate_spi(self) -> int:
        return self._spis.allocate()

    def _release_unheld_spis(self) -> None:
        """Release the inbound SPIs of exchanges that ended without installing an SA."""
        held = [t.spi_in for sa in self.ike_sas for t in (sa.tm.active, *sa.tm.queued) if t]
        for spi in self._spis.sweep(held):
            self.emit(InboundSpiReleased(SaId(self.config.tunnel, "in", spi)))

    def emit(self, event: Event) -> None:
        self._events.append(event)

    def log(self, name: str, message: str, level: str = "info", **fields: Any) -> None:
        lvl: LogLevel = level if level in ("debug", "info", "warning", "error") else "info"  # type: ignore[assignment]
        self._events.append(LogEvent(name, message, lvl, dict(fields)))

    def new_child_id(self) -> int:
        return next(self._child_ids)

    def current_ike(self) -> IkeSa | None:
        return self._current

    def has_live_children(self) -> bool:
        return bool(self._live_children())

    def queue_task(self, sa: IkeSa, task: Task, *, front: bool = False) -> None:
        if sa.state == IkeState.DEAD:
            return
        sa.tm.queue(task, front=front)

    def later(self, at: float, action: Callable[[float], None]) -> None:
        heapq.heappush(self._deferred, (at, next(self._deferred_seq), action))

    def child_by_spi_out(self, spi: int) -> ChildSa | None:
        for c in self.children.values():
            if c.spi_out == spi and c.state != ChildState.GONE:
                return c
        return None

    def install_child(self, child: ChildSa, *, delay_outbound: bool = False) -> None:
        """Record a new Child SA and ask the host to install it (inbound first)."""
        cfg = self.config
        if not child.ike_spi_i and self._current is not None:
            child.ike_spi_i = self._current.spi_i
        if self._current is not None and child.ike_spi_i != self._current.spi_i:
            # Created over a redundant duplicate IKE SA: never send on it (it goes soon).
            delay_outbound = True
        child.state = ChildState.INSTALLED
        child.out_installed = not delay_outbound
        self._spis.installed(child.spi_in)
        if delay_outbound and child.ike_spi_i == self._current_spi():
            child.outbound_at = child.created_at + OUTBOUND_SWITCH_GRACE
        self.children[child.child_id] = child
        self._schedule_child_rekey(child)
        self._child_retry_at = None
        self.emit(
            ChildSaInstalled(
                child.child_id,
                child.in_sa,
                child.in_params,
                None if delay_outbound else child.out_sa,
                None if delay_outbound else child.out_params,
                child.rekeyed_from,
            )
        )
        self.log(
            "child_installed",
            f"Child SA {child.spi_in:08x}_i {child.spi_out:08x}_o {child.suite.name}"
            + (f" PFS group {child.pfs_group}" if child.pfs_group else "")
            + (" UDP-encapsulated" if child.out_params.encap else "")
            + f" TS {','.join(map(str, child.ts_local))} === {','.join(map(str, child.ts_remote))}",
            tunnel=cfg.tunnel,
        )

    def remove_child(self, child: ChildSa, reason: str) -> None:
        """Forget ``child`` and ask the host to remove its SAs.

        Make before break: its designated successor (never a redundant SA) gets its outbound
        half installed *before* the removal, so the tunnel is never without an outbound SA
        (the peer has the successor's inbound SA: it created it or deleted ``child``).
        """
        if child.state == ChildState.GONE or child.child_id not in self.children:
            return
        successor = None if child.successor is None else self.children.get(child.successor)
        if successor is not None:
            self._outbound_ready(successor)
        sa_ids = child.installed_sa_ids()
        child.state = ChildState.GONE
        del self.children[child.child_id]
        self.emit(ChildSaRemoved(child.child_id, sa_ids, reason))

    def ike_established(self, sa: IkeSa, now: float, *, rekey: bool = False) -> None:
        if sa.state == IkeState.CONNECTING:
            sa.state = IkeState.ESTABLISHED
        sa.established_at = now
        sa.last_heard = now
        sa.delete_deadline = None
        self._schedule_ike_rekey(sa, now)
        self._failures = 0
        self._reconnect_at = None
        self._ever_established = True
        previous = self._current
        if previous is not None and previous is not sa and not rekey:
            if self._duplicate_initiations(previous, sa):
                if not self._resolve_duplicate(previous, sa, now):
                    return  # ``sa`` is the redundant one; ``previous`` stays current
            else:
                # A fresh IKE SA replaces the old one (the peer restarted). Tell the peer
                # even if it sent INITIAL_CONTACT: if it still has the old SA it drops it
                # with its Child SA instead of sending into it until DPD fails.
                self._remove_children_of(previous, "replaced by a new IKE SA")
                self._send_delete_notice(previous)
                self._drop_ike(previous)
        self._current = sa
        self.emit(IkeEstablished(sa.spi_i_int, sa.spi_r_int, sa.initiator, sa.suite_name, rekey))
        # Our own initiation is pointless now unless IKE_AUTH is already out: then the
        # peer will have it too, so let it complete (the newest then replaces this one).
        for other in list(self.ike_sas):
            if (
                other is not sa
                and other.state == IkeState.CONNECTING
                and other.initiator
                and other.sk_in is None
            ):
                self._drop_ike(other)

    def ike_failed(self, sa: IkeSa, reason: str, now: float) -> None:
        if sa.state == IkeState.DEAD:
            return
        established = sa.state in (IkeState.ESTABLISHED, IkeState.REKEYING, IkeState.REKEYED)
        if established and reason not in ("retransmit_timeout", "dpd_timeout", "deleted_by_peer"):
            self._send_delete_notice(sa)
        self._ike_lost(sa, reason, now)

    def ike_gone(self, sa: IkeSa, reason: str, now: float) -> None:
        if sa.state != IkeState.DEAD:
            self._ike_lost(sa, reason, now)

    # ================================================================ receiving

    def _receive(self, data: bytes, src: tuple[str, int], dst: tuple[str, int], now: float) -> None:
        try:
            hdr = decode_header(data)
        except IkeDecodeError:
            self.counters["malformed"] += 1
            return
        if src[0] != str(self.config.remote_address):
            self.counters["unknown_peer"] += 1
            return
        spi_i = hdr.spi_i.to_bytes(8, "big")
        spi_r = hdr.spi_r.to_bytes(8, "big")
        if hdr.exchange_type == ExchangeType.IKE_SA_INIT:
            if hdr.response:
                self._on_init_response(data, spi_i, src, dst, now)
            else:
                self._on_init_request(data, spi_i, src, dst, now)
            return
        sa = self._find(spi_i, spi_r)
        if sa is None or sa.sk_in is None:
            self.counters["unknown_spi"] += 1
            return
        if hdr.initiator == sa.initiator:
            self.counters["bad_flags"] += 1  # the I flag names the *peer's* role (§3.1)
            return
        try:
            msg = decode_message(data, sa.sk_in)
        except IntegrityError:
            self.counters["integrity_failed"] += 1
            return
        except UnsupportedCritical as exc:
            self.counters["unsupported_critical"] += 1
            if not hdr.response and sa.tm.classify_request(hdr.message_id) == RequestKind.NEW:
                self._respond(
                    sa,
                    hdr.exchange_type,
                    hdr.message_id,
                    [
                        wire.notify(
                            NotifyType.UNSUPPORTED_CRITICAL_PAYLOAD,
                            bytes([exc.payload_type & 0xFF]),
                        )
                    ],
                )
            return
        except IkeDecodeError:
            self.counters["malformed"] += 1
            if (
                not hdr.response
                and sa.tm.classify_request(hdr.message_id) == RequestKind.NEW
                and self._authentic(sa, data)
            ):
                # §3.10.1: an authenticated but malformed request gets INVALID_SYNTAX, which
                # also keeps the message-ID windows of both ends in step.
                self._respond(
                    sa, hdr.exchange_type, hdr.message_id, [wire.notify(NotifyType.INVALID_SYNTAX)]
                )
            return
        if not msg.encrypted:
            self.counters["unprotected"] += 1
            return
        # Authenticated from here on.
        sa.last_heard = now
        fresh = (
            sa.tm.matches_response(hdr.message_id) is not None
            if msg.response
            else sa.tm.classify_request(hdr.message_id) == RequestKind.NEW
        )
        track_peer_address(self, sa, src, dst, now, fresh=fresh)
        rec = wire.Received(msg, data)
        if msg.response:
            self._on_response(sa, rec, now)
        else:
            self._on_request(sa, rec, now)

    def _authentic(self, sa: IkeSa, data: bytes) -> bool:
        """Whether ``data`` is an SK-protected message that passes ``sa``'s integrity check
        (the codec cannot tell a malformed authentic message from a forged one)."""
        sk_first = len(data) > IKE_HEADER_LENGTH + 4 and data[16] == PayloadType.SK
        if not sk_first or sa.sk_in is None:
            return False
        body_at = IKE_HEADER_LENGTH + 4
        try:
            sa.sk_in.decrypt(data[body_at:], data[:body_at])
        except IkeDecodeError:
            return False
        return True

    def _on_init_request(
        self, data: bytes, spi_i: bytes, src: tuple[str, int], dst: tuple[str, int], now: float
    ) -> None:
        for sa in self.ike_sas:
            if sa.spi_i == spi_i and not sa.initiator and sa.state == IkeState.CONNECTING:
                cached = sa.tm.cached_response()
                if cached is not None and sa.tm.classify_request(0) == RequestKind.RETRANSMIT:
                    self.counters["retransmit_answered"] += 1
                    self._out.append(Outgoing(cached, src, dst[1]))
                return
        half_open = sum(
            1 for sa in self.ike_sas if not sa.initiator and sa.state == IkeState.CONNECTING
        )
        if half_open >= self.config.half_open_limit:
            self.counters["half_open_limit"] += 1
            return
        try:
            msg = decode_message(data, None)
        except IkeDecodeError:
            self.counters["malformed"] += 1
            return
        if msg.encrypted or msg.message_id != 0:
            self.counters["malformed"] += 1
            return
        rec = wire.Received(msg, data)
        reply = respond_ike_sa_init(
            self, rec, src, dst, now, half_open=half_open, cookie_secret=self._cookie_secret
        )
        if reply is None:
            self.counters["dropped_init"] += 1
            return
        if reply.sa is None:
            self.counters["init_refused"] += 1
        out = Message(
            ExchangeType.IKE_SA_INIT,
            0,
            int.from_bytes(spi_i, "big"),
            int.from_bytes(reply.spi_r, "big"),
            initiator=False,
            response=True,
            payloads=list(reply.payloads),
        )
        raw = encode_message(out, None, self.rng)
        if reply.sa is not None:
            sa = reply.sa
            sa.init_response = raw
            sa.tm.answered(0, raw)
            sa.last_heard = now
            self.ike_sas.append(sa)
        self._out.append(Outgoing(raw, src, dst[1]))

    def _on_init_response(
        self, data: bytes, spi_i: bytes, src: tuple[str, int], dst: tuple[str, int], now: float
    ) -> None:
        sa = next(
            (
                s
                for s in self.ike_sas
                if s.spi_i == spi_i
                and s.initiator
                and s.state == IkeState.CONNECTING
                and s.sk_in is None
            ),
            None,
        )
        task = None if sa is None else sa.tm.matches_response(0)
        if sa is None or not isinstance(task, IkeSaInit):
            self.counters["unexpected_response"] += 1
            return
        try:
            msg = decode_message(data, None)
        except IkeDecodeError:
            self.counters["malformed"] += 1
            return
        if msg.encrypted or msg.initiator:
            self.counters["malformed"] += 1
            return
        rec = wire.Received(msg, data)
        outcome = task.process(rec, now)
        if sa.state == IkeState.DEAD:
            return
        if outcome is Outcome.RETRY:
            sa.spi_r = ZERO_SPI
            raw = self._encode_request(sa, task, 0, now)
            sa.tm.resent_rebuilt(raw, now)
            self._send(sa, raw)
            return
        sa.tm.complete()
        sa.last_heard = now
        detect_nat(sa, rec, src, dst)
        float_to_nat_t(sa, self.config)
        if sa.nat_local or sa.nat_remote:
            self.log(
                "nat_detected",
                "NAT detected ("
                + ("we are behind it" if sa.nat_local else "peer side or forced encapsulation")
                + "): moving to UDP port 4500",
            )
        sa.tm.queue(IkeAuth(self, sa), front=True)
        self._kick(sa, now)

    def _on_response(self, sa: IkeSa, rec: wire.Received, now: float) -> None:
        task = sa.tm.matches_response(rec.mid)
        if task is None or rec.msg.exchange_type != task.exchange:
            self.counters["unexpected_response"] += 1
            return
        task.process(rec, now)  # RETRY only happens in IKE_SA_INIT, handled elsewhere
        if sa.tm.active is task:
            sa.tm.complete()
        if sa.close_after_response:
            self.ike_gone(sa, sa.close_after_response, now)
        self._kick_all(now)

    def _on_request(self, sa: IkeSa, rec: wire.Received, now: float) -> None:
        kind = sa.tm.classify_request(rec.mid)
        if kind is RequestKind.RETRANSMIT:
            cached = sa.tm.cached_response()
            if cached is not None:
                self.counters["retransmit_answered"] += 1
                self._send(sa, cached)
            return
        if kind is RequestKind.INVALID:
            self.counters["invalid_message_id"] += 1
            return
        exchange = rec.msg.exchange_type
        if sa.state == IkeState.CONNECTING:
            if exchange != ExchangeType.IKE_AUTH or sa.initiator:
                self.counters["unexpected_request"] += 1
                return  # nothing is authenticated yet: drop
            payloads = respond_ike_auth(self, sa, rec, now)
        elif exchange == ExchangeType.CREATE_CHILD_SA:
            payloads = respond_create_child_sa(self, sa, rec, now)
        elif exchange == ExchangeType.INFORMATIONAL:
            payloads = respond_informational(self, sa, rec, now)
        else:
            # An authenticated request we cannot serve (IKE_AUTH again, an unknown exchange)
            # is still answered, so that both message-ID windows stay in step (§2.3).
            self.counters["unexpected_request"] += 1
            payloads = [wire.notify(NotifyType.INVALID_SYNTAX)]
        self._respond(sa, exchange, rec.mid, payloads)
        if sa.close_after_response:
            reason = sa.close_after_response
            self._ike_lost(sa, reason, now)
        self._kick_all(now)

    # ================================================================ sending

    def _encode_request(self, sa: IkeSa, task: Task, mid: int, now: float) -> bytes:
        payloads = list(task.build(now))
        msg = Message(
            task.exchange,
            mid,
            sa.spi_i_int,
            sa.spi_r_int,
            initiator=sa.initiator,
            response=False,
            payloads=payloads,
        )
        sk = None if task.exchange == ExchangeType.IKE_SA_INIT else sa.sk_out
        raw = encode_message(msg, sk, self.rng)
        task.on_sent(raw)
        return raw

    def _respond(self, sa: IkeSa, exchange: int, mid: int, payloads: list[Any]) -> None:
        msg = Message(
            exchange,
            mid,
            sa.spi_i_int,
            sa.spi_r_int,
            initiator=sa.initiator,
            response=True,
            payloads=payloads,
        )
        raw = encode_message(msg, sa.sk_out, self.rng)
        sa.tm.answered(mid, raw)
        self._send(sa, raw)

    def _send(self, sa: IkeSa, raw: bytes) -> None:
        self._out.append(Outgoing(raw, (sa.remote_ip, sa.remote_port), sa.local_port))

    def _kick(self, sa: IkeSa, now: float) -> None:
        """Start the next queued exchange of ``sa`` if its window is free."""
        while sa.state != IkeState.DEAD:
            task = sa.tm.next_task()
            if task is None:
                return
            if not task.applicable():
                task.abort()
                continue
            raw = self._encode_request(sa, task, sa.tm.next_request_mid, now)
            sa.tm.sent(task, raw, now)
            self._send(sa, raw)
            return

    def _kick_all(self, now: float) -> None:
        for sa in list(self.ike_sas):
            self._kick(sa, now)

    def _send_delete_notice(self, sa: IkeSa) -> None:
        """One unreliable INFORMATIONAL { D(IKE) } for an SA we are dropping anyway."""
        if sa.sk_out is None:
            return
        # While a request is outstanding its ID is taken (it is usually being answered
        # right now, e.g. we give up on the SA while processing a response): use the next.
        mid = sa.tm.next_request_mid + (0 if sa.tm.active is None else 1)
        msg = Message(
            ExchangeType.INFORMATIONAL,
            mid,
            sa.spi_i_int,
            sa.spi_r_int,
            initiator=sa.initiator,
            response=False,
            payloads=[DeletePayload(ProtocolId.IKE)],
        )
        self._send(sa, encode_message(msg, sa.sk_out, self.rng))

    # ================================================================ timers

    def _timers(self, now: float) -> None:
        cfg = self.config
        for sa in list(self.ike_sas):
            if sa.state == IkeState.DEAD:
                continue
            result = sa.tm.on_timer(now)
            if isinstance(result, Retransmit):
                self.counters["retransmits"] += 1
                self._send(sa, result.datagram)
            elif isinstance(result, GiveUp):
                result.task.give_up(now)
                if sa not in self.ike_sas:
                    continue
            if sa.delete_deadline is not None and now >= sa.delete_deadline:
                sa.delete_deadline = None
                if sa.state == IkeState.CONNECTING and not sa.initiator:
                    self.log(
                        "ike_half_open_timeout", "deleting un-established Phase 1 IKE_SA", "warning"
                    )
                    self._drop_ike(sa)
                    continue
                if sa is not self._current and sa.state != IkeState.DELETING:
                    sa.tm.queue(DeleteIke(self, sa, "rekeyed"), front=True)
            current = sa is self._current
            if sa.rekey_at is not None and now >= sa.rekey_at:
                sa.rekey_at = None
                if current and sa.state == IkeState.ESTABLISHED:
                    sa.tm.queue(IkeRekey(self, sa))
            if sa.expire_at is not None and now >= sa.expire_at:
                sa.expire_at = None
                if current:
                    self.log(
                        "ike_expired", "IKE SA reached its lifetime without a rekey", "warning"
                    )
                    self.ike_failed(sa, "ike_expired", now)
                    continue
            if self._dpd_possible(sa) and now >= sa.last_heard + cfg.dpd_delay:
                sa.tm.queue(Dpd(self, sa))
        cur = self._current
        for child in list(self.children.values()):
            if child.outbound_at is not None and now >= child.outbound_at:
                self._outbound_ready(child)
            if child.rekey_at is not None and now >= child.rekey_at:
                child.rekey_at = None
                if cur is not None and child.state == ChildState.INSTALLED:
                    cur.tm.queue(ChildCreate(self, cur, child))
            if child.delete_deadline is not None and now >= child.delete_deadline:
                child.delete_deadline = None
                if cur is not None and child.state in (ChildState.REKEYED, ChildState.INSTALLED):
                    cur.tm.queue(DeleteChild(self, cur, child, "rekeyed"), front=True)
            if child.expire_at is not None and now >= child.expire_at:
                child.expire_at = None
                self.log(
                    "child_expired",
                    f"Child SA {child.spi_in:08x}_i reached its lifetime",
                    "warning",
                )
                if cur is None:
                    self.remove_child(child, "expired")
                    continue
                if not any(c.rekeyed_from == child.child_id for c in self.children.values()):
                    self._child_retry_at = now
                child.state = ChildState.DELETING  # no longer live: a new one is due
                cur.tm.queue(DeleteChild(self, cur, child, "expired"), front=True)
        while self._deferred and self._deferred[0][0] <= now:
            _, _, action = heapq.heappop(self._deferred)
            action(now)
        if self._child_retry_at is not None and now >= self._child_retry_at:
            self._child_retry_at = None
            if cur is not None and cur.state == IkeState.ESTABLISHED and not self._live_children():
                cur.tm.queue(ChildCreate(self, cur, None))
        if self._reconnect_at is not None and now >= self._reconnect_at:
            self._reconnect_at = None
            self.initiate(now)
        self._kick_all(now)

    # ================================================================ internals

    def _nonzero_spi(self) -> bytes:
        while True:
            spi = self.rng.bytes(8)
            if spi != ZERO_SPI:
                return spi

    def _find(self, spi_i: bytes, spi_r: bytes) -> IkeSa | None:
        for sa in self.ike_sas:
            if sa.spi_i == spi_i and sa.spi_r == spi_r and sa.state != IkeState.DEAD:
                return sa
        return None

    def _owner(self, child: ChildSa) -> IkeSa:
        cur = self._current
        for sa in self.ike_sas:
            if sa.spi_i == child.ike_spi_i and sa.state in (
                IkeState.ESTABLISHED,
                IkeState.REKEYING,
            ):
                return sa
        assert cur is not None
        return cur

    def _queue_current(self, task: Task) -> None:
        task.sa.tm.queue(task)

    def _queue_on(self, sa: IkeSa, task: Task) -> None:
        sa.tm.queue(task, front=True)

    def _live_children(self) -> list[ChildSa]:
        return [
            c
            for c in self.children.values()
            if c.state in (ChildState.INSTALLED, ChildState.REKEYING, ChildState.REKEYED)
        ]

    def _jittered(self, base: float) -> float:
        """``base`` minus up to ``rekey_jitter`` of it: rekeys only ever move earlier."""
        return base * (1.0 - self.config.rekey_jitter * jitter_from_bytes(self.rng.bytes(4)))

    def _schedule_child_rekey(self, child: ChildSa) -> None:
        child.rekey_at = child.created_at + self._jittered(self.config.child_rekey_time)
        child.expire_at = child.created_at + self.config.child_lifetime

    def _schedule_ike_rekey(self, sa: IkeSa, now: float) -> None:
        sa.rekey_at = now + self._jittered(self.config.ike_rekey_time)
        sa.expire_at = now + self.config.ike_lifetime

    def _outbound_ready(self, child: ChildSa) -> None:
        child.outbound_at = None
        if child.out_installed or child.state == ChildState.GONE:
            return
        child.out_installed = True
        self.emit(ChildOutboundReady(child.child_id, child.out_sa, child.out_params))

    def _remove_children_of(self, sa: IkeSa, reason: str) -> None:
        for c in list(self.children.values()):
            if c.ike_spi_i == sa.spi_i:
                self.remove_child(c, reason)

    def _remove_all_children(self, reason: str) -> None:
        for c in list(self.children.values()):
            self.remove_child(c, reason)

    def _drop_ike(self, sa: IkeSa) -> None:
        for task in (sa.tm.active, *sa.tm.queued):
            if task is not None:
                task.abort()
        sa.tm.clear()
        sa.state = IkeState.DEAD
        if sa in self.ike_sas:
            self.ike_sas.remove(sa)

    def _duplicate_initiations(self, previous: IkeSa, sa: IkeSa) -> bool:
        """Both ends initiated at once: ``sa``'s negotiation began before ``previous`` was
        established. (A peer that restarted begins its new IKE SA after ours is up: then
        ours is stale and simply replaced.)"""
        return (
            previous.initiator != sa.initiator
            and previous.rekeyed_from is None
            and sa.rekeyed_from is None
            and previous.established_at is not None
            and sa.created_at <= previous.established_at
        )

    def _resolve_duplicate(self, previous: IkeSa, sa: IkeSa, now: float) -> bool:
        """Two IKE SAs from simultaneous initiations: keep one by the nonce rule, as for
        an IKE SA rekey collision (RFC 7296 §2.8.2), so both ends keep the same one. The
        redundant SA is deleted by its initiator. Returns whether ``sa`` is kept."""
        mine, theirs = (sa, previous) if sa.initiator else (previous, sa)
        if redundant_exchange((mine.ni, mine.nr), (theirs.ni, theirs.nr)) == "ours":
            self.log(
                "redundant_ike_deleted", "duplicate IKE SA (both ends initiated): ours is deleted"
            )
            self._remove_children_of(mine, "redundant IKE SA")
            self._send_delete_notice(mine)
            self._drop_ike(mine)
            return sa is theirs
        # The peer deletes its redundant SA, or we do if it does not soon (a peer that
        # does not apply this rule, e.g. strongSwan, keeps both otherwise).
        self.log(
            "duplicate_ike_sa",
            "duplicate IKE SA (both ends initiated): the peer's is redundant",
        )
        theirs.delete_deadline = now + DUPLICATE_DELETE_GRACE
        return sa is mine

    def _ike_lost(self, sa: IkeSa, reason: str, now: float) -> None:
        was_current = sa is self._current
        self._drop_ike(sa)
        if not was_current:
            self._remove_children_of(sa, reason)  # e.g. a redundant duplicate's Child SA
        if was_current:
            self._current = None
            successor = (
                sa.successor
                if sa.successor is not None and sa.successor.state != IkeState.DEAD
                else None
            )
            if successor is not None:
                self._current = successor
                return
            self._remove_all_children(reason)
            self._down(reason, now)
        elif sa.initiator and sa.established_at is None and self._current is None:
            self._down(reason, now)  # our own attempt failed

    def _dpd_possible(self, sa: IkeSa) -> bool:
        return (
            sa is self._current
            and sa.state == IkeState.ESTABLISHED
            and sa.tm.active is None
            and not sa.tm.queued
        )

    def _down(self, reason: str, now: float | None) -> None:
        self.last_down_reason = reason
        self._child_retry_at = None
        retry = None
        if now is not None and self._wanted and self.config.auto_initiate:
            self._failures += 1
            jitter = jitter_from_bytes(self.rng.bytes(4))
            retry = self.config.reconnect.delay(self._failures, jitter)
            self._reconnect_at = now + retry
        self.emit(IkeDown(reason, retry))
