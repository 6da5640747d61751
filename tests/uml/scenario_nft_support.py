"""UML scenario: cgwd's MSS clamp on a kernel whose nftables lacks the inet family.

Debian's UML kernel has nf_tables with the bridge family only, and x_tables with TCPMSS.
In fresh namespaces: which families nft accepts (``nft add table``, iproute2 and nft, not
cgwd's probe); the error `PyrouteNetOps.apply_mss_clamp` raises when the iptables-legacy
fallback is missing too; then, with the real fallback, a router namespace whose interface
``cgt0`` is clamped to 1300: a client's SYN (MSS 1460) forwarded through it, captured on
the far side, and the SYN-ACK back; re-applying, removing, and a crashed run's chain
removed at the next start, leaving the admin's own mangle rule alone. Prints one JSON
document.
"""

from __future__ import annotations

import json
import socket
import threading
from typing import Any

from scenario_lib import run_in_netns, sh, sniff_syn_mss

from cgwd.lab.netns import Topology
from cgwd.net.base import MssClamp, NetOpsError
from cgwd.net.pyroute import PyrouteNetOps
from cgwd.net.xtables import IPV4, Xtables

PORT = 5201


def mangle(ns: str, tool: str = "iptables-legacy-save") -> str:
    return sh("ip", "netns", "exec", ns, tool, "-t", "mangle").stdout


def main() -> None:
    result: dict[str, Any] = {}
    topo = Topology()
    try:
        ns = topo.add_netns("nf")
        accepted = {}
        for family in ("inet", "ip", "ip6", "bridge"):
            proc = sh("ip", "netns", "exec", ns.name, "nft", "add", "table", family, "probe")
            accepted[family] = proc.returncode == 0
            sh("ip", "netns", "exec", ns.name, "nft", "delete", "table", family, "probe")
        result["nft_add_table_accepted"] = accepted
        # Neither backend: the fallback's tools are missing.
        net = PyrouteNetOps(ns.name, xtables=Xtables(ns.name, binary_dir="/nonexistent"))
        try:
            try:
                net.apply_mss_clamp([MssClamp("cgt0", 1300)])
                result["apply_error"] = None
            except NetOpsError as exc:
                result["apply_error"] = str(exc)
            net.remove_mss_clamp()
            result["cleanup_nft_table"] = net.cleanup_leftovers().nft_table
        finally:
            net.close()
        result["tables_after"] = sh("ip", "netns", "exec", ns.name, "nft", "list", "tables").stdout

        # The fallback for real: client -- router (cgt0 towards the server) -- server.
        client, router, server = topo.add_netns("cli"), topo.add_netns("rtr"), topo.add_netns("srv")
        topo.link(client, "rtr", router, "cli")
        topo.link(router, "cgt0", server, "rtr")
        client.ip("addr", "add", "10.20.0.10/24", "dev", "rtr")
        client.ip("route", "add", "default", "via", "10.20.0.1")
        router.ip("addr", "add", "10.20.0.1/24", "dev", "cli")
        router.ip("addr", "add", "10.99.0.1/24", "dev", "cgt0")
        router.sysctl("net.ipv4.ip_forward", "1")
        server.ip("addr", "add", "10.99.0.10/24", "dev", "rtr")
        server.ip("route", "add", "default", "via", "10.99.0.1")
        # Someone else's rule in the same table and hook: cgwd must leave it alone.
        theirs = (
            "-A",
            "FORWARD",
            "-o",
            "eth9",
            "-m",
            "comment",
            "--comment",
            "admin",
            "-j",
            "ACCEPT",
        )
        sh("ip", "netns", "exec", router.name, "iptables-legacy", "-t", "mangle", *theirs)

        net = PyrouteNetOps(router.name)
        try:
            net.apply_mss_clamp([MssClamp("cgt0", 1300)])
            net.apply_mss_clamp([MssClamp("cgt0", 1300)])  # idempotent
            result["clamp_backend"] = net.clamp_backend
            result["mangle_applied"] = mangle(router.name)
            result["mangle6_applied"] = mangle(router.name, "ip6tables-legacy-save")
            result["syn"] = syn_through(client.name, server.name)
            result["chain_counters"] = Xtables(router.name).list_chain(IPV4)
            net.remove_mss_clamp()
            result["mangle_removed"] = mangle(router.name)
            # A crashed run: the chain stays; the next start's cleanup removes it.
            net.apply_mss_clamp([MssClamp("cgt0", 1300)])
        finally:
            net.close()
        fresh = PyrouteNetOps(router.name)
        try:
            fresh.cleanup_leftovers()
        finally:
            fresh.close()
        result["mangle_after_crash_cleanup"] = mangle(router.name)
        result["mangle6_after_crash_cleanup"] = mangle(router.name, "ip6tables-legacy-save")
    finally:
        topo.close()
    print(json.dumps(result))


def syn_through(client: str, server: str) -> dict[str, Any]:
    """Connect client -> server:PORT; the SYN's MSS as the server's interface sees it, and
    the MSS the client was told (the SYN-ACK, clamped on its way out of cgt0)."""
    listening = threading.Event()

    def serve() -> None:
        srv = socket.socket()
        srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        srv.bind(("10.99.0.10", PORT))
        srv.listen(1)
        srv.settimeout(20)
        listening.set()
        conn, _ = srv.accept()
        conn.close()
        srv.close()

    threading.Thread(target=lambda: run_in_netns(server, serve, 30), daemon=True).start()
    listening.wait(10)
    sniffing = threading.Event()
    seen: list[int] = []
    sniffer = threading.Thread(
        target=lambda: seen.extend(sniff_syn_mss(server, "rtr", PORT, sniffing)), daemon=True
    )
    sniffer.start()
    sniffing.wait(10)

    def connect() -> int:
        with socket.create_connection(("10.99.0.10", PORT), timeout=10) as c:
            return int(c.getsockopt(socket.IPPROTO_TCP, socket.TCP_MAXSEG))

    told = run_in_netns(client, connect, 30)
    sniffer.join(25)
    return {"mss_at_server": seen, "client_maxseg": told}


if __name__ == "__main__":
    main()
