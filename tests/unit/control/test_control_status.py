"""The status schema (issue 7's JSON shape) and its text rendering."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from pydantic import ValidationError

from cgwd.control.render import format_bytes, format_duration, render_status_text
from cgwd.control.status import (
    ChildSaStatus,
    StatusDocument,
    parse_status,
    summary_line,
    tunnels_up,
)
from cgwd.secret import Secret

# Issue 7's example, filled in, as the daemon would send it over JSON.
ISSUE_7_DOC: dict[str, Any] = {
    "connections": [
        {
            "name": "vpc01",
            "routes": ["10.99.0.0/16"],
            "tunnel_preference": "prefer-1",
            "tunnels": [
                {
                    "index": 1,
                    "interface": "vpc01-t1",
                    "state": "up",
                    "active": True,
                    "last_error": None,
                    "vpn_gateway_outside_ip": "203.0.113.10",
                    "customer_gateway_outside_ip": "192.0.2.1",
                    "inside_address": "169.254.10.2/30",
                    "mtu": 1446,
                    "mss": 1406,
                    "dataplane": "userspace",
                    "ike": {
                        "version": 2,
                        "state": "established",
                        "local_spi": "0123456789abcdef",
                        "remote_spi": "fedcba9876543210",
                        "encryption": "aes128gcm16",
                        "integrity": None,
                        "prf": "prfsha256",
                        "dh_group": 19,
                        "established_seconds": 12,
                        "rekey_in_seconds": 26000,
                    },
                    "child_sas": [
                        {
                            "spi_in": "c1234567",
                            "spi_out": "d1234567",
                            "encryption": "aes128gcm16",
                            "integrity": None,
                            "bytes_in": 1234,
                            "bytes_out": 5 * 1024 * 1024,
                            "packets_in": 10,
                            "packets_out": 4000,
                            "drops_in": 3,
                            "drops_in_by_reason": {"replay": 1, "auth_failed": 2},
                            "last_in_seconds": 0,
                            "last_out_seconds": 75,
                            "rekey_in_seconds": 2900,
                        }
                    ],
                },
                {
                    "index": 2,
                    "interface": "vpc01-t2",
                    "state": "connecting",
                    "active": False,
                    "last_error": "auth_failed: AUTHENTICATION_FAILED from 203.0.113.20",
                    "vpn_gateway_outside_ip": "203.0.113.20",
                    "dataplane": "userspace",
                    "ike": None,
                    "child_sas": [],
                },
            ],
        }
    ]
}


def test_issue_7_document_validates_and_round_trips() -> None:
    doc = parse_status(ISSUE_7_DOC)
    assert tunnels_up(doc) == (1, 2)
    dumped = doc.model_dump(mode="json")
    assert parse_status(dumped) == doc
    assert dumped["connections"][0]["tunnels"][0]["ike"]["dh_group"] == 19


@pytest.mark.parametrize(
    ("path", "value"),
    [
        (("connections", 0, "tunnels", 0, "psk"), "secret"),  # unknown member
        (("connections", 0, "tunnels", 0, "state"), "Established"),
        (("connections", 0, "tunnels", 0, "ike", "local_spi"), "0123"),
        (("connections", 0, "tunnels", 0, "ike", "local_spi"), "0123456789ABCDEF"),
        (("connections", 0, "tunnels", 0, "child_sas", 0, "bytes_in"), -1),
        (("connections", 0, "tunnels", 0, "child_sas", 0, "bytes_in"), "12"),
        (("connections", 0, "tunnels", 0, "active"), "yes"),
        (("connections", 0, "tunnels", 1, "index"), 1),  # repeated index
        (("connections", 0, "tunnels", 0, "vpn_gateway_outside_ip"), "not-an-ip"),
        (("connections", 0, "tunnels", 0, "child_sas", 0, "drops_in_by_reason"), {"Psk=x": 1}),
        (("connections", 0, "tunnels", 0, "child_sas", 0, "drops_in_by_reason"), {"replay": -1}),
        (("connections", 0, "tunnels", 0, "child_sas", 0, "last_in_seconds"), -2),
    ],
)
def test_invalid_documents_are_rejected(path: tuple[Any, ...], value: Any) -> None:
    doc = copy.deepcopy(ISSUE_7_DOC)
    target: Any = doc
    for step in path[:-1]:
        target = target[step]
    target[path[-1]] = value
    with pytest.raises(ValidationError):
        parse_status(doc)


def test_a_secret_cannot_be_put_into_any_string_field() -> None:
    with pytest.raises(ValidationError):
        ChildSaStatus(spi_in="c1234567", spi_out="d1234567", encryption=Secret("k"))  # type: ignore[arg-type]
    with pytest.raises(ValidationError):
        ChildSaStatus(spi_in=Secret("c1234567"), spi_out="d1234567", encryption="x")  # type: ignore[arg-type]


def test_summary_line() -> None:
    doc = parse_status(ISSUE_7_DOC)
    assert summary_line(doc) == "1/2 tunnels up (not up: vpc01 tunnel 2)"
    assert summary_line(StatusDocument(connections=[])) == "0/0 tunnels up"


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(0, "0s"), (59, "59s"), (60, "1m00s"), (303, "5m03s"), (26000, "7h13m"), (187200, "2d04h")],
)
def test_format_duration(seconds: int, text: str) -> None:
    assert format_duration(seconds) == text


@pytest.mark.parametrize(
    ("count", "text"),
    [(0, "0 B"), (1023, "1023 B"), (1024, "1.0 KiB"), (1234, "1.2 KiB"), (5 << 20, "5.0 MiB")],
)
def test_format_bytes(count: int, text: str) -> None:
    assert format_bytes(count) == text


def test_render_shows_what_an_admin_needs() -> None:
    text = render_status_text(parse_status(ISSUE_7_DOC))
    lines = text.splitlines()
    header = next(line for line in lines if line.startswith("CONNECTION"))
    row1 = lines[lines.index(header) + 1].split()
    row2 = lines[lines.index(header) + 2].split()
    assert row1 == [
        "vpc01",
        "1",
        "vpc01-t1",
        "up",
        "active",
        "192.0.2.1",
        "->",
        "203.0.113.10",
        "v2",
        "userspace",
    ]
    assert row2 == [
        "vpc01",
        "2",
        "vpc01-t2",
        "connecting",
        "-",
        "?",
        "->",
        "203.0.113.20",
        "-",
        "userspace",
    ]
    for fragment in [
        "routes 10.99.0.0/16",
        "prefer-1",
        "IKEv2 SA  established, up 12s, rekey in 7h13m",
        "aes128gcm16, prfsha256, DH group 19",
        "SPIs 0123456789abcdef (local) fedcba9876543210 (remote)",
        "CHILD SA  in c1234567, out d1234567, aes128gcm16, rekey in 48m20s",
        "in:  1.2 KiB, 10 packets, last 0s ago, 3 dropped (auth_failed 2, replay 1)",
        "out: 5.0 MiB, 4000 packets, last 1m15s ago",
        "last error: auth_failed",
        "MTU 1446, MSS 1406",
    ]:
        assert fragment in text, fragment
    assert text.endswith("\n")


def test_render_empty_and_daemon_header() -> None:
    doc = parse_status(
        {
            "connections": [],
            "daemon": {"version": "0.1.0", "pid": 42, "uptime_seconds": 61, "ip_forwarding": False},
        }
    )
    text = render_status_text(doc)
    assert text.startswith("cgwd 0.1.0, pid 42, up 1m01s: 0/0 tunnels up\n")
    assert "IP forwarding is off" in text
    assert "no connections configured" in text
