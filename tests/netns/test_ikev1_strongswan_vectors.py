"""Our IKEv1 key schedule against strongSwan's (RFC 2409 has no test vectors).

charon, playing AWS in the lab at log level ``ike 4``/``chd 4``/``enc 4``, logs its shared
Diffie-Hellman secrets, SKEYID/SKEYID_d/_a/_e, the (Appendix B expanded) key Ka, the
initial IV, HASH_I/HASH_R with their inputs, Quick Mode hashes and the ESP keys with their
KEYMAT seeds. For each suite, cgwd's IKEv1 runner brings the tunnel up against it; every
value is then recomputed with `cgwd.ike.v1.keys` from the inputs charon logged and must
equal charon's result. With ``CGWD_CAPTURE_VECTORS=1`` the values are stored in
tests/vectors/ike/strongswan_ikev1_keys.json for the root-free unit test.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from conftest import require_strongswan

from cgwd.config.importers import load_aws_config
from cgwd.ike.v1.constants import P1Hash
from cgwd.ike.v1.keys import (
    Phase1Suite,
    derive_phase1_keys,
    hash_i,
    hash_r,
    keymat,
    phase1_iv,
)
from cgwd.lab.aws_side import AwsLab, LabOptions
from cgwd.lab.strongswan import DEFAULT_LOG_LEVELS

pytestmark = [pytest.mark.netns, pytest.mark.strongswan, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]
PYTHON = str(REPO / ".venv" / "bin" / "python")
AWS_CONFIG = REPO / "tests" / "data" / "aws" / "aws-describe-vpn-connections-static.xml"
VECTORS = REPO / "tests" / "vectors" / "ike" / "strongswan_ikev1_keys.json"

# (strongSwan IKE proposal, ESP proposal, AES bits, hash, group, ESP key bytes per key)
CASES = [
    ("aes128-sha1-modp1024", "aes128-sha1-modp1024", 128, P1Hash.SHA1, 2),
    ("aes256-sha256-modp2048", "aes256-sha256-modp2048", 256, P1Hash.SHA2_256, 14),
    # SKEYID_e (20 octets) is shorter than the AES-256 key: Appendix B expansion
    ("aes256-sha1-ecp384", "aes256gcm16-ecp384", 256, P1Hash.SHA1, 20),
    ("aes256-sha512-ecp521", "aes128-sha384-ecp521", 256, P1Hash.SHA2_512, 21),
]
_captured: list[dict[str, Any]] = []


def dumps(lines: list[str]) -> list[tuple[str, bytes]]:
    """strongSwan's hex dumps in log order: (label, octets) for each ``label => N bytes``."""
    out: list[tuple[str, bytes]] = []
    head = re.compile(r"\] (?:<[^>]*> )?(.*?) => (\d+) bytes @ 0x[0-9a-f]+$")
    row = re.compile(r"\] (?:<[^>]*> )?\s*\d+: ((?:[0-9A-F]{2} ?)+)")
    i = 0
    while i < len(lines):
        m = head.search(lines[i])
        if not m:
            i += 1
            continue
        label, n = m.group(1).strip(), int(m.group(2))
        data = b""
        i += 1
        while len(data) < n and i < len(lines) and (r := row.search(lines[i])):
            data += bytes.fromhex(r.group(1).replace(" ", "")[: 2 * (n - len(data))])
            i += 1
        out.append((label, data))
    return out


def first(items: list[tuple[str, bytes]], label: str, start: int = 0) -> tuple[int, bytes]:
    for i in range(start, len(items)):
        if items[i][0] == label:
            return i, items[i][1]
    raise AssertionError(f"charon logged no {label!r}")


