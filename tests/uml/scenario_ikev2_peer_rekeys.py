"""UML scenario: strongSwan (charon, kernel-netlink) rekeys the CHILD_SA every second and
deletes the old one, with cgwd (IkeHost + IkeSession + the kernel dataplane) as the
responder of every rekey, under a UDP stream from cgwd's side.

Observes: every dataplane operation cgwd makes with the current outbound SA after it (a
rekey responder must install the new outbound SA before removing the old one), how many
rekeys happened, and how many datagrams of the stream arrived. Prints one JSON document.
The setup (topology, charon's VTI, the swanctl file) is scenario_ike_strongswan.py's.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import socket
import tempfile
import threading
import time
from dataclasses import replace
from ipaddress import IPv4Address
from pathlib import Path
from typing import Any

from scenario_ike_strongswan import AWS, CGW, SWANCTL_CONF, session_config, wait_for
from scenario_lib import Gateway, run_in_netns, tunnel_spec

from cgwd.dataplane.base import SaId, SaParams
from cgwd.ike.clock import MonotonicClock
from cgwd.ike.host import IkeHost
from cgwd.ike.rng import SystemRng
from cgwd.ike.v2.session import IkeSession
from cgwd.lab.netns import Topology
from cgwd.lab.strongswan import DEFAULT_PLUGINS, Charon, CharonSettings

PEER_REKEY = "rekey_time = 1s"
STREAM_SECONDS = 10.0


def _record_operations(dp: Any, log: list[tuple[str, str, str]]) -> None:
    """Wrap the dataplane's add_sa/remove_sa: (op, SA, current outbound SA after it)."""
    add, remove = dp.add_sa, dp.remove_sa

    async def add_sa(sa: SaId, params: SaParams) -> None:
        await add(sa, params)
        log.append(("add", str(sa), str(dp.current_outbound(sa.tunnel))))

    async def remove_sa(sa: SaId) -> None:
        await remove(sa)
        log.append(("remove", str(sa), str(dp.current_outbound(sa.tunnel))))

    dp.add_sa, dp.remove_sa = add_sa, remove_sa


def main() -> None:
    result: dict[str, Any] = {}
    topo = Topology()
    charon: Charon | None = None
    gw: Gateway | None = None
    host_box: dict[str, Any] = {}
    ops: list[tuple[str, str, str]] = []
    workdir = Path(tempfile.mkdtemp(prefix="cgwd-ss-", dir="/var/tmp"))
    try:
        cgw_ns, aws_ns = topo.add_netns("cgw"), topo.add_netns("aws")
        topo.link(cgw_ns, "out0", aws_ns, "out0")
        cgw_ns.ip("addr", "add", f"{CGW}/24", "dev", "out0")
        aws_ns.ip("addr", "add", f"{AWS}/24", "dev", "out0")
        aws_ns.ip("link", "add", "vti42", "type", "vti", "local", AWS, "remote", CGW, "key", "42")
        aws_ns.ip("addr", "add", "169.254.10.1/30", "peer", "169.254.10.2", "dev", "vti42")
        aws_ns.ip("link", "set", "dev", "vti42", "up")
        aws_ns.sysctl("net.ipv4.conf.vti42.disable_policy", "1")
        plugins = tuple(p for p in DEFAULT_PLUGINS if p != "kernel-libipsec")
        settings = CharonSettings(plugins=plugins, retransmit_timeout=2.0, retransmit_tries=3)
        conf = SWANCTL_CONF.replace("rekey_time = 3000", PEER_REKEY)
        assert conf != SWANCTL_CONF
        charon = Charon(aws_ns, workdir, settings=settings, swanctl_conf=conf)
        charon.start(timeout=30)

        gw = Gateway(cgw_ns.name)
        gw.open_tunnel(
            tunnel_spec("cgt0", "169.254.10.2/30", "169.254.10.1", CGW, AWS), mss=1300, routes=[]
        )
        _record_operations(gw.dp, ops)
        clock = MonotonicClock()

        async def start_ike() -> None:
            assert gw is not None
            host = IkeHost(gw.dp, clock, IPv4Address(CGW))
            await host.start()  # prepares its sockets itself: the kernel dataplane needs it
            cfg = session_config(False)
            session = IkeSession(
                replace(cfg, child_rekey_time=3600.0, child_lifetime=7200.0),
                SystemRng(),
                lambda: gw.dp.allocate_spi("cgt0"),
                clock.now(),
            )
            host.add_session(session)
            host.initiate(session)
            host_box.update(host=host, session=session)

        gw.call(start_ike)
        g = gw
        wait_for("the CHILD_SA", lambda: g.sync(lambda: g.dp.current_outbound("cgt0")) is not None)

        seen: set[int] = set()
        bound, stop = threading.Event(), threading.Event()

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

        def sender() -> None:
            nonlocal sent
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            end = time.monotonic() + STREAM_SECONDS
            while time.monotonic() < end:
                s.sendto(sent.to_bytes(4, "big") + b"z" * 100, ("169.254.10.1", 5002))
                sent += 1
                time.sleep(0.002)
            s.close()

        start_ops = len(ops)
        run_in_netns(cgw_ns.name, sender, 120)
        time.sleep(1.0)
        stop.set()
        rx.join(10)
        window = ops[start_ops:]
        result["stream"] = {"sent": sent, "received": len(seen)}
        result["missing"] = sorted(set(range(sent)) - seen)[:20]
        result["operations"] = len(window)
        result["outbound_adds"] = sum(1 for op, sa, _ in window if op == "add" and "/out/" in sa)
        result["no_outbound_after"] = [o for o in window if o[2] == "None"]
        result["first_operations"] = window[:8]

        async def stop_ike() -> None:
            await host_box["host"].close(delete=True, grace=1.0)

        g.call(stop_ike)
        g.shutdown()
        gw = None
    finally:
        if gw is not None:
            try:
                if "host" in host_box:
                    gw.call(lambda: host_box["host"].close(delete=False))
                gw.shutdown()
            except Exception as exc:  # report, keep cleaning up
                result.setdefault("shutdown_errors", []).append(repr(exc))
        if charon is not None:
            if "stream" not in result:
                result["charon_log_tail"] = charon.log_tail()[-2000:]
            charon.stop()
        topo.close()
        shutil.rmtree(workdir, ignore_errors=True)
    print(json.dumps(result, default=str))


if __name__ == "__main__":
    asyncio.set_event_loop_policy(None)
    main()
