"""Tunnel benchmark: iperf3 through cgwd <-> cgwd, strongSwan libipsec <-> libipsec, veth.

Two namespaces ``a`` and ``b`` joined by one veth (outside addresses 192.0.2.1/.2). Each
implementation in turn carries the traffic between inside addresses on its tunnel device
(cgwd: 169.254.10.2 -> .1 over ``cgt0``; strongSwan: 169.254.20.2 -> .1 over ``ipsec0``);
"veth" runs iperf3 between the outside addresses with no tunnel, as the ceiling. Both
tunnel implementations use ESP-in-UDP (kernel-libipsec can do nothing else) with the same
ESP suite, on the same machine, in the same run, so their ratio is meaningful.

Per (implementation, suite): iperf3 TCP for ``tcp_seconds`` (Mbit/s, receiver side, with
the sender's retransmissions and the CPU the datapath processes and the whole machine spent
per gigabyte received, see `measure_tcp`) and
iperf3 UDP with 64-byte payloads offered at 100 Mbit/s (about 195k packets/s, more than
either tunnel carries) for ``udp_seconds`` (packets/s that arrived). For cgwd, the RSS of
both datapath processes before and after the load.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cgwd.dataplane.static_pair import Side, StaticPair, link_outside
from cgwd.errors import CgwdError
from cgwd.lab.netns import Netns, Topology
from cgwd.lab.strongswan import Charon, CharonSettings

A_OUT, B_OUT = "192.0.2.1", "192.0.2.2"
CGWD_A_IN, CGWD_B_IN = "169.254.10.2", "169.254.10.1"
SWAN_A_IN, SWAN_B_IN = "169.254.20.2", "169.254.20.1"
# IKE proposal for the strongSwan pair (only the ESP suite matters for the datapath).
SWAN_IKE = "aes128gcm16-prfsha256-x25519"
SWAN_ESP = {"aes128gcm16": "aes128gcm16", "aes128-sha1": "aes128-sha1"}
UDP_PAYLOAD = 64
# Offered UDP load: 100 Mbit/s of 64-byte payloads is about 195k packets/s, above what
# either tunnel delivers, yet it leaves iperf3 a bounded share of the CPU (with "-b 0" the
# sender takes a whole core and the figure mostly measures the scheduler).
UDP_OFFERED = "100M"


@dataclass
class TunnelResult:
    impl: str
    suite: str
    tcp_mbps: float
    udp_pps: int
    extra: dict[str, Any] = field(default_factory=dict)

    def as_json(self) -> dict[str, Any]:
        return {
            "impl": self.impl,
            "suite": self.suite,
            "tcp_mbps": self.tcp_mbps,
            "udp_pps": self.udp_pps,
            **self.extra,
        }


def _iperf_server(ns: Netns, bind: str) -> subprocess.Popen[bytes]:
    proc = ns.popen(
        "iperf3", "-s", "-1", "-B", bind, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    time.sleep(0.3)
    return proc


def iperf_tcp(client: Netns, server: Netns, dst: str, seconds: int) -> float:
    """Receiver-side TCP goodput in Mbit/s (0.0 if the run failed)."""
    return float(measure_tcp(client, server, dst, seconds)["tcp_mbps"])


def measure_tcp(
    client: Netns, server: Netns, dst: str, seconds: int, datapath_pids: tuple[int, ...] = ()
) -> dict[str, Any]:
    """One iperf3 TCP run: receiver-side goodput (Mbit/s), the sender's retransmissions,
    and what the data cost in CPU: seconds of CPU (user + system, all threads) of the
    datapath processes, and busy CPU of the whole machine, per 10^9 bytes received.

    CPU per byte is the figure that survives a shared machine: goodput falls when other
    work takes the cores, the datapath's cost per byte hardly moves (the machine's does,
    by whatever else ran)."""
    srv = _iperf_server(server, dst)
    try:
        user_before, system_before = _process_ticks(datapath_pids)
        machine_before = _machine_busy_ticks()
        out = client.run(
            "iperf3", "-c", dst, "-t", str(seconds), "-J", check=False, timeout=seconds + 30
        )
        user_after, system_after = _process_ticks(datapath_pids)
        user_ticks, system_ticks = user_after - user_before, system_after - system_before
        machine_ticks = _machine_busy_ticks() - machine_before
        end = json.loads(out.stdout or "{}").get("end", {})
    finally:
        _reap(srv)
    received = end.get("sum_received", {})
    gigabytes = float(received.get("bytes", 0)) / 1e9
    result: dict[str, Any] = {
        "tcp_mbps": round(float(received.get("bits_per_second", 0.0)) / 1e6, 1),
        "tcp_retransmits": int(end.get("sum_sent", {}).get("retransmits", 0) or 0),
    }
    if gigabytes:
        if datapath_pids:
            per_gb = 1 / _HZ / gigabytes
            result["datapath_cpu_s_per_gb"] = round((user_ticks + system_ticks) * per_gb, 3)
            # User time is the datapath's own code (Python and the crypto library);
            # system time its syscalls and whatever the kernel does in them.
            result["datapath_user_cpu_s_per_gb"] = round(user_ticks * per_gb, 3)
        result["machine_cpu_s_per_gb"] = round(machine_ticks / _HZ / gigabytes, 3)
    return result


_HZ = os.sysconf("SC_CLK_TCK")


def _process_ticks(pids: tuple[int, ...]) -> tuple[int, int]:
    """User and system time of the processes, all their threads (/proc/PID/stat, proc(5))."""
    user = system = 0
    for pid in pids:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        user += int(fields[11])  # utime and stime: fields 14 and 15 of the whole line
        system += int(fields[12])
    return user, system


def _machine_busy_ticks() -> int:
    """All CPUs' busy time (everything but idle and iowait) from /proc/stat."""
    with open("/proc/stat") as f:
        ticks = [int(x) for x in f.readline().split()[1:]]
    return sum(ticks[:8]) - ticks[3] - ticks[4]


