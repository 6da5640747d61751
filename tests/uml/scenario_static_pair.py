"""UML scenario: cgwd's kernel datapath on both ends of one tunnel, with static keys.

hostA (10.1.0.10) - gwA ==ESP-in-UDP (VTI)== gwB - hostB (10.2.0.10). Observes: ping,
a TCP transfer and its checksum, SA counters (ours and ``ip -s xfrm state``), the MSS of
a SYN that crossed the tunnel, a make-before-break rekey under a UDP stream (loss), and
what is left after shutdown. Prints one JSON document.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import sys
import threading
import time
from typing import Any

from scenario_lib import (
    Gateway,
    leftovers,
    params,
    ping,
    run_in_netns,
    sniff_syn_mss,
    tunnel_spec,
    xfrm_state_bytes,
)

from cgwd.dataplane.base import SaId
from cgwd.esp.suites import suite_by_name
from cgwd.lab.netns import Topology

MSS = 1300
TCP_PORT = 5001
UDP_PORT = 5002
STREAM_SECONDS = 4.0
STREAM_INTERVAL = 0.004
LAST_USED_PAUSE = 3.0


def tcp_transfer(topo_hosts: tuple[str, str], size: int) -> dict[str, Any]:
    host_a, host_b = topo_hosts
    payload = os.urandom(size)
    listening = threading.Event()
    received: dict[str, Any] = {}

    def server() -> None:
        srv = socket.socket()
        srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        srv.bind(("10.2.0.10", TCP_PORT))
        srv.listen(1)
        srv.settimeout(30)
        listening.set()
        conn, _ = srv.accept()
        conn.settimeout(30)
        digest = hashlib.sha256()
        total = 0
        while chunk := conn.recv(65536):
            digest.update(chunk)
            total += len(chunk)
        conn.close()
        srv.close()
        received.update(bytes=total, sha256=digest.hexdigest())

    srv_thread = threading.Thread(target=lambda: run_in_netns(host_b, server, 60), daemon=True)
    srv_thread.start()
    listening.wait(30)

    def client() -> None:
        with socket.create_connection(("10.2.0.10", TCP_PORT), timeout=30) as c:
            c.sendall(payload)

    run_in_netns(host_a, client, 60)
    srv_thread.join(60)
    return {
        "sent_sha256": hashlib.sha256(payload).hexdigest(),
        "received_sha256": received.get("sha256"),
        "received_bytes": received.get("bytes"),
    }


def udp_stream(host_a: str, host_b: str, during: Any) -> dict[str, Any]:
    """Send numbered datagrams hostA -> hostB for STREAM_SECONDS; call ``during()`` midway."""
    got: set[int] = set()
    bound = threading.Event()
    stop = threading.Event()

    def receiver() -> None:
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
        sock.bind(("10.2.0.10", UDP_PORT))
        sock.settimeout(0.5)
        bound.set()
        while not stop.is_set():
            try:
                data = sock.recv(2048)
            except TimeoutError:
                continue
            got.add(int.from_bytes(data[:4], "big"))
        sock.close()

    rx = threading.Thread(target=lambda: run_in_netns(host_b, receiver, 120), daemon=True)
    rx.start()
    bound.wait(10)
    sent = 0

    def sender() -> None:
        nonlocal sent
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        end = time.monotonic() + STREAM_SECONDS
        while time.monotonic() < end:
            sock.sendto(sent.to_bytes(4, "big") + b"x" * 200, ("10.2.0.10", UDP_PORT))
            sent += 1
            time.sleep(STREAM_INTERVAL)
        sock.close()

    tx = threading.Thread(target=lambda: run_in_netns(host_a, sender, 120), daemon=True)
    tx.start()
    time.sleep(STREAM_SECONDS / 4)
    during()
    tx.join(60)
    time.sleep(1.0)  # the last datagrams are in flight
    stop.set()
    rx.join(10)
    return {"sent": sent, "received": len(got), "missing": sorted(set(range(sent)) - got)[:20]}


def main() -> None:
    # Default: the kernel datapath in the UML guest. "userspace": the same scenario with the
    # userspace datapath and nft for real, on any kernel (tests/netns/test_tunnel_mss_clamp.py).
    kind = sys.argv[1] if len(sys.argv) > 1 else "kernel"
    kernel = kind == "kernel"
    result: dict[str, Any] = {"dataplane": kind}
    topo = Topology()
    gws: list[Gateway] = []
    try:
        host_a, gw_a, gw_b, host_b = (topo.add_netns(n) for n in ("ha", "ga", "gb", "hb"))
        topo.link(host_a, "eth0", gw_a, "lan0")
        topo.link(gw_a, "out0", gw_b, "out0")
        topo.link(gw_b, "lan0", host_b, "eth0")
        host_a.ip("addr", "add", "10.1.0.10/24", "dev", "eth0")
        host_a.ip("route", "add", "default", "via", "10.1.0.1")
        gw_a.ip("addr", "add", "10.1.0.1/24", "dev", "lan0")
        gw_a.ip("addr", "add", "192.0.2.1/24", "dev", "out0")
        gw_b.ip("addr", "add", "192.0.2.2/24", "dev", "out0")
        gw_b.ip("addr", "add", "10.2.0.1/24", "dev", "lan0")
        host_b.ip("addr", "add", "10.2.0.10/24", "dev", "eth0")
        host_b.ip("route", "add", "default", "via", "10.2.0.1")
        for gw in (gw_a, gw_b):
            gw.sysctl("net.ipv4.ip_forward", "1")

        a = Gateway(gw_a.name, dataplane=kind, real_nft=not kernel)
        b = Gateway(gw_b.name, dataplane=kind, real_nft=not kernel)
        gws = [a, b]
        if kernel:
            result["interface_kind"] = a.dp.interface_kind
            a.open_ike_socket("192.0.2.1")
            b.open_ike_socket("192.0.2.2")
        a.open_tunnel(
            tunnel_spec("cgt0", "169.254.10.2/30", "169.254.10.1", "192.0.2.1", "192.0.2.2"),
            mss=MSS,
            routes=["10.2.0.0/24"],
        )
        b.open_tunnel(
            tunnel_spec("cgt0", "169.254.10.1/30", "169.254.10.2", "192.0.2.2", "192.0.2.1"),
            mss=MSS,
            routes=["10.1.0.0/24"],
        )
        suite = suite_by_name("aes128gcm16")
        # Inbound SPIs from the kernel (ALLOCSPI, then UPDSA replaces the larval SA).
        spi_ab = b.sync(lambda: b.dp.allocate_spi("cgt0"))
        spi_ba = a.sync(lambda: a.dp.allocate_spi("cgt0"))
        p_ab, p_ba = params(suite, encap=True), params(suite, encap=True)
        b.add_sa(SaId("cgt0", "in", spi_ab), p_ab)
        a.add_sa(SaId("cgt0", "in", spi_ba), p_ba)
        a.add_sa(SaId("cgt0", "out", spi_ab), p_ab)
        b.add_sa(SaId("cgt0", "out", spi_ba), p_ba)

        before = xfrm_state_bytes(gw_a.name)
        result["ping"] = ping(host_a.name, "10.2.0.10")
        result["ping_inside"] = ping(gw_a.name, "169.254.10.1")
        ready = threading.Event()
        mss_box: dict[str, list[int]] = {}
        sniffer = threading.Thread(
            target=lambda: mss_box.update(mss=sniff_syn_mss(host_b.name, "eth0", TCP_PORT, ready)),
            daemon=True,
        )
        sniffer.start()
        ready.wait(10)
        result["tcp"] = tcp_transfer((host_a.name, host_b.name), 2_000_000)
        sniffer.join(30)
        # In the guest (no nftables inet) the clamp is only recorded (RecordingNft) and the
        # SYN keeps the client's MSS; with real nft it arrives clamped.
        result["syn_mss_at_hostb"] = mss_box.get("mss", [])
        result["nft_documents_a"] = a.nft_documents
        after = xfrm_state_bytes(gw_a.name)
        result["ip_s_xfrm_state_bytes"] = {
            "out_before": before.get(spi_ab),
            "out_after": after.get(spi_ab),
            "in_before": before.get(spi_ba),
            "in_after": after.get(spi_ba),
        }
        result["counters_before_rekey"] = {
            "a_out": a.counters(SaId("cgt0", "out", spi_ab)),
            "b_in": b.counters(SaId("cgt0", "in", spi_ab)),
            "a_in": a.counters(SaId("cgt0", "in", spi_ba)),
        }
        # last_used is the time of an SA's latest packet, not its first (the kernel keeps
        # both): after a pause, one more ping must make it recent again.
        time.sleep(LAST_USED_PAUSE)
        result["ping_after_pause"] = ping(host_a.name, "10.2.0.10")
        for key, gw, sa_id in (
            ("a_out", a, SaId("cgt0", "out", spi_ab)),
            ("b_in", b, SaId("cgt0", "in", spi_ab)),
        ):
            used = gw.sync(lambda gw=gw, sa_id=sa_id: gw.dp.sa_counters(sa_id).last_used)
            result[f"{key}_last_used_age"] = None if used is None else time.monotonic() - used

        # Make-before-break rekey under traffic: new inbound on both ends, then new
        # outbound (takes over at once), then the old SAs go.
        new: dict[str, int] = {}

        def rekey() -> None:
            new["ab"] = b.sync(lambda: b.dp.allocate_spi("cgt0"))
            new["ba"] = a.sync(lambda: a.dp.allocate_spi("cgt0"))
            q_ab, q_ba = params(suite, encap=True), params(suite, encap=True)
            b.add_sa(SaId("cgt0", "in", new["ab"]), q_ab)
            a.add_sa(SaId("cgt0", "in", new["ba"]), q_ba)
            a.add_sa(SaId("cgt0", "out", new["ab"]), q_ab)
            b.add_sa(SaId("cgt0", "out", new["ba"]), q_ba)
            time.sleep(0.5)
            a.remove_sa(SaId("cgt0", "out", spi_ab))
            b.remove_sa(SaId("cgt0", "out", spi_ba))
            time.sleep(0.3)
            b.remove_sa(SaId("cgt0", "in", spi_ab))
            a.remove_sa(SaId("cgt0", "in", spi_ba))

        result["rekey_stream"] = udp_stream(host_a.name, host_b.name, rekey)
        result["spis"] = {"ab": spi_ab, "ba": spi_ba, "new": new}
        result["counters_after_rekey"] = {
            "a_out_new": a.counters(SaId("cgt0", "out", new["ab"])),
            "b_in_new": b.counters(SaId("cgt0", "in", new["ab"])),
        }
        result["current_outbound_a"] = str(a.sync(lambda: a.dp.current_outbound("cgt0")))
        result["expected_outbound_a"] = str(SaId("cgt0", "out", new["ab"]))
        result["ping_after_rekey"] = ping(host_a.name, "10.2.0.10")

        for gw in gws:
            gw.shutdown()
        gws = []
        result["leftovers"] = {ns.name[-2:]: leftovers(ns.name, ["cgt0"]) for ns in (gw_a, gw_b)}
    finally:
        for gw in gws:
            try:
                gw.shutdown()
            except Exception as exc:  # report, keep cleaning up
                result.setdefault("shutdown_errors", []).append(repr(exc))
        topo.close()
    print(json.dumps(result))


if __name__ == "__main__":
    main()
