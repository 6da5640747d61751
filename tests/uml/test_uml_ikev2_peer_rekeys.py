"""cgwd as the responder of strongSwan's CHILD_SA rekeys (one a second, each followed by
the DELETE of the old SA) with the kernel dataplane, inside a user-mode Linux guest (this
host's kernel has no ESP): make before break, measured on the kernel and on a stream."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from uml_guest import UmlGuest, uml_available  # type: ignore[import-not-found]

try:
    from tests.conftest import require, require_root, require_strongswan
except ImportError:  # pragma: no cover - depends on how pytest was started
    from conftest import (  # type: ignore[no-redef]
        require,
        require_root,
        require_strongswan,
    )

pytestmark = [pytest.mark.uml, pytest.mark.slow, pytest.mark.strongswan]


@pytest.fixture(scope="module")
def guest() -> Iterator[UmlGuest]:
    require_root()
    require_strongswan()
    ok, reason = uml_available()
    require(ok, reason)
    with UmlGuest() as g:
        yield g


def test_peer_rekeys_never_leave_the_tunnel_without_an_outbound_sa(guest: UmlGuest) -> None:
    result = guest.python("tests/uml/scenario_ikev2_peer_rekeys.py", timeout=240)
    lines = result.output.strip().splitlines()
    assert result.rc == 0 and lines, result.output
    doc: dict[str, Any] = json.loads(lines[-1])
    assert "stream" in doc, doc
    assert doc["outbound_adds"] >= 5, doc  # charon rekeyed (about once a second)
    assert doc["no_outbound_after"] == [], doc["no_outbound_after"][:5]
    stream = doc["stream"]
    assert stream["received"] == stream["sent"] > 1000, (stream, doc["missing"])
    assert "shutdown_errors" not in doc, doc["shutdown_errors"]
