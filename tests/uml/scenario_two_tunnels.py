"""UML scenario: two tunnels with 0.0.0.0/0 policies up at the same time on one host.

gwA holds tunnel cgt1 to gwB (ESP-in-UDP, AES-GCM) and cgt2 to gwC (raw ESP, AES-CBC with
HMAC-SHA-256, ESN, replay window 2048), both route-based with 0/0 in/out/fwd policies;
gwB and gwC run cgwd's kernel datapath too. Observes: pings through both tunnels at
once, per-tunnel SA counters, the policies installed on gwA, that gwA's own traffic to the
peers' outside addresses is not swallowed by the 0/0 policies, and what is left after
shutdown. Prints one JSON document.
"""

from __future__ import annotations

import json
import threading
from typing import Any

from scenario_lib import Gateway, leftovers, params, ping, sh, tunnel_spec

from cgwd.dataplane.base import SaId
from cgwd.esp.suites import suite_by_name
from cgwd.lab.netns import Topology


def main() -> None:
    result: dict[str, Any] = {}
    topo = Topology()
    gws: list[Gateway] = []
    try:
        gw_a, gw_b, gw_c = (topo.add_netns(n) for n in ("ga", "gb", "gc"))
        topo.link(gw_a, "out1", gw_b, "out0")
        topo.link(gw_a, "out2", gw_c, "out0")
        gw_a.ip("addr", "add", "192.0.2.1/24", "dev", "out1")
        gw_b.ip("addr", "add", "192.0.2.2/24", "dev", "out0")
        gw_a.ip("addr", "add", "198.51.100.1/24", "dev", "out2")
        gw_c.ip("addr", "add", "198.51.100.2/24", "dev", "out0")

        a, b, c = Gateway(gw_a.name), Gateway(gw_b.name), Gateway(gw_c.name)
        gws = [a, b, c]
        a.open_ike_socket("0.0.0.0")
        b.open_ike_socket("192.0.2.2")
        a.open_tunnel(
            tunnel_spec("cgt1", "169.254.11.2/30", "169.254.11.1", "192.0.2.1", "192.0.2.2"),
            mss=1300,
            routes=[],
        )
        a.open_tunnel(
            tunnel_spec("cgt2", "169.254.12.2/30", "169.254.12.1", "198.51.100.1", "198.51.100.2"),
            mss=1300,
            routes=[],
        )
        b.open_tunnel(
            tunnel_spec("cgt1", "169.254.11.1/30", "169.254.11.2", "192.0.2.2", "192.0.2.1"),
            mss=1300,
            routes=[],
        )
        c.open_tunnel(
            tunnel_spec("cgt2", "169.254.12.1/30", "169.254.12.2", "198.51.100.2", "198.51.100.1"),
            mss=1300,
            routes=[],
        )
        pairs = [
            (a, b, "cgt1", suite_by_name("aes128gcm16"), False),
            (a, c, "cgt2", suite_by_name("aes256-sha256"), True),
        ]
        spis: dict[str, tuple[int, int]] = {}
        for left, right, name, suite, cbc in pairs:
            spi_lr = right.sync(lambda right=right, name=name: right.dp.allocate_spi(name))
            spi_rl = left.sync(lambda left=left, name=name: left.dp.allocate_spi(name))
            # cgt1: ESP-in-UDP, window 1024; cgt2: raw ESP with ESN and the largest window.
            extra = {"esn": True, "window": 2048} if cbc else {}
            p_lr = params(suite, encap=not cbc, **extra)  # type: ignore[arg-type]
            p_rl = params(suite, encap=not cbc, **extra)  # type: ignore[arg-type]
            right.add_sa(SaId(name, "in", spi_lr), p_lr)
            left.add_sa(SaId(name, "in", spi_rl), p_rl)
            left.add_sa(SaId(name, "out", spi_lr), p_lr)
            right.add_sa(SaId(name, "out", spi_rl), p_rl)
            spis[name] = (spi_lr, spi_rl)

        outcome: dict[str, bool] = {}
        threads = [
            threading.Thread(
                target=lambda addr=addr: outcome.update({addr: ping(gw_a.name, addr, count=5)}),
                daemon=True,
            )
            for addr in ("169.254.11.1", "169.254.12.1")
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        result["ping_both_at_once"] = outcome
        result["counters"] = {
            name: {
                "a_out": a.counters(SaId(name, "out", spis[name][0])),
                "a_in": a.counters(SaId(name, "in", spis[name][1])),
            }
            for name in ("cgt1", "cgt2")
        }
        info = a.sync(lambda: a.dp.sa_info(SaId("cgt2", "in", spis["cgt2"][1])))
        result["cgt2_inbound"] = {
            "replay_window": info.replay_window,
            "esn": bool(info.flags & 128),
            "algorithms": list(info.algorithms),
            "encap": info.encap is not None,
        }
        result["marks"] = {name: a.sync(lambda name=name: a.dp.tunnel_key(name)) for name in spis}
        result["policies_a"] = sh("ip", "-n", gw_a.name, "xfrm", "policy").stdout
        # gwA's own traffic to the peers' outside addresses goes around the tunnels.
        result["outside_ping"] = {
            "192.0.2.2": ping(gw_a.name, "192.0.2.2"),
            "198.51.100.2": ping(gw_a.name, "198.51.100.2"),
        }
        for gw in gws:
            gw.shutdown()
        gws = []
        result["leftovers"] = leftovers(gw_a.name, ["cgt1", "cgt2"])
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
