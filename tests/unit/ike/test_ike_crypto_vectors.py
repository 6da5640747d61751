"""Known-answer tests for the IKE crypto, with provenance in tests/vectors/ike/*.json.

DH: RFC 5903 §8 (ECP 19-21), RFC 5114 Appendix A (22-24), RFC 7748 §6.1 and RFC 8031
(Curve25519), strongSwan-generated values for MODP 2, 5, 14-18 (no RFC publishes any).
HMAC: RFC 2202 and RFC 4868 §2.7. AES-GCM: McGrew & Viega test cases (RFC 5282 layout).
"""

from __future__ import annotations

import hashlib
import hmac
import shutil
import subprocess
import warnings
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from ike_test_helpers import ScriptedRng, load_vectors

from cgwd.ike.constants import EncrId, IntegId, PrfId
from cgwd.ike.crypto import (
    AesGcm,
    IkeSuite,
    InvalidKeyExchange,
    SkCipher,
    dh_group,
    integ_algorithm,
    prf,
    prf_plus,
    psk_auth,
)
from cgwd.ike.crypto.ec import EC_GROUPS, EcpGroup
from cgwd.ike.crypto.modp import MODP_GROUPS
from cgwd.ike.decode_errors import ParseError
from cgwd.secret import Secret

DH_VECTORS = load_vectors("dh.json")


@pytest.mark.parametrize("v", DH_VECTORS, ids=lambda v: f"{v['group']}-{v['name']}")
def test_dh_known_answers(v: dict[str, Any]) -> None:
    group = dh_group(v["group"])
    mine = group.generate(ScriptedRng(bytes.fromhex(v["private_i"])))
    theirs = group.generate(ScriptedRng(bytes.fromhex(v["private_r"])))
    assert mine.public_bytes().hex() == v["public_i"]
    assert theirs.public_bytes().hex() == v["public_r"]
    assert mine.shared_secret(bytes.fromhex(v["public_r"])).reveal().hex() == v["shared"]
    assert theirs.shared_secret(bytes.fromhex(v["public_i"])).reveal().hex() == v["shared"]


def test_every_supported_group_has_a_vector() -> None:
    covered = {v["group"] for v in DH_VECTORS}
    assert covered == {2, 5, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 31}


