"""cgwd's IKEv2 codec and key schedules against strongSwan's charon (RFC 7296 has no vectors).

A scripted initiator (ike_crypto_driver.py, cgwd codec+crypto only) runs IKE_SA_INIT,
IKE_AUTH, a Child SA rekey, an IKE SA rekey and DELETEs against a charon responder in a
namespace. charon logs its own SKEYSEED, SK_* and Child SA keys (``ike 4``/``chd 4``);
every key we derived must equal charon's, and every charon response must decrypt and
authenticate with our keys (the driver exits non-zero otherwise).
"""

from __future__ import annotations

import json
import os
import re
import secrets
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import require_strongswan

from cgwd.lab.netns import Netns, Topology
from cgwd.lab.strongswan import DEFAULT_LOG_LEVELS, Charon, CharonSettings

pytestmark = [pytest.mark.netns, pytest.mark.strongswan]

REPO = Path(__file__).resolve().parents[2]
DRIVER = Path(__file__).with_name("ike_crypto_driver.py")
CHARON_IP, OUR_IP = "192.0.2.1", "192.0.2.2"
PSK = secrets.token_urlsafe(24)

# (IKE: encr, bits, integ, prf, dh), (ESP: encr, bits, integ), PFS, strongSwan's names
CASES = [
    ((12, 128, 2, 2, 2), (12, 128, 2), 1, "aes128-sha1-prfsha1-modp1024", "aes128-sha1-modp1024"),
    (
        (12, 256, 12, 5, 14),
        (12, 256, 12),
        1,
        "aes256-sha256-prfsha256-modp2048",
        "aes256-sha256-modp2048",
    ),
    ((20, 128, 0, 5, 19), (20, 128, 0), 1, "aes128gcm16-prfsha256-ecp256", "aes128gcm16-ecp256"),
    ((20, 256, 0, 6, 20), (20, 256, 0), 0, "aes256gcm16-prfsha384-ecp384", "aes256gcm16"),
    (
        (12, 256, 14, 7, 21),
        (12, 256, 14),
        1,
        "aes256-sha512-prfsha512-ecp521",
        "aes256-sha512-ecp521",
    ),
    (
        (12, 128, 13, 6, 24),
        (12, 128, 13),
        1,
        "aes128-sha384-prfsha384-modp2048s256",
        "aes128-sha384-modp2048s256",
    ),
    (
        (12, 256, 12, 5, 31),
        (20, 256, 0),
        1,
        "aes256-sha256-prfsha256-curve25519",
        "aes256gcm16-curve25519",
    ),
    ((12, 128, 2, 2, 5), (12, 128, 2), 0, "aes128-sha1-prfsha1-modp1536", "aes128-sha1"),
    (
        (12, 128, 12, 5, 22),
        (12, 128, 12),
        1,
        "aes128-sha256-prfsha256-modp1024s160",
        "aes128-sha256-modp1024s160",
    ),
]


def swanctl_conf() -> str:
    ike = ", ".join([*(c[3] for c in CASES), *EXTRA_IKE_PROPOSALS])
    esp = ", ".join(c[4] for c in CASES)
    return f"""connections {{
    keys {{
        version = 2
        local_addrs = {CHARON_IP}
        remote_addrs = {OUR_IP}
        proposals = {ike}
        local {{
            auth = psk
            id = {CHARON_IP}
        }}
        remote {{
            auth = psk
            id = {OUR_IP}
        }}
        children {{
            net {{
                local_ts = 0.0.0.0/0
                remote_ts = 0.0.0.0/0
                esp_proposals = {esp}
            }}
        }}
    }}
}}
secrets {{
    ike-keys {{
        id-a = {CHARON_IP}
        id-b = {OUR_IP}
        secret = "{PSK}"
    }}
}}
"""


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Charon, Netns]]:
    require_strongswan()
    topo = Topology()
    charon: Charon | None = None
    try:
        sw, me = topo.add_netns("sw"), topo.add_netns("me")
        topo.link(sw, "eth0", me, "eth0")
        sw.ip("addr", "add", f"{CHARON_IP}/24", "dev", "eth0")
        me.ip("addr", "add", f"{OUR_IP}/24", "dev", "eth0")
        levels = {**DEFAULT_LOG_LEVELS, "ike": 4, "chd": 4}
        workdir = Path(tmp_path_factory.mktemp("ikekeys", numbered=True))
        charon = Charon(
            sw, workdir, settings=CharonSettings(log_levels=levels), swanctl_conf=swanctl_conf()
        )
        charon.start()
        yield charon, me
    finally:
        if charon is not None:
            charon.stop()
        topo.close()
        write_vectors()


