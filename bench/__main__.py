"""`make bench` (``python -m bench``): hot path, openssl reference, tunnels; ratios and JSON.

    python -m bench [--quick] [--out bench/results.json] [--no-tunnel] [--no-strongswan]

1. ``openssl speed -evp aes-128-gcm`` / ``aes-128-cbc`` on this machine (MB/s).
2. The ESP engine's hot path per suite and size (bench/esp_hotpath.py).
3. Tunnels (bench/tunnel.py, needs root): iperf3 TCP and UDP pps through cgwd <-> cgwd,
   strongSwan kernel-libipsec <-> kernel-libipsec (same suites, same run) and plain veth.
4. IKE (each its own module, run as a child process): DH and handshake crypto against
   OpenSSL (bench/ike_crypto.py), IKEv2 and IKEv1 responder handshakes per second against
   the DH cost (bench/ikev2_handshake.py, bench/ikev1_handshake.py), and the time to
   establish an IKE SA with its Child SA, cgwd vs strongSwan as initiator against the same
   responder (bench/ikev2_establish.py, needs root).

Prints each table, then the targets of issue 3 as ratios against the references measured in
this run, and writes everything to ``--out`` (the issue's shape, plus ``targets``, ``rss``
and ``meta``). A benchmark, not a test: nothing here fails on a missed target.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench import esp_hotpath

SUITES = ("aes128gcm16", "aes128-sha1")
TARGET_TCP_RATIO = 3.0  # cgwd TCP >= 3x strongSwan libipsec, same suite, same run
TARGET_ENCAP_SHARE = 0.35  # 1400-byte AES-128-GCM encap >= 35% of openssl's 1024-byte figure


def machine() -> dict[str, Any]:
    cpu = "unknown"
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(
                (line.split(":", 1)[1].strip() for line in f if line.startswith("model name")),
                "unknown",
            )
    except OSError:
        pass
    return {
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "host": platform.node(),
        "kernel": platform.release(),
        "cpu": cpu,
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "openssl": _version(["openssl", "version"]),
        "strongswan": _version(["/usr/lib/ipsec/charon", "--version"]),
        "iperf3": _version(["iperf3", "--version"]).split("\n")[0],
        # Other work on the machine skews every figure here: keep the load with them.
        "loadavg_start": [round(x, 2) for x in os.getloadavg()],
    }


def _version(cmd: list[str]) -> str:
    if shutil.which(cmd[0]) is None and not os.path.exists(cmd[0]):
        return "missing"
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=10, check=False)
    except OSError:
        return "missing"
    return (out.stdout or out.stderr).strip()


# Each optimisation of the datapath switched off in turn (issue 3: "measure each step").
ABLATION: tuple[tuple[str, dict[str, Any]], ...] = (
    ("naive: 1 packet per wakeup, no offloads", {"batch": 1, "use_gso": False,
                                                 "use_gro": False, "tun_coalesce": False}),
    ("+ batches of 64 per wakeup", {"use_gso": False, "use_gro": False, "tun_coalesce": False}),
    ("+ UDP GSO on send", {"use_gro": False, "tun_coalesce": False}),
    ("+ UDP GRO on receive", {"tun_coalesce": False}),
    ("+ TCP coalescing into TUN (all on)", {}),
)  # fmt: skip


def run_tunnels(
    tcp_seconds: int, udp_seconds: int, strongswan: bool, ablation: bool = False
) -> tuple[list[dict[str, Any]], str]:
    """Tunnel rows, or ([], reason) when they cannot run here."""
    if os.geteuid() != 0:
        return [], "needs root (network namespaces)"
    if shutil.which("iperf3") is None:
        return [], "needs iperf3"
    from bench.tunnel import TunnelBench  # noqa: PLC0415 - needs root and cgwd.lab

    bench = TunnelBench(tcp_seconds=tcp_seconds, udp_seconds=udp_seconds)
    rows: list[dict[str, Any]] = []

    def measure(impl: str, suite: str, fn: Callable[[], Any], step: str = "") -> None:
        # One failed measurement (e.g. charon not establishing) is recorded, not fatal.
        try:
            row = fn().as_json()
        except Exception as exc:
            row = {"impl": impl, "suite": suite, "tcp_mbps": 0.0, "udp_pps": 0,
                   "error": f"{type(exc).__name__}: {exc}"[:2000]}  # fmt: skip
        if step:
            row["impl"], row["step"] = "cgwd-ablation", step
            print(f"  {step:42}", end="")
        rows.append(row)
        _progress(row)

    try:
        measure("veth", "none", bench.veth)
        for suite in SUITES:
            measure("cgwd", suite, lambda s=suite: bench.cgwd(s))
            if strongswan:
                measure("strongswan", suite, lambda s=suite: bench.strongswan(s))
        if ablation:
            for label, options in ABLATION:
                measure(
                    "cgwd", "aes128gcm16",
                    lambda o=options: bench.cgwd("aes128gcm16", o, warmup=1),
                    step=label,
                )  # fmt: skip
    finally:
        bench.close()
    return rows, ""


def _progress(row: dict[str, Any]) -> None:
    if "error" in row:
        print(f"  {row['impl']:10} {row['suite']:12} FAILED: {row['error'][:300]}", flush=True)
        return
    cpu = row.get("datapath_cpu_s_per_gb")
    print(
        f"  {row['impl']:10} {row['suite']:12} TCP {row['tcp_mbps']:8.1f} Mbit/s"
        f"  UDP {row['udp_pps']:8d} pkt/s"
        + (f"  datapath CPU {cpu:6.2f} s/GB" if cpu is not None else ""),
        flush=True,
    )


def targets(results: dict[str, Any]) -> list[dict[str, Any]]:
    """The issue's targets as ratios of figures measured in this run."""
    out: list[dict[str, Any]] = []
    tunnel = {(r["impl"], r["suite"]): r for r in results.get("tunnel", [])}  # last wins
    for suite in SUITES:
        ours, theirs = tunnel.get(("cgwd", suite)), tunnel.get(("strongswan", suite))
        if ours and theirs and theirs["tcp_mbps"]:
            ratio = ours["tcp_mbps"] / theirs["tcp_mbps"]
            out.append(
                {
                    "target": f"TCP cgwd/strongSwan {suite}",
                    "ratio": round(ratio, 2),
                    "goal": TARGET_TCP_RATIO,
                    "met": ratio >= TARGET_TCP_RATIO,
                }
            )
        if ours and theirs and ours.get("datapath_cpu_s_per_gb"):
            # Noise-robust: what each datapath spends per byte, whatever else ran.
            out.append(
                {
                    "target": f"datapath CPU per byte strongSwan/cgwd {suite}",
                    "ratio": round(
                        theirs.get("datapath_cpu_s_per_gb", 0.0) / ours["datapath_cpu_s_per_gb"], 2
                    ),
                    "goal": None,
                    "met": None,
                }
            )
        if ours and theirs and theirs["udp_pps"]:
            out.append(
                {
                    "target": f"UDP pps cgwd/strongSwan {suite}",
                    "ratio": round(ours["udp_pps"] / theirs["udp_pps"], 2),
                    "goal": None,
                    "met": None,
                }
            )
    veth = tunnel.get(("veth", "none"))
    gcm = tunnel.get(("cgwd", "aes128gcm16"))
    if veth and gcm and veth["tcp_mbps"]:
        out.append(
            {
                "target": "TCP cgwd aes128gcm16 / plain veth",
                "ratio": round(gcm["tcp_mbps"] / veth["tcp_mbps"], 3),
                "goal": None,
                "met": None,
            }
        )
    reference = results.get("openssl", {}).get("aes-128-gcm", {}).get("1024")
    row = next(
        (
            r
            for r in results.get("hotpath", [])
            if r["suite"] == "aes128gcm16" and r["size"] == 1400
        ),
        None,
    )
    if reference and row:
        for key, label in (
            ("encap_inplace_mb_per_s", "in place, as the datapath does"),
            ("encap_mb_per_s", "returning bytes"),
        ):
            if key in row:
                share = row[key] / reference
                out.append(
                    {
                        "target": f"encap 1400 B aes128gcm16 ({label}) / openssl 1024 B",
                        "ratio": round(share, 3),
                        "goal": TARGET_ENCAP_SHARE,
                        "met": share >= TARGET_ENCAP_SHARE,
                    }
                )
    for r in results.get("tunnel", []):
        if "rss_kib_before" in r and r["impl"] == "cgwd":
            growth = max(
                after - before
                for before, after in zip(r["rss_kib_before"], r["rss_kib_after"], strict=True)
            )
            out.append(
                {
                    "target": f"RSS growth under load, cgwd {r['suite']} (KiB, worst side)",
                    "ratio": growth,
                    "goal": "flat",
                    "met": growth <= 1024,
                }
            )
    return out


