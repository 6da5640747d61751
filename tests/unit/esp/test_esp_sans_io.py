"""cgwd/esp is a protocol core: no I/O, clock or randomness (architecture rule 1)."""

from __future__ import annotations

import ast
from pathlib import Path

import cgwd.esp

FORBIDDEN = {
    "asyncio",
    "datetime",
    "os",
    "random",
    "secrets",
    "select",
    "socket",
    "subprocess",
    "threading",
    "time",
}


def _imported_modules(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.add(node.module.split(".")[0])
    return names


def test_esp_core_imports_no_io_clock_or_randomness() -> None:
    package = Path(cgwd.esp.__file__).parent
    sources = sorted(package.glob("*.py"))
    assert len(sources) >= 5
    for source in sources:
        bad = _imported_modules(source) & FORBIDDEN
        assert not bad, f"{source.name} imports {sorted(bad)}"