_HEX_LINE = re.compile(r"^\s*\d+: ((?:[0-9A-F]{2} )*[0-9A-F]{2})")


def logged_chunks(lines: list[str], label: str) -> list[str]:
    """Every chunk charon logged as ``<label> => N bytes @ ...`` followed by its hex dump."""
    found: list[str] = []
    for i, line in enumerate(lines):
        m = re.search(re.escape(label) + r" => (\d+) bytes", line)
        if not m:
            continue
        size, out = int(m.group(1)), ""
        for follow in lines[i + 1 :]:
            if len(out) >= 2 * size:
                break
            body = re.sub(r"^.*?\] (?:<[^>]*> )?", "", follow)
            hm = _HEX_LINE.match(body)
            if not hm:
                break
            out += hm.group(1).replace(" ", "").lower()
        assert len(out) == 2 * size, f"could not read {label} from charon's log"
        found.append(out)
    return found


# IKE SA rekeyed to another suite (ENCR, INTEG, DH change; the PRF stays): the new SA's
# keys take the new suite's lengths and the new group. A PRF change is avoided on purpose:
# RFC 7296 §2.18 uses the old PRF for SKEYSEED and (read literally, as libreswan does) the
# new one for prf+, while strongSwan uses the old PRF for both, so such a rekey does not
# interoperate with strongSwan whichever reading one picks.
REKEY_TO_OTHER_SUITE = (
    (12, 128, 2, 2, 2), (12, 128, 2), 1, "aes128-sha1-prfsha1-modp1024", "aes128-sha1-modp1024",
    (20, 256, 0, 2, 20),
)  # fmt: skip
EXTRA_IKE_PROPOSALS = ("aes256gcm16-prfsha1-ecp384",)


@pytest.mark.parametrize(
    "case",
    [*CASES, REKEY_TO_OTHER_SUITE],
    ids=[*(c[3] for c in CASES), "rekey-to-aes256gcm16-prfsha1-ecp384"],
)
def test_keys_match_strongswan(lab: tuple[Charon, Netns], case: tuple) -> None:  # type: ignore[type-arg]
    charon, me = lab
    ike, esp, pfs = case[:3]
    rekey_suite = case[5] if len(case) > 5 else ()
    mark = charon.log_mark()
    proc = me.run(
        sys.executable, str(DRIVER), OUR_IP, CHARON_IP, PSK,
        *(str(x) for x in (*ike, *esp, pfs, *rekey_suite)), check=False, timeout=60,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:] + "\n".join(charon.log_since(mark)[-30:])
    ours = json.loads(proc.stdout)
    log = charon.log_since(mark)
    # Our NAT_DETECTION_DESTINATION_IP hash must match charon's own computation (RFC 7296
    # §2.23), and the deliberately wrong _SOURCE_IP one must not.
    assert any("remote host is behind NAT" in line for line in log)
    assert not any("local host is behind NAT" in line for line in log)

    assert logged_chunks(log, "SKEYSEED")[0] == ours["skeyseed"]
    suites = (ike, rekey_suite or ike)
    for generation, keys in enumerate((ours["ike"], ours["ike_rekeyed"])):
        with_integ = bool(suites[generation][2])
        for name in ("sk_d", "sk_ei", "sk_er", "sk_pi", "sk_pr") + (
            ("sk_ai", "sk_ar") if with_integ else ()
        ):
            label = "Sk_" + name[3:] + " secret"  # charon logs "Sk_ei secret"
            assert logged_chunks(log, label)[generation] == keys[name], (name, generation)

    enc_i, enc_r = (
        logged_chunks(log, "encryption initiator key"),
        logged_chunks(log, "encryption responder key"),
    )
    int_i = logged_chunks(log, "integrity initiator key") if esp[2] else ["", ""]
    int_r = logged_chunks(log, "integrity responder key") if esp[2] else ["", ""]
    for generation, keymat in enumerate((ours["child_auth"], ours["child_rekey"])):
        # RFC 7296 §2.17: initiator-to-responder first, each encryption key then integrity key
        assert (
            keymat == enc_i[generation] + int_i[generation] + enc_r[generation] + int_r[generation]
        )
    assert ours["child_auth"] != ours["child_rekey"]
    CAPTURED.append(capture(case, ours["inputs"], log))