# (results key, module, arguments (full, quick), needs root); each writes its JSON to the
# path given after its last argument.
IKE_BENCHES: tuple[tuple[str, str, tuple[list[str], list[str]], bool], ...] = (
    ("ike_crypto", "bench.ike_crypto", ([], ["--quick"]), False),
    ("ikev2_handshake", "bench.ikev2_handshake", (["--count", "200"], ["--count", "30"]), False),
    ("ikev1_handshake", "bench.ikev1_handshake", (["--count", "20"], ["--count", "5"]), False),
    ("ikev2_establish", "bench.ikev2_establish", (["--runs", "7"], ["--runs", "3"]), True),
)


def run_ike_benches(quick: bool, workdir: Path) -> dict[str, Any]:
    """Each IKE benchmark in a child process (they print their own tables)."""
    out: dict[str, Any] = {}
    for key, module, (full, short), needs_root in IKE_BENCHES:
        print(f"\n== IKE: python -m {module} ==", flush=True)
        if needs_root and os.geteuid() != 0:
            out[key] = {"skipped": "needs root (network namespaces)"}
            print("  skipped: needs root")
            continue
        path = workdir / f"{key}.json"
        flag = "--json" if module == "bench.ike_crypto" else "--out"
        cmd = [sys.executable, "-m", module, *(short if quick else full), flag, str(path)]
        proc = subprocess.run(cmd, check=False, timeout=900)
        if proc.returncode != 0 or not path.exists():
            out[key] = {"error": f"exit status {proc.returncode}"}
            continue
        document = json.loads(path.read_text())
        out[key] = document.get(key, document)
    return out


