"""Two cgwd userspace dataplanes in two namespaces, static keys, real traffic.

Each side runs ``python -m cgwd.dataplane.static_tunnel`` in its namespace. Over raw ESP
and ESP-in-UDP, with GCM and CBC/HMAC suites: ICMP echo, a 5 MB TCP echo whose content is
checked by sha256 both ways, a garbage flood that must not stall the tunnel, and a replay /
interop check with packets encrypted by scapy (an independent ESP implementation). A
make-before-break rekey under a sequence-numbered UDP stream must lose nothing.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from scapy.layers.inet import ICMP, IP
from scapy.layers.ipsec import ESP, SecurityAssociation

from cgwd.dataplane.static_pair import Side, StaticPair, link_outside, wait_for
from cgwd.lab.netns import Topology

try:
    from tests.conftest import require_root
except ImportError:  # pragma: no cover
    from conftest import require_root  # type: ignore[no-redef]

pytestmark = [pytest.mark.netns]

TOOLS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "traffic_tools.py")
A_OUT, B_OUT = "192.0.2.1", "192.0.2.2"
A_IN, B_IN = "169.254.10.2", "169.254.10.1"
SCAPY_ALGOS = {
    "aes128gcm16": ("AES-GCM", None),
    "aes256gcm16": ("AES-GCM", None),
    "aes128-sha1": ("AES-CBC", "HMAC-SHA1-96"),
    "aes256-sha256": ("AES-CBC", "SHA2-256-128"),
}


@dataclass
class Lab:
    topo: Topology
    a: Side
    b: Side
    pair: StaticPair

    def tool(self, side: Side, *args: str, timeout: float = 90) -> dict[str, Any]:
        out = side.ns.run(sys.executable, TOOLS, *args, timeout=timeout)
        result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
        return result

    def start_tool(self, side: Side, *args: str) -> subprocess.Popen[bytes]:
        proc = side.ns.popen(sys.executable, TOOLS, *args, stdout=subprocess.PIPE)
        assert proc.stdout is not None
        first = json.loads(proc.stdout.readline())  # {"listening": true}
        assert first.get("listening")
        return proc

    def stats(self, side: Side) -> dict[str, Any]:
        answer = self.pair.command(side, "stats")
        assert answer["ok"], answer
        return answer

    def sa(self, side: Side, direction: str, index: int = 0) -> dict[str, Any]:
        config = self.pair.config_a if side is self.a else self.pair.config_b
        spi = config["sas"][index][f"spi_{direction}"]
        key = f"{side.name}/{direction}/0x{spi:08x}"
        stats = self.stats(side)["sas"]
        return stats[key]  # type: ignore[no-any-return]

    def settle(self, side: Side, timeout: float = 20.0) -> None:
        """Wait until ``side`` has worked through its socket backlog (counters stand still)."""
        previous: Any = None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            current = self.stats(side)
            current = (
                current["tunnel"],
                {k: (v["packets"], v["drops"]) for k, v in current["sas"].items()},
            )
            if current == previous:
                return
            previous = current
            time.sleep(0.5)
        raise AssertionError(f"{side.ns.name} still draining after {timeout} s")

    def tcp_echo(self, size: int, chunk: int = 0) -> dict[str, Any]:
        """A TCP echo of ``size`` random octets from A to B and back (``chunk``: the client
        writes 1..chunk octets at a time with TCP_NODELAY)."""
        server = self.start_tool(self.b, "tcp-echo-server", B_IN, "5201")
        try:
            args = [str(size)] + ([str(chunk)] if chunk else [])
            return self.tool(self.a, "tcp-client", B_IN, "5201", *args)
        finally:
            server.wait(timeout=30)


def make_lab(encap: bool, suite: str, pairs: int = 1, mtu: int = 1400) -> Iterator[Lab]:
    require_root()
    topo = Topology()
    pair: StaticPair | None = None
    try:
        a = Side(topo.add_netns("a"), A_OUT, f"{A_IN}/30", "cgt0")
        b = Side(topo.add_netns("b"), B_OUT, f"{B_IN}/30", "cgt0")
        link_outside(topo, a, b)
        pair = StaticPair(a, b, suite, encap, pairs=pairs, mtu=mtu)
        pair.start()
        yield Lab(topo, a, b, pair)
    finally:
        errors = pair.stop() if pair is not None else {}
        topo.close()
        for name, err in errors.items():
            assert "Traceback" not in err, f"runner in {name} crashed:\n{err}"
            # Drops are logged at most once per reason per 10 s: a flood of tens of
            # thousands of bad packets leaves a few lines, not one per packet.
            assert len(err.splitlines()) < 100, f"runner in {name} logged too much"


COMBOS = [
    pytest.param((True, "aes128gcm16"), id="udp-aes128gcm16"),
    pytest.param((True, "aes128-sha1"), id="udp-aes128-sha1"),
    pytest.param((False, "aes256gcm16"), id="raw-aes256gcm16"),
    pytest.param((False, "aes256-sha256"), id="raw-aes256-sha256"),
]


@pytest.fixture(scope="module", params=COMBOS)
def lab(request: pytest.FixtureRequest) -> Iterator[Lab]:
    encap, suite = request.param
    yield from make_lab(encap, suite, pairs=2)  # pair 1: B's inbound SA for the scapy test


def test_ping_crosses_the_tunnel(lab: Lab) -> None:
    result = lab.tool(lab.a, "ping", B_IN, "5")
    assert result == {"sent": 5, "received": 5}
    a_out, b_in = lab.sa(lab.a, "out"), lab.sa(lab.b, "in")
    assert a_out["packets"] >= 5 and b_in["packets"] >= 5
    assert b_in["drops"] == {}
    assert b_in["last_used"] is not None


def test_tcp_transfer_content_is_intact_both_ways(lab: Lab) -> None:
    size = 5 * 1024 * 1024
    before = lab.sa(lab.b, "in")["bytes"]
    result = lab.tcp_echo(size)
    assert result["echoed"] == size
    assert result["echo_sha256"] == result["sent_sha256"]
    # The payload went A->B and back inside ESP: B's inbound SA carried at least 5 MB.
    assert lab.sa(lab.b, "in")["bytes"] - before >= size
    assert lab.sa(lab.a, "in")["bytes"] >= size


def test_tcp_in_segments_of_every_size_loses_no_esp_packet(lab: Lab) -> None:
    """With ESP-in-UDP, runs of equal-size ESP packets leave in one UDP GSO send, which may
    end with a shorter packet, and arrive in one UDP GRO receive: a receiver that cut the
    last packet at a full segment (reading stale buffer octets) failed its ICV. Writes of
    random sizes with TCP_NODELAY make such runs frequent. No ESP packet may be dropped, in
    either direction, and nothing counted as malformed."""
    sides = (lab.a, lab.b)
    before = {s.ns.name: (lab.sa(s, "in"), lab.stats(s)["tunnel"]["drops"]) for s in sides}
    result = lab.tcp_echo(3 * 1024 * 1024, chunk=3000)
    assert result["echo_sha256"] == result["sent_sha256"]
    for side in sides:
        lab.settle(side)
        sa_before, tunnel_before = before[side.ns.name]
        sa_after, tunnel_after = lab.sa(side, "in"), lab.stats(side)["tunnel"]["drops"]
        assert sa_after["packets"] - sa_before["packets"] > 1000
        assert sa_after["drops"] == sa_before["drops"], side.ns.name
        for reason in ("malformed", "internal"):
            assert tunnel_after.get(reason, 0) == tunnel_before.get(reason, 0), (
                side.ns.name,
                reason,
            )


def test_garbage_flood_is_dropped_counted_and_does_not_stall(lab: Lab) -> None:
    spis = ",".join(hex(p["spi_in"]) for p in lab.pair.config_b["sas"])
    kind = "flood-udp" if lab.pair.encap else "flood-raw"
    flooder = lab.a.ns.popen(
        sys.executable, TOOLS, kind, A_OUT, B_OUT, "3", spis, stdout=subprocess.PIPE
    )
    try:
        # Verified content crosses the tunnel while the flood is on ...
        during = lab.tcp_echo(512 * 1024)
    finally:
        out, _ = flooder.communicate(timeout=60)
    assert json.loads(out.decode().strip().splitlines()[-1])["sent"] > 1000
    assert during["echo_sha256"] == during["sent_sha256"]
    lab.settle(lab.b)  # the flood may outrun B: its socket buffer holds the rest
    # ... and after it.
    result = lab.tcp_echo(512 * 1024)
    assert result["echo_sha256"] == result["sent_sha256"]
    stats = lab.stats(lab.b)
    tunnel_drops = stats["tunnel"]["drops"]
    sa_drops = lab.sa(lab.b, "in")["drops"]
    assert tunnel_drops.get("unknown_spi", 0) > 0
    assert tunnel_drops.get("malformed", 0) > 0
    assert sa_drops.get("malformed", 0) + sa_drops.get("auth_failed", 0) > 0
    assert "internal" not in tunnel_drops and "internal_error" not in sa_drops
    for side in (lab.a, lab.b):
        assert lab.pair.procs[side.ns.name].poll() is None


def test_scapy_encrypted_packets_are_accepted_once_and_replays_dropped(lab: Lab) -> None:
    """The packets go to an inbound SA of their own (pair 1, installed on B only): A never
    sends on it, so no packet of the tunnel's own traffic (a late TCP retransmission, say)
    can land in the exact counts below, and the tunnel's SA keeps its window."""
    pair = lab.pair
    sa_cfg = pair.config_a["sas"][1]  # A's outbound 1 = B's inbound 1
    crypt, auth = SCAPY_ALGOS[pair.suite]
    keymat = bytes.fromhex(sa_cfg["keymat_out"])
    if auth is None:
        kwargs: dict[str, Any] = {"crypt_key": keymat}
    else:
        enc_len = 16 if pair.suite.startswith("aes128") else 32
        kwargs = {"crypt_key": keymat[:enc_len], "auth_algo": auth, "auth_key": keymat[enc_len:]}
    scapy_sa = SecurityAssociation(ESP, spi=sa_cfg["spi_out"], crypt_algo=crypt, **kwargs)
    inner = IP(src=A_IN, dst=B_IN) / ICMP(id=0x4242, seq=1) / (b"cgwd-oracle" * 4)
    lab.settle(lab.b)  # the garbage flood (which names this SPI too) is fully drained
    assert pair.command(lab.b, "install_in 1")["ok"]
    try:
        before = lab.sa(lab.b, "in", 1)
        packets = {
            "fresh": bytes(
                scapy_sa.encrypt(IP(src=A_OUT, dst=B_OUT) / inner, seq_num=100_000)[ESP]
            ),
            "old": bytes(scapy_sa.encrypt(IP(src=A_OUT, dst=B_OUT) / inner, seq_num=1)[ESP]),
        }
        with tempfile.TemporaryDirectory() as tmp:
            for name, data in packets.items():
                path = os.path.join(tmp, name)
                with open(path, "w") as f:
                    f.write(data.hex())
                if pair.encap:
                    lab.tool(lab.a, "send-udp", A_OUT, B_OUT, path)
                else:
                    _send_raw_twice(lab, data)

        def all_counted() -> bool:
            delivered, replays = counted_delta(before, lab.sa(lab.b, "in", 1))
            return delivered >= 1 and replays >= 3

        wait_for(all_counted, timeout=10, interval=0.1)
        time.sleep(0.2)  # anything more that would (wrongly) be counted
        after = lab.sa(lab.b, "in", 1)
    finally:
        assert pair.command(lab.b, "remove_in 1")["ok"]
    # fresh: delivered once, then a replay; old (seq 1, left of the window): two replays.
    assert counted_delta(before, after) == (1, 3)
    assert after["drops"].get("auth_failed", 0) == before["drops"].get("auth_failed", 0)


