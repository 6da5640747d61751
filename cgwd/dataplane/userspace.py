"""The userspace ESP datapath: one TUN device per tunnel, ESP done by `cgwd.esp`.

Flow, per tunnel (two worker threads, so encryption and decryption overlap: the AEAD and
HMAC calls and every syscall release the GIL):

    tx worker:  TUN --read until EAGAIN, into the send buffer--> current
                    OutboundSa.encapsulate_in_place (no copy)
                    --> UDP socket (one GSO sendmsg per run of equal-size packets)
                     or raw ESP socket (one send per packet)
    rx worker:  UDP socket (GRO: one recvmsg per coalesced run) / raw ESP socket
                    --> InboundSa by SPI .decapsulate_run: the run's ESP for that SA,
                        each packet into a preallocated buffer, in one call
                    --> the rest one by one, classified (RFC 3948 §2.2): keepalive |
                        IKE -> event loop | ESP for another or a not-yet-installed SPI
                    --> TcpCoalescer (runs of one TCP flow become one GSO packet)
                    --> TUN (IFF_VNET_HDR)

The TUN device is opened with IFF_VNET_HDR so writes can carry merged TCP packets; no
offloads are enabled for reads, so what the kernel hands us are plain, complete packets.
The figures each of these steps buys are in bench/README.md.

Locking: the control methods run on the event loop thread and never mutate what a worker is
iterating. They publish new immutable snapshots (the inbound SPI map, the current outbound
state, the socket list) by rebinding one attribute, which is atomic in CPython; workers read
each snapshot once per batch. So an outbound switch happens between two batches and loses
no packet, and a new inbound SA is live the moment `add_sa` returns.

ESP for an SPI we allocated but have not installed yet (the peer sends on a new SA as soon
as it has answered our CREATE_CHILD_SA) is held briefly in bounded per-SPI queues
(`cgwd.dataplane.early_hold`); `add_sa` hands the held packets over together with the SA
(one step under the queues' lock), and the rx worker decapsulates them, through the normal
ICV and replay checks, before any later packet of that SPI.

Drops (unknown SPI, malformed, no outbound SA, send/write errors) are counted per tunnel in
`TunnelCounters`; drops an SA detects (authentication, replay, padding) are counted by the SA.
Both are logged rate-limited. Nothing a peer sends can raise out of a worker: an unexpected
exception is counted, logged once per interval, and the worker carries on.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import dataclasses
import errno
import functools
import io
import logging
import os
import secrets
import select
import socket
import struct
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from cgwd.dataplane.base import (
    MIN_SPI,
    SPI_RESERVATION_TTL,
    DataplaneError,
    IkeReceiver,
    SaExistsError,
    SaId,
    SaParams,
    TunnelExistsError,
    TunnelSpec,
    UnknownSaError,
    UnknownTunnelError,
)
from cgwd.dataplane.early_hold import HOLD_MAX_AGE, NOT_RESERVED, EarlyPackets
from cgwd.dataplane.ratelimit import RateLimitedLog
from cgwd.dataplane.sockets import (
    GRO_CMSG_SPACE,
    GSO_MAX_BYTES,
    UDP_MAX_SEGMENTS,
    UdpEncapSocket,
    gro_segment_size,
    is_transient,
    open_raw_esp,
    open_udp_encap,
    send_gso,
)
from cgwd.dataplane.tcp_coalesce import VNET_HDR_LEN, TcpCoalescer
from cgwd.dataplane.tun import configure_tun, open_tun, remove_link
from cgwd.esp.natt import ESP_HEADER_BYTES
from cgwd.esp.sa import DropReason, InboundSa, OutboundSa, SaCounters

log = logging.getLogger(__name__)

_U32 = struct.Struct("!I")
NON_ESP_MARKER = b"\x00\x00\x00\x00"  # RFC 3948 §2.2: IKE on port 4500 starts with 4 zeros
NAT_KEEPALIVE = b"\xff"  # RFC 3948 §2.3
KEEPALIVE_INTERVAL = 20.0  # seconds; RFC 3948 §4 suggests 20 s
MAX_PACKET = 65535
DEFAULT_BATCH = 64  # packets per wakeup before re-checking snapshots and other fds
POLL_MS = 1000  # worker poll timeout: bounds stop latency and keepalive jitter


@dataclass
class TunnelCounters:
    """Per-tunnel counters for what no SA can account for."""

    drops: dict[str, int] = field(default_factory=dict)
    """Drop counts by reason: ``unknown_spi``, ``malformed``, ``no_sa``, ``seq_exhausted``,
    ``send_error``, ``tun_write_error``, ``device_error`` (the TUN device vanished; counted
    per retry, at most one a second), ``internal`` (a bug); and for packets held while
    their SA was being installed (`cgwd.dataplane.early_hold`): ``early_expired``,
    ``early_overflow``, ``early_released``."""
    early_held: int = 0
    """Packets that arrived for a reserved SPI before its SA and were held (those not
    dropped later were decapsulated, and counted by the SA, once it was added)."""
    keepalives_in: int = 0
    keepalives_out: int = 0
    ike_in: int = 0

    def drop(self, reason: str, n: int = 1) -> None:
        self.drops[reason] = self.drops.get(reason, 0) + n


@dataclass(frozen=True)
class _Outbound:
    sa_id: SaId
    sa: OutboundSa
    udp: UdpEncapSocket | None  # None: raw ESP
    raw: socket.socket | None


@dataclass(frozen=True)
class _Inbound:
    sa_id: SaId
    sa: InboundSa
    # Packets that arrived before the SA, oldest first: the rx worker (alone) empties it
    # before it decapsulates any other packet of this SA.
    early: list[bytes] = field(default_factory=list)


@dataclass
class _Tunnel:
    spec: TunnelSpec
    tun_fd: int
    counters: TunnelCounters = field(default_factory=TunnelCounters)
    # Snapshots read by the workers; replaced, never mutated, by the control methods.
    outbound: _Outbound | None = None
    inbound: dict[int, _Inbound] = field(default_factory=dict)
    rx_sockets: tuple[tuple[socket.socket, UdpEncapSocket | None], ...] = ()
    # Control-side state (event loop thread only).
    outbound_sas: dict[SaId, _Outbound] = field(default_factory=dict)  # insertion order
    udp: dict[tuple[int, int], UdpEncapSocket] = field(default_factory=dict)
    raw: socket.socket | None = None
    reserved_spis: dict[int, float] = field(default_factory=dict)  # SPI -> allocated at
    # Shared, with its own lock: packets for reserved SPIs, until their SA is added.
    early: EarlyPackets = field(default_factory=EarlyPackets)
    # Workers.
    stopping: bool = False
    wake_r: int = -1  # rx worker's wakeup pipe (new sockets, stop)
    wake_w: int = -1
    stop_r: int = -1  # tx worker's wakeup pipe (stop)
    stop_w: int = -1
    threads: list[threading.Thread] = field(default_factory=list)
    last_udp_tx: float = 0.0
    # rx worker only: decrypted packets land at rx_out[VNET_HDR_LEN:], behind zeros.
    rx_out: memoryview = field(default_factory=lambda: memoryview(bytearray(MAX_PACKET)))
    coalescer: TcpCoalescer | None = None
    # rx worker only: takes the length of each decrypted packet at rx_payload onwards.
    deliver: Callable[[int], None] = field(default=lambda _length: None)

    rx_payload: memoryview = field(init=False)  # rx_out[VNET_HDR_LEN:], made once

    def __post_init__(self) -> None:
        self.rx_payload = self.rx_out[VNET_HDR_LEN:]


class UserspaceDataplane:
    """`Dataplane` over TUN devices and UDP/raw sockets, ESP in Python (`cgwd.esp`).

    Args:
        batch: packets handled per wakeup before snapshots are re-read.
        keepalive_interval: seconds of UDP silence towards a peer before a NAT keepalive.
        use_gso / use_gro: allow UDP segmentation offloads (off only to measure them).
        tun_coalesce: merge decrypted TCP segments into GSO packets on the TUN device
            (`cgwd.dataplane.tcp_coalesce`); off only to measure it.
        clock: monotonic clock for ``last_used``, keepalives and held packets' age.
        early_max_age: seconds an ESP packet for a reserved, not yet installed SPI is held
            (`cgwd.dataplane.early_hold`); 0 drops them at once, as unknown SPIs.
    """

    kind = "userspace"
    needs_ike_socket_bypass = False  # its own sockets take the ESP

    def __init__(
        self,
        *,
        batch: int = DEFAULT_BATCH,
        keepalive_interval: float = KEEPALIVE_INTERVAL,
        use_gso: bool = True,
        use_gro: bool = True,
        tun_coalesce: bool = True,
        clock: Callable[[], float] = time.monotonic,
        early_max_age: float = HOLD_MAX_AGE,
    ) -> None:
        self._tunnels: dict[str, _Tunnel] = {}
        self._spi_owner: dict[int, str] = {}  # inbound SPI -> tunnel (reserved or installed)
        self._ike_receiver: IkeReceiver | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._batch = max(1, batch)
        self._keepalive_interval = keepalive_interval
        self._use_gso = use_gso
        self._use_gro = use_gro
        self._tun_coalesce = tun_coalesce
        self._clock = clock
        self._early_max_age = early_max_age
        self._drop_log = RateLimitedLog(log)
        self._lock = asyncio.Lock()

    # -- Dataplane: tunnels ---------------------------------------------------------

    async def open_tunnel(self, spec: TunnelSpec) -> None:
        async with self._lock:  # one control operation at a time: they await in between
            await self._open_tunnel(spec)

    async def _open_tunnel(self, spec: TunnelSpec) -> None:
        if spec.name in self._tunnels:
            raise TunnelExistsError(f"tunnel {spec.name} is already open")
        self._loop = asyncio.get_running_loop()
        tun_fd = open_tun(spec.name, vnet_hdr=True)
        try:
            await asyncio.to_thread(_disable_ipv6, spec.name)
            await asyncio.to_thread(
                configure_tun, spec.name, spec.local_inside, spec.remote_inside, spec.mtu
            )
        except BaseException:
            os.close(tun_fd)
            raise
        t = _Tunnel(spec, tun_fd, early=EarlyPackets(max_age=self._early_max_age))
        t.coalescer = TcpCoalescer(lambda framed: self._tun_write(t, framed))
        t.deliver = self._deliverer(t)
        t.wake_r, t.wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        t.stop_r, t.stop_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self._tunnels[spec.name] = t
        for role, target in (("tx", self._tx_worker), ("rx", self._rx_worker)):
            thread = threading.Thread(
                target=self._guarded, args=(target, t), name=f"{spec.name}-{role}", daemon=True
            )
            t.threads.append(thread)
            thread.start()
        log.info("tunnel %s: TUN up, %s peer %s", spec.name, spec.local_inside, spec.remote_inside)

    async def close_tunnel(self, name: str) -> None:
        async with self._lock:  # one control operation at a time: they await in between
            await self._close_tunnel(name)

    async def _close_tunnel(self, name: str) -> None:
        t = self._tunnel(name)
        del self._tunnels[name]
        for spi in [s for s, owner in self._spi_owner.items() if owner == name]:
            del self._spi_owner[spi]
        t.stopping = True
        _wake(t)
        with contextlib.suppress(OSError):
            os.write(t.stop_w, b"s")
        for thread in t.threads:
            await asyncio.to_thread(thread.join, 5.0)
        os.close(t.tun_fd)
        for udp in t.udp.values():
            udp.sock.close()
        if t.raw is not None:
            t.raw.close()
        for fd in (t.wake_r, t.wake_w, t.stop_r, t.stop_w):
            os.close(fd)
        # Closing the last fd of a non-persistent TUN removes it; make sure of it anyway.
        with contextlib.suppress(DataplaneError):
            await asyncio.to_thread(remove_link, name)
        log.info("tunnel %s: closed", name)

    async def close(self) -> None:
        for name in list(self._tunnels):
            with contextlib.suppress(Exception):
                await self.close_tunnel(name)

    # -- Dataplane: SAs -------------------------------------------------------------

    def allocate_spi(self, tunnel: str) -> int:
        t = self._tunnel(tunnel)
        now = self._clock()
        for spi in [s for s, at in t.reserved_spis.items() if now - at > SPI_RESERVATION_TTL]:
            del t.reserved_spis[spi]  # never installed: the exchange that wanted it failed
            t.early.release(spi)
            if spi not in t.inbound:
                self._spi_owner.pop(spi, None)
        while True:
            spi = MIN_SPI + secrets.randbelow(0x1_0000_0000 - MIN_SPI)
            if spi not in self._spi_owner:
                self._spi_owner[spi] = tunnel
                t.reserved_spis[spi] = now
                if self._early_max_age > 0:
                    t.early.reserve(spi)
                return spi

    def release_spi(self, tunnel: str, spi: int) -> None:
        t = self._tunnel(tunnel)
        if t.reserved_spis.pop(spi, None) is not None and spi not in t.inbound:
            t.early.release(spi)
            self._spi_owner.pop(spi, None)

    async def add_sa(self, sa: SaId, params: SaParams) -> None:
        async with self._lock:  # one control operation at a time: they await in between
            await self._add_sa(sa, params)

    async def _add_sa(self, sa: SaId, params: SaParams) -> None:
        t = self._tunnel(sa.tunnel)
        if sa.direction == "in":
            if sa.spi in t.inbound:
                raise SaExistsError(f"SA {sa} is already installed")
            owner = self._spi_owner.get(sa.spi)
            if owner is not None and owner != sa.tunnel:
                raise SaExistsError(f"inbound SPI 0x{sa.spi:08x} is in use by tunnel {owner}")
        elif sa in t.outbound_sas:
            raise SaExistsError(f"SA {sa} is already installed")
        if self._has_sockets_for(t, params):
            # The usual case (every rekey): no thread hop, so the SA is live sooner; the
            # peer may already be sending on it (see `cgwd.dataplane.early_hold`).
            udp, raw = self._sockets_for(t, params)
        else:
            udp, raw = await asyncio.to_thread(self._sockets_for, t, params)
        try:
            if sa.direction == "in":
                inbound = InboundSa(
                    sa.spi,
                    params.suite,
                    params.keymat,
                    esn=params.esn,
                    replay_window=params.replay_window,
                )
            else:
                outbound = OutboundSa(
                    sa.spi,
                    params.suite,
                    params.keymat,
                    esn=params.esn,
                    udp_encap=params.encap is not None,
                )
        except ValueError as exc:
            raise DataplaneError(f"SA {sa}: {exc}") from None
        if sa.direction == "in":
            self._spi_owner[sa.spi] = sa.tunnel
            t.reserved_spis.pop(sa.spi, None)

            def publish(early: list[bytes]) -> None:
                t.inbound = {**t.inbound, sa.spi: _Inbound(sa, inbound, early)}

            early = t.early.install(sa.spi, self._clock(), publish)
            if early:
                _wake(t)  # the rx worker decapsulates them now, not at the next packet
                log.info("SA %s: %d packet(s) that arrived before it handed over", sa, early)
        else:
            state = _Outbound(sa, outbound, udp, raw)
            t.outbound_sas[sa] = state
            t.outbound = state  # the atomic switch: the next tx batch uses it
        log.info("SA %s installed (%s, %s)", sa, params.suite.name, _encap_text(params))

    async def remove_sa(self, sa: SaId) -> None:
        async with self._lock:  # one control operation at a time: they await in between
            await self._remove_sa(sa)

    async def _remove_sa(self, sa: SaId) -> None:
        t = self._tunnel(sa.tunnel)
        if sa.direction == "in":
            if sa.spi not in t.inbound:
                raise UnknownSaError(f"no SA {sa}")
            t.inbound = {spi: s for spi, s in t.inbound.items() if spi != sa.spi}
            self._spi_owner.pop(sa.spi, None)
        else:
            if sa not in t.outbound_sas:
                raise UnknownSaError(f"no SA {sa}")
            del t.outbound_sas[sa]
            if t.outbound is not None and t.outbound.sa_id == sa:
                remaining = list(t.outbound_sas.values())
                t.outbound = remaining[-1] if remaining else None
        log.info("SA %s removed", sa)

    def sa_counters(self, sa: SaId) -> SaCounters:
        t = self._tunnel(sa.tunnel)
        if sa.direction == "in":
            inbound = t.inbound.get(sa.spi)
            if inbound is None:
                raise UnknownSaError(f"no SA {sa}")
            return _snapshot(inbound.sa.counters)
        outbound = t.outbound_sas.get(sa)
        if outbound is None:
            raise UnknownSaError(f"no SA {sa}")
        return _snapshot(outbound.sa.counters)

    def tunnel_counters(self, tunnel: str) -> TunnelCounters:
        """A snapshot of the tunnel's own counters (drops no SA could account for)."""
        t = self._tunnel(tunnel)
        drops = dict(t.counters.drops)
        for reason, n in t.early.drops().items():
            drops[reason] = drops.get(reason, 0) + n
        return dataclasses.replace(t.counters, drops=drops, early_held=t.early.held_total())

    def current_outbound(self, tunnel: str) -> SaId | None:
        """The outbound SA the tunnel's traffic uses now, if any."""
        current = self._tunnel(tunnel).outbound
        return current.sa_id if current is not None else None

    def set_ike_receiver(self, callback: IkeReceiver | None) -> None:
        self._ike_receiver = callback

    # -- internals: control side ----------------------------------------------------

    def _tunnel(self, name: str) -> _Tunnel:
        try:
            return self._tunnels[name]
        except KeyError:
            raise UnknownTunnelError(f"no tunnel {name}") from None

    @staticmethod
    def _has_sockets_for(t: _Tunnel, params: SaParams) -> bool:
        if params.encap is None:
            return t.raw is not None
        return (params.encap.local_port, params.encap.remote_port) in t.udp

    def _sockets_for(
        self, t: _Tunnel, params: SaParams
    ) -> tuple[UdpEncapSocket | None, socket.socket | None]:
        """The socket an SA with ``params`` sends on, opening it (and waking rx) if new."""
        spec = t.spec
        if params.encap is None:
            if t.raw is None:
                t.raw = open_raw_esp(spec.local_outside, spec.remote_outside)
                t.rx_sockets = (*t.rx_sockets, (t.raw, None))
                _wake(t)
            return None, t.raw
        key = (params.encap.local_port, params.encap.remote_port)
        udp = t.udp.get(key)
        if udp is None:
            udp = open_udp_encap(spec.local_outside, key[0], spec.remote_outside, key[1])
            udp.gso = udp.gso and self._use_gso
            udp.gro = udp.gro and self._use_gro
            if not udp.gro:
                with contextlib.suppress(OSError):
                    udp.sock.setsockopt(17, 104, 0)  # SOL_UDP, UDP_GRO off
            t.udp[key] = udp
            t.rx_sockets = (*t.rx_sockets, (udp.sock, udp))
            _wake(t)
        return udp, None

    def _deliver_ike(self, data: bytes, remote: tuple[str, int], local: tuple[str, int]) -> None:
        receiver = self._ike_receiver
        if receiver is None:
            return
        try:
            receiver(data, remote, local)
        except Exception:
            log.exception("IKE receiver failed on a datagram from %s:%d", *remote)

    def _drop(self, t: _Tunnel, reason: str, detail: str = "", n: int = 1) -> None:
        t.counters.drop(reason, n)
        self._drop_log.log(
            f"{t.spec.name} {reason}", f"tunnel {t.spec.name}: dropped packet: {reason} {detail}"
        )

    def _guarded(self, worker: Callable[[_Tunnel], None], t: _Tunnel) -> None:
        """Run a worker until the tunnel stops; an unexpected error is logged, not fatal."""
        _name_os_thread(threading.current_thread().name)
        backoff = 0.01
        while not t.stopping:
            started = time.monotonic()
            try:
                worker(t)
            except Exception as exc:  # a bug must not silently kill the tunnel's datapath
                t.counters.drop("device_error" if isinstance(exc, DataplaneError) else "internal")
                self._drop_log.log(
                    f"{t.spec.name} internal",
                    f"tunnel {t.spec.name}: datapath worker error: {type(exc).__name__}: {exc}",
                )
                # A persistent fault (say the TUN device was deleted under us) must not
                # become a busy loop: back off up to a second while it keeps failing fast.
                backoff = 0.01 if time.monotonic() - started > 10 else min(backoff * 2, 1.0)
                time.sleep(backoff)

    # -- internals: tx worker (TUN -> ESP) ------------------------------------------

    def _tx_worker(self, t: _Tunnel) -> None:
        """Drain the TUN device in batches; encrypt each packet in place, in the send buffer.

        Packets are read straight to where their ESP packet will start plus the SA's header
        room, so encryption copies nothing. For ESP-in-UDP with GSO the ESP packets of a run
        lie back to back in ``buf`` and leave in one ``sendmsg``: a run ends at a packet
        larger than the run's segment size (it is moved to the start of the next run), just
        after a shorter one (allowed as the last segment), or when the buffer is full.
        """
        poller = select.poll()
        poller.register(t.tun_fd, select.POLLIN)
        poller.register(t.stop_r, select.POLLIN)
        buf = bytearray(GSO_MAX_BYTES + 2 * MAX_PACKET)
        view = memoryview(buf)
        # FileIO.readinto: one read(2) per packet without readv's list; None means EAGAIN.
        readinto = io.FileIO(t.tun_fd, "rb", closefd=False).readinto
        batch = self._batch
        while not t.stopping:
            poller.poll(POLL_MS)
            out = t.outbound
            # Without an outbound SA packets are still read (to be counted as no_sa): the
            # vnet header needs room before them, and an empty read buffer would read 0.
            room = out.sa.header_room if out is not None else VNET_HDR_LEN
            gso = out is not None and out.udp is not None and out.udp.gso
            off = 0  # the GSO run so far: `count` ESP packets of `seg` octets in buf[0:off]
            count = 0
            seg = 0
            n_read = 0
            while n_read < batch:
                try:
                    # The vnet header lands in the ESP header room (room >= 16 > 10) and is
                    # overwritten there; with no offloads enabled it only says "plain packet".
                    n = readinto(view[off + room - VNET_HDR_LEN : off + room + MAX_PACKET])
                except BlockingIOError:
                    break
                except OSError as exc:
                    if exc.errno == errno.EBADF or t.stopping:
                        return
                    if exc.errno == errno.EBADFD:  # the device was deleted under us
                        raise DataplaneError(f"TUN device {t.spec.name} is gone") from None
                    raise
                if n is None:  # EAGAIN: drained
                    break
                if n == 0:  # end of file
                    raise DataplaneError(f"TUN device {t.spec.name} is gone")
                n_read += 1
                n -= VNET_HDR_LEN
                if n <= 0 or view[off + room - VNET_HDR_LEN + 1] != 0:  # gso_type NONE only
                    self._drop(t, "malformed", "(unexpected packet from the TUN device)")
                    continue
                if out is None:
                    self._drop(t, "no_sa", "(no outbound SA installed)")
                    continue
                length = out.sa.encapsulate_in_place(view, n, off)
                if length == 0:
                    if out.sa.needs_rekey:
                        self._drop(t, "seq_exhausted", f"(SA 0x{out.sa_id.spi:08x}: rekey)")
                    continue
                if not gso:
                    self._send_one(t, out, view[:length])
                    continue
                assert out.udp is not None
                if count and length > seg:
                    # Too big for this run: send the run, start a new one with this packet.
                    self._flush(t, out.udp, view[0:off], seg, count)
                    view[0:length] = view[off : off + length]
                    off = count = 0
                if count == 0:
                    seg = length
                off += length
                count += 1
                if length < seg or count >= UDP_MAX_SEGMENTS or off + seg > GSO_MAX_BYTES:
                    self._flush(t, out.udp, view[0:off], seg, count)
                    off = count = 0
            if count and out is not None and out.udp is not None:
                self._flush(t, out.udp, view[0:off], seg, count)
            if n_read and out is not None:
                out.sa.counters.last_used = self._clock()
                if out.udp is not None:
                    t.last_udp_tx = out.sa.counters.last_used

    def _send_one(self, t: _Tunnel, out: _Outbound, packet: memoryview) -> None:
        sock = out.udp.sock if out.udp is not None else out.raw
        assert sock is not None
        try:
            sock.send(packet)
        except OSError as exc:
            if not is_transient(exc):
                raise
            self._drop(t, "send_error", f"({exc.strerror})")

    def _flush(
        self, t: _Tunnel, udp: UdpEncapSocket, data: memoryview, seg: int, count: int
    ) -> None:
        """Send ``count`` ESP packets lying back to back in ``data`` (all ``seg`` long but
        the last), in one GSO send where the path allows it."""
        if count > 1 and seg <= udp.gso_max_segment:
            try:
                send_gso(udp.sock, data, seg)
                return
            except OSError as exc:
                if exc.errno not in (errno.EINVAL, errno.EMSGSIZE, errno.EIO):
                    if not is_transient(exc):
                        raise
                    self._drop(t, "send_error", f"({exc.strerror})", count)
                    return
                # EIO: the device cannot segment UDP; EINVAL/EMSGSIZE: segments longer than
                # the path MTU (GSO never fragments). Send these one by one, so the kernel
                # fragments them like any datagram, and stop trying GSO at this size.
                udp.gso_max_segment = seg - 1 if exc.errno != errno.EIO else 0
                self._drop_log.log(
                    f"{t.spec.name} gso",
                    f"tunnel {t.spec.name}: UDP GSO refused for {seg}-octet segments "
                    f"({exc.strerror}); sending them one by one",
                )
        for start in range(0, len(data), seg):
            try:
                udp.sock.send(data[start : start + seg])
            except OSError as exc:
                if not is_transient(exc):
                    raise
                self._drop(t, "send_error", f"({exc.strerror})")

    # -- internals: rx worker (ESP -> TUN) ------------------------------------------

    def _rx_worker(self, t: _Tunnel) -> None:
        buf = bytearray(MAX_PACKET)
        view = memoryview(buf)
        sockets: tuple[tuple[socket.socket, UdpEncapSocket | None], ...] = ()
        poller = select.poll()
        by_fd: dict[int, tuple[socket.socket, UdpEncapSocket | None]] = {}
        while not t.stopping:
            if sockets is not t.rx_sockets:
                sockets = t.rx_sockets
                poller = select.poll()
                poller.register(t.wake_r, select.POLLIN)
                by_fd = {}
                for entry in sockets:
                    poller.register(entry[0].fileno(), select.POLLIN)
                    by_fd[entry[0].fileno()] = entry
            events = poller.poll(POLL_MS)
            now = self._clock()
            for fd, _mask in events:
                if fd == t.wake_r:
                    with contextlib.suppress(BlockingIOError):
                        os.read(t.wake_r, 512)
                    for inbound in t.inbound.values():
                        if inbound.early:
                            self._decapsulate_early(t, inbound, now)
                    continue
                sock, udp = by_fd.get(fd, (None, None))
                if udp is not None:
                    self._drain_udp(t, udp, view, now)
                elif sock is not None:
                    self._drain_raw(t, sock, view, now)
            if t.coalescer is not None:
                t.coalescer.flush()  # never hold a packet past the burst it came in
            t.early.expire(now)
            self._maybe_keepalive(t, now)

    def _drain_udp(self, t: _Tunnel, udp: UdpEncapSocket, view: memoryview, now: float) -> None:
        """Receive up to a batch of (GRO-coalesced) datagrams; ESP takes the short path."""
        recv = udp.sock.recvmsg_into
        bufs = [view]
        handle_esp = self._handle_esp
        inbound_by_spi = t.inbound  # a snapshot (see the module docstring), read per batch
        for _ in range(self._batch):
            try:
                n, anc, flags, _addr = recv(bufs, GRO_CMSG_SPACE, socket.MSG_DONTWAIT)
            except BlockingIOError:
                return
            except OSError as exc:
                if is_transient(exc):  # e.g. ICMP port unreachable reported on a connected socket
                    continue
                raise
            seg = gro_segment_size(anc) if anc else 0
            if flags & socket.MSG_TRUNC:
                # Larger than the buffer (no single datagram can be): keep the complete
                # segments of a coalesced run, count the cut-off rest once.
                self._drop(t, "malformed", "(receive larger than the buffer)")
                n = n - n % seg if 0 < seg < n else 0
                if not n:
                    continue
            elif not n:  # an empty datagram: neither ESP, IKE nor a keepalive
                self._drop(t, "malformed", "(empty UDP datagram)")
                continue
            # Only view[:n] was received: the last datagram of a coalesced run may be
            # shorter than the segment size, and the rest of the buffer is stale.
            step = seg if 0 < seg < n else n
            off = 0
            while off < n:
                # The short path: a run of ESP packets for an installed SA, decapsulated
                # by the SA in one call (ESP starts with a non-zero SPI, RFC 4303 §2.1).
                if n - off >= ESP_HEADER_BYTES:
                    inbound = inbound_by_spi.get(_U32.unpack_from(view, off)[0])
                    if inbound is not None and not inbound.early:
                        counters = inbound.sa.counters
                        drops_before = counters.drop_events
                        delivered_before = counters.packets
                        off = inbound.sa.decapsulate_run(
                            view, off, n, step, out=t.rx_payload, deliver=t.deliver
                        )
                        # Only authentic packets say the peer is alive (the IKE host
                        # skips liveness checks while this moves).
                        if counters.packets != delivered_before:
                            counters.last_used = now
                        if counters.drop_events != drops_before:
                            self._log_sa_drop(t, inbound, counters.last_drop)
                        continue
                # Everything else, one datagram at a time: IKE behind the non-ESP marker
                # and 1-octet keepalives (RFC 3948 §2.2, 2.3), unknown or held SPIs.
                end = off + step if off + step < n else n
                d = view[off:end]
                off = end
                if len(d) >= ESP_HEADER_BYTES and (d[0] or d[1] or d[2] or d[3]):
                    handle_esp(t, d, now)
                else:
                    self._handle_udp(t, udp, d, now)

    def _handle_udp(self, t: _Tunnel, udp: UdpEncapSocket, d: memoryview, now: float) -> None:
        n = len(d)
        if n == 1 and d[0] == 0xFF:
            t.counters.keepalives_in += 1
            return
        if n >= 4 and d[:4] == NON_ESP_MARKER:
            t.counters.ike_in += 1
            loop = self._loop
            if loop is not None and self._ike_receiver is not None:
                with contextlib.suppress(RuntimeError):  # the loop is closing
                    loop.call_soon_threadsafe(self._deliver_ike, bytes(d), udp.remote, udp.local)
            return
        self._handle_esp(t, d, now)

    def _drain_raw(self, t: _Tunnel, sock: socket.socket, view: memoryview, now: float) -> None:
        for _ in range(self._batch):
            try:
                n = sock.recv_into(view, 0, socket.MSG_DONTWAIT)
            except BlockingIOError:
                return
            except OSError as exc:
                if is_transient(exc):
                    continue
                raise
            # A raw IPv4 socket returns the IP header too (RFC 791: IHL in 32-bit words).
            if n < 20 or view[0] >> 4 != 4:
                self._drop(t, "malformed", "(raw ESP: not an IPv4 packet)")
                continue
            ihl = (view[0] & 0x0F) * 4
            if ihl < 20 or n < ihl:
                self._drop(t, "malformed", "(raw ESP: bad IPv4 header length)")
                continue
            self._handle_esp(t, view[ihl:n], now)

    def _handle_esp(self, t: _Tunnel, d: memoryview, now: float) -> None:
        if len(d) < ESP_HEADER_BYTES:
            self._drop(t, "malformed", f"(ESP packet of {len(d)} bytes)")
            return
        spi = _U32.unpack_from(d)[0]
        inbound = t.inbound.get(spi)
        if inbound is None:
            inbound = self._hold_early(t, spi, d, now)
            if inbound is None:
                return
        if inbound.early:
            self._decapsulate_early(t, inbound, now)
        self._decapsulate(t, inbound, d, now)

    def _hold_early(self, t: _Tunnel, spi: int, d: memoryview, now: float) -> _Inbound | None:
        """An ESP packet for an SPI with no SA: hold it if the SPI is reserved, else drop
        it. Returns the SA if it was installed meanwhile (the packet is then not held)."""
        reason = t.early.hold(spi, d, now)
        if reason is None:
            return None
        if reason == NOT_RESERVED:
            # `add_sa` publishes the SA under the lock `hold` took: if it was installed
            # since our lookup, it is visible now.
            inbound = t.inbound.get(spi)
            if inbound is None:
                self._drop(t, "unknown_spi", f"(SPI 0x{spi:08x})")
            return inbound
        self._drop_log.log(
            f"{t.spec.name} {reason}",
            f"tunnel {t.spec.name}: dropped packet: {reason} (SPI 0x{spi:08x}, not yet installed)",
        )
        return None

    def _decapsulate_early(self, t: _Tunnel, inbound: _Inbound, now: float) -> None:
        """Decapsulate the packets held for ``inbound`` before it existed, in arrival order
        (rx worker only: it alone takes from ``inbound.early``)."""
        early = inbound.early[:]
        inbound.early.clear()
        for packet in early:
            self._decapsulate(t, inbound, memoryview(packet), now)

    def _decapsulate(self, t: _Tunnel, inbound: _Inbound, d: memoryview, now: float) -> None:
        sa = inbound.sa
        result = sa.decapsulate_into(d, t.rx_payload)
        if result.__class__ is not int:  # a DropReason, already counted by the SA
            assert isinstance(result, DropReason)
            self._log_sa_drop(t, inbound, result)
            return
        assert isinstance(result, int)
        sa.counters.last_used = now
        t.deliver(result)

    def _deliverer(self, t: _Tunnel) -> Callable[[int], None]:
        """The rx worker's sink for a decrypted packet of ``length`` octets at
        ``t.rx_payload``: into the TCP coalescer, or (when that is off) to the device."""
        assert t.coalescer is not None
        if self._tun_coalesce:
            return functools.partial(t.coalescer.add_framed, t.rx_out)
        framed = t.rx_out

        def write(length: int) -> None:
            self._tun_write(t, framed[: VNET_HDR_LEN + length])

        return write

    def _log_sa_drop(self, t: _Tunnel, inbound: _Inbound, reason: DropReason | None) -> None:
        name = reason.value if reason is not None else "unknown"
        self._drop_log.log(
            f"{t.spec.name} {name}",
            f"tunnel {t.spec.name}: SA 0x{inbound.sa_id.spi:08x} dropped a packet: {name}",
        )

    def _tun_write(self, t: _Tunnel, framed: memoryview) -> None:
        try:
            os.write(t.tun_fd, framed)
        except OSError as exc:
            if exc.errno == errno.EBADF or t.stopping:
                return
            self._drop(t, "tun_write_error", f"({exc.strerror})")

    def _maybe_keepalive(self, t: _Tunnel, now: float) -> None:
        """RFC 3948 §2.3: keep the NAT mapping alive while ESP-in-UDP is idle."""
        out = t.outbound
        if out is None or out.udp is None or now - t.last_udp_tx < self._keepalive_interval:
            return
        t.last_udp_tx = now
        try:
            out.udp.sock.send(NAT_KEEPALIVE, socket.MSG_DONTWAIT)
            t.counters.keepalives_out += 1
        except OSError as exc:
            self._drop(t, "send_error", f"(keepalive: {exc.strerror})")


def _snapshot(counters: SaCounters) -> SaCounters:
    """A copy of counters a worker thread keeps updating: ``dict()`` of the drops is one
    C-level copy, where a deep copy could see the dict grow mid-iteration."""
    return dataclasses.replace(counters, drops=dict(counters.drops))


def _name_os_thread(name: str) -> None:
    """Show the worker as e.g. ``cgt0-tx`` in ``top -H`` / ``ps -L`` (PR_SET_NAME)."""
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(15, name.encode()[:15], 0, 0, 0)  # PR_SET_NAME, <linux/prctl.h>


def _wake(t: _Tunnel) -> None:
    with contextlib.suppress(OSError):
        os.write(t.wake_w, b"w")


def _encap_text(params: SaParams) -> str:
    if params.encap is None:
        return "raw ESP"
    return f"ESP-in-UDP {params.encap.local_port}->{params.encap.remote_port}"


def _disable_ipv6(name: str) -> None:
    """The tunnels carry IPv4 only: keep the kernel from sending RS/MLD into them."""
    path = f"/proc/sys/net/ipv6/conf/{name}/disable_ipv6"
    with contextlib.suppress(OSError), open(path, "w") as f:
        f.write("1")
