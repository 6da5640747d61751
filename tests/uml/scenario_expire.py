"""UML scenario: the kernel's EXPIRE events for an SA with soft and hard lifetimes, read
with cgwd's XFRM socket (multicast group XFRMNLGRP_EXPIRE) and decoder. Prints JSON."""

from __future__ import annotations

import json
import time
from functools import partial
from ipaddress import IPv4Address
from typing import Any

from scenario_lib import run_in_netns

from cgwd.esp.suites import suite_by_name
from cgwd.lab.netns import Topology
from cgwd.net.xfrm import messages as m
from cgwd.net.xfrm.socket import XfrmSocket
from cgwd.secret import Secret


def body() -> list[dict[str, Any]]:
    suite = suite_by_name("aes256-sha256")
    spec = m.SaSpec(
        IPv4Address("192.0.2.2"),
        IPv4Address("192.0.2.1"),
        0xC0FFEE01,
        suite,
        Secret(bytes(suite.keymat_bytes)),
        reqid=3,
        replay_window=64,
        mark=m.Mark(0x63670042),
        lifetime=m.Lifetime(soft_add_seconds=1, hard_add_seconds=3),
    )
    events: list[dict[str, Any]] = []
    with (
        XfrmSocket(groups=1 << (m.XFRMNLGRP_EXPIRE - 1), timeout=0.5) as listener,
        XfrmSocket() as sock,
    ):
        sock.request(partial(m.encode_newsa, spec), "adding the SA")
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and not any(e["hard"] for e in events):
            for msg in listener.read_events():
                if msg.type == m.XFRM_MSG_EXPIRE:
                    ev = m.decode_expire(msg)
                    events.append(
                        {
                            "hard": ev.hard,
                            "spi": ev.sa.spi,
                            "mark": ev.sa.mark.value if ev.sa.mark else None,
                            "algorithms": list(ev.sa.algorithms),
                            "replay_window": ev.sa.replay_window,
                            "soft": ev.sa.soft_add_seconds,
                            "hard_seconds": ev.sa.hard_add_seconds,
                        }
                    )
        remaining = sock.request(partial(m.encode_dump, m.XFRM_MSG_GETSA), "dump")
    events.append({"remaining_sas": len(remaining)})
    return events


def main() -> None:
    with Topology() as topo:
        ns = topo.add_netns("exp")
        print(json.dumps(run_in_netns(ns.name, body, timeout=30)))


if __name__ == "__main__":
    main()
