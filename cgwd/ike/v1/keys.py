"""IKEv1 key schedule and hashes with pre-shared keys (RFC 2409 §5, §5.4, §5.5, App. B).

The PRF is the HMAC of the negotiated hash (RFC 2409 §4: no PRF attribute is negotiated).
Nonces enter as payload bodies ("_b": without generic headers), g^xy as the fixed-length
shared secret of `cgwd.ike.crypto.kex`, cookies as 8 octets.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass

from cgwd.ike.constants import DhGroup as DhGroupId
from cgwd.ike.crypto.cipher import AES_BLOCK
from cgwd.ike.crypto.dh import dh_group
from cgwd.ike.v1.constants import P1Hash
from cgwd.secret import Secret

_HASHES = {
    P1Hash.SHA1: ("sha1", "sha1"),
    P1Hash.SHA2_256: ("sha256", "sha256"),
    P1Hash.SHA2_384: ("sha384", "sha384"),
    P1Hash.SHA2_512: ("sha512", "sha512"),
}
_GROUP_NAMES = {
    DhGroupId.MODP_1024: "modp1024",
    DhGroupId.MODP_1536: "modp1536",
    DhGroupId.MODP_2048: "modp2048",
    DhGroupId.MODP_3072: "modp3072",
    DhGroupId.MODP_4096: "modp4096",
    DhGroupId.MODP_6144: "modp6144",
    DhGroupId.MODP_8192: "modp8192",
    DhGroupId.ECP_256: "ecp256",
    DhGroupId.ECP_384: "ecp384",
    DhGroupId.ECP_521: "ecp521",
    DhGroupId.MODP_1024_160: "modp1024s160",
    DhGroupId.MODP_2048_224: "modp2048s224",
    DhGroupId.MODP_2048_256: "modp2048s256",
}


def _raw(v: bytes | Secret) -> bytes:
    return v.reveal() if isinstance(v, Secret) else v


@dataclass(frozen=True)
class Phase1Suite:
    """AES-CBC key bits, phase 1 hash (RFC 2409 App. A value) and DH group.

    Construction raises ``ValueError`` for anything not implemented.
    """

    key_bits: int
    hash_id: int
    group: int

    def __post_init__(self) -> None:
        if self.key_bits not in (128, 192, 256):
            raise ValueError(f"AES key length {self.key_bits} unsupported")
        if self.hash_id not in _HASHES:
            raise ValueError(f"phase 1 hash {self.hash_id} unsupported")
        if self.group not in _GROUP_NAMES:
            raise ValueError(f"DH group {self.group} unsupported")
        dh_group(self.group)

    @property
    def hash_name(self) -> str:
        return _HASHES[P1Hash(self.hash_id)][0]

    @property
    def name(self) -> str:
        """strongSwan-style, e.g. ``aes128-sha1-modp1024``."""
        word = _HASHES[P1Hash(self.hash_id)][1]
        return f"aes{self.key_bits}-{word}-{_GROUP_NAMES[DhGroupId(self.group)]}"

    def prf(self, key: bytes | Secret, data: bytes) -> bytes:
        return hmac.digest(_raw(key), data, self.hash_name)

    def hash(self, data: bytes) -> bytes:
        return hashlib.new(self.hash_name, data).digest()


@dataclass(frozen=True)
class Phase1Keys:
    """SKEYID and its three children, plus the expanded encryption key (RFC 2409 §5)."""

    skeyid: Secret
    skeyid_d: Secret
    skeyid_a: Secret
    skeyid_e: Secret
    enc_key: Secret


def derive_phase1_keys(  # noqa: PLR0917
    suite: Phase1Suite,
    psk: Secret,
    ni_b: bytes,
    nr_b: bytes,
    g_xy: bytes | Secret,
    cky_i: bytes,
    cky_r: bytes,
) -> Phase1Keys:
    """RFC 2409 §5: SKEYID = prf(pre-shared-key, Ni_b | Nr_b), then
    SKEYID_d = prf(SKEYID, g^xy | CKY-I | CKY-R | 0),
    SKEYID_a = prf(SKEYID, SKEYID_d | g^xy | CKY-I | CKY-R | 1),
    SKEYID_e = prf(SKEYID, SKEYID_a | g^xy | CKY-I | CKY-R | 2);
    the cipher key is SKEYID_e, expanded per Appendix B when too short."""
    gxy = _raw(g_xy)
    skeyid = suite.prf(psk, ni_b + nr_b)
    d = suite.prf(skeyid, gxy + cky_i + cky_r + b"\x00")
    a = suite.prf(skeyid, d + gxy + cky_i + cky_r + b"\x01")
    e = suite.prf(skeyid, a + gxy + cky_i + cky_r + b"\x02")
    return Phase1Keys(Secret(skeyid), Secret(d), Secret(a), Secret(e), Secret(expand_key(suite, e)))


def expand_key(suite: Phase1Suite, skeyid_e: bytes) -> bytes:
    """RFC 2409 Appendix B: Ka = K1 | K2 | ..., K1 = prf(SKEYID_e, 0), Kn = prf(SKEYID_e,
    Kn-1), used when SKEYID_e is shorter than the key (e.g. AES-256 with SHA-1)."""
    need = suite.key_bits // 8
    if len(skeyid_e) >= need:
        return skeyid_e[:need]
    out = b""
    block = b"\x00"
    while len(out) < need:
        block = suite.prf(skeyid_e, block)
        out += block
    return out[:need]


def phase1_iv(suite: Phase1Suite, g_xi: bytes, g_xr: bytes) -> bytes:
    """RFC 2409 Appendix B: the first phase 1 IV is hash(g^xi | g^xr), truncated."""
    return suite.hash(g_xi + g_xr)[:AES_BLOCK]


def phase2_iv(suite: Phase1Suite, last_phase1_block: bytes, message_id: int) -> bytes:
    """RFC 2409 Appendix B: Quick Mode / Informational IV = hash(last phase 1 CBC output
    block | M-ID), truncated to the block size."""
    return suite.hash(last_phase1_block + message_id.to_bytes(4, "big"))[:AES_BLOCK]


def hash_i(  # noqa: PLR0917
    suite: Phase1Suite,
    skeyid: Secret,
    g_xi: bytes,
    g_xr: bytes,
    cky_i: bytes,
    cky_r: bytes,
    sai_b: bytes,
    idii_b: bytes,
) -> bytes:
    """HASH_I = prf(SKEYID, g^xi | g^xr | CKY-I | CKY-R | SAi_b | IDii_b) (RFC 2409 §5)."""
    return suite.prf(skeyid, g_xi + g_xr + cky_i + cky_r + sai_b + idii_b)


def hash_r(  # noqa: PLR0917
    suite: Phase1Suite,
    skeyid: Secret,
    g_xi: bytes,
    g_xr: bytes,
    cky_i: bytes,
    cky_r: bytes,
    sai_b: bytes,
    idir_b: bytes,
) -> bytes:
    """HASH_R = prf(SKEYID, g^xr | g^xi | CKY-R | CKY-I | SAi_b | IDir_b) (RFC 2409 §5)."""
    return suite.prf(skeyid, g_xr + g_xi + cky_r + cky_i + sai_b + idir_b)


def qm_hash1(suite: Phase1Suite, skeyid_a: Secret, mid: int, rest: bytes) -> bytes:
    """HASH(1) = prf(SKEYID_a, M-ID | everything after HASH) (RFC 2409 §5.5); the same
    form authenticates Informational messages (§5.7)."""
    return suite.prf(skeyid_a, mid.to_bytes(4, "big") + rest)


def qm_hash2(suite: Phase1Suite, skeyid_a: Secret, mid: int, ni_b: bytes, rest: bytes) -> bytes:
    """HASH(2) = prf(SKEYID_a, M-ID | Ni_b | everything after HASH) (RFC 2409 §5.5)."""
    return suite.prf(skeyid_a, mid.to_bytes(4, "big") + ni_b + rest)


def qm_hash3(suite: Phase1Suite, skeyid_a: Secret, mid: int, ni_b: bytes, nr_b: bytes) -> bytes:
    """HASH(3) = prf(SKEYID_a, 0 | M-ID | Ni_b | Nr_b) (RFC 2409 §5.5)."""
    return suite.prf(skeyid_a, b"\x00" + mid.to_bytes(4, "big") + ni_b + nr_b)


def keymat(  # noqa: PLR0917
    suite: Phase1Suite,
    skeyid_d: Secret,
    protocol: int,
    spi: int,
    ni_b: bytes,
    nr_b: bytes,
    length: int,
    g_qm: bytes | Secret | None = None,
) -> Secret:
    """RFC 2409 §5.5: KEYMAT = K1 | K2 | ..., K1 = prf(SKEYID_d, [g(qm)^xy |] protocol |
    SPI | Ni_b | Nr_b), Kn = prf(SKEYID_d, Kn-1 | [g(qm)^xy |] protocol | SPI | Ni_b | Nr_b).

    ``spi`` is the SPI the *receiving* side chose: our inbound SA uses ours.
    """
    seed = (b"" if g_qm is None else _raw(g_qm)) + bytes([protocol]) + spi.to_bytes(4, "big")
    seed += ni_b + nr_b
    out = b""
    block = b""
    while len(out) < length:
        block = suite.prf(skeyid_d, block + seed)
        out += block
    return Secret(out[:length])


def nat_d_hash(suite: Phase1Suite, cky_i: bytes, cky_r: bytes, ip: bytes, port: int) -> bytes:
    """RFC 3947 §3.2: HASH(CKY-I | CKY-R | IP | Port) with the negotiated hash."""
    return suite.hash(cky_i + cky_r + ip + port.to_bytes(2, "big"))