def iperf_udp_pps(client: Netns, server: Netns, dst: str, seconds: int) -> int:
    """Packets per second that reached the server, 64-byte payloads offered at UDP_OFFERED."""
    srv = _iperf_server(server, dst)
    try:
        out = client.run(
            "iperf3", "-c", dst, "-u", "-b", UDP_OFFERED, "-l", str(UDP_PAYLOAD),
            "-t", str(seconds), "-J", check=False, timeout=seconds + 30,
        )  # fmt: skip
        data = json.loads(out.stdout or "{}")
        total = data.get("end", {}).get("sum", {})
        packets = int(total.get("packets", 0)) - int(total.get("lost_packets", 0))
        duration = float(total.get("seconds", seconds)) or float(seconds)
        return int(packets / duration)
    finally:
        _reap(srv)


def _reap(proc: subprocess.Popen[bytes]) -> None:
    try:
        proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=5)


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


class TunnelBench:
    """Owns the topology for the whole tunnel benchmark; `close()` removes everything."""

    def __init__(self, tcp_seconds: int = 10, udp_seconds: int = 5) -> None:
        self.tcp_seconds = tcp_seconds
        self.udp_seconds = udp_seconds
        self.topo = Topology()
        self.workdir = Path(tempfile.mkdtemp(prefix="cgb-"))
        self.a = self.topo.add_netns("a")
        self.b = self.topo.add_netns("b")
        side_a = Side(self.a, A_OUT, f"{CGWD_A_IN}/30", "cgt0")
        side_b = Side(self.b, B_OUT, f"{CGWD_B_IN}/30", "cgt0")
        link_outside(self.topo, side_a, side_b)
        self.side_a, self.side_b = side_a, side_b

    def close(self) -> None:
        self.topo.close()
        shutil.rmtree(self.workdir, ignore_errors=True)

    def veth(self) -> TunnelResult:
        tcp = measure_tcp(self.a, self.b, B_OUT, self.tcp_seconds)
        pps = iperf_udp_pps(self.a, self.b, B_OUT, self.udp_seconds)
        return TunnelResult("veth", "none", tcp.pop("tcp_mbps"), pps, tcp)

    def cgwd(
        self, suite: str, datapath: dict[str, Any] | None = None, *, warmup: int = 2
    ) -> TunnelResult:
        """cgwd <-> cgwd; ``datapath`` overrides UserspaceDataplane options (ablation)."""
        pair = StaticPair(self.side_a, self.side_b, suite, encap=True, datapath=datapath or {})
        pair.start()
        try:
            # Warm up (allocations, socket buffers) before the "before" RSS sample.
            iperf_tcp(self.a, self.b, CGWD_B_IN, warmup)
            pids = (pair.pid(self.side_a), pair.pid(self.side_b))
            before = [rss_kib(p) for p in pids]
            tcp = measure_tcp(self.a, self.b, CGWD_B_IN, self.tcp_seconds, pids)
            pps = iperf_udp_pps(self.a, self.b, CGWD_B_IN, self.udp_seconds)
            after = [rss_kib(p) for p in pids]
            stats = pair.command(self.side_b, "stats")
        finally:
            errors = pair.stop()
        crashed = {k: v for k, v in errors.items() if "Traceback" in v}
        if crashed:
            raise CgwdError(f"cgwd datapath crashed during the benchmark: {crashed}")
        return TunnelResult(
            "cgwd",
            suite,
            tcp.pop("tcp_mbps"),
            pps,
            {
                **tcp,
                "rss_kib_before": before,
                "rss_kib_after": after,
                "rx_drops": stats.get("tunnel", {}).get("drops", {}),
                **({"datapath": datapath} if datapath else {}),
            },
        )

    def strongswan(self, suite: str) -> TunnelResult:
        charons = []
        psk = os.urandom(16).hex()  # both ends share it; it only lives in 0600 files
        try:
            for ns, me, peer, inside, initiator in (
                (self.b, B_OUT, A_OUT, SWAN_B_IN, False),
                (self.a, A_OUT, B_OUT, SWAN_A_IN, True),
            ):
                workdir = self.workdir / f"sw{ns.name[-1]}{suite[:6]}"
                charon = Charon(
                    ns,
                    workdir,
                    name=f"bench-{ns.name}",
                    settings=CharonSettings(log_levels={"default": 0}),
                    swanctl_conf=_swanctl(me, peer, suite, psk),
                )
                charon.start()
                charons.append(charon)
                ns.ip("addr", "add", f"{inside}/30", "dev", "ipsec0")
                ns.ip("link", "set", "ipsec0", "up")
                if initiator and not charon.initiate("bench"):
                    raise CgwdError(f"strongSwan did not establish:\n{charon.log_tail()}")
            pids = tuple(pid for pid in (c.pid for c in charons) if pid is not None)
            tcp = measure_tcp(self.a, self.b, SWAN_B_IN, self.tcp_seconds, pids)
            pps = iperf_udp_pps(self.a, self.b, SWAN_B_IN, self.udp_seconds)
        finally:
            for charon in charons:
                charon.stop()
        return TunnelResult("strongswan", suite, tcp.pop("tcp_mbps"), pps, tcp)


def _swanctl(me: str, peer: str, suite: str, psk: str) -> str:
    return f"""connections {{
    bench {{
        version = 2
        local_addrs = {me}
        remote_addrs = {peer}
        proposals = {SWAN_IKE}
        encap = yes
        local {{
            auth = psk
            id = {me}
        }}
        remote {{
            auth = psk
            id = {peer}
        }}
        children {{
            bench {{
                local_ts = 0.0.0.0/0
                remote_ts = 0.0.0.0/0
                esp_proposals = {SWAN_ESP[suite]}
                start_action = none
            }}
        }}
    }}
}}
secrets {{
    ike-bench {{
        id-1 = {me}
        id-2 = {peer}
        secret = {psk}
    }}
}}
"""
