"""IKE crypto and codec costs: DH per group, and a whole PSK handshake's crypto per suite.

    python -m bench.ike_crypto [--quick] [--json PATH]

1. ``dh``: for each group, our key generation (private value + public value) and shared
   secret in ms, with a reference measured in the same run: OpenSSL's finite-field DH
   through cryptography for the MODP groups (deprecated, and the reason MODP uses
   ``pow()``), the bare cryptography calls for ECP and Curve25519 (our overhead).
2. ``handshake``: both ends of IKE_SA_INIT + IKE_AUTH in memory (codec, DH, key schedule,
   SK protection, PSK AUTH both ways), handshakes per second on one core: the ceiling the
   crypto puts on the responder's handshake rate, before any session logic.

A benchmark, not a test: nothing here asserts on time.
"""

from __future__ import annotations

import argparse
import json
import time
import warnings
from collections.abc import Callable
from ipaddress import IPv4Address
from typing import Any

from cryptography.hazmat.primitives.asymmetric import ec, x25519

from cgwd.ike.constants import AuthMethod, ExchangeType, ProtocolId, TransformType
from cgwd.ike.crypto import (
    IkeSuite,
    auth_signed_octets,
    derive_ike_keys,
    dh_group,
    psk_auth,
)
from cgwd.ike.crypto.ec import EcpGroup
from cgwd.ike.crypto.modp import MODP_GROUPS
from cgwd.ike.rng import SystemRng
from cgwd.ike.v2.message import Message, decode_message, encode_message
from cgwd.ike.v2.payloads import (
    AuthPayload,
    IdiPayload,
    IdrPayload,
    KePayload,
    NoncePayload,
    Proposal,
    SaPayload,
    TrafficSelector,
    Transform,
    TsiPayload,
    TsrPayload,
)
from cgwd.secret import Secret

GROUPS = (2, 5, 14, 15, 16, 18, 19, 20, 21, 24, 31)
SUITES = {
    "aes128-sha1-prfsha1-modp1024": IkeSuite(12, 128, 2, 2, 2),
    "aes256-sha256-prfsha256-modp2048": IkeSuite(12, 256, 12, 5, 14),
    "aes128gcm16-prfsha256-ecp256": IkeSuite(20, 128, None, 5, 19),
    "aes256gcm16-prfsha384-ecp384": IkeSuite(20, 256, None, 6, 20),
    "aes256-sha256-prfsha256-curve25519": IkeSuite(12, 256, 12, 5, 31),
}
RNG = SystemRng()


