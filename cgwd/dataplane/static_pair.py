"""Two userspace tunnels with static keys, one per network namespace: for tests and bench.

`StaticPair.start(topology_ns_a, ns_b, ...)` writes each side's config (keys included) to a
0600 file in a private temporary directory, starts ``python -m cgwd.dataplane.static_tunnel``
inside each namespace, waits for both to report ready, and lets the caller drive them with
the runner's stdin commands (`command`). `stop()` ends both and removes the files.

Side A uses ``192.0.2.1`` outside / ``169.254.10.2/30`` inside by default, side B
``192.0.2.2`` / ``169.254.10.1``; the caller links the namespaces and addresses the
outside interfaces (see `link_outside`).
"""

from __future__ import annotations

import json
import os
import secrets
import select
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from typing import Any

from cgwd.errors import CgwdError
from cgwd.esp.suites import suite_by_name
from cgwd.lab.netns import Netns, Topology

READY_TIMEOUT = 20.0


@dataclass
class Side:
    ns: Netns
    outside: str
    inside: str  # address/prefix
    name: str


@dataclass
class StaticPair:
    a: Side
    b: Side
    suite: str
    encap: bool
    pairs: int = 1
    mtu: int = 1400
    procs: dict[str, subprocess.Popen[str]] = field(default_factory=dict)
    workdir: str = ""
    log_level: str = "WARNING"
    datapath: dict[str, Any] = field(default_factory=dict)  # UserspaceDataplane options
    config_a: dict[str, Any] = field(default_factory=dict, repr=False)  # holds keys
    config_b: dict[str, Any] = field(default_factory=dict, repr=False)

    def configs(self) -> tuple[dict[str, Any], dict[str, Any]]:
        """Matching configs for A and B: A's outbound SA is B's inbound one and vice versa."""
        suite = suite_by_name(self.suite)
        sas_a, sas_b = [], []
        for i in range(self.pairs):
            spi_ab, spi_ba = 0x1000 + 2 * i, 0x2000 + 2 * i
            key_ab = secrets.token_bytes(suite.keymat_bytes).hex()
            key_ba = secrets.token_bytes(suite.keymat_bytes).hex()
            sas_a.append(
                {"spi_in": spi_ba, "spi_out": spi_ab, "keymat_in": key_ba, "keymat_out": key_ab}
            )
            sas_b.append(
                {"spi_in": spi_ab, "spi_out": spi_ba, "keymat_in": key_ab, "keymat_out": key_ba}
            )

        def one(me: Side, peer: Side, sas: list[dict[str, Any]]) -> dict[str, Any]:
            return {
                "tunnel": {
                    "name": me.name,
                    "local_inside": me.inside,
                    "remote_inside": peer.inside.split("/")[0],
                    "mtu": self.mtu,
                    "local_outside": me.outside,
                    "remote_outside": peer.outside,
                },
                "suite": self.suite,
                "encap": self.encap,
                "sas": sas,
                "datapath": self.datapath,
            }

        return one(self.a, self.b, sas_a), one(self.b, self.a, sas_b)

    def start(self) -> None:
        """Start both runners; raises CgwdError (with their stderr) if either fails."""
        self.workdir = tempfile.mkdtemp(prefix="cgwd-static-")
        os.chmod(self.workdir, 0o700)
        self.config_a, self.config_b = self.configs()
        for side, config in ((self.a, self.config_a), (self.b, self.config_b)):
            path = os.path.join(self.workdir, f"{side.ns.name}.json")
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as f:
                json.dump(config, f)
            proc: subprocess.Popen[str] = subprocess.Popen(
                side.ns.exec_argv(
                    [
                        sys.executable,
                        "-m",
                        "cgwd.dataplane.static_tunnel",
                        "--config",
                        path,
                        "--log-level",
                        self.log_level,
                    ]
                ),
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                cwd=os.path.dirname(os.path.dirname(os.path.dirname(__file__))),
            )
            self.procs[side.ns.name] = proc
        for name in self.procs:
            self._read_json(name, READY_TIMEOUT)

    def _read_json(self, name: str, timeout: float) -> dict[str, Any]:
        proc = self.procs[name]
        assert proc.stdout is not None
        ready, _, _ = select.select([proc.stdout], [], [], timeout)
        line = proc.stdout.readline() if ready else ""
        if not line:
            proc.kill()
            _, err = proc.communicate(timeout=5)
            raise CgwdError(f"static tunnel in {name} gave no answer: {err.strip()[-2000:]}")
        answer: dict[str, Any] = json.loads(line)
        return answer

    def command(self, side: Side, line: str, timeout: float = 10.0) -> dict[str, Any]:
        """Send one runner command to ``side`` and return its JSON answer."""
        proc = self.procs[side.ns.name]
        assert proc.stdin is not None
        proc.stdin.write(line + "\n")
        proc.stdin.flush()
        return self._read_json(side.ns.name, timeout)

    def pid(self, side: Side) -> int:
        return self.procs[side.ns.name].pid

    def stop(self) -> dict[str, str]:
        """Stop both runners; returns their stderr by namespace (for diagnostics)."""
        errors: dict[str, str] = {}
        for name, proc in self.procs.items():
            if proc.poll() is None:
                proc.terminate()
            try:
                _, err = proc.communicate(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                _, err = proc.communicate(timeout=5)
            errors[name] = err
        self.procs.clear()
        if self.workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)
        return errors


def link_outside(topo: Topology, a: Side, b: Side, prefix: int = 24) -> None:
    """A veth between the two namespaces carrying the outside addresses."""
    topo.link(a.ns, "out0", b.ns, "out0")
    a.ns.ip("addr", "add", f"{a.outside}/{prefix}", "dev", "out0")
    b.ns.ip("addr", "add", f"{b.outside}/{prefix}", "dev", "out0")


def wait_for(predicate: Any, timeout: float, interval: float = 0.05) -> bool:
    """Poll ``predicate()`` until true or ``timeout`` seconds pass."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return bool(predicate())
