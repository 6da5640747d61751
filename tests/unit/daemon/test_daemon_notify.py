"""sd_notify against a datagram socket of the test's own (path and abstract namespace)."""

from __future__ import annotations

import asyncio
import os
import secrets
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from cgwd.daemon.notify import Notifier, watchdog_loop, watchdog_timeout


@pytest.fixture
def listener(tmp_path: Path) -> Iterator[tuple[socket.socket, str]]:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    path = str(tmp_path / "notify")
    sock.bind(path)
    sock.settimeout(2)
    try:
        yield sock, path
    finally:
        sock.close()


def received(sock: socket.socket) -> list[str]:
    return sock.recv(4096).decode().split("\n")


def test_every_notification(listener: tuple[socket.socket, str]) -> None:
    sock, path = listener
    notifier = Notifier.from_environment({"NOTIFY_SOCKET": path})
    assert notifier.enabled
    assert notifier.ready("2/2 tunnels up")
    assert received(sock) == ["READY=1", "STATUS=2/2 tunnels up"]
    assert notifier.status("1/2 tunnels up\n(vpc01 tunnel 2 down)")
    assert received(sock) == ["STATUS=1/2 tunnels up (vpc01 tunnel 2 down)"]  # one line
    assert notifier.watchdog()
    assert received(sock) == ["WATCHDOG=1"]
    assert notifier.stopping()
    assert received(sock) == ["STOPPING=1"]
    assert notifier.ready()
    assert received(sock) == ["READY=1"]
    notifier.close()


def test_reloading_carries_the_monotonic_clock(listener: tuple[socket.socket, str]) -> None:
    sock, path = listener
    notifier = Notifier(path, monotonic_ns=lambda: 123_456_789_000)
    assert notifier.reloading()
    assert received(sock) == ["RELOADING=1", "MONOTONIC_USEC=123456789"]
    # The real clock is CLOCK_MONOTONIC, as systemd compares it with its own.
    real = Notifier(path)
    before = int(time_monotonic_usec())
    assert real.reloading()
    usec = int(received(sock)[1].removeprefix("MONOTONIC_USEC="))
    assert before <= usec <= int(time_monotonic_usec())


def time_monotonic_usec() -> int:
    return time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000


def test_abstract_socket() -> None:
    name = f"cgwd-test-{os.getpid()}-{secrets.token_hex(4)}"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind("\0" + name)
    sock.settimeout(2)
    try:
        assert Notifier(f"@{name}").ready()
        assert received(sock) == ["READY=1"]
    finally:
        sock.close()


def test_disabled_and_broken_targets_never_raise(tmp_path: Path) -> None:
    assert not Notifier.from_environment({}).enabled
    assert not Notifier.from_environment({}).ready()
    assert not Notifier("vsock:2:1234").enabled
    gone = Notifier(str(tmp_path / "nobody-listens"))
    assert gone.enabled and not gone.watchdog() and not gone.watchdog()
    with pytest.raises(ValueError):
        Notifier(str(tmp_path / "x")).send("STATUS=a\nREADY=1")


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({}, None),
        ({"WATCHDOG_USEC": "30000000"}, 30.0),
        ({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "4242"}, 30.0),
        ({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "1"}, None),
        ({"WATCHDOG_USEC": "0"}, None),
        ({"WATCHDOG_USEC": "-5"}, None),
        ({"WATCHDOG_USEC": "soon"}, None),
        ({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "x"}, None),
    ],
)
def test_watchdog_timeout(env: dict[str, str], expected: float | None) -> None:
    assert watchdog_timeout(env, pid=4242) == expected


def test_watchdog_loop_pings_only_while_healthy(listener: tuple[socket.socket, str]) -> None:
    sock, path = listener
    sock.setblocking(False)
    notifier = Notifier(path)
    healthy = [True]

    async def main() -> int:
        task = asyncio.create_task(watchdog_loop(notifier, 0.04, lambda: healthy[0]))
        await asyncio.sleep(0.1)
        healthy[0] = False
        pings = _drain(sock)
        await asyncio.sleep(0.1)
        assert _drain(sock) == 0  # unhealthy: systemd will restart us
        task.cancel()
        return pings

    assert asyncio.run(main()) >= 2


def _drain(sock: socket.socket) -> int:
    count = 0
    while True:
        try:
            assert sock.recv(100) == b"WATCHDOG=1"
        except BlockingIOError:
            return count
        count += 1
