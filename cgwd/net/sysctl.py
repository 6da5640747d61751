"""Read and write ``/proc/sys/net`` keys, in cgwd's own or a named network namespace.

``/proc/sys/net`` shows the network namespace of the *thread* that looks it up, so for a
named namespace (the tests and the lab drive namespaces they created) the file is opened
from a short-lived thread that has joined that namespace with setns(2); the calling thread,
and so the rest of the process, never changes namespace.
"""

from __future__ import annotations

import ctypes
import os
import threading
from collections.abc import Callable
from typing import TypeVar

from cgwd.net.base import NetOpsError, check_interface_name

CLONE_NEWNET = 0x40000000  # <linux/sched.h>
NETNS_RUN_DIR = "/run/netns"  # where `ip netns add` mounts named namespaces

T = TypeVar("T")


def _setns(path: str) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        if libc.setns(fd, CLONE_NEWNET) != 0:
            err = ctypes.get_errno()
            raise OSError(err, f"setns({path}): {os.strerror(err)}")
    finally:
        os.close(fd)


def in_netns(netns: str | None, func: Callable[[], T]) -> T:
    """Call ``func`` in network namespace ``netns`` (None: here) and return its result.

    Exceptions raised by ``func`` propagate; a namespace that cannot be joined raises
    `NetOpsError`.
    """
    if netns is None:
        return func()
    outcome: list[T] = []
    failure: list[BaseException] = []

    def runner() -> None:
        try:
            _setns(os.path.join(NETNS_RUN_DIR, netns))
        except OSError as exc:
            failure.append(NetOpsError(f"cannot enter network namespace {netns}: {exc}"))
            return
        try:
            outcome.append(func())
        except BaseException as exc:  # handed to the caller's thread below
            failure.append(exc)

    thread = threading.Thread(target=runner, name=f"netns-{netns}", daemon=True)
    thread.start()
    thread.join()
    if failure:
        raise failure[0]
    return outcome[0]


SysctlKey = tuple[str, ...]
"""A key as path components, ``("net", "ipv4", "conf", "vpc01-t1", "rp_filter")``: an
interface name may contain dots (``eth0.100``), so dotted strings would be ambiguous."""


def interface_key(interface: str, name: str) -> SysctlKey:
    """The key ``net.ipv4.conf.<interface>.<name>``."""
    return ("net", "ipv4", "conf", check_interface_name(interface), name)


def key_name(key: SysctlKey) -> str:
    return ".".join(key)


def _key_path(key: SysctlKey) -> str:
    if not key or key[0] != "net" or any(p in ("", ".", "..") or "/" in p for p in key):
        raise NetOpsError(f"not a net.* sysctl key: {key_name(key)!r}")
    return "/proc/sys/" + "/".join(key)


def read_sysctl(key: SysctlKey, netns: str | None = None) -> str:
    """The value of ``key`` (e.g. ``("net", "ipv4", "ip_forward")``), stripped.

    Raises:
        NetOpsError: the key does not exist or cannot be read.
    """
    path = _key_path(key)

    def read() -> str:
        with open(path, encoding="ascii") as f:
            return f.read().strip()

    try:
        return in_netns(netns, read)
    except OSError as exc:
        raise NetOpsError(f"cannot read {key_name(key)}: {exc.strerror or exc}") from None


def write_sysctl(key: SysctlKey, value: str, netns: str | None = None) -> None:
    """Set ``key`` to ``value``.

    Raises:
        NetOpsError: the key does not exist or the kernel refused the value (a read-only
        /proc/sys under systemd's ProtectKernelTunables= shows up here).
    """
    path = _key_path(key)

    def write() -> None:
        with open(path, "w", encoding="ascii") as f:
            f.write(value)

    try:
        in_netns(netns, write)
    except OSError as exc:
        raise NetOpsError(f"cannot set {key_name(key)}={value}: {exc.strerror or exc}") from None
