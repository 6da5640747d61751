"""UML scenario: cgwd's IKEv2 (IkeHost + IkeSession) with the kernel datapath against
strongSwan's charon with its kernel-netlink backend (kernel ESP, a VTI with mark 42, 0/0
selectors: AWS-like route-based), both inside the guest.

Observes: the tunnel comes up, ping and a TCP transfer over the inside addresses, SA
counters on both sides, CHILD_SA rekeys (cgwd's, short lifetimes) under a UDP stream, and
what cgwd leaves after it deletes the IKE SA and closes. Prints one JSON document.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import shutil
import socket
import sys
import tempfile
import threading
import time
from dataclasses import replace
from ipaddress import IPv4Address
from pathlib import Path
from typing import Any

from scenario_lib import Gateway, leftovers, ping, run_in_netns, sh, tunnel_spec, xfrm_state_bytes

from cgwd.config.aws import AwsTunnel, DeadPeerDetection, PhaseSettings
from cgwd.config.proposals import proposals_for
from cgwd.ike.clock import MonotonicClock
from cgwd.ike.constants import ProtocolId
from cgwd.ike.host import IkeHost
from cgwd.ike.rng import SystemRng
from cgwd.ike.v2.sa import IkeSessionConfig
from cgwd.ike.v2.session import IkeSession
from cgwd.ike.v2.wire import proposals_from_config
from cgwd.lab.netns import Topology
from cgwd.lab.strongswan import DEFAULT_PLUGINS, Charon, CharonSettings
from cgwd.net.xfrm.ike_socket import prepare_ike_socket
from cgwd.secret import Secret

CGW, AWS = "192.0.2.1", "192.0.2.2"
PSK = "uml_test_psk_0123456789"
REKEY_SECONDS = 5.0

SWANCTL_CONF = f"""connections {{
    aws {{
        version = 2
        local_addrs = {AWS}
        remote_addrs = {CGW}
        proposals = aes128-sha256-modp2048
        mobike = no
        local {{
            auth = psk
            id = {AWS}
        }}
        remote {{
            auth = psk
            id = {CGW}
        }}
        children {{
            vti {{
                local_ts = 0.0.0.0/0
                remote_ts = 0.0.0.0/0
                mark_in = 42
                mark_out = 42
                esp_proposals = aes128gcm16-modp2048
                rekey_time = 3000
                rand_time = 0
                life_time = 3600
                start_action = none
            }}
        }}
    }}
}}
secrets {{
    ike-cgw {{
        id = {CGW}
        secret = "{PSK}"
    }}
}}
"""


def session_config(force_encap: bool) -> IkeSessionConfig:
    tunnel = AwsTunnel(
        index=1,
        customer_gateway_outside_ip=IPv4Address(CGW),
        vpn_gateway_outside_ip=IPv4Address(AWS),
        customer_gateway_inside_ip=IPv4Address("169.254.10.2"),
        vpn_gateway_inside_ip=IPv4Address("169.254.10.1"),
        inside_cidr=None,
        pre_shared_key=Secret(PSK),
        ike_version="ikev2",
        phase1=PhaseSettings(encryption_allowed=(), integrity_allowed=(), dh_groups_allowed=()),
        phase2=PhaseSettings(encryption_allowed=(), integrity_allowed=(), dh_groups_allowed=()),
        dpd=DeadPeerDetection(),
    )
    ps = proposals_for(tunnel, "ikev2")
    cfg = IkeSessionConfig(
        tunnel="cgt0",
        local_address=IPv4Address(CGW),
        remote_address=IPv4Address(AWS),
        psk=Secret(PSK),
        ike_proposals=proposals_from_config(ps.ike, ProtocolId.IKE),
        esp_proposals=proposals_from_config(ps.esp, ProtocolId.ESP),
    )
    return replace(
        cfg,
        child_rekey_time=REKEY_SECONDS,
        child_lifetime=60.0,
        rekey_jitter=0.0,
        force_encap=force_encap,
    )


def wait_for(what: str, check: Any, timeout: float = 30.0) -> float:
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if check():
            return time.monotonic() - start
        time.sleep(0.1)
    raise TimeoutError(f"{what} did not happen within {timeout} s")


def main() -> None:
    # "encap": cgwd forces NAT-T (a fake NAT_DETECTION hash), so both ends float to 4500
    # and the kernels do ESP-in-UDP; the default is raw ESP (IP protocol 50).
    force_encap = sys.argv[1:] == ["encap"]
    result: dict[str, Any] = {"force_encap": force_encap}
    topo = Topology()
    charon: Charon | None = None
    gw: Gateway | None = None
    host_box: dict[str, Any] = {}
    workdir = Path(tempfile.mkdtemp(prefix="cgwd-ss-", dir="/var/tmp"))
    try:
        cgw_ns, aws_ns = topo.add_netns("cgw"), topo.add_netns("aws")
        topo.link(cgw_ns, "out0", aws_ns, "out0")
        cgw_ns.ip("addr", "add", f"{CGW}/24", "dev", "out0")
        aws_ns.ip("addr", "add", f"{AWS}/24", "dev", "out0")
        # strongSwan's route-based side: a VTI keyed 42, its SAs and policies marked 42.
        aws_ns.ip("link", "add", "vti42", "type", "vti", "local", AWS, "remote", CGW, "key", "42")
        aws_ns.ip("addr", "add", "169.254.10.1/30", "peer", "169.254.10.2", "dev", "vti42")
        aws_ns.ip("link", "set", "dev", "vti42", "up")
        aws_ns.sysctl("net.ipv4.conf.vti42.disable_policy", "1")
        plugins = tuple(p for p in DEFAULT_PLUGINS if p != "kernel-libipsec")
        settings = CharonSettings(plugins=plugins, retransmit_timeout=2.0, retransmit_tries=3)
        charon = Charon(aws_ns, workdir, settings=settings, swanctl_conf=SWANCTL_CONF)
        charon.start(timeout=30)

        gw = Gateway(cgw_ns.name)
        gw.open_tunnel(
            tunnel_spec("cgt0", "169.254.10.2/30", "169.254.10.1", CGW, AWS), mss=1300, routes=[]
        )
        clock = MonotonicClock()

        async def start_ike() -> None:
            assert gw is not None
            host = IkeHost(gw.dp, clock, IPv4Address(CGW))
            await host.start()
            # What the daemon must do with the kernel dataplane: the kernel takes ESP-in-UDP
            # off the 4500 socket, and IKE bypasses every IPsec policy.
            for port, transport in host._transports.items():
                prepare_ike_socket(transport.get_extra_info("socket"), nat_t=port == 4500)
            session = IkeSession(
                session_config(force_encap),
                SystemRng(),
                lambda: gw.dp.allocate_spi("cgt0"),
                clock.now(),
            )
            host.add_session(session)
            host.initiate(session)
            host_box.update(host=host, session=session)

        gw.call(start_ike)
        assert gw is not None
        g = gw
        result["established_after"] = wait_for(
            "the CHILD_SA", lambda: g.sync(lambda: g.dp.current_outbound("cgt0")) is not None
        )
        first_out = g.sync(lambda: g.dp.current_outbound("cgt0"))
        result["ping"] = ping(cgw_ns.name, "169.254.10.1")

        # TCP: cgw -> a server on strongSwan's inside address.
        payload = os.urandom(1_000_000)
        listening = threading.Event()
        got: dict[str, Any] = {}

        def server() -> None:
            srv = socket.socket()
            srv.bind(("169.254.10.1", 5001))
            srv.listen(1)
            srv.settimeout(30)
            listening.set()
            conn, _ = srv.accept()
            conn.settimeout(30)
            h = hashlib.sha256()
            n = 0
            while chunk := conn.recv(65536):
                h.update(chunk)
                n += len(chunk)
            got.update(bytes=n, sha256=h.hexdigest())
            conn.close()
            srv.close()

        t = threading.Thread(target=lambda: run_in_netns(aws_ns.name, server, 60), daemon=True)
        t.start()
        listening.wait(20)

        def client() -> None:
            with socket.create_connection(("169.254.10.1", 5001), timeout=30) as c:
                c.sendall(payload)

        run_in_netns(cgw_ns.name, client, 60)
        t.join(60)
        result["tcp_ok"] = got.get("sha256") == hashlib.sha256(payload).hexdigest()
        result["tcp_bytes"] = got.get("bytes")
        result["xfrm_bytes_cgw"] = xfrm_state_bytes(cgw_ns.name)
        result["xfrm_bytes_aws"] = xfrm_state_bytes(aws_ns.name)
        result["encap_in_state"] = (
            "encap type espinudp" in sh("ip", "-n", cgw_ns.name, "xfrm", "state").stdout
        )

        # Rekeys under a UDP stream: cgwd rekeys the CHILD_SA every REKEY_SECONDS.
        seen: set[int] = set()
        bound = threading.Event()
        stop = threading.Event()

        def receiver() -> None:
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            s.bind(("169.254.10.1", 5002))
            s.settimeout(0.5)
            bound.set()
            while not stop.is_set():
                try:
                    seen.add(int.from_bytes(s.recv(2048)[:4], "big"))
                except TimeoutError:
                    continue
            s.close()

        rx = threading.Thread(target=lambda: run_in_netns(aws_ns.name, receiver, 120), daemon=True)
        rx.start()
        bound.wait(10)
        sent = 0
        outbound_seen = {str(first_out)}

        def sender() -> None:
            nonlocal sent
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            end = time.monotonic() + 2.5 * REKEY_SECONDS
            while time.monotonic() < end:
                s.sendto(sent.to_bytes(4, "big") + b"y" * 100, ("169.254.10.1", 5002))
                sent += 1
                if sent % 50 == 0:
                    outbound_seen.add(str(g.sync(lambda: g.dp.current_outbound("cgt0"))))
                time.sleep(0.005)
            s.close()

        run_in_netns(cgw_ns.name, sender, 120)
        time.sleep(1.0)
        stop.set()
        rx.join(10)
        result["rekey_stream"] = {
            "sent": sent,
            "received": len(seen),
            "missing": sorted(set(range(sent)) - seen)[:20],
        }
        result["outbound_sas_seen"] = sorted(outbound_seen)
        result["ping_after_rekeys"] = ping(cgw_ns.name, "169.254.10.1")
        result["charon_sas"] = charon.swanctl("--list-sas", check=False).stdout[-3000:]

        async def stop_ike() -> None:
            await host_box["host"].close(delete=True, grace=1.0)

        g.call(stop_ike)
        g.shutdown()
        gw = None
        result["leftovers_cgw"] = leftovers(cgw_ns.name, ["cgt0"])
        result["charon_sas_after"] = sh("swanctl", "--list-sas", "--uri", charon.uri).stdout.strip()
    finally:
        if gw is not None:
            try:
                if "host" in host_box:
                    gw.call(lambda: host_box["host"].close(delete=False))
                gw.shutdown()
            except Exception as exc:  # report, keep cleaning up
                result.setdefault("shutdown_errors", []).append(repr(exc))
        if charon is not None:
            result["charon_log_tail"] = charon.log_tail()[-2000:] if "ping" not in result else ""
            charon.stop()
        topo.close()
        shutil.rmtree(workdir, ignore_errors=True)
    print(json.dumps(result, default=str))


if __name__ == "__main__":
    asyncio.set_event_loop_policy(None)
    main()
