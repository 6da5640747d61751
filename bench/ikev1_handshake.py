"""IKEv1 handshake cost: the responder's Main Mode + Quick Mode with PFS.

    python -m bench.ikev1_handshake [--count N] [--out FILE]

For each suite, a fresh in-memory initiator (`Ikev1Session`) establishes an ISAKMP SA and
one IPsec SA pair (PFS in the same group) with one responder session, N times; only the
responder's `receive_datagram` calls are timed, giving responder handshakes per second.
The reference, measured in the same run, is the cryptography a responder cannot avoid:
two DH key generations and two shared-secret computations of that group (Main Mode and
the Quick Mode's PFS). The ratio says how much the protocol engine (codec, negotiation,
key schedule, hashes, CBC) adds on top of the DH cost. It prints and records; it asserts
nothing.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from ipaddress import IPv4Address
from pathlib import Path
from typing import Any

from cgwd.esp.suites import suite_by_name
from cgwd.ike.crypto import dh_group
from cgwd.ike.rng import SystemRng
from cgwd.ike.v1.constants import P1Hash
from cgwd.ike.v1.keys import Phase1Suite
from cgwd.ike.v1.sa import Ikev1SessionConfig
from cgwd.ike.v1.session import Ikev1Session
from cgwd.secret import Secret

INITIATOR, RESPONDER = "192.0.2.1", "198.51.100.1"
SUITES = {
    "aes128-sha1-modp1024 (AWS default)": Phase1Suite(128, P1Hash.SHA1, 2),
    "aes256-sha256-modp2048": Phase1Suite(256, P1Hash.SHA2_256, 14),
    "aes256-sha256-ecp256": Phase1Suite(256, P1Hash.SHA2_256, 19),
}


def _config(local: str, remote: str, suite: Phase1Suite) -> Ikev1SessionConfig:
    return Ikev1SessionConfig(
        tunnel="bench",
        local_address=IPv4Address(local),
        remote_address=IPv4Address(remote),
        psk=Secret("bench_psk_1234"),
        phase1_suites=(suite,),
        esp_suites=(suite_by_name("aes128-sha1"),),
        pfs_groups=(suite.group,),
        dpd_delay=3600.0,
    )


def _one(suite: Phase1Suite, spi: list[int]) -> float:
    """Seconds the responder spent in receive_datagram for one MM + QM."""
    rng = SystemRng()

    def alloc() -> int:
        spi[0] += 1
        return spi[0]

    now = 1000.0
    ini = Ikev1Session(_config(INITIATOR, RESPONDER, suite), rng, alloc, now)
    res = Ikev1Session(_config(RESPONDER, INITIATOR, suite), rng, alloc, now)
    ini.initiate(now)
    spent = 0.0
    for _ in range(40):
        out = ini.datagrams_to_send()
        for d in out:
            t0 = time.perf_counter()
            res.receive_datagram(d.data, (INITIATOR, d.src_port), (RESPONDER, d.dst[1]), now)
            spent += time.perf_counter() - t0
        back = res.datagrams_to_send()
        for d in back:
            ini.receive_datagram(d.data, (RESPONDER, d.src_port), (INITIATOR, d.dst[1]), now)
        if not out and not back:
            now += 0.1  # deferred Quick Mode messages leave on the next timer tick
            ini.handle_timer(now)
            res.handle_timer(now)
            if res.children and all(c.out_installed for c in res.children.values()):
                break
    if not res.children:
        raise RuntimeError("handshake did not complete")
    return spent


def _reference(group: int, count: int) -> float:
    """Seconds for 2 x (generate + shared secret) in ``group``."""
    g = dh_group(group)
    rng = SystemRng()
    peers = [g.generate(rng).public_bytes() for _ in range(4)]
    times = []
    for i in range(count):
        t0 = time.perf_counter()
        for j in range(2):
            priv = g.generate(rng)
            priv.public_bytes()
            priv.shared_secret(peers[(i + j) % len(peers)])
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def run(count: int) -> dict[str, Any]:
    results: dict[str, Any] = {}
    spi = [0x1000]
    for name, suite in SUITES.items():
        _one(suite, spi)  # warm up
        times = [_one(suite, spi) for _ in range(count)]
        median = statistics.median(times)
        ref = _reference(suite.group, count)
        results[name] = {
            "responder_handshakes_per_s": round(1.0 / median, 1),
            "responder_ms": round(median * 1000, 2),
            "reference_2dh_ms": round(ref * 1000, 2),
            "ratio_to_reference": round(median / ref, 2),
        }
        print(
            f"{name:38s} {1.0 / median:8.1f} handshakes/s  responder {median * 1000:7.2f} ms"
            f"  2xDH {ref * 1000:7.2f} ms  ratio {median / ref:5.2f}"
        )
    return results


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--count", type=int, default=20)
    p.add_argument("--out", type=Path, default=None)
    args = p.parse_args()
    results = run(args.count)
    if args.out is not None:
        args.out.write_text(json.dumps({"ikev1_handshake": results}, indent=1) + "\n")


if __name__ == "__main__":
    main()
