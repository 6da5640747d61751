"""Control protocol framing and request parsing: tables plus fuzzing."""

from __future__ import annotations

import itertools
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cgwd.control.protocol import (
    FRAME_TOO_LARGE,
    BadRequest,
    ControlError,
    ErrorCode,
    LineFramer,
    Request,
    TunnelTarget,
    encode_error,
    encode_request,
    encode_result,
    parse_reply,
    parse_request,
    parse_tunnel_target,
)


def test_framer_joins_chunks_and_splits_lines() -> None:
    framer = LineFramer(100)
    assert framer.feed(b'{"a"') == []
    assert framer.feed(b":1}\n{}\n{") == [b'{"a":1}', b"{}"]
    assert framer.buffered == 1
    assert framer.feed(b"}\n") == [b"{}"]
    assert framer.feed(b"\n") == [b""]


def test_framer_limit_counts_the_newline() -> None:
    framer = LineFramer(10)
    assert framer.feed(b"a" * 9 + b"\n") == [b"a" * 9]
    assert framer.feed(b"a" * 10 + b"\n") == [FRAME_TOO_LARGE]


def test_oversize_line_is_reported_once_and_skipped() -> None:
    framer = LineFramer(10)
    assert framer.feed(b"x" * 25) == [FRAME_TOO_LARGE]
    assert framer.buffered == 0  # nothing of it is kept
    assert framer.feed(b"x" * 1000) == []
    assert framer.feed(b"xx\nok\n") == [b"ok"]


@settings(max_examples=300, deadline=None)
@given(
    lines=st.lists(st.binary(max_size=40).map(lambda b: b.replace(b"\n", b"")), max_size=8),
    cuts=st.lists(st.integers(min_value=0, max_value=400), max_size=10),
)
def test_framer_matches_a_plain_split_under_any_chunking(
    lines: list[bytes], cuts: list[int]
) -> None:
    limit = 20
    stream = b"".join(line + b"\n" for line in lines)
    framer = LineFramer(limit)
    out: list[object] = []
    points = sorted({c % (len(stream) + 1) for c in cuts} | {0, len(stream)})
    for a, b in itertools.pairwise(points):
        out.extend(framer.feed(stream[a:b]))
    assert out == [line if len(line) < limit else FRAME_TOO_LARGE for line in lines]


@pytest.mark.parametrize(
    ("line", "code", "request_id"),
    [
        (b"not json", ErrorCode.PARSE_ERROR, None),
        (b"\xff\xfe", ErrorCode.PARSE_ERROR, None),
        (b"[" * 100_000, ErrorCode.PARSE_ERROR, None),
        (b"[1, 2]", ErrorCode.INVALID_REQUEST, None),
        (b'{"id": true, "method": "status"}', ErrorCode.INVALID_REQUEST, None),
        (b'{"id": 1.5, "method": "status"}', ErrorCode.INVALID_REQUEST, None),
        (b'{"id": [1], "method": "status"}', ErrorCode.INVALID_REQUEST, None),
        (b'{"id": 7}', ErrorCode.INVALID_REQUEST, 7),
        (b'{"id": 7, "method": 3}', ErrorCode.INVALID_REQUEST, 7),
        (b'{"id": "x", "method": "status", "params": [1]}', ErrorCode.INVALID_PARAMS, "x"),
        (b'{"id": 2, "method": "status", "extra": 1}', ErrorCode.INVALID_REQUEST, 2),
    ],
)
def test_bad_requests_get_the_right_error(line: bytes, code: ErrorCode, request_id: object) -> None:
    parsed = parse_request(line)
    assert isinstance(parsed, BadRequest)
    assert (parsed.code, parsed.id) == (code, request_id)
    reply = json.loads(parsed.encode())
    assert reply == {"id": request_id, "error": {"code": int(code), "message": parsed.message}}


def test_good_requests() -> None:
    assert parse_request(b'{"id": 1, "method": "status"}') == Request(1, "status", {})
    assert parse_request(b'{"method": "initiate", "params": {"connection": "a"}}') == Request(
        None, "initiate", {"connection": "a"}
    )
    assert parse_request(encode_request("r1", "rekey", {"tunnel": 2}).rstrip(b"\n")) == Request(
        "r1", "rekey", {"tunnel": 2}
    )


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=200))
def test_parse_request_never_raises(data: bytes) -> None:
    assert isinstance(parse_request(data), Request | BadRequest)


@settings(max_examples=200, deadline=None)
@given(
    st.recursive(
        st.none() | st.booleans() | st.integers() | st.text(),
        lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(), inner, max_size=3),
        max_leaves=10,
    )
)
def test_any_json_value_parses_or_is_refused_cleanly(value: object) -> None:
    parsed = parse_request(json.dumps(value).encode())
    assert isinstance(parsed, Request | BadRequest)


def test_replies_round_trip() -> None:
    line = encode_result(3, {"connections": []})
    assert line.endswith(b"\n") and line.count(b"\n") == 1
    reply = parse_reply(line.rstrip(b"\n"))
    assert (reply.id, reply.result, reply.error) == (3, {"connections": []}, None)
    reply = parse_reply(encode_error(4, ErrorCode.FAILED, "no such connection\nx").rstrip(b"\n"))
    assert isinstance(reply.error, ControlError)
    assert (reply.id, reply.error.code, reply.error.message) == (4, -32000, "no such connection\nx")
    with pytest.raises(ValueError):
        encode_result(1, {"x": object()})
    with pytest.raises(ValueError):
        encode_result(1, float("nan"))
    for bad in (b"[]", b'{"id": 1}', b'{"id": 1, "error": {"code": "x", "message": "m"}}', b"{"):
        with pytest.raises(ValueError):
            parse_reply(bad)


def test_tunnel_targets() -> None:
    assert parse_tunnel_target({"connection": "vpc01"}) == TunnelTarget("vpc01")
    assert parse_tunnel_target({"connection": "vpc01", "tunnel": 2}) == TunnelTarget("vpc01", 2)
    assert parse_tunnel_target(
        {"connection": "vpc01", "tunnel": 1, "sa": "ike"}, rekey=True
    ) == TunnelTarget("vpc01", 1, "ike")
    for bad in (
        {},
        {"connection": ""},
        {"connection": 5},
        {"connection": "a", "tunnel": 3},
        {"connection": "a", "tunnel": True},
        {"connection": "a", "tunnel": "1"},
        {"connection": "a", "tunnel": 1.0},
        {"connection": "a", "sa": "ike"},  # not for initiate/terminate
        {"connection": "a", "x": 1},
    ):
        with pytest.raises(ControlError) as info:
            parse_tunnel_target(bad)
        assert info.value.code == ErrorCode.INVALID_PARAMS
    with pytest.raises(ControlError):
        parse_tunnel_target({"connection": "a", "sa": "esp"}, rekey=True)
