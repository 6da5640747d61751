"""The control server and client over real Unix sockets in a temporary directory."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import socket
import stat
import subprocess
import sys
import tempfile
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from conftest import require_root
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cgwd.control.client import ControlClient, DaemonNotRunning
from cgwd.control.protocol import MAX_REQUEST_BYTES, ControlError, ErrorCode
from cgwd.control.server import ControlServer, PeerCredentials
from cgwd.errors import CgwdError

NOBODY = 65534


async def _status(params: dict[str, Any]) -> Any:
    return {"connections": [], "echo": params}


async def _failing(params: dict[str, Any]) -> Any:
    raise CgwdError("no connection named 'x'")


async def _buggy(params: dict[str, Any]) -> Any:
    raise RuntimeError("bug with details the client must not see")


async def _unserialisable(params: dict[str, Any]) -> Any:
    return {"value": object()}


async def _invalid_params(params: dict[str, Any]) -> Any:
    raise ControlError(ErrorCode.INVALID_PARAMS, '"tunnel" must be 1 or 2')


def make_server(path: Path, **kwargs: Any) -> ControlServer:
    server = ControlServer(path, **kwargs)
    server.register("status", _status)
    server.register("reload", _failing)
    server.register("rekey", _buggy)
    server.register("terminate", _unserialisable)
    server.register("initiate", _invalid_params)
    return server


def serve(path: Path, body: Callable[[ControlServer], Awaitable[None]], **kwargs: Any) -> None:
    async def main() -> None:
        async with make_server(path, **kwargs) as server:
            await asyncio.wait_for(body(server), 20)

    asyncio.run(main())


async def exchange(path: Path, data: bytes, replies: int) -> list[dict[str, Any]]:
    reader, writer = await asyncio.open_unix_connection(str(path))
    try:
        writer.write(data)
        await writer.drain()
        return [json.loads(await reader.readline()) for _ in range(replies)]
    finally:
        writer.close()


def test_status_round_trip_sync_and_async(tmp_path: Path) -> None:
    sock = tmp_path / "control.sock"

    async def body(server: ControlServer) -> None:
        assert stat.S_IMODE(os.stat(sock).st_mode) == 0o600
        client = ControlClient(sock)
        result = await asyncio.to_thread(client.call, "status", {"a": 1}, 5.0)
        assert result == {"connections": [], "echo": {"a": 1}}
        assert await client.call_async("status") == {"connections": [], "echo": {}}

    serve(sock, body)
    assert not sock.exists()  # removed at close


@pytest.mark.parametrize(
    ("method", "code", "message"),
    [
        ("reload", ErrorCode.FAILED, "no connection named 'x'"),
        ("rekey", ErrorCode.INTERNAL_ERROR, "internal error (details in cgwd's log)"),
        ("terminate", ErrorCode.INTERNAL_ERROR, "internal error (details in cgwd's log)"),
        ("initiate", ErrorCode.INVALID_PARAMS, '"tunnel" must be 1 or 2'),
        ("stat", ErrorCode.METHOD_NOT_FOUND, "unknown method 'stat'"),
    ],
)
def test_handler_failures_are_error_replies(
    tmp_path: Path, method: str, code: ErrorCode, message: str
) -> None:
    sock = tmp_path / "control.sock"

    async def body(server: ControlServer) -> None:
        with pytest.raises(ControlError) as info:
            await ControlClient(sock).call_async(method)
        assert (info.value.code, info.value.message) == (code, message)
        # The server is still fine afterwards.
        assert (await ControlClient(sock).call_async("status"))["connections"] == []

    serve(sock, body)


def test_garbage_then_good_requests_on_one_connection(tmp_path: Path) -> None:
    sock = tmp_path / "control.sock"
    oversize = (
        b'{"id": 1, "method": "status", "params": {"x": "' + b"a" * MAX_REQUEST_BYTES + b'"}}\n'
    )
    stream = b"".join(
        [
            b"not json\n",
            oversize,
            b'{"id": 2, "method": "status", "params": 5}\n',
            b'{"id": 3, "method": "status"}\n',
        ]
    )

    async def body(server: ControlServer) -> None:
        replies = await exchange(sock, stream, 4)
        assert [r.get("error", {}).get("code") for r in replies] == [
            ErrorCode.PARSE_ERROR,
            ErrorCode.FRAME_TOO_LARGE,
            ErrorCode.INVALID_PARAMS,
            None,
        ]
        assert [r["id"] for r in replies] == [None, None, 2, 3]
        assert replies[3]["result"] == {"connections": [], "echo": {}}

    serve(sock, body)


def test_a_stuck_client_does_not_disturb_others(tmp_path: Path) -> None:
    sock = tmp_path / "control.sock"

    async def body(server: ControlServer) -> None:
        # One client sends half a line and then nothing; another sends garbage and leaves.
        _r1, stuck = await asyncio.open_unix_connection(str(sock))
        stuck.write(b'{"id": 1, "meth')
        await stuck.drain()
        _r2, rude = await asyncio.open_unix_connection(str(sock))
        rude.write(b"\x00\xff" * 1000)
        rude.close()
        for _ in range(3):
            assert (await ControlClient(sock).call_async("status", timeout=2))["connections"] == []
        stuck.close()

    serve(sock, body)


def test_idle_clients_are_disconnected(tmp_path: Path) -> None:
    sock = tmp_path / "control.sock"

    async def body(server: ControlServer) -> None:
        reader, writer = await asyncio.open_unix_connection(str(sock))
        assert await asyncio.wait_for(reader.read(), 5) == b""  # closed by the server
        writer.close()

    serve(sock, body, idle_timeout=0.2)


def test_too_many_clients_get_busy(tmp_path: Path) -> None:
    sock = tmp_path / "control.sock"

    async def body(server: ControlServer) -> None:
        first = await asyncio.open_unix_connection(str(sock))
        first[1].write(b'{"id": 1, "method": "status"}\n')
        assert json.loads(await first[0].readline())["id"] == 1  # surely being served
        (reply,) = await exchange(sock, b'{"id": 2, "method": "status"}\n', 1)
        assert reply["error"]["code"] == ErrorCode.BUSY
        first[1].close()

    serve(sock, body, max_clients=1)


def test_daemon_not_running_messages(tmp_path: Path) -> None:
    missing = tmp_path / "control.sock"
    with pytest.raises(DaemonNotRunning, match=rf"cgwd is not running \(no socket at {missing}\)"):
        ControlClient(missing).call("status")
    # A socket file nobody listens on (a crashed daemon's).
    stale = socket.socket(socket.AF_UNIX)
    stale.bind(str(missing))
    stale.close()
    with pytest.raises(DaemonNotRunning, match="nothing listens"):
        ControlClient(missing).call("status")


def test_stale_socket_is_replaced_but_a_live_one_or_a_file_is_not(tmp_path: Path) -> None:
    sock = tmp_path / "control.sock"
    stale = socket.socket(socket.AF_UNIX)
    stale.bind(str(sock))
    stale.close()

    async def body(server: ControlServer) -> None:
        with pytest.raises(CgwdError, match="another cgwd"):
            await make_server(sock).start()
        assert (await ControlClient(sock).call_async("status"))["connections"] == []

    serve(sock, body)
    regular = tmp_path / "file"
    regular.write_text("x")
    with pytest.raises(CgwdError, match="not a socket"):
        asyncio.run(make_server(regular).start())
    assert regular.read_text() == "x"


def test_timeout_is_reported(tmp_path: Path) -> None:
    sock = tmp_path / "control.sock"

    async def slow(params: dict[str, Any]) -> Any:
        await asyncio.sleep(5)

    async def body(server: ControlServer) -> None:
        server.register("reload", slow)
        with pytest.raises(CgwdError, match=r"did not answer reload within 0\.2 s"):
            await asyncio.to_thread(ControlClient(sock).call, "reload", None, 0.2)

    serve(sock, body)


def test_authorisation_rules() -> None:
    server = ControlServer("/nonexistent/x.sock", group=1234)
    assert server.authorised(PeerCredentials(1, 0, 0, frozenset()))
    assert server.authorised(PeerCredentials(1, 1000, 1234, frozenset()))
    assert server.authorised(PeerCredentials(1, 1000, 100, frozenset({5, 1234})))
    assert not server.authorised(PeerCredentials(1, 1000, 100, frozenset({5})))
    if os.geteuid() != 0:
        return
    no_group = ControlServer("/nonexistent/x.sock")
    assert not no_group.authorised(PeerCredentials(1, 1000, 1234, frozenset({1234})))
    with pytest.raises(CgwdError, match="does not exist"):
        ControlServer("/nonexistent/x.sock", group="no-such-group-cgwd")


CLIENT_AS = """
import os, sys
from cgwd.control.client import ControlClient
from cgwd.errors import CgwdError
os.setgroups([int(g) for g in sys.argv[3].split(",") if g])
os.setgid(int(sys.argv[2])); os.setuid(int(sys.argv[1]))
try:
    print(ControlClient(sys.argv[4]).call("status", timeout=5))
