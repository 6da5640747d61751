"""UML scenario: the real daemon (`cgwd run`, ``dataplane = "kernel"``) end to end.

Topology (one namespace each, addresses from the XML sample download, which cgwd reads
unchanged)::

    lan ── cgw ── inet ──┬── aws1 (charon, VTI key 42) ──┐
  10.20.0.10  (cgwd)     └── aws2 (charon, VTI key 42) ──┴── vpc 10.99.0.10

Each AWS endpoint is a strongSwan charon with the kernel-netlink backend (kernel ESP, 0/0
selectors, marks 42: route-based like AWS), tunnel 1 with AES-GCM, tunnel 2 with
AES-CBC/HMAC-SHA1. The VPC host returns traffic by ECMP over both endpoints, leaving out
the one whose charon the scenario stopped or killed until cgwd has its tunnel up again
(AWS stops routing into a tunnel that went down). The guest's nftables has no inet family,
so the daemon clamps the MSS with iptables-legacy. Arguments: ``encap`` sets
``nat_traversal = "force"`` (ESP in UDP 4500; the default is raw ESP), ``ikev1`` makes
both ends speak IKEv1 (the default is IKEv2).

Observed, in order: ``cgwd status --json`` with both tunnels up; ping LAN -> VPC host and
``ip -s xfrm state``; the MSS of a LAN host's SYN as the VPC host receives it, and of the
SYN-ACK as the LAN host was told it; with a ping every 0.1 s running, the longest gap when
tunnel 1 is rekeyed (CHILD_SA and IKE SA, by cgwd and by charon), its charon stops
(DELETEs), comes back, and is killed (only DPD notices); cgwd
killed and started again (the old state removed, both tunnels up); SIGTERM: exit status,
time, and what is left in ``cgw``. Prints one JSON document.
"""

from __future__ import annotations

import itertools
import json
import os
import re
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from scenario_lib import ROOT, run_in_netns, sh, xfrm_state_bytes

from cgwd.config.importers import load_aws_config
from cgwd.control.client import ControlClient
from cgwd.lab.netns import Netns, Topology
from cgwd.lab.strongswan import DEFAULT_PLUGINS, Charon, CharonSettings

SAMPLE = ROOT / "config" / "aws" / "aws-describe-vpn-connections-static.xml"
CGW_OUT = "192.0.2.117"
VPC_HOST = "10.99.0.10"
LAN_HOST = "10.20.0.10"
PORT = 5201
T1, T2 = "vpc01-t1", "vpc01-t2"
ADMIN_RULE = ("-A", "FORWARD", "-o", "eth9", "-m", "comment", "--comment", "admin", "-j", "ACCEPT")
# Per tunnel: AWS's transit link to the internet router, and the ESP suite charon accepts.
ENDPOINTS = {
    1: {"inet": "198.51.100.129/25", "esp": "aes128gcm16-modp2048", "vpc": "10.98.1"},
    2: {"inet": "198.51.100.1/25", "esp": "aes128-sha1-modp2048", "vpc": "10.98.2"},
}


def swanctl_conf(aws: str, inside: str, psk: str, esp: str, version: int = 2) -> str:
    return f"""connections {{
    aws {{
        version = {version}
        local_addrs = {aws}
        remote_addrs = {CGW_OUT}
        proposals = aes128-sha256-modp2048
        mobike = no
        dpd_delay = 2
        local {{
            auth = psk
            id = {aws}
        }}
        remote {{
            auth = psk
            id = {CGW_OUT}
        }}
        children {{
            vti {{
                local_ts = 0.0.0.0/0
                remote_ts = 0.0.0.0/0
                mark_in = 42
                mark_out = 42
                esp_proposals = {esp}
                start_action = none
            }}
        }}
    }}
}}
secrets {{
    ike-cgw {{
        id = {CGW_OUT}
        secret = "{psk}"
    }}
}}
# inside {inside}
"""


def wait_for(what: str, check: Callable[[], Any], timeout: float) -> float:
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if check():
            return round(time.monotonic() - start, 2)
        time.sleep(0.2)
    raise TimeoutError(f"{what} did not happen within {timeout} s")


