"""IKEv1 key schedule (RFC 2409 §5, §5.5, App. B) against values strongSwan's charon logged.

The vectors come from tests/netns/test_ikev1_strongswan_vectors.py (capture mode): charon's
own SKEYID/_d/_a/_e, Ka, initial IV, HASH_I/HASH_R and ESP keys, with the inputs it logged.
"""

from __future__ import annotations

from typing import Any

import pytest
from ike_test_helpers import load_vectors

from cgwd.ike.v1.keys import (
    Phase1Suite,
    derive_phase1_keys,
    expand_key,
    hash_i,
    hash_r,
    keymat,
    phase1_iv,
)
from cgwd.secret import Secret

VECTORS = load_vectors("strongswan_ikev1_keys.json")
PUBLIC_LEN = {2: 128, 14: 256, 19: 64, 20: 96, 21: 132}
ID_LEN = 8  # ID_IPV4_ADDR body


def _h(v: dict[str, Any], key: str) -> bytes:
    return bytes.fromhex(v[key])


def test_vectors_cover_the_suites_that_matter() -> None:
    suites = {(v["suite"]["key_bits"], v["suite"]["hash"], v["suite"]["group"]) for v in VECTORS}
    assert (128, 2, 2) in suites  # AWS's default
    assert (256, 4, 14) in suites
    assert any(bits == 256 and h == 2 for bits, h, _ in suites)  # App. B key expansion


@pytest.mark.parametrize("v", VECTORS, ids=lambda v: v["suite"]["esp"])
def test_phase1_keys(v: dict[str, Any]) -> None:
    s = v["suite"]
    suite = Phase1Suite(s["key_bits"], s["hash"], s["group"])
    keys = derive_phase1_keys(
        suite, Secret(v["psk"]), _h(v, "ni"), _h(v, "nr"), _h(v, "g_xy"),
        _h(v, "cky_i"), _h(v, "cky_r"),
    )  # fmt: skip
    assert keys.skeyid.reveal() == _h(v, "skeyid")
    assert keys.skeyid_d.reveal() == _h(v, "skeyid_d")
    assert keys.skeyid_a.reveal() == _h(v, "skeyid_a")
    assert keys.skeyid_e.reveal() == _h(v, "skeyid_e")
    assert keys.enc_key.reveal() == _h(v, "ka")
    if len(_h(v, "skeyid_e")) < s["key_bits"] // 8:
        assert expand_key(suite, _h(v, "skeyid_e")) == _h(v, "ka")
        assert _h(v, "ka")[:20] != _h(v, "skeyid_e")  # really expanded, not truncated


@pytest.mark.parametrize("v", VECTORS, ids=lambda v: v["suite"]["esp"])
def test_iv_and_main_mode_hashes(v: dict[str, Any]) -> None:
    s = v["suite"]
    suite = Phase1Suite(s["key_bits"], s["hash"], s["group"])
    n = PUBLIC_LEN[s["group"]]
    data = _h(v, "hash_i_data")
    g_xi, g_xr = data[:n], data[n : 2 * n]
    cky_i, cky_r = _h(v, "cky_i"), _h(v, "cky_r")
    assert data[2 * n : 2 * n + 16] == cky_i + cky_r
    sai_b, idii_b = data[2 * n + 16 : -ID_LEN], data[-ID_LEN:]
    skeyid = Secret(_h(v, "skeyid"))
    assert phase1_iv(suite, g_xi, g_xr) == _h(v, "initial_iv")
    assert hash_i(suite, skeyid, g_xi, g_xr, cky_i, cky_r, sai_b, idii_b) == _h(v, "hash_i")
    idir_b = _h(v, "hash_r_data")[-ID_LEN:]
    assert hash_r(suite, skeyid, g_xi, g_xr, cky_i, cky_r, sai_b, idir_b) == _h(v, "hash_r")


@pytest.mark.parametrize("v", VECTORS, ids=lambda v: v["suite"]["esp"])
@pytest.mark.parametrize("role", ["initiator", "responder"])
def test_quick_mode_keymat(v: dict[str, Any], role: str) -> None:
    s = v["suite"]
    suite = Phase1Suite(s["key_bits"], s["hash"], s["group"])
    g_qm = _h(v, "g_qm")
    seed = _h(v, f"{role}_sa_seed")
    protocol = seed[len(g_qm)]
    spi = int.from_bytes(seed[len(g_qm) + 1 : len(g_qm) + 5], "big")
    nonces = seed[len(g_qm) + 5 :]
    keys = v["esp_keys"]
    want = bytes.fromhex(keys[f"encryption {role} key"] + keys[f"integrity {role} key"])
    got = keymat(
        suite, Secret(_h(v, "skeyid_d")), protocol, spi, nonces[:32], nonces[32:], len(want), g_qm
    )
    assert got.reveal() == want
