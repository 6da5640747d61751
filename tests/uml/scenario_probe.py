"""UML scenario: `dataplane = "auto"` on a kernel with ESP and VTIs, probed both ways: in a
namespace of its own (unshare) and, as under the systemd unit, in the daemon's namespace,
which must be left exactly as it was. Prints JSON."""

from __future__ import annotations

import json
import subprocess
from typing import Any

from scenario_lib import run_in_netns

from cgwd.dataplane.select import _probe_in_current_thread, choose_dataplane, probe_kernel
from cgwd.lab.netns import Topology


def _state(ns: str) -> list[str]:
    return [
        subprocess.run(
            ["ip", "netns", "exec", ns, "ip", *cmd], capture_output=True, text=True, check=False
        ).stdout
        for cmd in (["xfrm", "state"], ["xfrm", "policy"], ["-o", "link"])
    ]


def main() -> None:
    with Topology() as topo:
        ns = topo.add_netns("probe")
        before = _state(ns.name)
        shared = run_in_netns(ns.name, lambda: _probe_in_current_thread(shared_namespace=True))
        after = _state(ns.name)
    own = probe_kernel()
    doc: dict[str, Any] = {
        "own": [own.esp_problem, own.interface_kind, own.interface_problem],
        "shared": [shared.esp_problem, shared.interface_kind, shared.interface_problem],
        "unchanged": before == after,
        "choice": list(choose_dataplane("auto", shared)),
    }
    print(json.dumps(doc))


if __name__ == "__main__":
    main()