except CgwdError as exc:
    print("ERROR", exc)
"""


def run_client_as(uid: int, gid: int, groups: list[int], sock: Path) -> str:
    proc = subprocess.run(
        [
            sys.executable,
            "-c",
            CLIENT_AS,
            str(uid),
            str(gid),
            ",".join(map(str, groups)),
            str(sock),
        ],
        capture_output=True,
        text=True,
        timeout=20,
        cwd=Path(__file__).resolve().parents[3],
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.strip()


def test_peer_credentials_are_enforced() -> None:
    require_root()
    # A directory "nobody" can search (pytest's tmp_path is private to root).
    public = Path(tempfile.mkdtemp(prefix="cgwd-control-"))
    public.chmod(0o755)
    sock = public / "control.sock"
    group = 4242

    async def body(server: ControlServer) -> None:
        assert stat.S_IMODE(os.stat(sock).st_mode) == 0o660
        assert os.stat(sock).st_gid == group
        # Filesystem permissions stop strangers first...
        out = await asyncio.to_thread(run_client_as, NOBODY, NOBODY, [], sock)
        assert out.startswith("ERROR permission denied")
        # ...and SO_PEERCRED stops them even when the mode is too loose.
        os.chmod(sock, 0o666)
        out = await asyncio.to_thread(run_client_as, NOBODY, NOBODY, [], sock)
        assert out == f"ERROR not authorised: uid {NOBODY} is neither root nor in the control group"
        # Members of the group (primary or supplementary) are served.
        out = await asyncio.to_thread(run_client_as, NOBODY, NOBODY, [group], sock)
        assert out == "{'connections': [], 'echo': {}}"
        out = await asyncio.to_thread(run_client_as, NOBODY, group, [], sock)
        assert out == "{'connections': [], 'echo': {}}"

    try:
        serve(sock, body, group=group)
    finally:
        shutil.rmtree(public, ignore_errors=True)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    chunks=st.lists(
        st.one_of(
            st.binary(max_size=64),
            st.sampled_from(
                [
                    b'{"id": 1, "method": "status"}\n',
                    b'{"id": "x", "method": "rekey", "params": {}}\n',
                    b"\n",
                    b"[" * 5000 + b"\n",
                    b"a" * (MAX_REQUEST_BYTES + 10),
                ]
            ),
        ),
        max_size=8,
    )
)
def test_any_byte_stream_gets_one_reply_per_line(tmp_path: Path, chunks: list[bytes]) -> None:
    sock = tmp_path / "fuzz.sock"
    stream = b"".join(chunks)
    # One reply per complete line; an unfinished line already past the limit is answered
    # (frame_too_large) as soon as it crosses it.
    unfinished = stream.rsplit(b"\n", 1)[-1]
    expected = stream.count(b"\n") + (len(unfinished) >= MAX_REQUEST_BYTES)

    async def body(server: ControlServer) -> None:
        reader, writer = await asyncio.open_unix_connection(str(sock), limit=1 << 20)
        for chunk in chunks:
            writer.write(chunk)
        await writer.drain()
        writer.write_eof()
        replies = [json.loads(line) for line in (await reader.read()).splitlines()]
        writer.close()
        assert len(replies) == expected
        assert all(("result" in r) != ("error" in r) for r in replies)
        # ... and the server still serves others.
        assert (await ControlClient(sock).call_async("status"))["connections"] == []

    serve(sock, body)
