"""The IKEv1 session of one tunnel: sans-I/O, driven like `cgwd.ike.v2.session.IkeSession`.

The host feeds datagrams (`receive_datagram`), timer expiry (`handle_timer`) and API calls
(`initiate`, `terminate`), always with ``now``; then drains `datagrams_to_send` and
`events` and arms one timer for `next_deadline`. The events are the IKEv2 session's
(`cgwd.ike.events`), so `cgwd.ike.host.IkeHost` and the daemon drive either version.

Exchanges (RFC 2409): Main Mode with pre-shared keys (`main_mode`), Quick Mode with PFS
(`quick_mode`) and Informational (DPD RFC 3706, DELETE, INITIAL-CONTACT) here. Phase 2 SAs
outlive the ISAKMP SA that made them (RFC 2408 §4.1): losing or replacing an ISAKMP SA
does not remove them; Quick Modes always run on the newest ISAKMP SA.

Errors: nothing received makes a method raise. Malformed, unauthenticated or unexpected
messages are dropped and counted in `counters`; only authenticated Informational messages
can delete an SA.
"""

from __future__ import annotations

import itertools
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from cgwd.dataplane.base import SaId
from cgwd.ike.decode_errors import IkeDecodeError
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
from cgwd.ike.retransmit import RetransmitPolicy, jitter_from_bytes
from cgwd.ike.rng import Rng
from cgwd.ike.v1 import informational, main_mode, quick_mode
from cgwd.ike.v1.constants import Exchange, Flag
from cgwd.ike.v1.message import Header, decode_header
from cgwd.ike.v1.sa import (
    CHILD_RETRY_DELAY,
    OLD_CHILD_GRACE,
    OLD_ISAKMP_GRACE,
    PEER_DELETE_GRACE,
    ChildSa,
    Flight,
    Ikev1SessionConfig,
    IsakmpSa,
    QuickMode,
)

ZERO = bytes(8)
MM5_TRIES = 2
DUPLICATE_ANSWER_GAP = 1.0
QM_FORGET_AFTER = 60.0  # keep finished Quick Modes to answer retransmissions
SpiAllocator = Callable[[], int]


@dataclass(frozen=True)
class Outgoing:
    """A datagram to send: ISAKMP octets (the host adds the non-ESP marker on 4500)."""

    data: bytes
    dst: tuple[str, int]
    src_port: int


