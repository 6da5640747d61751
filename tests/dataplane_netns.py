"""Run test code inside a network namespace from the pytest process (a helper, not tests).

``setns(CLONE_NEWNET)`` switches only the calling thread, and threads it starts (an event
loop's executor, datapath workers) inherit its namespace; sockets and TUN devices stay in
the namespace they were created in. So each call runs its function on a fresh thread that
enters the namespace first, leaving the pytest process itself untouched.
"""

from __future__ import annotations

import asyncio
import ctypes
import os
import threading
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

T = TypeVar("T")
CLONE_NEWNET = 0x40000000  # <linux/sched.h>


def enter_netns(name: str) -> None:
    """Move the calling thread into network namespace ``name`` (from ``ip netns add``)."""
    libc = ctypes.CDLL(None, use_errno=True)
    fd = os.open(f"/run/netns/{name}", os.O_RDONLY | os.O_CLOEXEC)
    try:
        if libc.setns(fd, CLONE_NEWNET) != 0:
            err = ctypes.get_errno()
            raise OSError(err, os.strerror(err))
    finally:
        os.close(fd)


def run_in_netns(name: str, fn: Callable[[], T], timeout: float = 60.0) -> T:
    """``fn()`` on a thread inside namespace ``name``; its exception is re-raised here."""
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            enter_netns(name)
            box["value"] = fn()
        except BaseException as exc:
            box["error"] = exc

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(timeout)
    assert not thread.is_alive(), f"code in namespace {name} hung for {timeout} s"
    if "error" in box:
        raise box["error"]
    return box["value"]  # type: ignore[no-any-return]


def run_async_in_netns(name: str, fn: Callable[[], Awaitable[T]], timeout: float = 60.0) -> T:
    """``asyncio.run(fn())`` inside namespace ``name``."""
    return run_in_netns(name, lambda: asyncio.run(fn()), timeout)  # type: ignore[arg-type]