@pytest.fixture(scope="module")
def lab() -> Iterator[AwsLab]:
    require_strongswan()
    conn = load_aws_config(AWS_CONFIG)
    levels = dict(DEFAULT_LOG_LEVELS)
    levels.update(ike=4, chd=4, enc=4)
    opts = LabOptions.for_tests(tunnels=(1,), lan=False, ike_version="ikev1", log_levels=levels)
    with AwsLab(conn, opts) as lab:
        yield lab
    if os.environ.get("CGWD_CAPTURE_VECTORS") == "1" and _captured:
        VECTORS.write_text(
            json.dumps(
                {
                    "provenance": (
                        "strongSwan 5.9.8 charon (cgwd.lab, kernel-libipsec) as IKEv1 "
                        "responder to cgwd's IKEv1 runner; values from charon's own log at "
                        "ike 4 / chd 4 / enc 4 (tests/netns/test_ikev1_strongswan_vectors.py)"
                    ),
                    "vectors": _captured,
                },
                indent=1,
            )
            + "\n"
        )


def _parse_log(text: str) -> dict[str, Any]:
    lines = text.splitlines()
    items = dumps(lines)
    idx, g_xy = first(items, "shared Diffie Hellman secret")
    _, skeyid = first(items, "SKEYID", idx)
    _, skeyid_d = first(items, "SKEYID_d", idx)
    _, skeyid_a = first(items, "SKEYID_a", idx)
    _, skeyid_e = first(items, "SKEYID_e", idx)
    _, ka = first(items, "encryption key Ka", idx)
    _, iv = first(items, "initial IV", idx)
    _, hi_data = first(items, "HASH_I data", idx)
    _, hi = first(items, "HASH_I", idx)
    _, hr_data = first(items, "HASH_R data", idx)
    _, hr = first(items, "HASH_R", idx)
    cidx, g_qm = first(items, "DH secret", idx)
    _, i_seed = first(items, "initiator SA seed", cidx)
    _, r_seed = first(items, "responder SA seed", cidx)
    child = {
        k: first(items, k, cidx)[1]
        for k in (
            "encryption initiator key",
            "encryption responder key",
        )
    }
    for k in ("integrity initiator key", "integrity responder key"):
        try:
            child[k] = first(items, k, cidx)[1]
        except AssertionError:
            child[k] = b""
    return {
        "g_xy": g_xy.hex(),
        "skeyid": skeyid.hex(),
        "skeyid_d": skeyid_d.hex(),
        "skeyid_a": skeyid_a.hex(),
        "skeyid_e": skeyid_e.hex(),
        "ka": ka.hex(),
        "initial_iv": iv.hex(),
        "hash_i_data": hi_data.hex(),
        "hash_i": hi.hex(),
        "hash_r_data": hr_data.hex(),
        "hash_r": hr.hex(),
        "g_qm": g_qm.hex(),
        "initiator_sa_seed": i_seed.hex(),
        "responder_sa_seed": r_seed.hex(),
        "esp_keys": {k: v.hex() for k, v in child.items()},
    }


def _nonces(text: str) -> tuple[bytes, bytes]:
    """Main Mode Ni (parsed from message 3) and Nr (generated for message 4)."""
    lines = text.splitlines()
    got: dict[str, bytes] = {}
    for verb in ("parsing", "generating"):
        for i, line in enumerate(lines):
            if f"{verb} NONCE_V1 payload finished" in line:
                # the CHUNK_DATA dump is the last dump before this line
                items = dumps(lines[max(0, i - 12) : i])
                got[verb] = items[-1][1]
                break
    return got["parsing"], got["generating"]


