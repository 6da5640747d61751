"""The IKE codec and crypto modules do no I/O, read no clock and draw no randomness.

Only `cgwd.ike.rng.SystemRng` and `cgwd.ike.clock.MonotonicClock` (the host-side
implementations the daemon injects) may touch the OS.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

IKE = Path(__file__).resolve().parents[3] / "cgwd" / "ike"
CORE = sorted(
    [
        *(IKE / "crypto").glob("*.py"),
        IKE / "buffer.py",
        IKE / "constants.py",
        IKE / "decode_errors.py",
        IKE / "v2" / "payloads.py",
        IKE / "v2" / "message.py",
        IKE / "v2" / "notify_data.py",
    ]
)
FORBIDDEN = {"socket", "asyncio", "time", "os", "random", "secrets", "subprocess", "select"}


def imported_modules(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


@pytest.mark.parametrize("path", CORE, ids=lambda p: str(p.relative_to(IKE)))
def test_core_module_is_sans_io(path: Path) -> None:
    assert not imported_modules(path) & FORBIDDEN


def test_the_check_sees_imports() -> None:
    assert {"time"} <= imported_modules(IKE / "clock.py")
    assert {"secrets"} <= imported_modules(IKE / "rng.py")
    assert len(CORE) >= 15