def best_ms(fn: Callable[[], object], repeat: int, number: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        for _ in range(number):
            fn()
        best = min(best, (time.perf_counter() - start) / number)
    return best * 1000


def reference(group_id: int) -> tuple[Callable[[], object], Callable[[], object]] | None:
    """(keygen, exchange) through cryptography/OpenSSL directly, for the same group."""
    if group_id in MODP_GROUPS:
        from cryptography.hazmat.primitives.asymmetric import dh  # noqa: PLC0415

        g = MODP_GROUPS[group_id]
        params = dh.DHParameterNumbers(g.p, g.g, g.q).parameters()
        peer = params.generate_private_key().public_key()
        key = params.generate_private_key()
        return params.generate_private_key, lambda: key.exchange(peer)
    group = dh_group(group_id)
    if isinstance(group, EcpGroup):
        curve = group.curve
        peer_ec = ec.generate_private_key(curve).public_key()
        key_ec = ec.generate_private_key(curve)
        return (lambda: ec.generate_private_key(curve)), lambda: key_ec.exchange(ec.ECDH(), peer_ec)
    peer_x = x25519.X25519PrivateKey.generate().public_key()
    key_x = x25519.X25519PrivateKey.generate()
    return x25519.X25519PrivateKey.generate, lambda: key_x.exchange(peer_x)


def bench_dh(quick: bool) -> list[dict[str, Any]]:
    rows = []
    for gid in GROUPS:
        group = dh_group(gid)
        peer_public = group.generate(RNG).public_bytes()
        mine = group.generate(RNG)
        slow = gid in (16, 17, 18)
        number = 1 if slow or quick else 5
        repeat = 2 if quick else 3
        gen = best_ms(lambda group=group: group.generate(RNG).public_bytes(), repeat, number)
        shared = best_ms(
            lambda mine=mine, peer=peer_public: mine.shared_secret(peer), repeat, number
        )
        row: dict[str, Any] = {
            "group": gid,
            "keygen_ms": round(gen, 3),
            "shared_ms": round(shared, 3),
        }
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # finite-field DH is deprecated in cryptography
            ref = reference(gid)
            if ref is not None and not (slow and quick):
                ref_gen = best_ms(ref[0], repeat, number)
                ref_shared = best_ms(ref[1], repeat, number)
                row.update(
                    ref_keygen_ms=round(ref_gen, 3),
                    ref_shared_ms=round(ref_shared, 3),
                    ratio_vs_ref=round((gen + shared) / (ref_gen + ref_shared), 2),
                )
        rows.append(row)
    return rows


def handshake(suite: IkeSuite, psk: Secret) -> None:
    """Both ends of IKE_SA_INIT and IKE_AUTH, in memory."""
    group = dh_group(suite.dh_group)
    t = [Transform.of(TransformType.ENCR, suite.encr_id, suite.encr_key_bits)]
    if suite.integ_id:
        t.append(Transform.of(TransformType.INTEG, suite.integ_id))
    t += [
        Transform.of(TransformType.PRF, suite.prf_id),
        Transform.of(TransformType.DH, suite.dh_group),
    ]
    sa = SaPayload((Proposal(1, ProtocolId.IKE, b"", tuple(t)),))
    spi_i, spi_r = int.from_bytes(RNG.bytes(8), "big"), int.from_bytes(RNG.bytes(8), "big")
    a, ni = group.generate(RNG), RNG.bytes(32)
    req = encode_message(
        Message(ExchangeType.IKE_SA_INIT, 0, spi_i, 0, initiator=True, response=False,
                payloads=[sa, KePayload(suite.dh_group, a.public_bytes()), NoncePayload(ni)]),
        None, RNG,
    )  # fmt: skip
    got = decode_message(req, None)  # responder
    ke_i = got.get(KePayload)
    assert ke_i is not None
    b, nr = group.generate(RNG), RNG.bytes(32)
    resp = encode_message(
        Message(ExchangeType.IKE_SA_INIT, 0, spi_i, spi_r, initiator=False, response=True,
                payloads=[sa, KePayload(suite.dh_group, b.public_bytes()), NoncePayload(nr)]),
        None, RNG,
    )  # fmt: skip
    r_keys = derive_ike_keys(suite, ni, nr, b.shared_secret(ke_i.data), spi_i, spi_r)
    got = decode_message(resp, None)  # initiator
    ke_r = got.get(KePayload)
    assert ke_r is not None
    i_keys = derive_ike_keys(suite, ni, nr, a.shared_secret(ke_r.data), spi_i, spi_r)
    i_out, i_in = i_keys.sk_ciphers(suite, initiator=True)
    r_out, r_in = r_keys.sk_ciphers(suite, initiator=False)
    ts = (TrafficSelector.any_ipv4(),)
    idi, idr = IdiPayload.ipv4(IPv4Address("192.0.2.1")), IdrPayload.ipv4(IPv4Address("192.0.2.2"))
    auth_i = psk_auth(
        suite.prf_id, psk, auth_signed_octets(suite.prf_id, req, nr, i_keys.sk_pi, idi.body)
    )
    auth_req = encode_message(
        Message(ExchangeType.IKE_AUTH, 1, spi_i, spi_r, initiator=True, response=False,
                payloads=[idi, AuthPayload(AuthMethod.SHARED_KEY_MIC, auth_i),
                          TsiPayload(ts), TsrPayload(ts)]),
        i_out, RNG,
    )  # fmt: skip
    got = decode_message(auth_req, r_in)
    their = got.get(AuthPayload)
    expected = psk_auth(
        suite.prf_id, psk, auth_signed_octets(suite.prf_id, req, nr, r_keys.sk_pi, idi.body)
    )
    assert their is not None and their.data == expected
    auth_r = psk_auth(
        suite.prf_id, psk, auth_signed_octets(suite.prf_id, resp, ni, r_keys.sk_pr, idr.body)
    )
    auth_resp = encode_message(
        Message(ExchangeType.IKE_AUTH, 1, spi_i, spi_r, initiator=False, response=True,
                payloads=[idr, AuthPayload(AuthMethod.SHARED_KEY_MIC, auth_r),
                          TsiPayload(ts), TsrPayload(ts)]),
        r_out, RNG,
    )  # fmt: skip
    assert decode_message(auth_resp, i_in).get(AuthPayload) is not None


def bench_handshake(quick: bool) -> list[dict[str, Any]]:
    psk = Secret("bench pre-shared key")
    rows = []
    for name, suite in SUITES.items():
        ms = best_ms(
            lambda suite=suite: handshake(suite, psk), 2 if quick else 3, 3 if quick else 10
        )
        rows.append(
            {"suite": name, "handshake_ms": round(ms, 3), "handshakes_per_s": round(1000 / ms, 1)}
        )
    return rows


def run(quick: bool = False) -> dict[str, Any]:
    return {"dh": bench_dh(quick), "handshake": bench_handshake(quick)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--json", metavar="PATH")
    args = parser.parse_args()
    result = run(args.quick)
    head = ("group", "keygen ms", "shared ms", "ref keygen", "ref shared", "ratio")
    print(" ".join(f"{h:>11}" for h in head))
    for r in result["dh"]:
        keys = ("group", "keygen_ms", "shared_ms", "ref_keygen_ms", "ref_shared_ms", "ratio_vs_ref")
        print(" ".join(f"{r.get(k, '-')!s:>11}" for k in keys))
    print("\nboth ends of IKE_SA_INIT + IKE_AUTH (crypto and codec only, one core)")
    for r in result["handshake"]:
        print(f"  {r['suite']:<36} {r['handshake_ms']:>8} ms  {r['handshakes_per_s']:>8}/s")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=1)


if __name__ == "__main__":
    main()
