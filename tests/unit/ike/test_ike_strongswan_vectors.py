"""Key schedules and PSK AUTH against values strongSwan's charon logged (no root needed).

tests/vectors/ike/strongswan_ikev2_keys.json was captured by
tests/netns/test_ike_crypto_strongswan.py (CGWD_WRITE_IKE_VECTORS=PATH): the public inputs
as sent on the wire, and charon's own SKEYSEED, SK_*, Child SA keys, DH secrets and AUTH
computation. Each derivation below starts from charon's values, never from ours.
"""

from __future__ import annotations

from typing import Any

import pytest
from ike_test_helpers import load_vectors

from cgwd.ike.constants import AuthMethod
from cgwd.ike.crypto import (
    IkeKeys,
    IkeSuite,
    SkCipher,
    auth_signed_octets,
    child_keymat,
    derive_ike_keys,
    derive_rekeyed_ike_keys,
    prf,
    prf_output_length,
    psk_auth,
    skeyseed,
)
from cgwd.ike.crypto.cipher import encr_algorithm
from cgwd.ike.crypto.integ import integ_algorithm
from cgwd.ike.decode_errors import IntegrityError
from cgwd.ike.v2.message import decode_message
from cgwd.ike.v2.payloads import AuthPayload, IdrPayload, SaPayload, TsiPayload
from cgwd.secret import Secret

VECTORS = load_vectors("strongswan_ikev2_keys.json")


def h(value: str) -> bytes:
    return bytes.fromhex(value)


def suite_of(s: dict[str, int]) -> IkeSuite:
    return IkeSuite(s["encr"], s["bits"], s["integ"] or None, s["prf"], s["dh"])


def assert_keys(keys: IkeKeys, logged: dict[str, str]) -> None:
    for name, value in logged.items():
        assert getattr(keys, f"sk_{name}").reveal().hex() == value, name


def name_of(v: dict[str, Any]) -> str:
    s = v["suite"]
    return f"encr{s['encr']}-{s['bits']}-integ{s['integ']}-prf{s['prf']}-dh{s['dh']}" + (
        "-rekey-to-other" if v["rekey_suite"] else ""
    )


def test_vectors_cover_the_suites() -> None:
    groups = {v["suite"]["dh"] for v in VECTORS}
    prfs = {v["suite"]["prf"] for v in VECTORS}
    assert {2, 5, 14, 19, 20, 21, 22, 24, 31} <= groups
    assert prfs == {2, 5, 6, 7}
    assert any(v["child_shared"] is None for v in VECTORS)  # a rekey without PFS


@pytest.mark.parametrize("v", VECTORS, ids=name_of)
def test_ike_sa_keys(v: dict[str, Any]) -> None:
    suite, i = suite_of(v["suite"]), v["inputs"]
    ni, nr = h(i["ni"]), h(i["nr"])
    assert skeyseed(suite.prf_id, ni, nr, h(v["shared"])).reveal().hex() == v["skeyseed"]
    keys = derive_ike_keys(suite, ni, nr, h(v["shared"]), h(i["spi_i"]), h(i["spi_r"]))
    assert_keys(keys, v["ike_keys"])


@pytest.mark.parametrize("v", VECTORS, ids=name_of)
def test_rekeyed_ike_sa_keys(v: dict[str, Any]) -> None:
    old, i = suite_of(v["suite"]), v["inputs"]
    new = suite_of(v["rekey_suite"]) if v["rekey_suite"] else old
    keys = derive_rekeyed_ike_keys(
        new, Secret(h(v["ike_keys"]["d"])), h(v["rekey_shared"]), h(i["rekey_ni"]),
        h(i["rekey_nr"]), h(i["rekey_spi_i"]), h(i["rekey_spi_r"]), old_prf_id=old.prf_id,
    )  # fmt: skip
    assert_keys(keys, v["rekeyed_ike_keys"])


@pytest.mark.parametrize("v", VECTORS, ids=name_of)
def test_child_sa_keymat(v: dict[str, Any]) -> None:
    suite, i, esp = suite_of(v["suite"]), v["inputs"], v["esp"]
    length = encr_algorithm(esp["encr"], esp["bits"]).key_bytes + (
        integ_algorithm(esp["integ"]).key_bytes if esp["integ"] else 0
    )
    sk_d = h(v["ike_keys"]["d"])
    for keys, ni, nr, shared in (
        (v["child_keys"], i["ni"], i["nr"], None),
        (v["rekeyed_child_keys"], i["child_ni"], i["child_nr"], v["child_shared"]),
    ):
        keymat = child_keymat(
            suite.prf_id, sk_d, h(ni), h(nr), 2 * length, None if shared is None else h(shared)
        )
        # RFC 7296 §2.17: initiator-to-responder first, each encryption key then integrity key
        expected = keys["encr_i"] + keys["integ_i"] + keys["encr_r"] + keys["integ_r"]
        assert keymat.reveal().hex() == expected


@pytest.mark.parametrize("v", VECTORS, ids=name_of)
def test_decrypts_charons_ike_auth_response(v: dict[str, Any]) -> None:
    """charon's own SK payload (CBC+HMAC or GCM) opened with the SK_er/SK_ar it logged."""
    suite, k = suite_of(v["suite"]), v["ike_keys"]
    sk = SkCipher(suite, h(k["er"]), h(k["ar"]) if "ar" in k else None)
    wire = h(v["inputs"]["ike_auth_response"])
    msg = decode_message(wire, sk)
    assert msg.encrypted and msg.response and not msg.initiator and msg.message_id == 1
    idr, auth = msg.get(IdrPayload), msg.get(AuthPayload)
    assert idr is not None and str(idr) == "192.0.2.1"
    assert auth is not None and auth.method == AuthMethod.SHARED_KEY_MIC
    assert msg.get(SaPayload) is not None and msg.get(TsiPayload) is not None
    bad = bytearray(wire)
    bad[-1] ^= 1
    with pytest.raises(IntegrityError):
        decode_message(bytes(bad), sk)


@pytest.mark.parametrize("v", VECTORS, ids=name_of)
def test_psk_auth(v: dict[str, Any]) -> None:
    suite, a = suite_of(v["suite"]), v["auth"]
    octets, idx, sk_p = h(a["octets"]), h(a["idx"]), h(a["sk_p"])
    nr = h(v["inputs"]["nr"])  # charon verified the initiator's AUTH: the nonce is Nr
    mac_len = prf_output_length(suite.prf_id)
    message = octets[: len(octets) - len(nr) - mac_len]
    assert octets[len(message) : len(message) + len(nr)] == nr
    assert prf(suite.prf_id, sk_p, idx) == octets[-mac_len:]
    assert auth_signed_octets(suite.prf_id, message, nr, sk_p, idx) == octets
    assert psk_auth(suite.prf_id, Secret(a["psk"]), octets).hex() == a["auth"]
