"""UML scenario: a cgwd that dies without cleaning up, then a fresh start.

The first KernelDataplane opens two tunnels with SAs (one larval SA from ALLOCSPI too) and is
abandoned without close(), as after a crash; a foreign VTI, SA and policy (outside cgwd's
mark range) sit next to them. A new KernelDataplane's start() must remove exactly cgwd's.
Prints one JSON document.
"""

from __future__ import annotations

import json
from typing import Any

from scenario_lib import params, run_in_netns, sh, tunnel_spec

from cgwd.dataplane.base import SaId
from cgwd.dataplane.kernel import KernelDataplane
from cgwd.esp.suites import suite_by_name
from cgwd.lab.netns import Topology


async def crash_then_restart() -> dict[str, Any]:
    first = KernelDataplane()
    await first.open_tunnel(
        tunnel_spec("cgt1", "169.254.1.2/30", "169.254.1.1", "192.0.2.1", "192.0.2.2")
    )
    await first.open_tunnel(
        tunnel_spec("cgt2", "169.254.2.2/30", "169.254.2.1", "192.0.2.1", "192.0.2.3")
    )
    gcm = suite_by_name("aes128gcm16")
    await first.add_sa(SaId("cgt1", "in", first.allocate_spi("cgt1")), params(gcm, encap=False))
    await first.add_sa(SaId("cgt1", "out", 0x1111), params(gcm, encap=False))
    await first.add_sa(SaId("cgt2", "out", 0x2222), params(gcm, encap=True))
    first.allocate_spi("cgt2")  # a larval SA that never becomes an SA
    # An SA that vanished from the kernel behind cgwd's back can still be removed.
    gone = sh("ip", "xfrm", "state", "delete", "src", "192.0.2.1", "dst", "192.0.2.2",
              "proto", "esp", "spi", "0x1111", "mark", "0x63670001")  # fmt: skip
    await first.remove_sa(SaId("cgt1", "out", 0x1111))
    vanished = {"ip_rc": gone.returncode, "current_outbound": first.current_outbound("cgt1")}
    # ... and the process dies here: no close().
    second = KernelDataplane()
    removed = await second.start()
    await second.close()
    return {"removed": removed, "vanished": vanished}


def main() -> None:
    with Topology() as topo:
        ns = topo.add_netns("crash")
        ns.ip("link", "add", "v0", "type", "veth", "peer", "name", "v1")
        ns.ip("addr", "add", "192.0.2.1/24", "dev", "v0")
        ns.ip("link", "set", "dev", "v0", "up")
        # Someone else's IPsec: must survive.
        ns.ip(
            "link",
            "add",
            "theirs",
            "type",
            "vti",
            "local",
            "192.0.2.1",
            "remote",
            "192.0.2.9",
            "key",
            "7",
        )
        ns.run("ip", "xfrm", "state", "add", "src", "192.0.2.9", "dst", "192.0.2.1", "proto", "esp",
               "spi", "0x7777", "mode", "tunnel", "mark", "7", "aead", "rfc4106(gcm(aes))",
               "0x" + "11" * 20, "128")  # fmt: skip
        ns.run("ip", "xfrm", "policy", "add", "src", "0.0.0.0/0", "dst", "0.0.0.0/0", "dir", "in",
               "mark", "7", "tmpl", "src", "192.0.2.9", "dst", "192.0.2.1", "proto", "esp",
               "mode", "tunnel")  # fmt: skip
        result = run_in_netns(ns.name, lambda: __import__("asyncio").run(crash_then_restart()), 60)
        result["links_after"] = sh("ip", "-n", ns.name, "-o", "link", "show").stdout
        result["states_after"] = sh("ip", "-n", ns.name, "xfrm", "state").stdout
        result["policies_after"] = sh("ip", "-n", ns.name, "xfrm", "policy").stdout
    print(json.dumps(result))


if __name__ == "__main__":
    main()
