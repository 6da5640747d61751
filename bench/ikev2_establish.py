"""Time to establish an IKE SA with its Child SA: cgwd vs strongSwan as the initiator,
against the same responder (the lab's strongSwan AWS endpoint), in the same run. Root.

    python -m bench.ikev2_establish [--runs N] [--out FILE]

Both initiators offer the same proposals (AWS's whole supported set, strongest first, as
cgwd's ``proposals = "aws"`` does) to an endpoint restricted to one suite, so both pay the
same INVALID_KE_PAYLOAD round trip.
- cgwd: ``python -m cgwd.ike.run_tunnel``; the time from its ``ike_initiating`` log line to
  its ``child_installed`` line (both stamped by the host as it handles them).
- strongSwan: a charon (kernel-libipsec) in the same namespace; the wall time of
  ``swanctl --initiate`` (which returns when the Child SA is up) minus the median wall
  time of ``swanctl --stats`` (process start and vici round trip), measured alongside.
A benchmark, not a test: it prints and records, it asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import statistics
import subprocess
import sys
import time
from dataclasses import replace
from datetime import datetime
from pathlib import Path
from typing import Any

from cgwd.config.importers import load_aws_config
from cgwd.config.proposals import proposals_for
from cgwd.lab.aws_side import AwsLab, LabOptions
from cgwd.lab.strongswan import Charon, CharonSettings, wait_until

REPO = Path(__file__).resolve().parents[1]
AWS_CONFIG = REPO / "tests" / "data" / "aws" / "aws-describe-vpn-connections-static.xml"
ENDPOINT_IKE = "aes128gcm16-prfsha256-ecp256"
ENDPOINT_ESP = "aes128gcm16-ecp256"
STAMP = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) .* (ike_initiating|child_installed):")


def _stamp(text: str) -> float:
    return datetime.strptime(text, "%Y-%m-%d %H:%M:%S,%f").timestamp()


def cgwd_runs(lab: AwsLab, workdir: Path, runs: int) -> list[float]:
    out = []
    for k in range(runs):
        log = workdir / f"cgwd{k}.log"
        with log.open("w") as f:
            proc = lab.ns["cgw"].popen(
                sys.executable, "-m", "cgwd.ike.run_tunnel",
                "--aws-config", str(AWS_CONFIG), "--tunnel", "1",
                "--local-address", str(lab.cgw_local_ip),
                stdout=f, stderr=subprocess.STDOUT, cwd=str(REPO),
            )  # fmt: skip
            try:
                wait_until(
                    lambda log=log: "child_installed" in log.read_text(), 20, 0.05, "cgwd up"
                )
            finally:
                proc.send_signal(signal.SIGTERM)
                proc.wait(15)
        marks: dict[str, float] = {}
        for line in log.read_text().splitlines():
            m = STAMP.match(line)
            if m and m.group(2) not in marks:
                marks[m.group(2)] = _stamp(m.group(1))
        out.append(marks["child_installed"] - marks["ike_initiating"])
        lab.wait_tunnel_down(1, timeout=15)
    return out


def strongswan_conf(lab: AwsLab) -> str:
    tunnel = next(t for t in lab.connection.tunnels if t.index == 1)
    assert tunnel.pre_shared_key is not None
    ps = proposals_for(tunnel, "ikev2", fmt=lab.connection.format)
    cgw, aws = lab.cgw_outside_ip, tunnel.vpn_gateway_outside_ip
    return f"""connections {{
    t1 {{
        version = 2
        local_addrs = {lab.cgw_local_ip}
        remote_addrs = {aws}
        proposals = {ps.ike_strongswan()}
        local {{
            auth = psk
            id = {cgw}
        }}
        remote {{
            auth = psk
            id = {aws}
        }}
        children {{
            t1 {{
                local_ts = 0.0.0.0/0
                remote_ts = 0.0.0.0/0
                esp_proposals = {ps.esp_strongswan()}
            }}
        }}
    }}
}}
secrets {{
    ike-1 {{
        id-1 = {cgw}
        id-2 = {aws}
        secret = "{tunnel.pre_shared_key.reveal().decode()}"
    }}
}}
"""


def strongswan_runs(lab: AwsLab, workdir: Path, runs: int) -> tuple[list[float], float]:
    charon = Charon(
        lab.ns["cgw"],
        workdir / "ss",
        name="bench-initiator",
        settings=CharonSettings(log_levels={"default": 0}),
        swanctl_conf=strongswan_conf(lab),
    )
    (workdir / "ss").mkdir(exist_ok=True, mode=0o700)
    charon.start()
    try:
        overhead = []
        for _ in range(max(5, runs)):
            t0 = time.perf_counter()
            charon.swanctl("--stats")
            overhead.append(time.perf_counter() - t0)
        base = statistics.median(overhead)
        out = []
        for _ in range(runs):
            t0 = time.perf_counter()
            charon.swanctl("--initiate", "--child", "t1", "--timeout", "20")
            out.append(time.perf_counter() - t0 - base)
            charon.swanctl("--terminate", "--ike", "t1", "--timeout", "10", check=False)
            lab.wait_tunnel_down(1, timeout=15)
        return out, base
    finally:
        charon.stop()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.ikev2_establish")
    p.add_argument("--runs", type=int, default=7)
    p.add_argument("--out", type=Path, default=None)
    args = p.parse_args(argv)
    if os.geteuid() != 0:
        print("needs root (network namespaces) and strongSwan", file=sys.stderr)
        return 2
    conn = load_aws_config(AWS_CONFIG)
    with AwsLab(conn, LabOptions.for_tests(tunnels=(1,), lan=False)) as lab:
        lab.reconfigure(
            1,
            replace(lab.options.policy(1), ike_proposals=ENDPOINT_IKE, esp_proposals=ENDPOINT_ESP),
        )
        workdir = lab.workdir / "bench"
        workdir.mkdir(exist_ok=True)
        ours = cgwd_runs(lab, workdir, args.runs)
        theirs, base = strongswan_runs(lab, workdir, args.runs)
    result: dict[str, Any] = {
        "responder": f"strongSwan 5.9.8 endpoint restricted to {ENDPOINT_IKE} / {ENDPOINT_ESP}",
        "cgwd_ms_median": round(1000 * statistics.median(ours), 1),
        "strongswan_ms_median": round(1000 * statistics.median(theirs), 1),
        "swanctl_overhead_ms": round(1000 * base, 1),
        "cgwd_over_strongswan": round(statistics.median(ours) / statistics.median(theirs), 2),
        "runs": args.runs,
    }
    print(f"establish IKE SA + Child SA (median of {args.runs}):")
    print(f"  cgwd        {result['cgwd_ms_median']:8.1f} ms")
    print(f"  strongSwan  {result['strongswan_ms_median']:8.1f} ms "
          f"(swanctl overhead {result['swanctl_overhead_ms']} ms subtracted)")  # fmt: skip
    print(f"  ratio cgwd/strongSwan {result['cgwd_over_strongswan']}")
    if args.out is not None:
        args.out.write_text(json.dumps({"ikev2_establish": result}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