def print_tunnels(rows: list[dict[str, Any]]) -> None:
    print(f"{'impl':12} {'suite':13} {'TCP Mbit/s':>11} {'UDP pkt/s':>10}  RSS KiB before->after")
    for r in rows:
        rss = ""
        if "rss_kib_before" in r:
            rss = ", ".join(
                f"{b}->{a}" for b, a in zip(r["rss_kib_before"], r["rss_kib_after"], strict=True)
            )
        step = f"  [{r['step']}]" if "step" in r else ""
        print(
            f"{r['impl']:12} {r['suite']:13} {r['tcp_mbps']:11.1f} {r['udp_pps']:10d}  {rss}{step}"
        )


def print_targets(rows: list[dict[str, Any]]) -> None:
    print(f"{'target':62} {'measured':>9} {'goal':>6}  met")
    for t in rows:
        met = {True: "yes", False: "NO", None: "-"}[t["met"]]
        goal = "-" if t["goal"] is None else str(t["goal"])
        print(f"{t['target']:62} {t['ratio']:>9} {goal:>6}  {met}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="short runs (smoke test)")
    parser.add_argument("--out", default=str(Path(__file__).with_name("results.json")))
    parser.add_argument("--no-tunnel", action="store_true", help="skip the tunnel benchmark")
    parser.add_argument("--no-strongswan", action="store_true", help="skip strongSwan")
    parser.add_argument(
        "--no-ablation", action="store_true", help="skip re-running cgwd with each optimisation off"
    )
    parser.add_argument("--no-ike", action="store_true", help="skip the IKE benchmarks")
    args = parser.parse_args(argv)

    results: dict[str, Any] = {"meta": machine()}
    meta = results["meta"]
    print(
        f"cgwd benchmark, {meta['date']}, {meta['cpu']} x{meta['cores']}, "
        f"load average {meta['loadavg_start']}",
        flush=True,
    )

    print("\n== openssl speed -evp (MB/s, one core) ==", flush=True)
    seconds = 1 if args.quick else 3
    results["openssl"] = {
        cipher: esp_hotpath.openssl_speed(cipher, seconds)
        for cipher in ("aes-128-gcm", "aes-128-cbc")
    }
    for cipher, figures in results["openssl"].items():
        small, large = figures.get("1024", 0.0), figures.get("8192", 0.0)
        print(f"{cipher:12} 1024 B: {small:8.1f}  8192 B: {large:8.1f}")

    print("\n== ESP hot path (bench/esp_hotpath.py, one thread) ==", flush=True)
    results["hotpath"] = esp_hotpath.run(quick=args.quick)
    esp_hotpath.print_table(results["hotpath"], results["openssl"]["aes-128-gcm"])

    results["tunnel"] = []
    if not args.no_tunnel:
        print("\n== tunnels: iperf3 between two namespaces (ESP-in-UDP) ==", flush=True)
        tcp_s, udp_s = (3, 2) if args.quick else (10, 5)
        rows, why_not = run_tunnels(
            tcp_s, udp_s, strongswan=not args.no_strongswan, ablation=not args.no_ablation
        )
        results["tunnel"] = rows
        if why_not:
            print(f"  skipped: {why_not}")
            results["tunnel_skipped"] = why_not
        print_tunnels(rows)

    if not args.no_ike:
        with tempfile.TemporaryDirectory(prefix="cgwd-bench-") as tmp:
            results["ike"] = run_ike_benches(args.quick, Path(tmp))

    results["meta"]["loadavg_end"] = [round(x, 2) for x in os.getloadavg()]
    results["targets"] = targets(results)
    print("\n== targets (ratios against references measured in this run) ==")
    print_targets(results["targets"])

    with open(args.out, "w") as f:
        json.dump(results, f, indent=1)
        f.write("\n")
    print(f"\nload average at the end: {results['meta']['loadavg_end']}; wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
