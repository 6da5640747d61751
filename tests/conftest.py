"""Suite-wide rules.

Tests that need root, network namespaces, strongSwan or user-mode Linux call `require()`:
outside CI they skip with the printed reason; with ``CGWD_REQUIRE_ALL_TESTS=1`` (set by
``.ci/run``) any skip at all is turned into a failure, so CI can never pass by skipping.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Generator
from typing import Any

import pytest

REQUIRE_ALL_TESTS = os.environ.get("CGWD_REQUIRE_ALL_TESTS") == "1"


def require(condition: bool, reason: str) -> None:
    """Skip (or, in CI, fail) the calling test unless ``condition`` holds."""
    if condition:
        return
    if REQUIRE_ALL_TESTS:
        pytest.fail(f"required test cannot run: {reason}", pytrace=False)
    pytest.skip(reason)


def require_root() -> None:
    require(os.geteuid() == 0, "needs root (network namespaces)")
    require(shutil.which("ip") is not None, "needs iproute2's ip")


def require_strongswan() -> None:
    require_root()
    require(
        shutil.which("swanctl") is not None and os.path.exists("/usr/lib/ipsec/charon"),
        "needs strongSwan (apt-get install strongswan-charon strongswan-swanctl "
        "libcharon-extra-plugins libstrongswan-extra-plugins; `make test` does it)",
    )


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[Any]) -> Generator[Any]:
    outcome = yield
    report = outcome.get_result()
    if REQUIRE_ALL_TESTS and report.skipped and not hasattr(report, "wasxfail"):
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else report.longrepr
        report.outcome = "failed"
        report.longrepr = f"skipped under CGWD_REQUIRE_ALL_TESTS=1: {reason}"