def counted_delta(before: dict[str, Any], after: dict[str, Any]) -> tuple[int, int]:
    """(packets delivered, replays dropped) between two SA counter snapshots."""
    replays = after["drops"].get("replay", 0) - before["drops"].get("replay", 0)
    return after["packets"] - before["packets"], replays


def _send_raw_twice(lab: Lab, data: bytes) -> None:
    code = (
        "import socket,sys,time;s=socket.socket(socket.AF_INET,socket.SOCK_RAW,50);"
        f"s.bind(('{A_OUT}',0));d=bytes.fromhex(sys.stdin.read().strip());"
        f"[ (s.sendto(d,('{B_OUT}',0)), time.sleep(0.1)) for _ in range(2)]"
    )
    lab.a.ns.run(sys.executable, "-c", code, input_text=data.hex())


REKEY_COMBOS = [
    pytest.param((True, "aes128gcm16"), id="udp-aes128gcm16"),
    pytest.param((False, "aes128-sha1"), id="raw-aes128-sha1"),
]


@pytest.mark.slow
@pytest.mark.parametrize("combo", REKEY_COMBOS)
def test_make_before_break_rekey_loses_nothing(combo: tuple[bool, str]) -> None:
    encap, suite = combo
    for lab in make_lab(encap, suite, pairs=2):
        sinks = {
            "ab": lab.start_tool(lab.b, "udp-sink", B_IN, "6000", "15"),
            "ba": lab.start_tool(lab.a, "udp-sink", A_IN, "6000", "15"),
        }
        streams = {
            "ab": lab.a.ns.popen(
                sys.executable,
                TOOLS,
                "udp-stream",
                B_IN,
                "6000",
                "1000",
                "4",
                stdout=subprocess.PIPE,
            ),
            "ba": lab.b.ns.popen(
                sys.executable,
                TOOLS,
                "udp-stream",
                A_IN,
                "6000",
                "1000",
                "4",
                stdout=subprocess.PIPE,
            ),
        }
        time.sleep(1.0)
        # Responder-style order: both inbound SAs first, then each side switches outbound,
        # then the old SAs go (RFC 7296 2.8: the old SA is deleted after the new is in use).
        for side, verb in (
            (lab.b, "install_in 1"),
            (lab.a, "install_in 1"),
            (lab.a, "install_out 1"),
        ):
            assert lab.pair.command(side, verb)["ok"]
        time.sleep(0.5)
        assert lab.pair.command(lab.b, "install_out 1")["ok"]
        time.sleep(0.5)
        a_old_out = lab.sa(lab.a, "out", 0)["packets"]
        for side, verb in (
            (lab.a, "remove_out 0"),
            (lab.b, "remove_out 0"),
            (lab.a, "remove_in 0"),
            (lab.b, "remove_in 0"),
        ):
            assert lab.pair.command(side, verb)["ok"]
        results = {}
        for key, proc in streams.items():
            out, _ = proc.communicate(timeout=30)
            results[f"stream_{key}"] = json.loads(out.decode().strip().splitlines()[-1])
        for key, proc in sinks.items():
            assert proc.stdout is not None
            out = proc.stdout.read()
            proc.wait(timeout=30)
            results[f"sink_{key}"] = json.loads(out.decode().strip().splitlines()[-1])
        new_b_in = lab.sa(lab.b, "in", 1)
        stats_b = lab.stats(lab.b)
        for key in ("ab", "ba"):
            sent, sink = results[f"stream_{key}"]["sent"], results[f"sink_{key}"]
            assert sent > 3000
            assert sink["missing_count"] == 0, sink
            assert sink["received"] == sent, (sent, sink)
        assert a_old_out > 500  # the old SA carried the first part ...
        assert new_b_in["packets"] > 500  # ... and the new one the rest
        assert len(stats_b["sas"]) == 2  # only the new pair is left
        assert stats_b["current_out"].endswith(f"0x{lab.pair.config_b['sas'][1]['spi_out']:08x}")


@pytest.mark.parametrize("encap", [True, False], ids=["udp", "raw"])
def test_tunnel_mtu_above_the_path_mtu_still_carries_tcp(encap: bool) -> None:
    """Inner MTU 1500 over a 1500-octet path: ESP packets exceed the path MTU, so UDP GSO
    is refused and the kernel must fragment the outer packets; nothing may be lost."""
    for lab in make_lab(encap, "aes128gcm16", mtu=1500):
        result = lab.tcp_echo(2 * 1024 * 1024)
        assert result["echo_sha256"] == result["sent_sha256"]
        assert result["echoed"] == 2 * 1024 * 1024
        drops = lab.stats(lab.a)["tunnel"]["drops"]
        assert drops.get("send_error", 0) == 0, drops
