"""ESP security associations in tunnel mode (RFC 4303): outbound encapsulation and inbound
decapsulation of whole inner IPv4/IPv6 packets. Sans-I/O: no sockets, clock or randomness.

Outbound: `OutboundSa.encapsulate(inner)` returns SPI..ICV. The next header is 4 (IPv4) or
41 (IPv6), from the inner packet's version nibble (RFC 4303 2.6, tunnel mode). Padding is
1, 2, 3, ... (RFC 4303 2.4) up to the suite's alignment. The sequence number starts at 1
and never wraps (RFC 4303 3.3.3): once the last number is used the SA refuses packets and
`needs_rekey` is set; it is set earlier, `rekey_margin` packets before the end, so IKE can
rekey without losing traffic.

Inbound: `InboundSa.decapsulate(packet)` returns the inner packet or a `DropReason`, and
never raises. Order (RFC 4303 3.4): length, SPI, anti-replay check, ICV (constant time),
window update, then padding, next header and the inner IP header. Every drop is counted.
With ESN, a receiver that lost more than 2^32 packets re-synchronises (RFC 4303 A3).

Zero-copy variants: `OutboundSa.encapsulate_in_place` seals an inner packet that was read
into a buffer behind `header_room` free octets, `InboundSa.decapsulate_into` decrypts into
a caller's buffer. In CPython the bytes-returning calls cost about the same per packet
(fewer Python-level operations, one more copy); the in-place ones allocate nothing.
See bench/esp_hotpath.py.

Both SA types are meant for one thread at a time (counters and the CBC chaining state are
not locked); sequence numbers stay unique even if that rule is broken.
"""

from __future__ import annotations

import enum
import itertools
import struct
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import cast

from cgwd.esp.natt import ESP_HEADER_BYTES
from cgwd.esp.replay import DEFAULT_WINDOW, ReplayWindow
from cgwd.esp.suites import EspSuite
from cgwd.esp.transforms import CbcHmacTransform, GcmTransform, IvSource, Transform
from cgwd.secret import Secret

__all__ = [
    "DropReason",
    "InboundSa",
    "IvSource",
    "OutboundSa",
    "SaCounters",
    "peek_spi",
]

NEXT_HEADER_IPV4 = 4  # IANA protocol numbers (RFC 4303 2.6, tunnel mode)
NEXT_HEADER_IPV6 = 41
NEXT_HEADER_NONE = 59  # "dummy" packet, RFC 4303 2.6: discarded by the receiver
SEQ_LIMIT_32 = 0xFFFFFFFF  # RFC 4303 2.2: highest 32-bit sequence number
SEQ_LIMIT_64 = 0xFFFFFFFFFFFFFFFF  # RFC 4303 2.2.1: highest extended sequence number
DEFAULT_REKEY_MARGIN = 1 << 20  # packets before the limit at which needs_rekey is raised
# ESN re-synchronisation (RFC 4303 A3.1/A3.2 leave both to the implementation): try again
# after this many consecutive authentication failures, with this many higher high halves.
RESYNC_TRIGGER = 64
RESYNC_TRIES = 8
_MAX_PAD = 255  # the Pad Length field is one octet
_SPI_SEQ = struct.Struct(">II")
_IPV4_START = struct.Struct(">BxH")  # version/IHL, total length (RFC 791)
_IPV6_START = struct.Struct(">B3xH")  # version/class, payload length (RFC 8200)
_PADS = tuple(bytes(range(1, n + 1)) for n in range(_MAX_PAD + 1))  # RFC 4303 2.4 contents


