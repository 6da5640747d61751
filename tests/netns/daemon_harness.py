"""`cgwd run` as a process in a lab's ``cgw`` namespace, and the real CLI to ask it.

Shared by the daemon's end-to-end tests. Every wait is bounded; the log is attached to any
failure.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from cgwd.lab.aws_side import AwsLab
from cgwd.lab.strongswan import wait_until

REPO = Path(__file__).resolve().parents[2]
PYTHON = str(REPO / ".venv" / "bin" / "python")
if not Path(PYTHON).exists():  # CI may run from another interpreter
    PYTHON = shutil.which("python3") or "python3"


def private_copy(source: Path, directory: Path, name: str | None = None) -> Path:
    """A copy of an AWS download with mode 0600, as cgwd requires for files holding PSKs."""
    target = directory / (name or source.name)
    target.write_bytes(source.read_bytes())
    os.chmod(target, 0o600)
    return target


def connection_toml(name: str, aws_config: Path, routes: list[str], **extra: object) -> str:
    lines = [
        "[[connection]]",
        f'name = "{name}"',
        f'aws_config = "{aws_config}"',
        "routes = [" + ", ".join(f'"{r}"' for r in routes) + "]",
    ]
    for key, value in extra.items():
        lines.append(f"{key} = {json.dumps(value)}")
    return "\n".join(lines) + "\n"


def daemon_toml(socket_path: Path, *connections: str, dataplane: str = "userspace") -> str:
    head = f'[daemon]\ncontrol_socket = "{socket_path}"\ndataplane = "{dataplane}"\n\n'
    return head + "\n".join(connections)


def cli(*args: str, timeout: float = 15.0) -> subprocess.CompletedProcess[str]:
    """The real `cgwd` command line (in the root namespace: the control socket is a path)."""
    return subprocess.run(
        [PYTHON, "-m", "cgwd", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=str(REPO),
        check=False,
    )


class CgwdProcess:
    """One `cgwd run --config FILE` in the lab's ``cgw`` namespace."""

    def __init__(
        self,
        lab: AwsLab,
        config: Path,
        socket_path: Path,
        log_file: Path,
        env: dict[str, str] | None = None,
    ) -> None:
        self.lab = lab
        self.config = config
        self.socket = socket_path
        self.log_file = log_file
        self._log = log_file.open("a")
        self.proc = lab.ns["cgw"].popen(
            PYTHON, "-m", "cgwd", "run", "--config", str(config), "--log-level", "debug",
            stdout=self._log, stderr=subprocess.STDOUT, cwd=str(REPO), env=env,
        )  # fmt: skip

    def log(self) -> str:
        return self.log_file.read_text(errors="replace")

    def status(self) -> dict[str, Any]:
        out = cli("status", "--json", "--socket", str(self.socket))
        if out.returncode != 0:
            return {}
        return dict(json.loads(out.stdout))

    def tunnels(self) -> dict[str, dict[str, Any]]:
        """Interface name -> the tunnel's status."""
        return {
            t["interface"]: t for c in self.status().get("connections", []) for t in c["tunnels"]
        }

    def wait(self, pred: Callable[[dict[str, Any]], bool], timeout: float, what: str) -> None:
        def check() -> bool:
            assert self.proc.poll() is None, f"cgwd exited ({self.proc.returncode})"
            return pred(self.status())

        try:
            wait_until(check, timeout, 0.25, what)
        except Exception as exc:
            raise AssertionError(f"{exc}\n--- cgwd log:\n{self.log()[-6000:]}") from None

    def wait_up(self, count: int, timeout: float = 20.0) -> dict[str, Any]:
        def up(doc: dict[str, Any]) -> bool:
            tunnels = [t for c in doc.get("connections", []) for t in c["tunnels"]]
            return len(tunnels) == count and all(t["state"] == "up" for t in tunnels)

        self.wait(up, timeout, f"{count} tunnels up")
        return self.status()

    def signal(self, sig: signal.Signals) -> None:
        self.proc.send_signal(sig)

    def stop(self, timeout: float = 10.0) -> tuple[int, float]:
        """SIGTERM; returns (exit status, seconds until exit)."""
        start = time.monotonic()
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self._log.close()
        return self.proc.returncode, time.monotonic() - start
