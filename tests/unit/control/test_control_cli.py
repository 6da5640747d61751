"""`cgwd status/reload/initiate/terminate/rekey` against a control server in a thread."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from test_control_status import ISSUE_7_DOC

from cgwd.cli import main
from cgwd.control.cli_support import socket_from_config
from cgwd.control.protocol import ControlError, ErrorCode
from cgwd.control.server import DEFAULT_SOCKET, ControlServer


class ServerThread:
    """A ControlServer on its own event loop thread, recording the requests it gets."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self.status: Any = ISSUE_7_DOC
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._stop: asyncio.Event | None = None

    def _handler(self, method: str) -> Any:
        async def handle(params: dict[str, Any]) -> Any:
            self.calls.append((method, params))
            if method == "status":
                return self.status
            if params.get("connection") == "nope":
                raise ControlError(ErrorCode.FAILED, "no connection named 'nope'")
            return {"message": f"{method} done"}

        return handle

    def _run(self) -> None:
        async def main() -> None:
            self._stop = asyncio.Event()
            server = ControlServer(self.path)
            for method in ("status", "reload", "initiate", "terminate", "rekey"):
                server.register(method, self._handler(method))
            async with server:
                self._ready.set()
                await self._stop.wait()

        self._loop.run_until_complete(main())

    def __enter__(self) -> ServerThread:
        self._thread.start()
        assert self._ready.wait(10)
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._stop is not None
        self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(10)
        self._loop.close()


@pytest.fixture
def daemon(tmp_path: Path) -> Iterator[ServerThread]:
    with ServerThread(tmp_path / "control.sock") as server:
        yield server


def test_status_json_prints_the_document(
    daemon: ServerThread, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["status", "--json", "--socket", str(daemon.path)]) == 0
    assert json.loads(capsys.readouterr().out) == ISSUE_7_DOC


def test_status_text(daemon: ServerThread, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["status", "--socket", str(daemon.path)]) == 0
    out = capsys.readouterr().out
    assert "vpc01-t1" in out and "SPIs 0123456789abcdef (local)" in out


def test_status_text_refuses_a_document_it_cannot_read(
    daemon: ServerThread, capsys: pytest.CaptureFixture[str]
) -> None:
    daemon.status = {"connections": [{"name": "x"}]}
    assert main(["status", "--socket", str(daemon.path)]) == 1
    assert "does not match this cgwd" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("argv", "call"),
    [
        (["reload"], ("reload", {})),
        (["initiate", "vpc01"], ("initiate", {"connection": "vpc01"})),
        (
            ["terminate", "vpc01", "--tunnel", "2"],
            ("terminate", {"connection": "vpc01", "tunnel": 2}),
        ),
        (["rekey", "vpc01"], ("rekey", {"connection": "vpc01", "sa": "child"})),
        (
            ["rekey", "vpc01", "--ike", "--tunnel", "1"],
            ("rekey", {"connection": "vpc01", "sa": "ike", "tunnel": 1}),
        ),
    ],
)
def test_actions_send_their_params(
    daemon: ServerThread,
    capsys: pytest.CaptureFixture[str],
    argv: list[str],
    call: tuple[str, dict[str, Any]],
) -> None:
    assert main([*argv, "--socket", str(daemon.path)]) == 0
    assert daemon.calls == [call]
    assert capsys.readouterr().out == f"{call[0]} done\n"


def test_daemon_errors_become_one_line(
    daemon: ServerThread, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["initiate", "nope", "--socket", str(daemon.path)]) == 1
    assert capsys.readouterr().err == "cgwd: no connection named 'nope'\n"


def test_not_running(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["status", "--socket", str(tmp_path / "x.sock")]) == 1
    assert (
        capsys.readouterr().err
        == f"cgwd: cgwd is not running (no socket at {tmp_path / 'x.sock'})\n"
    )


def test_socket_from_config(
    tmp_path: Path, daemon: ServerThread, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "cgwd.toml"
    config.write_text('[daemon]\ncontrol_socket = "control.sock"\n')
    config.chmod(0o600)
    assert socket_from_config(config) == daemon.path
    assert main(["status", "--json", "--config", str(config)]) == 0
    assert json.loads(capsys.readouterr().out) == ISSUE_7_DOC
    # A configuration with a mistake elsewhere still tells us where the socket is.
    config.write_text(
        '[daemon]\ncontrol_socket = "control.sock"\nbogus = 1\n[[connection]]\nname = 5\n'
    )
    assert socket_from_config(config) == daemon.path
    config.write_text("[daemon]\n")
    assert socket_from_config(config) == DEFAULT_SOCKET
    config.write_text("[daemon\n")
    assert main(["status", "--config", str(config)]) == 2
    assert str(config) in capsys.readouterr().err
