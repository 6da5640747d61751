"""Network namespaces and veth links for the lab, tests and benchmarks.

Everything made here is recorded in a `Topology` and removed by `Topology.close()`, which
tests call from a ``finally`` (or fixture teardown) so that nothing outlives a failing
test. Names carry a per-run prefix so concurrent runs never collide.
"""

from __future__ import annotations

import os
import secrets
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass, field
from types import TracebackType

from cgwd.errors import CgwdError

IFNAMSIZ = 15  # usable characters of a Linux interface name


def run_prefix(tag: str = "cg") -> str:
    """A short prefix unique to this process and call, e.g. ``cg3f9a``."""
    return f"{tag}{secrets.token_hex(2)}"


def ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run ``ip`` in the current namespace."""
    return _run(["ip", *args], check=check)


def _run(
    cmd: Sequence[str], *, check: bool = True, timeout: float = 30.0, input_text: str | None = None
) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        list(cmd), capture_output=True, text=True, timeout=timeout, input=input_text, check=False
    )
    if check and proc.returncode != 0:
        raise CgwdError(
            f"command failed ({proc.returncode}): {' '.join(cmd)}: {proc.stderr.strip()}"
        )
    return proc


@dataclass
class Netns:
    """A named network namespace."""

    name: str

    def exec_argv(self, cmd: Sequence[str]) -> list[str]:
        return ["ip", "netns", "exec", self.name, *cmd]

    def run(
        self,
        *cmd: str,
        check: bool = True,
        timeout: float = 30.0,
        input_text: str | None = None,
    ) -> subprocess.CompletedProcess[str]:
        """Run a command inside the namespace and wait for it."""
        return _run(self.exec_argv(cmd), check=check, timeout=timeout, input_text=input_text)

    def popen(
        self, *cmd: str, env: dict[str, str] | None = None, **kwargs: object
    ) -> subprocess.Popen[bytes]:
        """Start a command inside the namespace; the caller owns the process."""
        return subprocess.Popen(  # type: ignore[call-overload, no-any-return]
            self.exec_argv(cmd), env={**os.environ, **(env or {})}, **kwargs
        )

    def ip(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return self.run("ip", *args, check=check)

    def sysctl(self, key: str, value: str) -> None:
        self.run("sysctl", "-q", "-w", f"{key}={value}")


@dataclass
class Topology:
    """Namespaces created for one test, lab or benchmark run; `close()` removes them all."""

    prefix: str = field(default_factory=run_prefix)
    namespaces: list[Netns] = field(default_factory=list)

    def add_netns(self, suffix: str) -> Netns:
        ns = Netns(f"{self.prefix}-{suffix}")
        ip("netns", "add", ns.name)
        self.namespaces.append(ns)
        ns.ip("link", "set", "lo", "up")
        return ns

    def link(self, a: Netns, a_if: str, b: Netns, b_if: str, *, mtu: int | None = None) -> None:
        """A veth pair with one end in each namespace, both up."""
        for name in (a_if, b_if):
            if len(name) > IFNAMSIZ:
                raise CgwdError(f"interface name {name!r} is longer than {IFNAMSIZ} characters")
        tmp_a, tmp_b = (
            f"{self.prefix}t{secrets.token_hex(2)}",
            f"{self.prefix}u{secrets.token_hex(2)}",
        )
        ip("link", "add", tmp_a[:IFNAMSIZ], "type", "veth", "peer", "name", tmp_b[:IFNAMSIZ])
        ip("link", "set", "dev", tmp_a[:IFNAMSIZ], "netns", a.name, "name", a_if)
        ip("link", "set", "dev", tmp_b[:IFNAMSIZ], "netns", b.name, "name", b_if)
        for ns, name in ((a, a_if), (b, b_if)):
            if mtu is not None:
                ns.ip("link", "set", "dev", name, "mtu", str(mtu))
            # "dev": a bare name that abbreviates a keyword ("b" = broadcast) is misparsed.
            ns.ip("link", "set", "dev", name, "up")

    def close(self) -> None:
        """Remove every namespace (and so every veth end inside it). Never raises."""
        for ns in reversed(self.namespaces):
            # Kill anything still running inside, then delete the namespace itself.
            pids = _run(["ip", "netns", "pids", ns.name], check=False).stdout.split()
            for pid in pids:
                _run(["kill", "-9", pid], check=False)
            _run(["ip", "netns", "del", ns.name], check=False)
        self.namespaces.clear()

    def __enter__(self) -> Topology:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