class DropReason(enum.Enum):
    """Why a packet was not delivered. Values are stable names for status output."""

    AUTH_FAILED = "auth_failed"  # ICV / GCM tag did not verify
    REPLAY = "replay"  # duplicate, or left of the anti-replay window
    MALFORMED = "malformed"  # impossible length or alignment
    UNKNOWN_SPI = "unknown_spi"  # no SA for that SPI
    BAD_PADDING = "bad_padding"  # padding length or contents wrong (RFC 4303 2.4)
    BAD_NEXT_HEADER = "bad_next_header"  # not IPv4/IPv6 in tunnel mode
    BAD_INNER_PACKET = "bad_inner_packet"  # inner IP header inconsistent with the payload
    DUMMY_PACKET = "dummy_packet"  # next header 59, TFC dummy, discarded (RFC 4303 2.6)
    SEQUENCE_EXHAUSTED = "sequence_exhausted"  # outbound: no sequence number left, rekey
    INTERNAL_ERROR = "internal_error"  # a bug in cgwd: should stay 0


@dataclass(slots=True)
class SaCounters:
    """Traffic through one SA: inner packets and their bytes, and drops by reason.

    ``last_used`` is set by the caller, which has a clock; the core never reads one.
    """

    packets: int = 0
    bytes: int = 0
    drops: dict[DropReason, int] = field(default_factory=dict)
    last_used: float | None = None
    # For the datapath's drop log, not for reports: a caller compares ``drop_events``
    # around a call to see that something was dropped (and ``last_drop`` says what)
    # without summing ``drops``.
    drop_events: int = field(default=0, metadata={"internal": True})
    last_drop: DropReason | None = field(default=None, metadata={"internal": True})

    def drop(self, reason: DropReason) -> DropReason:
        """Count one drop for ``reason`` and return it."""
        self.drops[reason] = self.drops.get(reason, 0) + 1
        self.drop_events += 1
        self.last_drop = reason
        return reason

    # Readers may run in another thread than the datapath that counts: they work on
    # dict.copy(), which runs in C without releasing the GIL, so a reason counted for the
    # first time meanwhile cannot break their iteration.

    @property
    def dropped(self) -> int:
        """All drops, whatever the reason."""
        return sum(self.drops.copy().values())

    def as_dict(self) -> dict[str, object]:
        """A JSON-ready copy, drop reasons by their stable names (for `cgwd status`)."""
        return {
            "packets": self.packets,
            "bytes": self.bytes,
            "drops": {reason.value: count for reason, count in self.drops.copy().items()},
            "last_used": self.last_used,
        }


def peek_spi(esp_packet: bytes | bytearray | memoryview) -> int | None:
    """The SPI of an ESP packet, or None if it is shorter than the ESP header. Never raises."""
    if len(esp_packet) < ESP_HEADER_BYTES:
        return None
    spi: int = int.from_bytes(esp_packet[:4], "big")
    return spi


def _check_spi(spi: int) -> None:
    # RFC 4303 2.1: SPI 0 is reserved for local use, 1..255 reserved by IANA
    if not 256 <= spi <= 0xFFFFFFFF:
        raise ValueError(f"ESP SPI must be 256..2^32-1, not {spi}")


def _make_transform(
    suite: EspSuite, keymat: Secret, spi: int, esn: bool, iv_source: IvSource | None
) -> Transform:
    if len(keymat) != suite.keymat_bytes:
        raise ValueError(
            f"{suite.name} needs {suite.keymat_bytes} bytes of keymat, not {len(keymat)}"
        )
    if suite.aead:
        if iv_source is not None:
            raise ValueError("iv_source applies to CBC suites; GCM uses the sequence number")
        return GcmTransform(suite, keymat.reveal(), spi, esn)
    return CbcHmacTransform(suite, keymat.reveal(), spi, esn, iv_source)


