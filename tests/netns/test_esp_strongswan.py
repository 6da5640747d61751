"""cgwd's ESP engine against strongSwan's (kernel-libipsec), live.

Two charons in two namespaces exchange pings through a tunnel; cgwd decapsulates every
captured ESP packet with the keys charon logged, and encrypts echo requests that
strongSwan accepts and answers. See esp_strongswan_capture.py.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest
from conftest import require_strongswan
from esp_strongswan_capture import capture, verify_capture

pytestmark = [pytest.mark.netns, pytest.mark.strongswan, pytest.mark.slow]


@pytest.mark.parametrize("suite", ["aes128gcm16", "aes128-sha1", "aes256-sha512"])
def test_strongswan_and_cgwd_esp_interoperate(suite: str) -> None:
    require_strongswan()
    with tempfile.TemporaryDirectory(prefix="cgesp", dir="/tmp") as tmp:
        result = capture(suite, False, Path(tmp))
    counts = verify_capture(result)
    assert counts["injected_reply"] == 2
