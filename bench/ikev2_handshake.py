"""IKEv2 handshake cost: the responder's IKE_SA_INIT + IKE_AUTH (with its Child SA).

    python -m bench.ikev2_handshake [--count N] [--out FILE]

For each DH group, a fresh in-memory initiator (`IkeSession`) establishes an IKE SA with
one responder session, N times; only the responder's `receive_datagram` calls are timed,
giving responder handshakes per second. The reference, measured in the same run, is the
cryptography a responder cannot avoid for one handshake: one DH key generation and one
shared-secret computation of that group (cgwd.ike.crypto, which is OpenSSL for ECP and
Python's pow() for MODP). The ratio says how much of a handshake the protocol engine
(codec, negotiation, key schedule, AUTH, bookkeeping) adds on top of the DH cost.
A benchmark, not a test: it prints and records, it asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from dataclasses import replace
from ipaddress import IPv4Address
from pathlib import Path
from typing import Any

from cgwd.config.aws import AwsTunnel, DeadPeerDetection, PhaseSettings
from cgwd.config.proposals import proposals_for
from cgwd.ike.constants import ProtocolId
from cgwd.ike.crypto import dh_group
from cgwd.ike.rng import SystemRng
from cgwd.ike.v2.sa import IkeSessionConfig
from cgwd.ike.v2.session import IkeSession
from cgwd.ike.v2.wire import proposals_from_config
from cgwd.secret import Secret

INITIATOR, RESPONDER = "192.0.2.1", "198.51.100.1"
GROUPS = {19: "ecp256", 14: "modp2048", 21: "ecp521"}


def _config(local: str, remote: str, group: int) -> IkeSessionConfig:
    tunnel = AwsTunnel(
        index=1,
        customer_gateway_outside_ip=None,
        vpn_gateway_outside_ip=IPv4Address(remote),
        customer_gateway_inside_ip=None,
        vpn_gateway_inside_ip=None,
        inside_cidr=None,
        pre_shared_key=None,
        ike_version="ikev2",
        phase1=PhaseSettings(
            encryption_allowed=("AES128-GCM-16",),
            integrity_allowed=("SHA2-256",),
            dh_groups_allowed=(group,),
        ),
        phase2=PhaseSettings(
            encryption_allowed=("AES128-GCM-16",),
            integrity_allowed=("SHA2-256",),
            dh_groups_allowed=(group,),
        ),
        dpd=DeadPeerDetection(),
    )
    ps = proposals_for(tunnel, "ikev2", mode="file")
    return IkeSessionConfig(
        tunnel="bench",
        local_address=IPv4Address(local),
        remote_address=IPv4Address(remote),
        psk=Secret("bench_psk_123"),
        ike_proposals=proposals_from_config(ps.ike, ProtocolId.IKE),
        esp_proposals=proposals_from_config(ps.esp, ProtocolId.ESP),
    )


def responder_handshakes(group: int, count: int) -> list[float]:
    """Seconds of responder work per completed handshake."""
    rng = SystemRng()
    spis = iter(range(0x1000, 0x1000 + 10 * count))
    responder = IkeSession(
        replace(_config(RESPONDER, INITIATOR, group), half_open_cookie_threshold=10**6),
        rng,
        lambda: next(spis),
        0.0,
    )
    costs = []
    for i in range(count):
        initiator = IkeSession(
            _config(INITIATOR, RESPONDER, group), rng, lambda i=i: 0x100 + i, 0.0
        )
        initiator.initiate(0.0)
        spent = 0.0
        for _ in range(4):  # IKE_SA_INIT, IKE_AUTH
            for out in initiator.datagrams_to_send():
                t0 = time.perf_counter()
                responder.receive_datagram(out.data, (INITIATOR, 500), (RESPONDER, 500), 0.0)
                replies = responder.datagrams_to_send()
                spent += time.perf_counter() - t0
                for r in replies:
                    initiator.receive_datagram(r.data, (RESPONDER, 500), (INITIATOR, 500), 0.0)
        if initiator.status()["phase2"] != "Established":
            raise RuntimeError(f"handshake {i} with group {group} did not complete")
        responder.events()
        costs.append(spent)
        responder.terminate(0.0)  # keep the responder's state small between rounds
        responder.datagrams_to_send()
        responder.events()
    return costs


def dh_reference(group: int, count: int) -> list[float]:
    """Seconds for one key generation plus one shared secret in ``group``."""
    rng = SystemRng()
    g = dh_group(group)
    peer = g.generate(rng).public_bytes()
    costs = []
    for _ in range(count):
        t0 = time.perf_counter()
        g.generate(rng).shared_secret(peer)
        costs.append(time.perf_counter() - t0)
    return costs


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.ikev2_handshake")
    p.add_argument("--count", type=int, default=200)
    p.add_argument("--out", type=Path, default=None, help="write the figures as JSON")
    args = p.parse_args(argv)
    results: dict[str, Any] = {}
    print(f"{'group':>10} {'responder hs/s':>15} {'DH-only ops/s':>14} {'engine/DH cost':>15}")
    for group, name in GROUPS.items():
        hs = statistics.median(responder_handshakes(group, args.count))
        ref = statistics.median(dh_reference(group, args.count))
        results[name] = {
            "responder_handshakes_per_s": round(1 / hs, 1),
            "dh_reference_per_s": round(1 / ref, 1),
            "handshake_over_dh_cost": round(hs / ref, 2),
        }
        print(f"{name:>10} {1 / hs:15.1f} {1 / ref:14.1f} {hs / ref:14.2f}x")
    if args.out is not None:
        args.out.write_text(json.dumps({"ikev2_handshake": results}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