@pytest.mark.parametrize(("ike", "esp", "bits", "hash_id", "group"), CASES)
def test_keys_match_charon(
    lab: AwsLab, tmp_path: Path, ike: str, esp: str, bits: int, hash_id: int, group: int
) -> None:
    lab.reconfigure(1, replace(lab.options.policy(1), ike_proposals=ike, esp_proposals=esp))
    mark = lab.endpoint(1).charon.log_mark()
    log = (tmp_path / "cgwd.log").open("w")
    proc = lab.ns["cgw"].popen(
        PYTHON, "-m", "cgwd.ike.v1.run_tunnel", "--aws-config", str(AWS_CONFIG),
        "--local-address", str(lab.cgw_local_ip), "--dpd-delay", "60",
        stdout=log, stderr=subprocess.STDOUT, cwd=str(REPO),
    )  # fmt: skip
    try:
        lab.wait_tunnel_up(1)
    finally:
        proc.terminate()
        proc.wait(15)
        log.close()
    lab.wait_tunnel_down(1, timeout=15)
    text = "\n".join(lab.endpoint(1).charon.log_since(mark))
    v = _parse_log(text)
    ni, nr = _nonces(text)
    psk = lab.options.policy(1).psk or load_aws_config(AWS_CONFIG).tunnels[0].pre_shared_key
    assert psk is not None
    suite = Phase1Suite(bits, hash_id, group)
    hi_data = bytes.fromhex(v["hash_i_data"])
    # HASH_I data = g^xi | g^xr | CKY-I | CKY-R | SAi_b | IDii_b (RFC 2409 §5)
    pub = {2: 128, 14: 256, 20: 96, 21: 132}[group]
    g_xi, g_xr = hi_data[:pub], hi_data[pub : 2 * pub]
    cky_i, cky_r = hi_data[2 * pub : 2 * pub + 8], hi_data[2 * pub + 8 : 2 * pub + 16]
    keys = derive_phase1_keys(suite, psk, ni, nr, bytes.fromhex(v["g_xy"]), cky_i, cky_r)
    assert keys.skeyid.reveal().hex() == v["skeyid"]
    assert keys.skeyid_d.reveal().hex() == v["skeyid_d"]
    assert keys.skeyid_a.reveal().hex() == v["skeyid_a"]
    assert keys.skeyid_e.reveal().hex() == v["skeyid_e"]
    assert keys.enc_key.reveal().hex() == v["ka"]
    assert phase1_iv(suite, g_xi, g_xr).hex() == v["initial_iv"]
    rest = hi_data[2 * pub + 16 :]
    id_len = 8  # ID_IPV4_ADDR body: type, protocol, port, 4 octets
    sai_b, idii_b = rest[:-id_len], rest[-id_len:]
    assert hash_i(suite, keys.skeyid, g_xi, g_xr, cky_i, cky_r, sai_b, idii_b).hex() == v["hash_i"]
    hr_data = bytes.fromhex(v["hash_r_data"])
    idir_b = hr_data[-id_len:]
    assert hash_r(suite, keys.skeyid, g_xi, g_xr, cky_i, cky_r, sai_b, idir_b).hex() == v["hash_r"]
    # KEYMAT (RFC 2409 §5.5): seed = g(qm)^xy | protocol | SPI | Ni_b | Nr_b
    g_qm = bytes.fromhex(v["g_qm"])
    esp_keys = v["esp_keys"]
    for role in ("initiator", "responder"):
        seed = bytes.fromhex(v[f"{role}_sa_seed"])
        assert seed[: len(g_qm)] == g_qm
        protocol, spi = seed[len(g_qm)], int.from_bytes(seed[len(g_qm) + 1 : len(g_qm) + 5], "big")
        nonces = seed[len(g_qm) + 5 :]
        enc = bytes.fromhex(esp_keys[f"encryption {role} key"])
        integ = bytes.fromhex(esp_keys[f"integrity {role} key"])
        half = len(nonces) // 2  # both Quick Mode nonces are 32 octets (ours and charon's)
        km = keymat(suite, keys.skeyid_d, protocol, spi, nonces[:half], nonces[half:],
                    len(enc) + len(integ), g_qm).reveal()  # fmt: skip
        assert km == enc + integ, role
    _captured.append(
        {
            "suite": {"key_bits": bits, "hash": hash_id, "group": group, "esp": esp},
            "psk": psk.reveal().decode(),
            "ni": ni.hex(),
            "nr": nr.hex(),
            "cky_i": cky_i.hex(),
            "cky_r": cky_r.hex(),
            **v,
        }
    )
