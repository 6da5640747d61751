"""The control protocol, sans I/O: framing, requests, replies and error codes.

cgwd listens on a Unix stream socket (default ``/run/cgwd/control.sock``). The CLI
(``cgwd status``, ``reload``, ``initiate``, ``terminate``, ``rekey``), the tests and future
metrics exporters all speak this one protocol.

Framing: newline-delimited JSON. Every message is one JSON object encoded as UTF-8 on a
single line ending in ``\\n`` (JSON escapes any newline inside strings, so a line is always
a whole message). A request line may be at most `MAX_REQUEST_BYTES` long, newline
included; a longer line is answered with a ``frame_too_large`` error and skipped up to its
newline, so the connection stays usable. Replies may be longer (`MAX_REPLY_BYTES`).

Request::

    {"id": 1, "method": "status", "params": {}}

``id`` is an integer, a string or null and is echoed in the reply; ``method`` is one of
`METHODS`; ``params`` is an object and may be left out. Requests on one connection are
answered one at a time, in order; a client may send several before reading.

Reply, exactly one per request line::

    {"id": 1, "result": ...}
    {"id": 1, "error": {"code": -32601, "message": "unknown method 'stat'"}}

Error codes follow JSON-RPC 2.0 §5.1 where one fits, and use its server range for ours
(`ErrorCode`). Messages are meant for the admin and never contain a secret. When the id of
a broken request cannot be read, the error reply carries ``"id": null``.

Methods and their params (handled by the daemon):

- ``status`` ``{}``: the status document (`cgwd.control.status.StatusDocument`).
- ``reload`` ``{}``: re-read the configuration and apply it as a diff.
- ``initiate`` / ``terminate`` ``{"connection": NAME, "tunnel": 1|2 (optional: both)}``.
- ``rekey`` ``{"connection": NAME, "tunnel": 1|2 (optional), "sa": "ike"|"child" (optional:
  "child")}``.
"""

from __future__ import annotations

import enum
import json
from dataclasses import dataclass, field
from typing import Any

from cgwd.errors import CgwdError

MAX_REQUEST_BYTES = 64 * 1024  # far more than any request needs
MAX_REPLY_BYTES = 16 * 1024 * 1024  # a status document of many connections stays far below

METHODS = ("status", "reload", "initiate", "terminate", "rekey")

RequestId = int | str | None


class ErrorCode(enum.IntEnum):
    """Error codes of control replies."""

    PARSE_ERROR = -32700  # JSON-RPC 2.0 §5.1: not JSON (or not UTF-8)
    INVALID_REQUEST = -32600  # JSON-RPC 2.0 §5.1: JSON, but not a request object
    METHOD_NOT_FOUND = -32601  # JSON-RPC 2.0 §5.1
    INVALID_PARAMS = -32602  # JSON-RPC 2.0 §5.1
    INTERNAL_ERROR = -32603  # JSON-RPC 2.0 §5.1: a bug in cgwd (details in its log)
    FAILED = -32000  # the daemon could not do it (unknown tunnel, invalid new config, ...)
    NOT_AUTHORISED = -32001  # the peer is neither root nor in the control group
    FRAME_TOO_LARGE = -32002  # the request line exceeded MAX_REQUEST_BYTES
    BUSY = -32003  # too many clients connected at once