class OutboundSa:
    """One outbound ESP SA (tunnel mode).

    ``keymat`` is exactly `EspSuite.keymat_bytes` (encryption key, GCM salt, integrity key:
    RFC 7296 2.17, RFC 4106 8.1). ``udp_encap`` only records that the dataplane sends these
    packets in UDP (RFC 3948 changes nothing inside ESP in tunnel mode); `overhead` counts
    the UDP header then. ``iv_source`` replaces the default CBC IV generator (see
    `cgwd.esp.transforms.CbcHmacTransform`; a source returning other than 16 octets makes
    `encapsulate` raise ValueError). ``last_seq`` is the last sequence number
    already used (for tests and SA migration). The constructor raises ValueError for a bad
    SPI, keymat length or option; nothing else raises except misuse of the ``*_in_place``
    / ``*_into`` buffer contracts.
    """

    __slots__ = (
        "_align",
        "_counter",
        "_extra_room",
        "_limit",
        "_seal",
        "_seal_in_place",
        "_seq",
        "_soft_limit",
        "_trailers4",
        "_trailers6",
        "_transform",
        "counters",
        "esn",
        "header_room",
        "needs_rekey",
        "spi",
        "suite",
        "udp_encap",
    )

    def __init__(
        self,
        spi: int,
        suite: EspSuite,
        keymat: Secret,
        *,
        esn: bool = False,
        udp_encap: bool = False,
        iv_source: IvSource | None = None,
        last_seq: int = 0,
        rekey_margin: int = DEFAULT_REKEY_MARGIN,
    ) -> None:
        _check_spi(spi)
        self.spi = spi
        self.suite = suite
        self.esn = esn
        self.udp_encap = udp_encap
        self.counters = SaCounters()
        transform = _make_transform(suite, keymat, spi, esn, iv_source)
        self._transform = transform
        self._seal = transform.seal
        self._seal_in_place = transform.seal_in_place
        self.header_room = transform.header_room
        """Octets before the inner packet in an ESP packet (SPI, sequence number, IV)."""
        self._limit = SEQ_LIMIT_64 if esn else SEQ_LIMIT_32
        if not 0 <= last_seq <= self._limit:
            raise ValueError("last_seq out of range")
        if rekey_margin < 0:
            raise ValueError("rekey_margin must not be negative")
        self._seq = last_seq
        self._counter = itertools.count(last_seq + 1)
        self._soft_limit = self._limit - min(rekey_margin, self._limit // 2)
        self.needs_rekey = last_seq >= self._soft_limit
        align = self._align = suite.pad_align
        # trailers[pad length]: padding 1, 2, 3, ..., pad length, next header (RFC 4303 2.4)
        self._trailers4 = tuple(_PADS[n] + bytes((n, NEXT_HEADER_IPV4)) for n in range(align))
        self._trailers6 = tuple(_PADS[n] + bytes((n, NEXT_HEADER_IPV6)) for n in range(align))
        # buffer_size(n) - n: header, worst-case trailer, and what the cipher writes past it
        self._extra_room = self.header_room + align + 1 + transform.tail_room

    @property
    def last_seq(self) -> int:
        """The last sequence number used (0 before the first packet)."""
        return self._seq

    @property
    def exhausted(self) -> bool:
        """True when no sequence number is left: every packet is refused."""
        return self._seq >= self._limit

    def overhead(self, inner_len: int) -> int:
        """Octets ESP (and UDP, if ``udp_encap``) adds to an inner packet of that size,
        not counting the outer IP header. For MTU and MSS arithmetic."""
        align = self._align
        padded = -(-(inner_len + 2) // align) * align
        return self.header_room + padded - inner_len + self.suite.icv_bytes + 8 * self.udp_encap

    def buffer_size(self, inner_len: int) -> int:
        """The smallest buffer `encapsulate_into` / `encapsulate_in_place` accept for an
        inner packet of ``inner_len`` octets (a little more than the packet itself)."""
        return inner_len + self._extra_room

    def _next_seq(self, version: int) -> int:
        """The sequence number for the next packet of IP ``version``, or 0 (counted) when
        it cannot be sent. Numbers come from an `itertools.count`, whose ``next`` is atomic
        under the GIL: even a caller that wrongly shares the SA between threads never gets
        one number twice, which for GCM would repeat a nonce (RFC 4106 3.1)."""
        if version != 4 and version != 6:  # noqa: PLR1714
            self.counters.drop(DropReason.BAD_INNER_PACKET)
            return 0
        seq: int = next(self._counter)
        if seq < self._soft_limit:
            self._seq = seq
            return seq
        return self._at_soft_limit(seq)

    def _at_soft_limit(self, seq: int) -> int:
        """``seq`` (just taken) at or past the soft limit: ask for a rekey, and refuse it
        (0, counted) past the last number."""
        self.needs_rekey = True
        if seq > self._limit:  # RFC 4303 3.3.3: never cycle; a new SA is needed
            self.counters.drop(DropReason.SEQUENCE_EXHAUSTED)
            return 0
        self._seq = seq
        return seq

    def encapsulate(self, inner_ip_packet: bytes | bytearray | memoryview) -> bytes | None:
        """The ESP packet (SPI..ICV) carrying ``inner_ip_packet``; None (counted) if the
        inner packet is empty or not IPv4/IPv6, or if the sequence numbers are exhausted."""
        size = len(inner_ip_packet)
        if not size:
            self.counters.drop(DropReason.BAD_INNER_PACKET)
            return None
        version = inner_ip_packet[0] >> 4
        seq = self._next_seq(version)
        if not seq:
            return None
        trailers = self._trailers4 if version == 4 else self._trailers6
        packet = self._seal(seq, inner_ip_packet, trailers[-(size + 2) % self._align])
        counters = self.counters
        counters.packets += 1
        counters.bytes += size
        return packet

    def encapsulate_into(
        self, out: bytearray | memoryview, inner_ip_packet: bytes | bytearray | memoryview
    ) -> int:
        """Write the ESP packet into ``out[0:]`` and return its length; 0 (counted) when
        refused as in `encapsulate`. ``out`` must hold `buffer_size(len(inner))` octets
        (ValueError otherwise) and must not overlap ``inner_ip_packet``."""
        size = len(inner_ip_packet)
        room = self.header_room
        if len(out) < size + self._extra_room:
            raise ValueError(f"output buffer too small: need {self.buffer_size(size)} octets")
        out[room : room + size] = inner_ip_packet
        return self.encapsulate_in_place(out, size)

    def encapsulate_in_place(
        self, buf: bytearray | memoryview, inner_len: int, offset: int = 0
    ) -> int:
        """Encapsulate the inner packet already at ``buf[offset + header_room:][:inner_len]``
        (e.g. read there straight from the TUN device) into ``buf[offset:]``, without
        copying it. Returns the ESP packet length, or 0 (counted) when refused as in
        `encapsulate`. ``buf[offset:]`` must hold `buffer_size(inner_len)` octets
        (ValueError otherwise)."""
        room = self.header_room
        start = offset + room
        if len(buf) - start < inner_len + self._extra_room - room or inner_len < 0 or offset < 0:
            raise ValueError(f"buffer too small: need {self.buffer_size(inner_len)} octets")
        version = buf[start] >> 4 if inner_len else 0
        if version == 4 or version == 6:  # noqa: PLR1714 - two compares beat a tuple here
            seq = next(self._counter)  # see _next_seq: atomic, never the same number twice
            if seq < self._soft_limit:
                self._seq = seq
            else:
                seq = self._at_soft_limit(seq)
                if not seq:
                    return 0
        else:
            self.counters.drop(DropReason.BAD_INNER_PACKET)
            return 0
        trailer = (self._trailers4 if version == 4 else self._trailers6)[
            -(inner_len + 2) % self._align
        ]
        end = start + inner_len
        payload_len = inner_len + len(trailer)
        buf[end : start + payload_len] = trailer
        length = self._seal_in_place(buf, offset, seq, payload_len)
        counters = self.counters
        counters.packets += 1
        counters.bytes += inner_len
        return length

    def __repr__(self) -> str:
        return f"OutboundSa(spi=0x{self.spi:08x}, suite={self.suite.name}, seq={self._seq})"


class InboundSa:
    """One inbound ESP SA (tunnel mode) with its anti-replay window (64..2048 packets).

    The constructor raises ValueError for a bad SPI, keymat length or window size;
    `decapsulate` and `decapsulate_into` never raise for any packet content.
    """

    __slots__ = (
        "_auth_failures",
        "_body_align",
        "_fixed_len",
        "_min_body",
        "_open",
        "_open_into",
        "_transform",
        "counters",
        "esn",
        "spi",
        "suite",
        "window",
    )

    def __init__(
        self,
        spi: int,
        suite: EspSuite,
        keymat: Secret,
        *,
        esn: bool = False,
        replay_window: int = DEFAULT_WINDOW,
    ) -> None:
        _check_spi(spi)
        self.spi = spi
        self.suite = suite
        self.esn = esn
        self.counters = SaCounters()
        self.window = ReplayWindow(replay_window, esn=esn)
        transform = _make_transform(suite, keymat, spi, esn, None)
        self._transform = transform
        self._open = transform.open
        self._open_into = transform.open_into
        # valid lengths: header + IV + ICV + a positive multiple of the alignment
        # (4 octets for GCM, RFC 4303 2.4; the AES block for CBC, RFC 3602 2.4)
        self._fixed_len = transform.header_room + suite.icv_bytes
        self._body_align = suite.pad_align
        self._min_body = suite.pad_align
        self._auth_failures = 0  # consecutive, for ESN re-synchronisation (RFC 4303 A3)

    def _process(
        self, packet: bytes | bytearray | memoryview, out: bytearray | memoryview | None
    ) -> bytes | int | DropReason:
        """The receive path of RFC 4303 3.4, in order, as one function (this is the hot
        path: every helper call would cost more than most of the checks):

        1. length and alignment (3.4.2 leaves malformed packets to the implementation),
        2. SPI (3.4.2),
        3. anti-replay check, ESN high half inferred first (3.4.3, Appendix A2.2),
        4. ICV in constant time / GCM tag (3.4.4), decrypting into ``out`` if given,
        5. window update, only now (3.4.3),
        6. padding 1, 2, 3, ... and pad length (2.4), next header (2.6: 4, 41, or 59 for
           a dummy packet, discarded), inner IP header and length (TFC padding after the
           inner packet, 2.7, is cut off using that length).

        Returns the inner packet (``out`` is None) or its length (written to ``out``), or
        the counted DropReason.
        """
        counters = self.counters
        body = len(packet) - self._fixed_len
        if body < self._min_body or body % self._body_align:
            return counters.drop(DropReason.MALFORMED)
        spi, seq = _SPI_SEQ.unpack_from(packet)
        if spi != self.spi:
            return counters.drop(DropReason.UNKNOWN_SPI)
        window = self.window
        if self.esn:
            seq = window.estimate(seq)
        # in-order arrival (the usual case) needs no bitmap lookup
        if seq <= window.top and not window.check(seq):
            return counters.drop(DropReason.REPLAY)
        plain: bytes | bytearray | memoryview
        if out is None:
            opened = self._open(packet, seq)
            if opened is None:
                found = self._resync(packet, seq, None)
                if found is None:
                    return counters.drop(DropReason.AUTH_FAILED)
                seq, opened, _ = found
            plain = opened
            size = len(plain)
        else:
            size = self._open_into(packet, seq, out)
            if size < 0:
                found = self._resync(packet, seq, out)
                if found is None:
                    return counters.drop(DropReason.AUTH_FAILED)
                seq, _, size = found
            plain = out
        self._auth_failures = 0
        window.update(seq)  # only after the ICV: forged packets never move the window

        result = self._inner_length(plain, size)
        if out is not None or not isinstance(result, int):
            return result
        return cast(bytes, plain)[:result]

    def _inner_length(self, plain: bytes | bytearray | memoryview, size: int) -> int | DropReason:
        """Step 6 of `_process` on the ``size`` decrypted octets in ``plain``: padding,
        next header and inner IP header; the inner packet's length (counted) or the
        counted reason for the drop."""
        counters = self.counters
        pad = plain[size - 2]
        end = size - 2 - pad
        if end < 0 or (pad and plain[end : size - 2] != _PADS[pad]):
            return counters.drop(DropReason.BAD_PADDING)
        nh = plain[size - 1]
        length: int
        if nh == NEXT_HEADER_IPV4:
            if end < 20:
                return counters.drop(DropReason.BAD_INNER_PACKET)
            first, length = _IPV4_START.unpack_from(plain)
            if first >> 4 != 4 or not 20 <= length <= end:
                return counters.drop(DropReason.BAD_INNER_PACKET)
        elif nh == NEXT_HEADER_IPV6:
            if end < 40:
                return counters.drop(DropReason.BAD_INNER_PACKET)
            first, length = _IPV6_START.unpack_from(plain)
            length += 40
            if first >> 4 != 6 or length > end:
                return counters.drop(DropReason.BAD_INNER_PACKET)
        elif nh == NEXT_HEADER_NONE:
            return counters.drop(DropReason.DUMMY_PACKET)
        else:
            return counters.drop(DropReason.BAD_NEXT_HEADER)
        counters.packets += 1
        counters.bytes += length
        return length

    def _resync(
        self,
        packet: bytes | bytearray | memoryview,
        seq: int,
        out: bytearray | memoryview | None,
    ) -> tuple[int, bytes, int] | None:
        """ESN re-synchronisation (RFC 4303 Appendix A3, a SHOULD for ESN): after
        `RESYNC_TRIGGER` consecutive authentication failures, the failing packet is tried
        again with the next `RESYNC_TRIES` values of the high half, in case more than 2^32
        packets were lost and the inferred high half fell behind the sender's. Success
        yields (sequence number, plaintext or b"", plaintext length) and the caller moves
        the window there (A3.2: T becomes that packet's number). One attempt per
        `RESYNC_TRIGGER` failures bounds the extra work forged packets can cause."""
        failures = self._auth_failures + 1
        if not self.esn or failures < RESYNC_TRIGGER:
            self._auth_failures = failures
            return None
        self._auth_failures = 0
        high, low = seq >> 32, seq & 0xFFFFFFFF
        for candidate_high in range(high + 1, min(high + 1 + RESYNC_TRIES, 1 << 32)):
            candidate = (candidate_high << 32) | low
            if out is None:
                opened = self._open(packet, candidate)
                if opened is not None:
                    return candidate, opened, len(opened)
            else:
                size = self._open_into(packet, candidate, out)
                if size >= 0:
                    return candidate, b"", size
        return None

    def decapsulate_run(
        self,
        data: memoryview,
        start: int,
        stop: int,
        segment: int,
        *,
        out: memoryview,
        deliver: Callable[[int], object],
    ) -> int:
        """Decapsulate the datagrams lying back to back in ``data[start:stop]``, each
        ``segment`` octets long but a shorter last one (one UDP GRO receive), for as long
        as they are ESP packets of this SA. Each inner packet is written to ``out[0:]``
        and ``deliver(length)`` is called before the next one overwrites it; drops are
        counted as by `decapsulate_into`. Returns the offset of the first datagram that is
        not this SA's (shorter than an ESP header, or another SPI), or ``stop``.

        The per-packet work of `decapsulate_into`, minus its per-call overhead: in-order
        packets (the usual case) take a short path; anything else goes through
        `_process`, the one place that implements all of RFC 4303 3.4. ``out`` must hold
        ``segment`` octets and not overlap ``data``. Never raises for any packet content.
        """
        spi_seq = _SPI_SEQ.unpack_from
        ipv4_start = _IPV4_START.unpack_from
        my_spi = self.spi
        window = self.window
        counters = self.counters
        open_into = self._open_into
        fixed_len = self._fixed_len
        body_align = self._body_align
        min_body = self._min_body
        short_path = not self.esn  # ESN numbers need the window's estimate: long path
        if len(out) < segment:
            raise ValueError("output buffer smaller than the segment size")
        packets = octets = 0  # delivered on the short path, added to the counters at the end
        off = start
        try:
            while off < stop:
                end = off + segment
                if end > stop:  # noqa: PLR1730 - min() is a call, and this runs per packet
                    end = stop
                if end - off < ESP_HEADER_BYTES:
                    break
                spi, seq = spi_seq(data, off)
                if spi != my_spi:
                    break
                packet = data[off:end]
                body = end - off - fixed_len
                off = end
                try:
                    # The short path: the next packet in order, authentic, carrying IPv4.
                    # It makes the same checks as `_process`, in the same order; every
                    # other case, drops included, is left to `_process` and its helpers.
                    if (
                        short_path
                        and seq == window.top + 1
                        and body >= min_body
                        and not body % body_align
                    ):
                        size = open_into(packet, seq, out)
                        if size < 0:
                            self._auth_failures += 1  # as `_resync` counts them without ESN
                            counters.drop(DropReason.AUTH_FAILED)
                            continue
                        self._auth_failures = 0
                        window.top = seq  # RFC 4303 3.4.3: slide the window by one
                        window.bitmap = ((window.bitmap << 1) | 1) & window.mask
                        pad = out[size - 2]
                        inner_end = size - 2 - pad
                        if (
                            out[size - 1] == NEXT_HEADER_IPV4
                            and inner_end >= 20  # also keeps the slice below non-negative
                            and (not pad or out[inner_end : size - 2] == _PADS[pad])
                        ):
                            first, length = ipv4_start(out)
                            if first >> 4 == 4 and 20 <= length <= inner_end:
                                packets += 1
                                octets += length
                                result = length
                            else:
                                result = self._inner_length(out, size)
                        else:
                            result = self._inner_length(out, size)
                    else:
                        result = cast("int | DropReason", self._process(packet, out))
                except Exception:  # a bug, not bad input: count it, never kill the datapath
                    counters.drop(DropReason.INTERNAL_ERROR)
                    continue
                # Outside the try: a failing sink is the caller's bug, not this packet's drop.
                if isinstance(result, int):
                    deliver(result)
        finally:
            counters.packets += packets
            counters.bytes += octets
        return off

    def decapsulate(self, esp_packet: bytes | bytearray | memoryview) -> bytes | DropReason:
        """The inner IP packet, or why the packet was dropped (counted). Never raises."""
        try:
            result = self._process(esp_packet, None)
        except Exception:  # a bug, not bad input: count it rather than kill the dataplane
            return self.counters.drop(DropReason.INTERNAL_ERROR)
        assert not isinstance(result, int)
        return result

    def decapsulate_into(
        self, esp_packet: bytes | bytearray | memoryview, out: bytearray | memoryview
    ) -> int | DropReason:
        """Like `decapsulate`, but writes the inner packet to ``out[0:]`` and returns its
        length. ``out`` must hold at least len(esp_packet) octets, else the packet is
        dropped as MALFORMED, and must not overlap ``esp_packet``. Never raises."""
        try:
            if len(out) < len(esp_packet):
                return self.counters.drop(DropReason.MALFORMED)
            result = self._process(esp_packet, out)
        except Exception:
            return self.counters.drop(DropReason.INTERNAL_ERROR)
        assert not isinstance(result, bytes)
        return result

    def __repr__(self) -> str:
        return f"InboundSa(spi=0x{self.spi:08x}, suite={self.suite.name}, top={self.window.top})"
