"""UML scenario: what cgwd's real nftables clamp does on a kernel without the inet family.

Debian's UML kernel has nf_tables with the bridge family only. In a fresh namespace:
which families nft accepts (``nft add table``, iproute2 and nft, not cgwd's probe), the
error `PyrouteNetOps.apply_mss_clamp` raises, and that removing the clamp and the crash
cleanup still succeed (nothing of cgwd's can exist). Prints one JSON document.
"""

from __future__ import annotations

import json
from typing import Any

from scenario_lib import sh

from cgwd.lab.netns import Topology
from cgwd.net.base import MssClamp, NetOpsError
from cgwd.net.pyroute import PyrouteNetOps


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
        net = PyrouteNetOps(ns.name)
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
    finally:
        topo.close()
    print(json.dumps(result))


if __name__ == "__main__":
    main()
