"""TcpCoalescer against packets built and checked by scapy (an independent IP/TCP codec)."""

from __future__ import annotations

import struct

from hypothesis import given, settings
from hypothesis import strategies as st
from scapy.layers.inet import IP, TCP, UDP

from cgwd.dataplane.tcp_coalesce import VNET_HDR_LEN, TcpCoalescer

VNET = struct.Struct("<BBHHHH")


def seg(seq: int, payload: bytes, *, flags: str = "A", sport: int = 40000, **ip: object) -> bytes:
    fields = {"src": "10.0.0.1", "dst": "10.0.0.2", "flags": "DF", "id": 7, **ip}
    return bytes(
        IP(**fields)
        / TCP(sport=sport, dport=5201, seq=seq, ack=99, flags=flags, window=500,
              options=[("NOP", None), ("NOP", None), ("Timestamp", (1, 2))])
        / payload
    )  # fmt: skip


def run(packets: list[bytes]) -> list[bytes]:
    out: list[bytes] = []
    c = TcpCoalescer(lambda view: out.append(bytes(view)))
    for p in packets:
        framed = bytearray(VNET_HDR_LEN) + p
        c.add(memoryview(framed))
    c.flush()
    return out


def complete_checksum(packet: bytes) -> int:
    """Finish a CHECKSUM_PARTIAL TCP checksum as the kernel would (RFC 1071 sum)."""
    ihl = (packet[0] & 0x0F) * 4
    data = packet[ihl:]
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def test_a_run_of_segments_becomes_one_gso_packet_with_valid_headers() -> None:
    payloads = [bytes([i]) * 1000 for i in range(5)] + [b"\xee" * 300]
    packets = []
    seq = 1000
    for i, p in enumerate(payloads):
        packets.append(seg(seq, p, flags="PA" if i == len(payloads) - 1 else "A"))
        seq += len(p)
    out = run(packets)
    assert len(out) == 1
    flags, gso_type, hdr_len, gso_size, csum_start, csum_offset = VNET.unpack_from(out[0])
    assert (flags, gso_type, gso_size, csum_start, csum_offset) == (1, 1, 1000, 20, 16)
    merged = out[0][VNET_HDR_LEN:]
    parsed = IP(merged)
    assert hdr_len == 20 + parsed[TCP].dataofs * 4 == 52
    assert parsed.len == len(merged) == 52 + 5300
    assert bytes(parsed[TCP].payload) == b"".join(payloads)
    assert parsed[TCP].seq == 1000 and "P" in str(parsed[TCP].flags)
    # IP checksum as scapy computes it from scratch.
    rebuilt = parsed.copy()
    del rebuilt.chksum
    del rebuilt[TCP].chksum
    reference = IP(bytes(rebuilt))
    assert parsed.chksum == reference.chksum
    # The partial checksum completes to the checksum of the whole merged segment.
    assert complete_checksum(merged) == reference[TCP].chksum


def test_single_and_non_tcp_packets_pass_unchanged_and_in_order() -> None:
    udp = bytes(IP(src="10.0.0.1", dst="10.0.0.2") / UDP(sport=1, dport=2) / b"hello")
    a = seg(1, b"x" * 100)
    b = seg(101, b"y" * 100)
    lone = seg(5000, b"z" * 10, sport=40001)
    out = run([a, b, udp, lone])
    assert len(out) == 3
    assert VNET.unpack_from(out[0])[1] == 1  # a+b merged
    assert out[1] == bytes(VNET_HDR_LEN) + udp
    assert out[2] == bytes(VNET_HDR_LEN) + lone


def test_runs_break_on_gaps_other_flows_flags_and_longer_segments() -> None:
    cases = {
        "gap": [seg(1, b"a" * 100), seg(150, b"b" * 100)],
        "flow": [seg(1, b"a" * 100), seg(101, b"b" * 100, sport=40001)],
        "syn": [seg(1, b"a" * 100), seg(101, b"b" * 100, flags="SA")],
        "fin": [seg(1, b"a" * 100), seg(101, b"b" * 100, flags="FA")],
        "longer": [seg(1, b"a" * 100), seg(101, b"b" * 200)],
        "ttl": [seg(1, b"a" * 100), seg(101, b"b" * 100, ttl=3)],
        "no-df": [seg(1, b"a" * 100), seg(101, b"b" * 100, flags=0)],
    }
    for name, packets in cases.items():
        out = run(packets)
        assert [o[VNET_HDR_LEN:] for o in out] == packets, name
        assert all(o[:VNET_HDR_LEN] == bytes(VNET_HDR_LEN) for o in out), name


def test_a_short_segment_ends_the_run_and_the_next_starts_a_new_one() -> None:
    packets = [seg(1, b"a" * 100), seg(101, b"b" * 50), seg(151, b"c" * 100), seg(251, b"d" * 100)]
    out = run(packets)
    assert len(out) == 2
    first, second = IP(out[0][VNET_HDR_LEN:]), IP(out[1][VNET_HDR_LEN:])
    assert bytes(first[TCP].payload) == b"a" * 100 + b"b" * 50
    assert bytes(second[TCP].payload) == b"c" * 100 + b"d" * 100 and second[TCP].seq == 151


def test_never_exceeds_an_ipv4_packet() -> None:
    packets = [seg(1 + i * 1400, bytes([i % 256]) * 1400) for i in range(100)]
    out = run(packets)
    total = b""
    for o in out:
        p = IP(o[VNET_HDR_LEN:])
        assert p.len <= 65535
        total += bytes(p[TCP].payload)
    assert total == b"".join(bytes([i % 256]) * 1400 for i in range(100))


@settings(max_examples=200, deadline=None)
@given(st.lists(st.binary(min_size=0, max_size=120), max_size=12))
def test_arbitrary_bytes_never_raise_and_non_ip_passes_through(blobs: list[bytes]) -> None:
    out = run(blobs)
    passthrough = [b for b in blobs if not (len(b) >= 40 and b[0] == 0x45 and b[9] == 6)]
    for blob in passthrough:
        assert bytes(VNET_HDR_LEN) + blob in out
