"""Hot-path micro-benchmark of the ESP engine: encapsulate/decapsulate per packet.

For each suite and inner packet size (64, 512, 1400, 8192 octets by default) it measures:
- ``encap_us``: `OutboundSa.encapsulate` (returns a new bytes object),
- ``encap_inplace_us``: `OutboundSa.encapsulate_in_place` (inner already in the buffer,
  as when the dataplane reads the TUN device straight into it),
- ``decap_us``: `InboundSa.decapsulate` of distinct, valid packets (fresh SAs per batch so
  the replay window never short-cuts the work),
- ``decap_into_us``: `InboundSa.decapsulate_into` into a preallocated buffer,
- ``decap_run_us``: `InboundSa.decapsulate_run` over runs of 40 packets (one UDP GRO
  receive, as the datapath calls it), per packet,
and the throughputs in MB/s (10^6 bytes of inner packet per second). Best of several
repeats, one thread. `openssl_speed()` measures the reference on the same machine.

    python -m bench.esp_hotpath [--quick] [--json PATH] [--openssl]

Used by `make bench` through `run()`; a benchmark, never a test.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

from cgwd.esp import ALL_SUITES, EspSuite, InboundSa, OutboundSa, suite_by_name
from cgwd.secret import Secret

SIZES = (64, 512, 1400, 8192)
DEFAULT_SUITES = ("aes128gcm16", "aes256gcm16", "aes128-sha1", "aes256-sha256", "aes256-sha512")
SPI = 0x1234
GRO_RUN = 40  # datagrams per UDP GRO receive in the datapath at full speed


def _inner(size: int) -> bytes:
    header = bytearray.fromhex("450000000000000040110000c0000201c0000202")
    header[2:4] = min(size, 0xFFFF).to_bytes(2, "big")
    return bytes(header) + bytes(i % 251 for i in range(size - 20))


def _best(fn: Callable[[], float], repeats: int) -> float:
    return min(fn() for _ in range(repeats))


def measure(suite: EspSuite, size: int, *, batch: int = 2000, repeats: int = 5) -> dict[str, Any]:
    """One row: per-packet microseconds for each path, throughput in MB/s."""
    keymat = Secret(bytes(range(suite.keymat_bytes)))
    inner = _inner(size)

    def encap() -> float:
        sa = OutboundSa(SPI, suite, keymat)
        enc = sa.encapsulate
        start = time.perf_counter()
        for _ in range(batch):
            enc(inner)
        return (time.perf_counter() - start) / batch

    def encap_inplace() -> float:
        sa = OutboundSa(SPI, suite, keymat)
        buf = bytearray(sa.buffer_size(size))
        room = sa.header_room
        view = memoryview(buf)
        enc = sa.encapsulate_in_place
        start = time.perf_counter()
        for _ in range(batch):
            view[room : room + size] = inner  # stands in for the TUN read into the buffer
            enc(view, size)
        return (time.perf_counter() - start) / batch

    sender = OutboundSa(SPI, suite, keymat)
    packets = [sender.encapsulate(inner) or b"" for _ in range(batch)]

    def decap() -> float:
        sa = InboundSa(SPI, suite, keymat, replay_window=2048)
        dec = sa.decapsulate
        start = time.perf_counter()
        for packet in packets:
            dec(packet)
        elapsed = (time.perf_counter() - start) / batch
        assert sa.counters.packets == batch, sa.counters
        return elapsed

    def decap_into() -> float:
        sa = InboundSa(SPI, suite, keymat, replay_window=2048)
        out = bytearray(size + 200)
        dec = sa.decapsulate_into
        start = time.perf_counter()
        for packet in packets:
            dec(packet, out)
        elapsed = (time.perf_counter() - start) / batch
        assert sa.counters.packets == batch, sa.counters
        return elapsed

    def decap_run() -> float:
        # As the datapath gets them: runs of up to 40 packets from one UDP GRO receive.
        sa = InboundSa(SPI, suite, keymat, replay_window=2048)
        out = memoryview(bytearray(len(packets[0]) + 200))
        runs = [
            (memoryview(b"".join(packets[i : i + GRO_RUN])), len(packets[0]))
            for i in range(0, batch, GRO_RUN)
        ]
        dec = sa.decapsulate_run
        sink = [].append
        start = time.perf_counter()
        for data, segment in runs:
            dec(data, 0, len(data), segment, out=out, deliver=sink)
        elapsed = (time.perf_counter() - start) / batch
        assert sa.counters.packets == batch, sa.counters
        return elapsed

    encap_s = _best(encap, repeats)
    inplace_s = _best(encap_inplace, repeats)
    decap_s = _best(decap, repeats)
    decap_into_s = _best(decap_into, repeats)
    decap_run_s = _best(decap_run, repeats)
    return {
        "suite": suite.name,
        "size": size,
        "encap_us": round(encap_s * 1e6, 3),
        "decap_us": round(decap_s * 1e6, 3),
        "encap_mb_per_s": round(size / encap_s / 1e6, 1),
        "encap_inplace_us": round(inplace_s * 1e6, 3),
        "encap_inplace_mb_per_s": round(size / inplace_s / 1e6, 1),
        "decap_into_us": round(decap_into_s * 1e6, 3),
        "decap_run_us": round(decap_run_s * 1e6, 3),
        "decap_mb_per_s": round(size / decap_s / 1e6, 1),
    }


def run(
    suites: Sequence[str] | None = None,
    sizes: Sequence[int] = SIZES,
    *,
    quick: bool = False,
) -> list[dict[str, Any]]:
    """Rows for every (suite, size); ``suites`` are names (default: a representative set;
    ``["all"]`` for every suite). ``quick`` trades precision for time."""
    if suites is None:
        chosen = [suite_by_name(name) for name in DEFAULT_SUITES]
    elif list(suites) == ["all"]:
        chosen = list(ALL_SUITES)
    else:
        chosen = [suite_by_name(name) for name in suites]
    batch, repeats = (300, 3) if quick else (2000, 5)
    return [
        measure(suite, size, batch=batch, repeats=repeats) for suite in chosen for size in sizes
    ]


def openssl_speed(cipher: str = "aes-128-gcm", seconds: int = 1) -> dict[str, float]:
    """``openssl speed -evp CIPHER`` on this machine: {"1024": MB/s, "8192": MB/s, ...}
    (openssl prints kilobytes of 1000 bytes per second). Empty if openssl is missing."""
    if shutil.which("openssl") is None:
        return {}
    result = subprocess.run(
        ["openssl", "speed", "-evp", cipher, "-seconds", str(seconds), "-mr"],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    sizes: list[str] = []
    figures: dict[str, float] = {}
    for line in result.stdout.splitlines():
        if line.startswith("+H:"):
            sizes = line.split(":")[1:]
        elif line.startswith("+F:"):
            values = line.split(":")[3:]
            figures = {s: round(float(v) / 1e6, 1) for s, v in zip(sizes, values, strict=False)}
    if not figures:  # older output format: "aes-128-gcm  1234.5k ..."
        match = re.search(rf"^{re.escape(cipher)}\s+(.*)$", result.stdout, re.MULTILINE | re.I)
        if match:
            rates = [float(v.rstrip("k")) / 1e3 for v in match.group(1).split()]
            figures = dict(zip(["16", "64", "256", "1024", "8192", "16384"], rates, strict=False))
    return figures


def print_table(rows: list[dict[str, Any]], reference: dict[str, float] | None = None) -> None:
    head = f"{'suite':15} {'size':>5} {'encap us':>9} {'in-place':>9} {'decap us':>9} "
    head += f"{'into':>8} {'run':>8} {'encap MB/s':>10} {'in-place MB/s':>13}"
    if reference:
        head += f" {'vs openssl 1024':>15}"
    print(head)
    for row in rows:
        line = (
            f"{row['suite']:15} {row['size']:5} {row['encap_us']:9.2f} "
            f"{row['encap_inplace_us']:9.2f} {row['decap_us']:9.2f} {row['decap_into_us']:8.2f} "
            f"{row['decap_run_us']:8.2f} "
            f"{row['encap_mb_per_s']:10.1f} {row['encap_inplace_mb_per_s']:13.1f}"
        )
        if reference and "1024" in reference:
            line += f" {row['encap_inplace_mb_per_s'] / reference['1024']:14.0%}"
        print(line)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer packets, less precise")
    parser.add_argument("--suite", action="append", help="suite name (repeatable) or 'all'")
    parser.add_argument("--json", help="write the rows (and openssl figures) to this file")
    parser.add_argument("--openssl", action="store_true", help="measure openssl speed too")
    args = parser.parse_args(argv)
    reference = openssl_speed("aes-128-gcm") if args.openssl else {}
    if reference:
        print(f"openssl speed -evp aes-128-gcm (MB/s): {reference}")
    rows = run(args.suite, quick=args.quick)
    print_table(rows, reference)
    if args.json:
        with open(args.json, "w") as handle:
            json.dump({"hotpath": rows, "openssl": {"aes-128-gcm": reference}}, handle, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