CAPTURED: list[dict[str, object]] = []


def capture(case: tuple, inputs: dict[str, str], log: list[str]) -> dict[str, object]:  # type: ignore[type-arg]
    """Inputs from the wire plus what charon logged: a vector for the unit tests."""
    ike, esp, pfs = case[:3]
    first = lambda label, i=0: logged_chunks(log, label)[i]  # noqa: E731
    names = ("d", "ai", "ar", "ei", "er", "pi", "pr")
    suites = (ike, case[5] if len(case) > 5 else ike)
    keys = [
        {n: first(f"Sk_{n} secret", g) for n in names if suites[g][2] or n not in ("ai", "ar")}
        for g in (0, 1)
    ]
    child = [
        {
            "encr_i": first("encryption initiator key", g),
            "encr_r": first("encryption responder key", g),
            "integ_i": first("integrity initiator key", g) if esp[2] else "",
            "integ_r": first("integrity responder key", g) if esp[2] else "",
        }
        for g in (0, 1)
    ]
    return {
        "suite": {"encr": ike[0], "bits": ike[1], "integ": ike[2], "prf": ike[3], "dh": ike[4]},
        "rekey_suite": dict(zip(("encr", "bits", "integ", "prf", "dh"), case[5], strict=True))
        if len(case) > 5
        else None,
        "esp": {"encr": esp[0], "bits": esp[1], "integ": esp[2]},
        "inputs": inputs,
        "shared": first("shared Diffie Hellman secret"),
        "rekey_shared": first("shared Diffie Hellman secret", 1),
        "child_shared": first("DH secret") if pfs else None,
        "skeyseed": first("SKEYSEED"),
        "rekey_skeyseed": first("SKEYSEED", 1),
        "ike_keys": keys[0],
        "rekeyed_ike_keys": keys[1],
        "child_keys": child[0],
        "rekeyed_child_keys": child[1],
        "auth": {
            "psk": PSK,
            "idx": first("IDx'"),
            "sk_p": first("SK_p"),
            "octets": first("octets = message + nonce + prf(Sk_px, IDx')"),
            "auth": first("AUTH = prf(prf(secret, keypad), octets)"),
        },
    }


def write_vectors() -> None:
    """With CGWD_WRITE_IKE_VECTORS=PATH, store what this module captured (fixture teardown)."""
    path = os.environ.get("CGWD_WRITE_IKE_VECTORS")
    if not path:
        return
    doc = {
        "description": "IKEv2 key schedule and PSK AUTH values logged by strongSwan charon "
        "(ike 4 / chd 4) while responding to tests/netns/ike_crypto_driver.py; inputs "
        "(nonces, SPIs) as sent on the wire. Written by tests/netns/test_ike_crypto_strongswan.py.",
        "charon": subprocess.run(
            ["/usr/lib/ipsec/charon", "--version"], capture_output=True, text=True, check=False
        ).stdout.strip()
        or "strongSwan 5.9.8",
        "vectors": CAPTURED,
    }
    Path(path).write_text(json.dumps(doc, indent=1) + "\n")