class ControlError(CgwdError):
    """An error reply: raised by a handler to answer with ``code``/``message``, and by the
    client when the daemon answered with an error."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True)
class Request:
    id: RequestId
    method: str
    params: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Reply:
    """A parsed reply: exactly one of ``result`` / ``error`` is meaningful."""

    id: RequestId
    result: Any = None
    error: ControlError | None = None


@dataclass(frozen=True)
class BadRequest:
    """A request line that must be answered with an error (``id`` when it could be read)."""

    id: RequestId
    code: ErrorCode
    message: str

    def encode(self) -> bytes:
        return encode_error(self.id, self.code, self.message)


class FrameTooLarge:
    """Marks, in `LineFramer.feed` output, a line that exceeded the size limit."""

    def __repr__(self) -> str:
        return "FrameTooLarge()"


FRAME_TOO_LARGE = FrameTooLarge()


class LineFramer:
    """Splits a byte stream into lines, never holding more than ``max_bytes`` of one line.

    `feed` returns complete lines (without the newline) in order; a line that grows past
    ``max_bytes`` (newline included) is reported once as `FRAME_TOO_LARGE`, at the moment
    it crosses the limit, and the rest of it is discarded up to its newline.
    """

    def __init__(self, max_bytes: int = MAX_REQUEST_BYTES) -> None:
        self._max = max_bytes
        self._buffer = bytearray()
        self._discarding = False

    def feed(self, data: bytes) -> list[bytes | FrameTooLarge]:
        out: list[bytes | FrameTooLarge] = []
        start = 0
        while start < len(data):
            newline = data.find(b"\n", start)
            end = len(data) if newline < 0 else newline
            chunk = data[start:end]
            if not self._discarding:
                # The newline counts against the limit: max_bytes - 1 bytes of content.
                if len(self._buffer) + len(chunk) > self._max - 1:
                    self._buffer.clear()
                    self._discarding = True
                    out.append(FRAME_TOO_LARGE)
                else:
                    self._buffer += chunk
            if newline < 0:
                break
            if not self._discarding:
                out.append(bytes(self._buffer))
            self._buffer.clear()
            self._discarding = False
            start = newline + 1
        return out

    @property
    def buffered(self) -> int:
        """Bytes of an incomplete line held right now (at most ``max_bytes``)."""
        return len(self._buffer)


def _valid_id(value: object) -> bool:
    return value is None or (isinstance(value, int | str) and not isinstance(value, bool))


def _loads(line: bytes) -> Any:
    """json.loads that raises only ValueError (deep nesting would raise RecursionError)."""
    try:
        return json.loads(line.decode("utf-8"))
    except RecursionError:
        raise ValueError("nested too deeply") from None


def parse_request(line: bytes) -> Request | BadRequest:
    """A request line (without its newline) as a `Request`, or the error to answer. Never
    raises."""
    try:
        doc = _loads(line)
    except ValueError as exc:  # UnicodeDecodeError and JSONDecodeError are ValueErrors
        return BadRequest(None, ErrorCode.PARSE_ERROR, f"not a JSON line: {_short(exc)}")
    if not isinstance(doc, dict):
        return BadRequest(None, ErrorCode.INVALID_REQUEST, "a request must be a JSON object")
    request_id = doc.get("id")
    if not _valid_id(request_id):
        return BadRequest(
            None, ErrorCode.INVALID_REQUEST, '"id" must be an integer, string or null'
        )
    unknown = sorted(set(doc) - {"id", "method", "params"})
    if unknown:
        return BadRequest(
            request_id, ErrorCode.INVALID_REQUEST, f"unknown request member {_short(unknown[0])!r}"
        )
    method = doc.get("method")
    if not isinstance(method, str):
        return BadRequest(request_id, ErrorCode.INVALID_REQUEST, '"method" must be a string')
    params = doc.get("params", {})
    if not isinstance(params, dict):
        return BadRequest(request_id, ErrorCode.INVALID_PARAMS, '"params" must be an object')
    return Request(request_id, method, params)


def _short(value: object, limit: int = 80) -> str:
    text = str(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _line(doc: dict[str, Any]) -> bytes:
    # allow_nan=False: NaN/Infinity are not JSON; ensure_ascii keeps lines 7-bit clean.
    return json.dumps(doc, separators=(",", ":"), allow_nan=False).encode() + b"\n"


def encode_request(
    request_id: RequestId, method: str, params: dict[str, Any] | None = None
) -> bytes:
    """One request line. Raises ValueError if ``params`` is not JSON-serialisable."""
    try:
        return _line({"id": request_id, "method": method, "params": params or {}})
    except TypeError as exc:
        raise ValueError(f"params are not JSON: {exc}") from None


def encode_result(request_id: RequestId, result: Any) -> bytes:
    """One reply line. Raises ValueError if ``result`` is not JSON-serialisable."""
    try:
        return _line({"id": request_id, "result": result})
    except TypeError as exc:
        raise ValueError(f"result is not JSON: {exc}") from None


def encode_error(request_id: RequestId, code: int, message: str) -> bytes:
    """One error reply line."""
    return _line({"id": request_id, "error": {"code": int(code), "message": str(message)}})


def parse_reply(line: bytes) -> Reply:
    """A reply line as a `Reply`.

    Raises:
        ValueError: the line is not a well-formed reply (the daemon and client disagree).
    """
    doc = _loads(line)
    if not isinstance(doc, dict) or not _valid_id(doc.get("id")):
        raise ValueError("reply is not an object with a valid id")
    if "error" in doc:
        error = doc["error"]
        if (
            not isinstance(error, dict)
            or not isinstance(error.get("code"), int)
            or not isinstance(error.get("message"), str)
        ):
            raise ValueError("malformed error in reply")
        return Reply(doc["id"], error=ControlError(error["code"], error["message"]))
    if "result" not in doc:
        raise ValueError("reply has neither result nor error")
    return Reply(doc["id"], result=doc["result"])


@dataclass(frozen=True)
class TunnelTarget:
    """What ``initiate``/``terminate``/``rekey`` act on."""

    connection: str
    tunnel: int | None = None  # None: both tunnels
    sa: str = "child"  # rekey only: "child" or "ike"


def parse_tunnel_target(params: dict[str, Any], *, rekey: bool = False) -> TunnelTarget:
    """Validate the params of ``initiate``/``terminate`` (``rekey`` when ``rekey``).

    Raises:
        ControlError: INVALID_PARAMS, naming the offending member.
    """
    allowed = {"connection", "tunnel", "sa"} if rekey else {"connection", "tunnel"}
    unknown = sorted(set(params) - allowed)
    if unknown:
        raise ControlError(ErrorCode.INVALID_PARAMS, f"unknown parameter {_short(unknown[0])!r}")
    connection = params.get("connection")
    if not isinstance(connection, str) or not connection:
        raise ControlError(ErrorCode.INVALID_PARAMS, '"connection" must be a connection name')
    tunnel = params.get("tunnel")
    if tunnel is not None and (type(tunnel) is not int or tunnel not in (1, 2)):
        raise ControlError(ErrorCode.INVALID_PARAMS, '"tunnel" must be 1 or 2')
    sa = params.get("sa", "child")
    if sa not in ("child", "ike"):
        raise ControlError(ErrorCode.INVALID_PARAMS, '"sa" must be "child" or "ike"')
    return TunnelTarget(connection[:64], tunnel, sa)