def tunnels(doc: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {t["interface"]: t for c in doc.get("connections", []) for t in c["tunnels"]}


class Daemon:
    """`python -m cgwd run` in namespace ``cgw``, asked over its control socket."""

    def __init__(self, ns: Netns, config: Path, sock: Path, log: Path) -> None:
        self.sock, self.log_path = sock, log
        self._log = log.open("ab")
        self.proc = ns.popen(
            sys.executable, "-m", "cgwd", "run", "--config", str(config), "--log-level", "debug",
            stdout=self._log, stderr=subprocess.STDOUT, cwd=str(ROOT),
        )  # fmt: skip
        self.client = ControlClient(sock)

    def status(self) -> dict[str, Any]:
        if self.proc.poll() is not None:
            raise RuntimeError(f"cgwd exited ({self.proc.returncode}):\n{self.log()[-4000:]}")
        try:
            return dict(self.client.call("status", {}, timeout=10))
        except Exception:  # not serving yet
            return {}

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> tuple[int | None, float]:
        start = time.monotonic()
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
                return None, time.monotonic() - start
        self._log.close()
        return self.proc.returncode, round(time.monotonic() - start, 2)


def build(topo: Topology) -> dict[str, Netns]:
    ns = {r: topo.add_netns(r) for r in ("lan", "cgw", "inet", "aws1", "aws2", "vpc")}
    for n in ns.values():
        for key in ("all", "default"):
            n.sysctl(f"net.ipv4.conf.{key}.rp_filter", "0")
    for role in ("cgw", "inet", "aws1", "aws2"):
        ns[role].sysctl("net.ipv4.ip_forward", "1")
    lan, cgw, inet, vpc = ns["lan"], ns["cgw"], ns["inet"], ns["vpc"]
    topo.link(lan, "cgw", cgw, "lan")
    lan.ip("addr", "add", f"{LAN_HOST}/24", "dev", "cgw")
    lan.ip("route", "add", "default", "via", "10.20.0.1")
    cgw.ip("addr", "add", "10.20.0.1/24", "dev", "lan")
    topo.link(cgw, "wan", inet, "cgw")
    cgw.ip("addr", "add", f"{CGW_OUT}/24", "dev", "wan")
    cgw.ip("route", "add", "default", "via", "192.0.2.1")
    inet.ip("addr", "add", "192.0.2.1/24", "dev", "cgw")
    vpc.ip("addr", "add", f"{VPC_HOST}/32", "dev", "lo")
    for i, ep in ENDPOINTS.items():
        aws = ns[f"aws{i}"]
        topo.link(inet, f"aws{i}", aws, "inet")
        inet_net = ep["inet"]
        inet.ip("addr", "add", inet_net, "dev", f"aws{i}")
        gateway = inet_net.split("/")[0]
        topo.link(aws, "vpc", vpc, f"a{i}")
        aws.ip("addr", "add", f"{ep['vpc']}.1/24", "dev", "vpc")
        aws.ip("route", "add", f"{VPC_HOST}/32", "via", f"{ep['vpc']}.2")
        vpc.ip("addr", "add", f"{ep['vpc']}.2/24", "dev", f"a{i}")
        ep["gateway"] = gateway
    aws_routes_back(vpc, [1, 2])
    return ns


def aws_routes_back(vpc: Netns, endpoints: list[int]) -> None:
    """The VPC's route to the customer's LAN: ECMP over the endpoints whose tunnel is up
    (AWS picks the tunnel per flow, and stops using one whose tunnel went down)."""
    hops = [["via", f"{ENDPOINTS[i]['vpc']}.1", "dev", f"a{i}"] for i in endpoints]
    if len(hops) == 1:
        vpc.ip("route", "replace", "10.20.0.0/24", *hops[0])
    else:
        vpc.ip("route", "replace", "10.20.0.0/24", *(w for h in hops for w in ["nexthop", *h]))


def add_endpoint(ns: Netns, i: int, aws_out: str, inside: str, peer: str) -> None:
    ep = ENDPOINTS[i]
    prefix = ep["inet"].split("/")[1]
    ns.ip("addr", "add", f"{aws_out}/{prefix}", "dev", "inet")
    ns.ip("route", "add", "default", "via", ep["gateway"])
    ns.ip("link", "add", "vti42", "type", "vti", "local", aws_out, "remote", CGW_OUT, "key", "42")
    ns.ip("addr", "add", inside, "peer", peer, "dev", "vti42")
    ns.ip("link", "set", "dev", "vti42", "up")
    ns.sysctl("net.ipv4.conf.vti42.disable_policy", "1")
    ns.ip("route", "add", "10.20.0.0/24", "dev", "vti42")


def syn_mss(lan: str, vpc: str) -> dict[str, Any]:
    """Connect LAN host -> VPC host; the SYN's MSS as the VPC host receives it (any
    interface), and the MSS the LAN host was told in the SYN-ACK."""
    listening, sniffing = threading.Event(), threading.Event()
    seen: list[int] = []

    def serve() -> None:
        srv = socket.socket()
        srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        srv.bind((VPC_HOST, PORT))
        srv.listen(1)
        srv.settimeout(30)
        listening.set()
        conn, _ = srv.accept()
        conn.close()
        srv.close()

    def sniff() -> None:
        eth_p_ip = 0x0800
        s = socket.socket(socket.AF_PACKET, socket.SOCK_DGRAM, socket.htons(eth_p_ip))
        s.settimeout(1)
        sniffing.set()
        deadline = time.monotonic() + 30
        try:
            while time.monotonic() < deadline:
                try:
                    data = s.recv(65535)
                except TimeoutError:
                    continue
                ihl = (data[0] & 0x0F) * 4
                if data[9] != socket.IPPROTO_TCP or len(data) < ihl + 20:
                    continue
                tcp = data[ihl:]
                if struct.unpack_from("!H", tcp, 2)[0] != PORT or tcp[13] & 0x12 != 0x02:
                    continue
                options = tcp[20 : (tcp[12] >> 4) * 4]
                if options[:2] == b"\x02\x04":  # Linux puts the MSS option first
                    seen.append(struct.unpack_from("!H", options, 2)[0])
                return
        finally:
            s.close()

    threading.Thread(target=lambda: run_in_netns(vpc, serve, 40), daemon=True).start()
    sniffer = threading.Thread(target=lambda: run_in_netns(vpc, sniff, 40), daemon=True)
    sniffer.start()
    listening.wait(10)
    sniffing.wait(10)

    def connect() -> int:
        with socket.create_connection((VPC_HOST, PORT), timeout=20) as c:
            return int(c.getsockopt(socket.IPPROTO_TCP, socket.TCP_MAXSEG))

    told = run_in_netns(lan, connect, 30)
    sniffer.join(30)
    return {"mss_at_vpc_host": seen, "lan_host_maxseg": told}


def single_sa(charon: Charon) -> bool:
    """Whether charon holds exactly one IKE SA with exactly one installed CHILD_SA."""
    sas = charon.list_sas()
    return len(sas) == 1 and sas[0].established and len(sas[0].installed_children()) == 1


def mangle_rules(ns: str) -> str:
    return sh("ip", "netns", "exec", ns, "iptables-legacy-save", "-t", "mangle").stdout


class Pinger:
    """``ping`` every `INTERVAL` s from the LAN host to the VPC host until `stop`."""

    INTERVAL = 0.1

    def __init__(self, lan: str) -> None:
        self.proc = subprocess.Popen(
            ["ip", "netns", "exec", lan, "ping", "-n", "-i", str(self.INTERVAL), "-W", "1",
             VPC_HOST],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )  # fmt: skip
        time.sleep(1.0)  # a few replies before anything happens

    def stop(self) -> dict[str, Any]:
        self.proc.send_signal(signal.SIGINT)  # `ip netns exec` exec'd ping itself
        try:
            out, _ = self.proc.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            out, _ = self.proc.communicate(timeout=10)
        found = re.search(r"(\d+) packets transmitted", out)
        sent = int(found.group(1)) if found else None
        return {"sent": sent, **ping_gaps(out, sent, self.INTERVAL)}


def ping_gaps(output: str, sent: int | None, interval: float) -> dict[str, Any]:
    """From ``ping`` output: the replies, and the longest run of requests without one
    (counting the requests after the last reply, up to ``sent``)."""
    seqs = sorted({int(m) for m in re.findall(r"bytes from .* icmp_seq=(\d+)", output)})
    longest = 0
    for a, b in itertools.pairwise([0, *seqs, (sent or 0) + 1]):
        longest = max(longest, b - a - 1)
    return {
        "replies": len(seqs),
        "last_seq": seqs[-1] if seqs else None,
        "longest_gap_packets": longest,
        "longest_gap_seconds": round(longest * interval, 2),
    }


def main() -> None:
    # "encap": nat_traversal = "force", so both tunnels run ESP in UDP 4500 (the kernel's
    # ESPINUDP socket); the default is raw ESP. "ikev1": IKEv1 on both ends.
    force_encap = "encap" in sys.argv[1:]
    ike_version = 1 if "ikev1" in sys.argv[1:] else 2
    result: dict[str, Any] = {"force_encap": force_encap}
    topo = Topology()
    charons: dict[int, Charon] = {}
    daemon: Daemon | None = None
    work = Path(tempfile.mkdtemp(prefix="cgwd-uml-d-", dir="/var/tmp"))
    try:
        aws_file = work / "aws.xml"
        aws_file.write_bytes(SAMPLE.read_bytes())
        os.chmod(aws_file, 0o600)
        conn = load_aws_config(aws_file)
        ns = build(topo)
        plugins = tuple(p for p in DEFAULT_PLUGINS if p != "kernel-libipsec")
        # IKEv1: charon deletes the SA it rekeyed at once (its default keeps it until it
        # expires), as the IKEv2 side does and as AWS does.
        settings = CharonSettings(
            plugins=plugins,
            retransmit_timeout=2.0,
            retransmit_tries=3,
            extra_charon_lines=("delete_rekeyed = yes",),
        )
        for t in conn.tunnels:
            assert t.pre_shared_key is not None and t.vpn_gateway_inside_ip is not None
            aws_out, inside = str(t.vpn_gateway_outside_ip), str(t.vpn_gateway_inside_ip)
            peer = str(t.customer_gateway_inside_ip)
            add_endpoint(ns[f"aws{t.index}"], t.index, aws_out, f"{inside}/30", peer)
            conf = swanctl_conf(
                aws_out,
                inside,
                t.pre_shared_key.reveal().decode(),
                ENDPOINTS[t.index]["esp"],
                ike_version,
            )
            charons[t.index] = Charon(
                ns[f"aws{t.index}"], work / f"aws{t.index}", settings=settings,
                swanctl_conf=conf, name=f"aws{t.index}",
            )  # fmt: skip
            charons[t.index].start(timeout=30)
        # The admin's own rule in the table cgwd's clamp uses: it must survive cgwd.
        sh("ip", "netns", "exec", ns["cgw"].name, "iptables-legacy", "-t", "mangle", *ADMIN_RULE)

        sock = work / "control.sock"
        config = work / "cgwd.toml"
        config.write_text(
            f'[daemon]\ncontrol_socket = "{sock}"\ndataplane = "kernel"\n\n'
            f'[[connection]]\nname = "vpc01"\naws_config = "{aws_file}"\n'
            'routes = ["10.99.0.0/24"]\ndpd_interval = 2\ndpd_retries = 2\n'
            + ('nat_traversal = "force"\n' if force_encap else "")
            + (f"ike_version = {ike_version}\n" if ike_version != 2 else "")
        )
        start = time.monotonic()
        daemon = Daemon(ns["cgw"], config, sock, work / "cgwd.log")
        d = daemon

        def both_up() -> bool:
            ts = tunnels(d.status())
            return len(ts) == 2 and all(t["state"] == "up" and t["child_sas"] for t in ts.values())

        wait_for("both tunnels up", both_up, 90)
        result["up_after_seconds"] = round(time.monotonic() - start, 2)
        # What an admin runs: the real command line.
        cli = sh(sys.executable, "-m", "cgwd", "status", "--json", "--socket", str(sock))
        result["status_cli_rc"] = cli.returncode
        result["status"] = json.loads(cli.stdout) if cli.returncode == 0 else cli.stderr

        cgw_name = ns["cgw"].name
        before = xfrm_state_bytes(cgw_name)
        pinged = sh("ip", "netns", "exec", ns["lan"].name, "ping", "-n", "-c", "5", "-i", "0.2",
                    "-W", "3", VPC_HOST)  # fmt: skip
        result["ping_rc"] = pinged.returncode
        result["xfrm_bytes"] = {"before": before, "after": xfrm_state_bytes(cgw_name)}
        result["syn"] = syn_mss(ns["lan"].name, ns["vpc"].name)
        result["mangle"] = sh("ip", "netns", "exec", cgw_name, "iptables-legacy-save", "-c",
                              "-t", "mangle").stdout  # fmt: skip

        # Rekeys of tunnel 1 under a ping every 0.1 s, make-before-break on both sides:
        # CHILD_SA by cgwd (`cgwd rekey`) and by charon, then the IKE SA by each.
        def t1_child() -> tuple[str, ...]:
            ts = tunnels(d.status())
            return tuple(c["spi_in"] for c in ts[T1]["child_sas"]) if ts else ()

        def t1_ike() -> str | None:
            ts = tunnels(d.status())
            return ts[T1]["ike"]["local_spi"] if ts and ts[T1]["ike"] else None

        pinger = Pinger(ns["lan"].name)
        children = [t1_child()]
        ikes = [t1_ike()]
        for who, sa in (("cgwd", "child"), ("charon", "child"), ("cgwd", "ike"), ("charon", "ike")):
            # One rekey at a time, as on AWS: charon's `--rekey` acts on every SA of the
            # name, so first the SAs an earlier rekey replaced must be gone (IKEv1: cgwd
            # deletes its own old ones 5 s later).
            wait_for("one IKE SA with one CHILD_SA at charon", lambda: single_sa(charons[1]), 30)
            if who == "cgwd":
                d.client.call("rekey", {"connection": "vpc01", "tunnel": 1, "sa": sa}, timeout=10)
            elif sa == "child":
                charons[1].rekey(child="vti")
            else:
                charons[1].rekey(ike="aws")
            if sa == "child":
                old = children[-1]
                # IKEv1 keeps a peer-rekeyed SA a while (the peer may still use it).
                wait_for(f"{who}'s CHILD_SA rekey", lambda old=old: set(t1_child()) - set(old)
                         and (ike_version == 1 or len(t1_child()) == 1), 30)  # fmt: skip
                children.append(t1_child())
            else:
                old_ike = ikes[-1]
                wait_for(f"{who}'s IKE SA rekey", lambda o=old_ike: t1_ike() not in (None, o), 30)
                ikes.append(t1_ike())
            time.sleep(0.5)
        result["rekey_ping"] = pinger.stop()
        result["rekey_children"] = children
        result["rekey_ikes"] = ikes
        result["rekey_sas_after"] = sh("ip", "-n", cgw_name, "xfrm", "state").stdout.count("spi 0x")
        result["rekey_status"] = d.status()
        result["ike_version"] = ike_version

        # Failover: tunnel 1's endpoint stops (DELETEs cgwd's SAs) and AWS stops routing
        # into it; a ping every 0.1 s runs throughout.
        def t1_down_t2_active() -> bool:
            ts = tunnels(d.status())
            return bool(ts) and ts[T1]["state"] != "up" and ts[T2]["active"]

        def t1_back() -> bool:
            ts = tunnels(d.status())
            return bool(ts) and ts[T1]["state"] == "up" and ts[T1]["active"]

        pinger = Pinger(ns["lan"].name)
        before_t2 = xfrm_state_bytes(cgw_name)
        stopped_at = time.monotonic()
        charons[1].stop()
        aws_routes_back(ns["vpc"], [2])  # AWS stops routing into the tunnel that went
        wait_for("tunnel 1 down and tunnel 2 active", t1_down_t2_active, 30)
        result["failover_status_seconds"] = round(time.monotonic() - stopped_at, 2)
        time.sleep(3.0)  # traffic keeps flowing over tunnel 2
        result["failover_ping"] = pinger.stop()
        result["xfrm_bytes_failover"] = {"before": before_t2, "after": xfrm_state_bytes(cgw_name)}
        result["status_after_failover"] = d.status()

        # Failback: the endpoint returns; cgwd's next attempt brings tunnel 1 up and the
        # routes move back to it (prefer-1).
        pinger = Pinger(ns["lan"].name)
        back_at = time.monotonic()
        charons[1].start(timeout=30)
        wait_for("tunnel 1 back and active", t1_back, 60)
        aws_routes_back(ns["vpc"], [1, 2])
        result["failback_status_seconds"] = round(time.monotonic() - back_at, 2)
        time.sleep(2.0)
        result["failback_ping"] = pinger.stop()

        # The endpoint dies without a DELETE: only cgwd's DPD (2 s x 2 here) notices.
        pinger = Pinger(ns["lan"].name)
        time.sleep(1.0)
        killed_at = time.monotonic()
        charons[1].kill()  # no DELETE
        # The endpoint is gone, its kernel's SAs with it (SIGKILL left them installed).
        ns["aws1"].ip("xfrm", "state", "flush")
        ns["aws1"].ip("xfrm", "policy", "flush")
        aws_routes_back(ns["vpc"], [2])
        wait_for("tunnel 1 dead and tunnel 2 active", t1_down_t2_active, 30)
        result["dead_peer_status_seconds"] = round(time.monotonic() - killed_at, 2)
        time.sleep(2.0)
        result["dead_peer_ping"] = pinger.stop()
        result["status_after_dead_peer"] = d.status()

        # cgwd crashes (SIGKILL: nothing is cleaned up) while tunnel 1's endpoint comes back;
        # the next cgwd removes what the first left and brings both tunnels up again.
        daemon.proc.kill()
        daemon.proc.wait(10)
        first_log = daemon.log()
        result["after_crash"] = {
            "sas": sh("ip", "-n", cgw_name, "xfrm", "state").stdout.count("spi 0x"),
            "links": sh("ip", "-n", cgw_name, "-o", "link", "show").stdout.count("vpc01-"),
            "routes": sh("ip", "-n", cgw_name, "route", "show", "proto", "157").stdout.strip(),
            "chain": "CGWD-MSS" in mangle_rules(cgw_name),
        }
        charons[1].start(timeout=30)
        restart = time.monotonic()
        daemon = Daemon(ns["cgw"], config, sock, work / "cgwd-2.log")
        d = daemon
        wait_for("both tunnels up after the restart", both_up, 90)
        aws_routes_back(ns["vpc"], [1, 2])
        result["restart_up_seconds"] = round(time.monotonic() - restart, 2)
        result["restart_log"] = [
            line
            for line in daemon.log().splitlines()
            if "left" in line and ("previous run" in line or "earlier run" in line)
        ]
        result["restart_mangle"] = mangle_rules(cgw_name)
        pinged = sh("ip", "netns", "exec", ns["lan"].name, "ping", "-n", "-c", "3", "-i", "0.2",
                    "-W", "3", VPC_HOST)  # fmt: skip
        result["restart_ping_rc"] = pinged.returncode

        # SIGTERM: exit 0 and nothing of cgwd's left in cgw.
        result["charon2_sas_before_stop"] = bool(charons[2].swanctl("--list-sas").stdout.strip())
        result["exit_status"], result["stop_seconds"] = daemon.stop()
        log_text = first_log + daemon.log()
        daemon = None
        result["log_lines"] = [
            line for line in log_text.splitlines() if "MSS clamp:" in line or "dataplane:" in line
        ]
        result["log_tail"] = log_text[-3000:]
        result["log_problems"] = [
            line
            for line in log_text.splitlines()
            if " ERROR " in line or " CRITICAL " in line or "Traceback" in line
        ]
        result["log_warnings"] = [line for line in log_text.splitlines() if " WARNING " in line]
        result["psk_in_log"] = any(
            t.pre_shared_key.reveal().decode() in log_text
            for t in conn.tunnels
            if t.pre_shared_key is not None
        )
        result["leftovers"] = {
            "xfrm_state": sh("ip", "-n", cgw_name, "xfrm", "state").stdout.strip(),
            "xfrm_policy": sh("ip", "-n", cgw_name, "xfrm", "policy").stdout.strip(),
            "links": sh("ip", "-n", cgw_name, "-o", "link", "show").stdout.count("vpc01-"),
            "routes": sh("ip", "-n", cgw_name, "route", "show", "proto", "157").stdout.strip(),
            "nft_tables": sh("ip", "netns", "exec", cgw_name, "nft", "list", "tables").stdout,
            "mangle": sh(
                "ip", "netns", "exec", cgw_name, "iptables-legacy-save", "-t", "mangle"
            ).stdout,
            "mangle6": sh(
                "ip", "netns", "exec", cgw_name, "ip6tables-legacy-save", "-t", "mangle"
            ).stdout,
            "socket": sock.exists(),
        }
        result["charon2_sas_after_stop"] = charons[2].swanctl("--list-sas").stdout.strip()
    except Exception as exc:  # report what happened; the test shows it
        result["error"] = f"{type(exc).__name__}: {exc}"
        if daemon is not None:
            result["log_tail"] = daemon.log()[-6000:]
        for i, c in charons.items():
            result[f"charon{i}_log"] = c.log_tail(200)[-12000:]
    finally:
        if daemon is not None:
            daemon.stop()
        for c in charons.values():
            c.stop()
        topo.close()
        shutil.rmtree(work, ignore_errors=True)
    print(json.dumps(result, default=str))


if __name__ == "__main__":
    main()
