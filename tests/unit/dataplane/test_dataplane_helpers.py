"""Rate-limited drop logging, the static tunnel runner's config checks."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import subprocess
import sys
from ipaddress import IPv4Address, IPv4Interface
from pathlib import Path
from typing import Any

import pytest

from cgwd.dataplane.base import SPI_RESERVATION_TTL, SaExistsError, SaId, SaParams, TunnelSpec
from cgwd.dataplane.fake import FakeDataplane
from cgwd.dataplane.ratelimit import RateLimitedLog
from cgwd.dataplane.static_tunnel import counters_json, parse_config, read_config_file
from cgwd.errors import ConfigError
from cgwd.esp.sa import DropReason, SaCounters
from cgwd.esp.suites import suite_by_name
from cgwd.secret import Secret

KEY = "11" * 20


def config(**changes: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "tunnel": {
            "name": "cgt0",
            "local_inside": "169.254.10.2/30",
            "remote_inside": "169.254.10.1",
            "mtu": 1400,
            "local_outside": "192.0.2.1",
            "remote_outside": "192.0.2.2",
        },
        "suite": "aes128gcm16",
        "encap": True,
        "sas": [{"spi_in": 4096, "spi_out": 8192, "keymat_in": KEY, "keymat_out": KEY}],
    }
    doc.update(changes)
    return doc


def test_rate_limited_log_emits_once_per_interval_and_reports_suppressed(
    caplog: pytest.LogCaptureFixture,
) -> None:
    now = [100.0]
    limiter = RateLimitedLog(logging.getLogger("t"), interval=10.0, clock=lambda: now[0])
    with caplog.at_level(logging.WARNING):
        assert limiter.log("k", "first")
        assert not limiter.log("k", "second")
        assert not limiter.log("k", "third")
        assert limiter.log("other", "independent key")
        now[0] += 10.0
        assert limiter.log("k", "later")
    assert [r.getMessage() for r in caplog.records] == [
        "first",
        "independent key",
        "later (2 similar suppressed)",
    ]


def test_rate_limited_log_memory_is_bounded() -> None:
    limiter = RateLimitedLog(logging.getLogger("t"), max_keys=8, clock=lambda: 0.0)
    for i in range(1000):
        limiter.log(f"key{i}", "m")
    assert limiter.tracked_keys <= 8


def test_parse_config_builds_matching_params() -> None:
    parsed = parse_config(config(encap={"local_port": 4500, "remote_port": 31000}), "x")
    assert parsed.spec.name == "cgt0"
    assert parsed.params_out[0].encap is not None
    assert parsed.params_out[0].encap.remote_port == 31000
    assert parsed.pairs[0].spi_out == 8192
    assert "11" * 4 not in repr(parsed)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"suite": "des"}, "unknown ESP suite"),
        ({"sas": [{"spi_in": 4096}]}, "missing key"),
        ({"sas": [{"spi_in": 1, "spi_out": 2, "keymat_in": "zz", "keymat_out": KEY}]}, "hex"),
        ({"sas": [{"spi_in": 1, "spi_out": 2, "keymat_in": "11", "keymat_out": KEY}]}, "needs"),
        ({"install": 5}, "install"),
        ({"datapath": {"turbo": True}}, "unknown datapath"),
    ],
)
def test_bad_configs_are_config_errors_without_key_material(
    changes: dict[str, Any], message: str
) -> None:
    with pytest.raises(ConfigError, match=message) as info:
        parse_config(config(**changes), "cfg.json")
    assert KEY[:8] not in str(info.value)


def test_config_files_readable_by_others_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "t.json"
    path.write_text(json.dumps(config()))
    os.chmod(path, 0o644)
    with pytest.raises(ConfigError, match="chmod 600"):
        read_config_file(str(path))
    os.chmod(path, 0o600)
    assert json.loads(read_config_file(str(path)))["suite"] == "aes128gcm16"


def test_runner_reports_bad_config_in_one_line(tmp_path: Path) -> None:
    path = tmp_path / "t.json"
    path.write_text("{not json")
    os.chmod(path, 0o600)
    proc = subprocess.run(
        [sys.executable, "-m", "cgwd.dataplane.static_tunnel", "--config", str(path)],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr and "not JSON" in proc.stderr


def test_counters_json_names_drop_reasons() -> None:
    c = SaCounters(packets=3, bytes=300)
    c.drop(DropReason.REPLAY)
    assert counters_json(c) == {
        "packets": 3,
        "bytes": 300,
        "drops": {"replay": 1},
        "last_used": None,
    }


def test_fake_spi_reservations_expire_unless_installed() -> None:
    now = [0.0]
    dp = FakeDataplane(seed=3, clock=lambda: now[0])
    spec = TunnelSpec("t0", IPv4Interface("169.254.0.2/30"), IPv4Address("169.254.0.1"), 1400,
                      IPv4Address("192.0.2.1"), IPv4Address("192.0.2.2"))  # fmt: skip
    suite = suite_by_name("aes128gcm16")

    async def body() -> None:
        await dp.open_tunnel(spec)
        await dp.open_tunnel(TunnelSpec("t1", spec.local_inside, spec.remote_inside, 1400,
                                        spec.local_outside, spec.remote_outside))  # fmt: skip
        unused, used = dp.allocate_spi("t0"), dp.allocate_spi("t0")
        await dp.add_sa(SaId("t0", "in", used), SaParams(suite, Secret(bytes(20))))
        now[0] = SPI_RESERVATION_TTL + 1
        dp.allocate_spi("t0")  # prunes
        # The unused SPI is free for another tunnel now; the installed one is not.
        await dp.add_sa(SaId("t1", "in", unused), SaParams(suite, Secret(bytes(20))))
        with pytest.raises(SaExistsError, match="in use"):
            await dp.add_sa(SaId("t1", "in", used), SaParams(suite, Secret(bytes(20))))

    asyncio.run(body())