def _pi_times_2_to(bits: int) -> int:
    """floor(pi * 2**bits) by Machin's formula, independently of the code under test."""
    guard = bits + 64
    one = 1 << guard

    def arctan_inv(x: int) -> int:
        total = term = one // x
        n, sign = 1, -1
        while term:
            term //= x * x
            total += sign * (term // (2 * n + 1))
            sign, n = -sign, n + 1
        return total

    return (16 * arctan_inv(5) - 4 * arctan_inv(239)) >> 64


# RFC 2409 §6.2 and RFC 3526: p = 2^n - 2^(n-64) - 1 + 2^64 * ([2^(n-130) pi] + k)
MODP_DEFINITIONS = {
    2: (1024, 129093),
    5: (1536, 741804),
    14: (2048, 124476),
    15: (3072, 1690314),
    16: (4096, 240904),
    17: (6144, 929484),
    18: (8192, 4743158),
}


@pytest.mark.parametrize("group_id", sorted(MODP_DEFINITIONS))
def test_modp_prime_matches_its_rfc_definition(group_id: int) -> None:
    n, k = MODP_DEFINITIONS[group_id]
    p = 2**n - 2 ** (n - 64) - 1 + 2**64 * (_pi_times_2_to(n - 130) + k)
    group = MODP_GROUPS[group_id]
    assert group.p == p
    assert group.g == 2


OPENSSL_NAMES = {
    5: "modp_1536",
    14: "modp_2048",
    15: "modp_3072",
    16: "modp_4096",
    17: "modp_6144",
    18: "modp_8192",
    22: "dh_1024_160",
    23: "dh_2048_224",
    24: "dh_2048_256",
}


@pytest.mark.parametrize("group_id", sorted(OPENSSL_NAMES))
def test_modp_parameters_match_openssl_named_groups(group_id: int, tmp_path: Path) -> None:
    if shutil.which("openssl") is None:
        pytest.skip("openssl CLI not installed")
    out = tmp_path / "params.pem"
    subprocess.run(
        ["openssl", "genpkey", "-genparam", "-algorithm", "DH", "-pkeyopt",
         f"group:{OPENSSL_NAMES[group_id]}", "-out", str(out)],
        check=True, capture_output=True,
    )  # fmt: skip
    with warnings.catch_warnings():  # cryptography's finite-field DH is deprecated
        warnings.simplefilter("ignore")
        from cryptography.hazmat.primitives.serialization import (  # noqa: PLC0415
            load_pem_parameters,
        )

        numbers = load_pem_parameters(out.read_bytes()).parameter_numbers()  # type: ignore[union-attr]
    group = MODP_GROUPS[group_id]
    assert (group.p, group.g) == (numbers.p, numbers.g)
    if group.q is not None:
        assert group.q == numbers.q


@pytest.mark.parametrize("group_id", [19, 20, 21])
def test_ecp_order_is_the_base_point_order(group_id: int) -> None:
    group = EC_GROUPS[group_id]
    assert isinstance(group, EcpGroup)
    g = ec.derive_private_key(1, group.curve).public_key().public_numbers()
    minus_g = ec.derive_private_key(group.order - 1, group.curve).public_key().public_numbers()
    assert (minus_g.x, minus_g.y) != (g.x, g.y)
    assert minus_g.x == g.x  # (n-1)G = -G only if n is the order
    with pytest.raises(ValueError):
        ec.derive_private_key(group.order, group.curve)


# ---------------------------------------------------------------- RFC 6989 checks


@pytest.mark.parametrize("group_id", [2, 14, 22, 24])
def test_modp_rejects_degenerate_public_values(group_id: int) -> None:
    group = MODP_GROUPS[group_id]
    me = group.generate(ScriptedRng(bytes(range(1, 65)) * 2))
    size = group.public_length
    for y in (0, 1, group.p - 1, group.p, 2 ** (8 * size) - 1):
        with pytest.raises(InvalidKeyExchange):
            me.shared_secret(y.to_bytes(size, "big"))
    good = group.generate(ScriptedRng(bytes(range(2, 66)) * 2)).public_bytes()
    with pytest.raises(InvalidKeyExchange):
        me.shared_secret(good[1:])
    with pytest.raises(InvalidKeyExchange):
        me.shared_secret(b"\x00" + good)


@pytest.mark.parametrize("group_id", [22, 23, 24])
def test_modp_subgroup_check(group_id: int) -> None:
    group = MODP_GROUPS[group_id]
    assert group.q is not None
    me = group.generate(ScriptedRng(bytes(range(1, 65))))
    outside = 2  # 2 generates a larger subgroup than q in these groups
    assert pow(outside, group.q, group.p) != 1
    with pytest.raises(InvalidKeyExchange):
        me.shared_secret(outside.to_bytes(group.public_length, "big"))


@pytest.mark.parametrize("group_id", [19, 20, 21])
def test_ecp_rejects_points_off_the_curve(group_id: int) -> None:
    group = dh_group(group_id)
    me = group.generate(ScriptedRng(b"\x01" * 66))
    peer = bytearray(group.generate(ScriptedRng(b"\x02" * 66)).public_bytes())
    peer[-1] ^= 1
    with pytest.raises(InvalidKeyExchange):
        me.shared_secret(bytes(peer))
    with pytest.raises(InvalidKeyExchange):
        me.shared_secret(bytes(peer[:-1]))
    with pytest.raises(InvalidKeyExchange):
        me.shared_secret(bytes(group.public_length))  # (0, 0) is not on the curve


@pytest.mark.parametrize("low_order", [bytes(32), b"\x01" + bytes(31)])
def test_x25519_rejects_all_zero_result(low_order: bytes) -> None:
    me = dh_group(31).generate(ScriptedRng(b"\x05" * 32))
    with pytest.raises(InvalidKeyExchange):
        me.shared_secret(low_order)
    with pytest.raises(InvalidKeyExchange):
        me.shared_secret(b"\x09" * 31)


def test_private_values_never_render() -> None:
    for gid in (2, 19, 31):
        me = dh_group(gid).generate(ScriptedRng(b"\x42" * 66))
        shared = me.shared_secret(dh_group(gid).generate(ScriptedRng(b"\x43" * 66)).public_bytes())
        assert "redacted" in repr(me)
        assert shared.reveal().hex() not in repr(shared) + str(shared)


# ---------------------------------------------------------------- HMAC, prf+, AUTH

PRF_ALGS = {
    "PRF_HMAC_SHA1": PrfId.HMAC_SHA1,
    "PRF_HMAC_SHA2_256": PrfId.HMAC_SHA2_256,
    "PRF_HMAC_SHA2_384": PrfId.HMAC_SHA2_384,
    "PRF_HMAC_SHA2_512": PrfId.HMAC_SHA2_512,
}
INTEG_ALGS = {
    "AUTH_HMAC_SHA1_96": IntegId.HMAC_SHA1_96,
    "AUTH_HMAC_SHA2_256_128": IntegId.HMAC_SHA2_256_128,
    "AUTH_HMAC_SHA2_384_192": IntegId.HMAC_SHA2_384_192,
    "AUTH_HMAC_SHA2_512_256": IntegId.HMAC_SHA2_512_256,
}
MAC_VECTORS = [
    v for v in load_vectors("hmac.json") if v["alg"] in PRF_ALGS or v["alg"] in INTEG_ALGS
]


@pytest.mark.parametrize("v", MAC_VECTORS, ids=lambda v: v["name"])
def test_hmac_known_answers(v: dict[str, Any]) -> None:
    key, data, out = (bytes.fromhex(v[k]) for k in ("key", "data", "out"))
    if v["kind"] == "prf":
        assert prf(PRF_ALGS[v["alg"]], key, data) == out
        assert prf(PRF_ALGS[v["alg"]], Secret(key), data) == out
    else:
        alg = integ_algorithm(INTEG_ALGS[v["alg"]])
        # One strongSwan entry appends 4 octets of the full HMAC; the ICV is the prefix.
        icv = out[: alg.icv_bytes]
        assert alg.compute(key, data) == icv
        assert alg.verify(Secret(key), data, icv)
        assert not alg.verify(key, data + b"x", icv)


def test_mac_vectors_cover_every_algorithm() -> None:
    assert {v["alg"] for v in MAC_VECTORS} == set(PRF_ALGS) | set(INTEG_ALGS)


def test_prf_plus_follows_its_definition() -> None:
    # RFC 7296 §2.13, written out with hmac directly: T1 = prf(K, S|0x01), Tn = prf(K, Tn-1|S|n)
    key, seed = b"k" * 20, b"seed"
    t1 = hmac.new(key, seed + b"\x01", hashlib.sha256).digest()
    t2 = hmac.new(key, t1 + seed + b"\x02", hashlib.sha256).digest()
    t3 = hmac.new(key, t2 + seed + b"\x03", hashlib.sha256).digest()
    assert prf_plus(PrfId.HMAC_SHA2_256, key, seed, 80) == (t1 + t2 + t3)[:80]
    assert prf_plus(PrfId.HMAC_SHA2_256, key, seed, 255 * 32)[-32:] != b""
    with pytest.raises(ValueError):
        prf_plus(PrfId.HMAC_SHA2_256, key, seed, 255 * 32 + 1)
    with pytest.raises(ValueError):
        prf(PrfId.AES128_XCBC, key, seed)


def test_psk_auth_follows_its_definition() -> None:
    psk, octets = b"secret psk", b"signed octets"
    pad = hmac.new(psk, b"Key Pad for IKEv2", hashlib.sha1).digest()
    expected = hmac.new(pad, octets, hashlib.sha1).digest()
    assert psk_auth(PrfId.HMAC_SHA1, Secret(psk), octets) == expected


# ---------------------------------------------------------------- AES-GCM

GCM_VECTORS = load_vectors("aes_gcm.json")


@pytest.mark.parametrize("v", GCM_VECTORS, ids=lambda v: v["name"])
def test_aes_gcm_known_answers(v: dict[str, Any]) -> None:
    key_salt, iv, plain, aad, sealed = (
        bytes.fromhex(v[k]) for k in ("key_and_salt", "iv", "plain", "aad", "cipher_and_tag")
    )
    key, salt = key_salt[:-4], key_salt[-4:]
    gcm = AesGcm(key)
    assert gcm.seal(salt + iv, plain, aad) == sealed
    assert gcm.open(salt + iv, sealed, aad) == plain
    assert gcm.open(salt + iv, sealed[:-1] + bytes([sealed[-1] ^ 1]), aad) is None


@pytest.mark.parametrize(
    "v", [v for v in GCM_VECTORS if v["key_bits"] != 192 and v["plain"]], ids=lambda v: v["name"]
)
def test_sk_payload_decrypts_nist_gcm_vectors(v: dict[str, Any]) -> None:
    """The SK path (RFC 5282: IV 8, ICV 16, salt from SK_e) on the published ciphertexts."""
    key_salt, iv, plain, aad, sealed = (
        bytes.fromhex(v[k]) for k in ("key_and_salt", "iv", "plain", "aad", "cipher_and_tag")
    )
    suite = IkeSuite(EncrId.AES_GCM_16, v["key_bits"], None, PrfId.HMAC_SHA2_256, 19)
    sk = SkCipher(suite, Secret(key_salt), None)
    pad = plain[-1]
    if pad + 1 > len(plain):
        with pytest.raises(ParseError):
            sk.decrypt(iv + sealed, aad)
    else:
        assert sk.decrypt(iv + sealed, aad) == plain[: len(plain) - pad - 1]
