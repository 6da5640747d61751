"""Traffic generators and checkers run inside test namespaces (``python traffic_tools.py CMD``).

Each command prints one JSON line with its result. Every wait is bounded by a timeout.

    ping DST COUNT                       ICMP echo (raw socket), replies counted
    tcp-echo-server BIND PORT            accept one connection, echo it back, then exit
    tcp-client DST PORT BYTES [MAX_WRITE] send BYTES random bytes, read the echo; sha256 of both
                                         (MAX_WRITE: writes of 1..MAX_WRITE octets with TCP_NODELAY,
                                         so segments of many sizes, most short, leave)
    udp-sink BIND PORT SECONDS           count datagrams carrying 8-byte sequence numbers
    udp-stream DST PORT RATE SECONDS     send sequence-numbered datagrams at RATE per second
    flood-udp SRC DST SECONDS SPIS       garbage to DST:4500 from SRC:4500 (SO_REUSEPORT)
    flood-raw SRC DST SECONDS SPIS       garbage as raw ESP (IP protocol 50)
    send-udp SRC DST HEXFILE             one datagram from SRC:4500 to DST:4500, twice
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import random
import select
import socket
import struct
import sys
import time


def checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def ping(dst: str, count: int) -> dict[str, object]:
    sock = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
    ident = os.getpid() & 0xFFFF
    replies = 0
    for seq in range(count):
        payload = os.urandom(56)
        header = struct.pack("!BBHHH", 8, 0, 0, ident, seq)
        packet = struct.pack("!BBHHH", 8, 0, checksum(header + payload), ident, seq) + payload
        sock.sendto(packet, (dst, 0))
        deadline = time.monotonic() + 1.0
        while (left := deadline - time.monotonic()) > 0:
            ready, _, _ = select.select([sock], [], [], left)
            if not ready:
                break
            data = sock.recv(2048)
            ihl = (data[0] & 0x0F) * 4
            icmp = data[ihl:]
            kind, _code, _ck, rid, rseq = struct.unpack("!BBHHH", icmp[:8])
            if kind == 0 and rid == ident and rseq == seq and icmp[8:] == payload:
                replies += 1
                break
    return {"sent": count, "received": replies}


def tcp_echo_server(bind: str, port: int) -> dict[str, object]:
    srv = socket.socket()
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind((bind, port))
    srv.listen(1)
    srv.settimeout(30)
    print(json.dumps({"listening": True}), flush=True)
    conn, _ = srv.accept()
    conn.settimeout(30)
    total = 0
    while True:
        data = conn.recv(65536)
        if not data:
            break
        conn.sendall(data)
        total += len(data)
    conn.close()
    return {"echoed": total}


def tcp_client(dst: str, port: int, size: int, max_write: int = 0) -> dict[str, object]:
    data = os.urandom(size)
    conn = socket.create_connection((dst, port), timeout=30)
    rng = random.Random(size)
    if max_write:
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sent_hash = hashlib.sha256(data).hexdigest()
    received = hashlib.sha256()
    got = 0
    view = memoryview(data)
    offset = 0
    conn.setblocking(False)
    deadline = time.monotonic() + 60
    while got < size and time.monotonic() < deadline:
        want_write = [conn] if offset < size else []
        readable, writable, _ = select.select([conn], want_write, [], 1.0)
        if writable:
            with contextlib.suppress(BlockingIOError):
                step = rng.randint(1, max_write) if max_write else 65536
                offset += conn.send(view[offset : offset + step])
            if offset >= size:
                conn.shutdown(socket.SHUT_WR)
        if readable:
            chunk = conn.recv(65536)
            if not chunk:
                break
            received.update(chunk)
            got += len(chunk)
    conn.close()
    return {"sent_sha256": sent_hash, "echo_sha256": received.hexdigest(), "echoed": got}


def udp_sink(bind: str, port: int, seconds: float) -> dict[str, object]:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    # 8 MB (SO_RCVBUFFORCE, root): a busy machine may deschedule this process for a while,
    # and a loss here would be blamed on the tunnel.
    sock.setsockopt(socket.SOL_SOCKET, 33, 8 << 20)
    sock.bind((bind, port))
    print(json.dumps({"listening": True}), flush=True)
    seen: set[int] = set()
    highest = -1
    deadline = time.monotonic() + seconds
    while (left := deadline - time.monotonic()) > 0:
        ready, _, _ = select.select([sock], [], [], left)
        if not ready:
            continue
        data = sock.recv(2048)
        if len(data) >= 8:
            seq = struct.unpack("!Q", data[:8])[0]
            if seq == 0xFFFFFFFFFFFFFFFF:  # end marker: the sender is done
                break
            seen.add(seq)
            highest = max(highest, seq)
    missing = [s for s in range(highest + 1) if s not in seen]
    return {
        "received": len(seen),
        "highest": highest,
        "missing": missing[:50],
        "missing_count": len(missing),
    }


def udp_stream(dst: str, port: int, rate: float, seconds: float) -> dict[str, object]:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.connect((dst, port))
    interval = 1.0 / rate
    start = time.monotonic()
    seq = 0
    while time.monotonic() - start < seconds:
        sock.send(struct.pack("!Q", seq) + b"x" * 92)
        seq += 1
        next_at = start + seq * interval
        delay = next_at - time.monotonic()
        if delay > 0:
            time.sleep(delay)
    time.sleep(0.3)  # let the last ones arrive before the end marker
    for _ in range(3):
        sock.send(struct.pack("!Q", 0xFFFFFFFFFFFFFFFF))
    return {"sent": seq}


def _garbage(rng: random.Random, spis: list[int]) -> bytes:
    kind = rng.randrange(6)
    if kind == 0:  # random bytes of random size
        return rng.randbytes(rng.randrange(1, 1500))
    if kind == 1:  # truncated ESP header
        return rng.randbytes(rng.randrange(1, 8))
    if kind == 2:  # known SPI, garbage body (forged: fails the ICV)
        return struct.pack("!II", rng.choice(spis), rng.randrange(1, 1 << 32)) + rng.randbytes(
            rng.randrange(0, 1400)
        )
    if kind == 3:  # unknown SPI
        return struct.pack("!II", rng.randrange(256, 1 << 32), 1) + rng.randbytes(100)
    if kind == 4:  # known SPI, well-aligned length, bad ICV
        return struct.pack("!II", rng.choice(spis), rng.randrange(1, 1 << 32)) + rng.randbytes(
            8 + 16 * rng.randrange(1, 60) + 16
        )
    return struct.pack("!II", rng.choice(spis), 0) + b"\0" * 64  # sequence number 0


def flood(src: str, dst: str, seconds: float, spis: list[int], raw: bool) -> dict[str, object]:
    if raw:
        sock = socket.socket(socket.AF_INET, socket.SOCK_RAW, 50)
        sock.bind((src, 0))
        target: tuple[str, int] = (dst, 0)
    else:
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind((src, 4500))
        target = (dst, 4500)
    rng = random.Random(1234)
    sent = 0
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        for _ in range(100):
            try:
                sock.sendto(_garbage(rng, spis), target)
                sent += 1
            except OSError:
                pass
    return {"sent": sent}


def send_udp_twice(src: str, dst: str, hexfile: str) -> dict[str, object]:
    with open(hexfile) as f:
        data = bytes.fromhex(f.read().strip())
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((src, 4500))
    for _ in range(2):
        sock.sendto(data, (dst, 4500))
        time.sleep(0.1)
    return {"sent": 2}


def main(argv: list[str]) -> None:
    cmd, args = argv[0], argv[1:]
    if cmd == "ping":
        result = ping(args[0], int(args[1]))
    elif cmd == "tcp-echo-server":
        result = tcp_echo_server(args[0], int(args[1]))
    elif cmd == "tcp-client":
        result = tcp_client(args[0], int(args[1]), int(args[2]), *map(int, args[3:4]))
    elif cmd == "udp-sink":
        result = udp_sink(args[0], int(args[1]), float(args[2]))
    elif cmd == "udp-stream":
        result = udp_stream(args[0], int(args[1]), float(args[2]), float(args[3]))
    elif cmd in ("flood-udp", "flood-raw"):
        spis = [int(s, 0) for s in args[3].split(",")]
        result = flood(args[0], args[1], float(args[2]), spis, cmd == "flood-raw")
    elif cmd == "send-udp":
        result = send_udp_twice(args[0], args[1], args[2])
    else:
        raise SystemExit(f"unknown command {cmd}")
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