class Ikev1Session:
    """IKEv1 for one tunnel. See the module docstring for the driving contract.

    Args:
        config: the tunnel's policy.
        rng: randomness for cookies, nonces, DH values, message IDs.
        spi_allocator: returns a fresh inbound ESP SPI (the dataplane's allocator).
        now: the host's clock reading at creation.
    """

    ike_version = 1

    def __init__(
        self, config: Ikev1SessionConfig, rng: Rng, spi_allocator: SpiAllocator, now: float
    ) -> None:
        self.config = config
        self.rng = rng
        self._spi_allocator = spi_allocator
        self.isakmp_sas: list[IsakmpSa] = []
        self.current: IsakmpSa | None = None
        self.quick_modes: dict[tuple[bytes, int], QuickMode] = {}
        self.children: dict[int, ChildSa] = {}
        self._child_ids = itertools.count(1)
        self._out: list[Outgoing] = []
        self._events: list[Event] = []
        self.counters: Counter[str] = Counter()
        self.last_down_reason: str | None = None
        self.created_at = now
        self.reconnect_at: float | None = None
        self.child_retry_at: float | None = None
        self.failures = 0
        self.pfs_index = 0  # which PFS group Quick Mode offers (advances after refusals)
        self.wanted = False
        self.ever_established = False

    # ================================================================ API

    def initiate(self, now: float) -> None:
        """Bring the tunnel up and keep it up (re-initiate after losses if configured)."""
        self.wanted = True
        self.reconnect_at = None
        if self.current is not None:
            if not self.live_children() and not self._qm_in_flight():
                quick_mode.start(self, self.current, now, None)
            return
        if any(sa.initiator and sa.state not in ("established", "dead") for sa in self.isakmp_sas):
            return
        main_mode.start(self, now, None)

    def terminate(self, now: float) -> None:
        """Take the tunnel down: DELETE every SA (best effort) and stop re-initiating."""
        self.wanted = False
        self.reconnect_at = None
        self.child_retry_at = None
        cur = self.current
        for child in list(self.children.values()):
            if cur is not None:
                informational.send_delete_esp(self, cur, child)
            self.remove_child(child, "terminated")
        for sa in list(self.isakmp_sas):
            if sa.state == "established":
                informational.send_delete_isakmp(self, sa)
            self.drop_isakmp(sa)
        for qm in self.quick_modes.values():
            self.abandon_quick_mode(qm)
        self.quick_modes.clear()
        if cur is not None:
            self.current = None
            self.down("terminated", None)

    def receive_datagram(
        self, data: bytes, src: tuple[str, int], dst: tuple[str, int], now: float
    ) -> None:
        """One ISAKMP message (without the non-ESP marker) from ``src`` to ``dst``."""
        try:
            self._receive(data, src, dst, now)
        except Exception as exc:  # last line of defence: a peer must never crash us
            self.counters["internal_error"] += 1
            self.log("internal_error", f"dropped a message: {type(exc).__name__}: {exc}", "error")

    def handle_timer(self, now: float) -> None:
        """Retransmit, give up, probe, rekey, expire and re-initiate whatever is due."""
        try:
            self._timers(now)
        except Exception as exc:
            self.counters["internal_error"] += 1
            self.log("internal_error", f"timer handling failed: {type(exc).__name__}", "error")

    def note_traffic(self, at: float) -> None:
        """ESP arrived, authenticated, on one of our IPsec SAs at ``at``: the peer is alive.
        RFC 3706 5.3: R-U-THERE is only worth sending when no traffic came from the peer,
        so the next one waits ``dpd_delay`` from here (one already outstanding goes on)."""
        sa = self.current
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
        for sa in self.isakmp_sas:
            for t in (sa.flight.next_at, sa.rekey_at, sa.expire_at, sa.delete_at, sa.dpd_next):
                if t is not None:
                    times.append(t)
            dpd = self._dpd_due_at(sa)
            if dpd is not None:
                times.append(dpd)
            if sa.state != "established":
                times.append(sa.created_at + self._half_open_limit())
        for qm in self.quick_modes.values():
            times.append(qm.forget_at)
            if qm.flight.next_at is not None:
                times.append(qm.flight.next_at)
        for c in self.children.values():
            for t in (c.rekey_at, c.expire_at, c.delete_at, c.outbound_at):
                if t is not None:
                    times.append(t)
        for t in (self.reconnect_at, self.child_retry_at):
            if t is not None:
                times.append(t)
        return min(times) if times else None

    def status(self, now: float | None = None) -> dict[str, Any]:
        """A snapshot for `cgwd status` in the IKEv2 session's shape. No keys."""

        def rel(t: float | None) -> float | None:
            return None if t is None or now is None else round(t - now, 1)

        cur = self.current
        connecting = any(sa.state not in ("established", "dead") for sa in self.isakmp_sas)
        if cur is not None:
            phase1 = "Rekeying" if connecting else "Established"
        else:
            phase1 = "Negotiating" if connecting else "Down"
        words = {"installed": "Established", "rekeyed": "Established", "rekeying": "Rekeying"}
        children = [
            {
                # inbound only (a responder waiting for HASH(3)): not carrying traffic yet
                "state": words.get(c.state, "Down") if c.out_installed else "Negotiating",
                "spi_in": f"{c.spi_in:08x}",
                "spi_out": f"{c.spi_out:08x}",
                "suite": c.suite.name,
                "pfs_group": c.pfs_group,
                "encap": c.out_params.encap is not None,
                "lifetime": c.lifetime,
                "established_seconds_ago": None if now is None else round(now - c.created_at, 1),
                "rekey_in": rel(c.rekey_at),
            }
            for c in self.children.values()
        ]
        phase2 = "Down"
        if any(c["state"] == "Rekeying" for c in children):
            phase2 = "Rekeying"
        elif any(c["state"] == "Established" for c in children):
            phase2 = "Established"
        elif children or cur is not None or connecting:
            phase2 = "Negotiating"
        return {
            "tunnel": self.config.tunnel,
            "peer": str(self.config.remote_address),
            "ike_version": 1,
            "phase1": phase1,
            "phase2": phase2,
            "ike": None
            if cur is None
            else {
                "spi_i": cur.cky_i.hex(),
                "spi_r": cur.cky_r.hex(),
                "initiator": cur.initiator,
                "suite": cur.suite.name if cur.suite else "",
                "lifetime": cur.lifetime,
                "nat_local": cur.nat_local,
                "nat_remote": cur.nat_remote,
                "port": cur.local_port,
                "dpd": cur.dpd_peer,
                "established_seconds_ago": None
                if now is None or cur.established_at is None
                else round(now - cur.established_at, 1),
                "rekey_in": rel(cur.rekey_at),
            },
            "isakmp_sas": len([s for s in self.isakmp_sas if s.state == "established"]),
            "children": children,
            "last_down_reason": self.last_down_reason,
            "reconnect_in": rel(self.reconnect_at),
            "counters": dict(self.counters),
        }

    # ================================================================ helpers for exchanges

    def allocate_spi(self) -> int:
        return self._spi_allocator()

    def emit(self, event: Event) -> None:
        self._events.append(event)

    def log(self, name: str, message: str, level: str = "info", **fields: Any) -> None:
        lvl: LogLevel = level if level in ("debug", "info", "warning", "error") else "info"  # type: ignore[assignment]
        self._events.append(LogEvent(name, message, lvl, dict(fields)))

    def send(self, sa: IsakmpSa, raw: bytes) -> None:
        self._out.append(Outgoing(raw, (sa.remote_ip, sa.remote_port), sa.local_port))

    def send_to(self, raw: bytes, dst: tuple[str, int], src_port: int) -> None:
        self._out.append(Outgoing(raw, dst, src_port))

    def new_child_id(self) -> int:
        return next(self._child_ids)

    def cookie(self) -> bytes:
        while True:
            c = self.rng.bytes(8)
            if c != ZERO:
                return c

    def jittered(self, base: float) -> float:
        """``base`` minus up to ``rekey_jitter`` of it: rekeys only move earlier."""
        return base * (1.0 - self.config.rekey_jitter * jitter_from_bytes(self.rng.bytes(4)))

    def rekey_after(self, rekey_time: float, configured_life: float, negotiated: float) -> float:
        """When to rekey an SA whose lifetime the peer may have shortened."""
        if negotiated < configured_life:
            rekey_time = negotiated * rekey_time / configured_life
        return self.jittered(rekey_time)

    def live_children(self) -> list[ChildSa]:
        return [c for c in self.children.values() if c.state in ("installed", "rekeying")]

    def _qm_in_flight(self) -> bool:
        return any(q.initiator and q.state == "sent1" for q in self.quick_modes.values())

    def abandon_quick_mode(self, qm: QuickMode) -> None:
        """Our Quick Mode ends without an SA: give its inbound SPI back to the dataplane."""
        if qm.initiator and qm.state == "sent1":
            qm.state = "done"
            self.emit(InboundSpiReleased(SaId(self.config.tunnel, "in", qm.spi_in)))

    def install_child(
        self,
        child: ChildSa,
        now: float,
        *,
        outbound_at: float | None,
        defer_outbound: bool = False,
    ) -> None:
        """Record a new child and ask the host to install it (inbound first); the outbound
        half now, at ``outbound_at``, or (``defer_outbound``) when `outbound_ready` is called."""
        cfg = self.config
        self.children[child.child_id] = child
        delayed = outbound_at is not None or defer_outbound
        child.out_installed = not delayed
        child.outbound_at = outbound_at
        child.rekey_at = now + self.rekey_after(
            cfg.child_rekey_time, cfg.child_lifetime, child.lifetime
        )
        child.expire_at = now + child.lifetime
        self.child_retry_at = None
        self.emit(
            ChildSaInstalled(
                child.child_id,
                child.in_sa,
                child.in_params,
                None if delayed else child.out_sa,
                None if delayed else child.out_params,
                None,
            )
        )
        self.log(
            "child_installed",
            f"IPsec SA {child.spi_in:08x}_i {child.spi_out:08x}_o {child.suite.name}"
            + (f" PFS group {child.pfs_group}" if child.pfs_group else "")
            + (" UDP-encapsulated" if child.out_params.encap else "")
            + f" lifetime {child.lifetime} s",
        )
        if not delayed:
            self._supersede_older(child, now)

    def outbound_ready(self, child: ChildSa, now: float) -> None:
        child.outbound_at = None
        if child.out_installed or child.child_id not in self.children:
            return
        child.out_installed = True
        self.emit(ChildOutboundReady(child.child_id, child.out_sa, child.out_params))
        self._supersede_older(child, now)

    def _supersede_older(self, new: ChildSa, now: float) -> None:
        """``new`` carries our traffic now: older children are rekeyed and go soon.

        A child the peer created to replace the same SA as ``new`` (both sides rekeyed it
        at once) is a collision: as in RFC 7296 §2.8.1, the SA whose Quick Mode holds the
        lowest nonce is redundant and deleted by its creator; both sides decide alike.
        """
        for c in list(self.children.values()):
            if c is new or c.state not in ("installed", "rekeying"):
                continue
            sibling = c.replaces is not None and c.replaces == new.replaces
            if sibling and c.initiated_by_us != new.initiated_by_us:
                redundant = c if min(c.nonces) < min(new.nonces) else new
                survivor = new if redundant is c else c
                self.log(
                    "child_rekey_collision",
                    "(CHILD_REKEY) collision: both sides made a new IPsec SA; redundant SA "
                    f"{redundant.spi_in:08x}_i is being deleted",
                )
                self._retire(redundant, survivor, now, ours=redundant.initiated_by_us)
                if redundant is new:
                    return
                continue
            if c.created_at <= new.created_at:
                self._retire(c, new, now, ours=new.initiated_by_us)
                self.log(
                    "child_rekeyed", f"IPsec SA rekeyed: {c.spi_in:08x}_i -> {new.spi_in:08x}_i"
                )

    def _retire(self, old: ChildSa, successor: ChildSa, now: float, *, ours: bool) -> None:
        """``old`` is replaced by ``successor``; ``ours``: we are the side that deletes it
        (strongSwan deletes what its own rekey replaced; if the peer never does, we do after
        a grace period)."""
        old.state = "rekeyed"
        old.successor = successor.child_id
        old.rekey_at = None
        old.delete_at = now + (OLD_CHILD_GRACE if ours else PEER_DELETE_GRACE)

    def remove_child(self, child: ChildSa, reason: str) -> None:
        if child.child_id not in self.children:
            return
        del self.children[child.child_id]
        child.state = "gone"
        # If it was the SA we sent on, the dataplane falls back to the most recently
        # installed outbound SA that remains (the successor, since older ones go first).
        self.emit(ChildSaRemoved(child.child_id, child.installed_sa_ids(), reason))

    def find_child_by_spi_out(self, spi: int) -> ChildSa | None:
        for c in self.children.values():
            if c.spi_out == spi:
                return c
        return None

    def phase1_established(self, sa: IsakmpSa, now: float) -> None:
        cfg = self.config
        sa.state = "established"
        sa.established_at = now
        sa.last_heard = now
        sa.flight.next_at = None
        sa.rekey_at = now + self.rekey_after(cfg.ike_rekey_time, cfg.ike_lifetime, sa.lifetime)
        sa.expire_at = now + sa.lifetime
        rekey = sa.rekey_of is not None or self.current is not None
        previous = self.current
        self.current = sa
        self.failures = 0
        self.reconnect_at = None
        self.ever_established = True
        assert sa.suite is not None
        self.emit(
            IkeEstablished(
                int.from_bytes(sa.cky_i, "big"),
                int.from_bytes(sa.cky_r, "big"),
                sa.initiator,
                sa.suite.name,
                rekey,
            )
        )
        self.log(
            "ike_rekeyed" if rekey else "ike_established",
            f"ISAKMP SA {sa.cky_i.hex()}_i {sa.cky_r.hex()}_r {sa.suite.name}"
            f" lifetime {sa.lifetime} s, {'initiated' if sa.initiator else 'responded'}"
            + (", NAT-T" if sa.encapsulated else ""),
        )
        if not sa.initiator and sa.initial_contact:
            # RFC 2407 §4.6.3.3: the peer restarted; whatever we had with it is gone.
            for other in list(self.isakmp_sas):
                if other is not sa:
                    self.drop_isakmp(other)
            for c in list(self.children.values()):
                self.remove_child(c, "peer sent INITIAL-CONTACT")
        elif previous is not None and previous is not sa and previous.state == "established":
            previous.rekey_at = None
            if sa.initiator:
                previous.delete_at = now + OLD_ISAKMP_GRACE
            else:
                previous.delete_at = now + PEER_DELETE_GRACE
        for other in list(self.isakmp_sas):  # our other half-open attempts are moot
            if other is not sa and other.initiator and other.state not in ("established", "dead"):
                self.drop_isakmp(other)
        if not self.live_children() and not self._qm_in_flight():
            if sa.initiator:
                quick_mode.start(self, sa, now, None)
            else:
                self.child_retry_at = now + CHILD_RETRY_DELAY  # the peer should start one
        else:
            due = [c for c in self.live_children() if c.rekey_at is None and c.state == "installed"]
            if due and not self._qm_in_flight():
                quick_mode.start(self, sa, now, due[0].child_id)

    def phase1_failed(self, sa: IsakmpSa, reason: str, message: str, now: float) -> None:
        """A Main Mode we ran (or answered) did not complete."""
        level = "error" if reason == "auth_failed" else "warning"
        self.log(reason, message, level)
        self.drop_isakmp(sa)
        if sa.initiator and self.current is None:
            self.down(reason, now)

    def drop_isakmp(self, sa: IsakmpSa) -> None:
        sa.state = "dead"
        sa.flight.next_at = None
        if sa in self.isakmp_sas:
            self.isakmp_sas.remove(sa)
        for key in [k for k in self.quick_modes if k[0] == sa.cky_i]:
            self.abandon_quick_mode(self.quick_modes.pop(key))
        if self.current is sa:
            self.current = None
            rest = [s for s in self.isakmp_sas if s.state == "established"]
            if rest:
                self.current = max(rest, key=lambda s: s.established_at or 0.0)

    def isakmp_lost(self, sa: IsakmpSa, reason: str, now: float, *, children: bool) -> None:
        """An established ISAKMP SA is gone (peer DELETE, DPD, expiry)."""
        was_current = sa is self.current
        self.drop_isakmp(sa)
        if children:
            for c in list(self.children.values()):
                self.remove_child(c, reason)
        if was_current and self.current is None:
            self.down(reason, now, retry_now=not children)

    def down(self, reason: str, now: float | None, *, retry_now: bool = False) -> None:
        self.last_down_reason = reason
        self.child_retry_at = None
        retry = None
        if now is not None and self.wanted and self.config.auto_initiate:
            self.failures += 1
            jitter = jitter_from_bytes(self.rng.bytes(4))
            retry = 0.0 if retry_now else self.config.reconnect.delay(self.failures, jitter)
            self.reconnect_at = now + retry
        self.emit(IkeDown(reason, retry))

    def answer_duplicate(self, sa: IsakmpSa, flight: Flight, now: float) -> None:
        """The peer repeated its previous message: ours was lost, send it again. At most
        once a second per exchange, so that a duplicating path cannot start a storm."""
        if not flight.last_sent:
            return
        if flight.answered_at is not None and now - flight.answered_at < DUPLICATE_ANSWER_GAP:
            self.counters["duplicate_ignored"] += 1
            return
        flight.answered_at = now
        self.counters["retransmit_answered"] += 1
        self.send(sa, flight.last_sent)

    def retransmit_due(
        self, flight: Flight, policy: RetransmitPolicy, now: float, sa: IsakmpSa
    ) -> bool:
        """Retransmit ``flight`` if due; True when it has been given up."""
        if flight.next_at is None or now < flight.next_at:
            return False
        if policy.gives_up_after(flight.sent_count):
            flight.next_at = None
            return True
        flight.sent_count += 1
        flight.next_at = now + policy.interval(flight.sent_count)
        self.counters["retransmits"] += 1
        self.send(sa, flight.last_sent)
        return False

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
        if hdr.exchange == Exchange.MAIN_MODE:
            main_mode.receive(self, data, hdr, src, dst, now)
            return
        if hdr.exchange == Exchange.INFORMATIONAL and not hdr.flags & Flag.ENCRYPTION:
            informational.receive_plain(self, data, hdr, now)
            return
        sa = self.find_established(hdr)
        if sa is None:
            self.counters["unknown_spi"] += 1
            return
        if hdr.exchange == Exchange.QUICK_MODE:
            quick_mode.receive(self, sa, data, hdr, src, dst, now)
        elif hdr.exchange == Exchange.INFORMATIONAL:
            informational.receive(self, sa, data, hdr, src, dst, now)
        else:
            self.counters["unsupported_exchange"] += 1

    def find_established(self, hdr: Header) -> IsakmpSa | None:
        for sa in self.isakmp_sas:
            if sa.cky_i == hdr.spi_i and sa.cky_r == hdr.spi_r and sa.state == "established":
                return sa
        return None

    def heard(self, sa: IsakmpSa, src: tuple[str, int], dst: tuple[str, int], now: float) -> None:
        """An authenticated message: liveness, and follow NAT-T port moves (RFC 3947 §4)."""
        sa.last_heard = now
        nat_t = self.config.nat_t_port
        if dst[1] == nat_t and not sa.floated:
            sa.local_port = nat_t
            sa.floated = True
        if src[1] != sa.remote_port and sa.floated:
            sa.remote_port = src[1]

    # ================================================================ timers

    def _half_open_limit(self) -> float:
        """How long a Main Mode may take before its SA is dropped whatever its state."""
        return self.config.half_open_timeout + self.config.retransmit.total_time()

    def _dpd_due_at(self, sa: IsakmpSa) -> float | None:
        if sa is not self.current or sa.state != "established" or sa.dpd_outstanding:
            return None
        if not sa.dpd_peer:
            return None
        return sa.last_heard + self.config.dpd_delay

    def _timers(self, now: float) -> None:
        cfg = self.config
        for sa in list(self.isakmp_sas):
            policy = cfg.retransmit
            if sa.initiator and sa.state == "mm6":
                # The peer answered messages 1-4 at once; silence after message 5 is the
                # tell-tale of a pre-shared key mismatch: conclude after two retransmits.
                policy = replace(policy, tries=min(policy.tries, MM5_TRIES))
            if self.retransmit_due(sa.flight, policy, now, sa):
                main_mode.gave_up(self, sa, now)
                continue
            if sa.state != "established":
                if now >= sa.created_at + self._half_open_limit():
                    if not sa.initiator:
                        self.log(
                            "ike_half_open_timeout",
                            "deleting un-established Phase 1 IKE_SA",
                            "warning",
                        )
                    self.drop_isakmp(sa)
                continue
            if sa.delete_at is not None and now >= sa.delete_at:
                sa.delete_at = None
                if sa is not self.current:
                    informational.send_delete_isakmp(self, sa)
                    self.log("ike_deleted", f"deleting the replaced ISAKMP SA {sa.cky_i.hex()}_i")
                    self.drop_isakmp(sa)
                    continue
            if sa.rekey_at is not None and now >= sa.rekey_at:
                sa.rekey_at = None
                if sa is self.current and not any(
                    s.initiator and s.state not in ("established", "dead") for s in self.isakmp_sas
                ):
                    self.log(
                        "ike_rekeying", f"rekeying ISAKMP SA {sa.cky_i.hex()}_i (new Main Mode)"
                    )
                    main_mode.start(self, now, sa.cky_i)
            if sa.expire_at is not None and now >= sa.expire_at:
                sa.expire_at = None
                self.log("ike_expired", f"ISAKMP SA {sa.cky_i.hex()}_i reached its lifetime")
                informational.send_delete_isakmp(self, sa)
                self.isakmp_lost(sa, "ike_expired", now, children=False)
                continue
            informational.dpd_timer(self, sa, now)
        for key, qm in list(self.quick_modes.items()):
            quick_mode.timer(self, key, qm, now)
        self._child_timers(now)
        if self.child_retry_at is not None and now >= self.child_retry_at:
            self.child_retry_at = None
            cur = self.current
            if cur is not None and not self.live_children() and not self._qm_in_flight():
                quick_mode.start(self, cur, now, None)
        if self.reconnect_at is not None and now >= self.reconnect_at:
            self.reconnect_at = None
            self.initiate(now)

    def _child_timers(self, now: float) -> None:
        cur = self.current
        for child in list(self.children.values()):
            if child.outbound_at is not None and now >= child.outbound_at:
                self.outbound_ready(child, now)
            if child.rekey_at is not None and now >= child.rekey_at:
                child.rekey_at = None
                if cur is not None and child.state == "installed" and not self._qm_in_flight():
                    child.state = "rekeying"
                    quick_mode.start(self, cur, now, child.child_id)
                elif cur is None and self.wanted:
                    self.initiate(now)  # a new ISAKMP SA first; it rekeys the child then
            if child.delete_at is not None and now >= child.delete_at:
                child.delete_at = None
                if cur is not None:
                    informational.send_delete_esp(self, cur, child)
                self.remove_child(child, "rekeyed")
                continue
            if child.expire_at is not None and now >= child.expire_at:
                self.log("child_expired", f"IPsec SA {child.spi_in:08x}_i reached its lifetime")
                if cur is not None:
                    informational.send_delete_esp(self, cur, child)
                self.remove_child(child, "expired")
                if not self.live_children() and cur is not None:
                    self.child_retry_at = now
