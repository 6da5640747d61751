"""ESP cipher suites: the algorithms, their key sizes and their IKEv2 transform ids.

One `EspSuite` per combination cgwd supports, named like strongSwan's ESP proposal
keywords so that configuration and logs read the same as ``swanctl.conf``. These are the
suites AWS Site-to-Site VPN offers for phase 2: AES-CBC 128/256 with HMAC-SHA1 or SHA-2, and
AES-GCM-16 128/256.
"""

from __future__ import annotations

from dataclasses import dataclass

# IKEv2 Transform Type 1 (ENCR) ids, IANA "IKEv2 Parameters" (RFC 7296 3.3.2, RFC 4106 8.4).
ENCR_AES_CBC = 12
ENCR_AES_GCM_16 = 20
# IKEv2 Transform Type 3 (INTEG) ids (RFC 7296 3.3.2, RFC 4868 2.4).
AUTH_HMAC_SHA1_96 = 2
AUTH_HMAC_SHA2_256_128 = 12
AUTH_HMAC_SHA2_384_192 = 13
AUTH_HMAC_SHA2_512_256 = 14

GCM_SALT_BYTES = 4  # RFC 4106 8.1: KEYMAT is the AES key followed by a 4-octet salt
GCM_IV_BYTES = 8  # RFC 4106 3.1: explicit 8-octet IV in every packet
CBC_IV_BYTES = 16  # RFC 3602 2.1: the IV is one cipher block


@dataclass(frozen=True, slots=True)
class EspSuite:
    """One ESP transform set. Sizes are in bytes unless the name says bits."""

    name: str
    aead: bool
    encryption_key_bytes: int  # the AES key only; the GCM salt is counted in keymat_bytes
    integrity_key_bytes: int  # 0 for AEAD suites
    icv_bytes: int
    keymat_bytes: int  # for ONE direction: encryption key (+ GCM salt), then integrity key
    ike_transform: tuple[int, int | None, int | None]  # (ENCR id, key bits, INTEG id)
    iv_bytes: int  # explicit IV carried in every packet
    pad_align: int  # the payload+trailer length must be a multiple of this (RFC 4303 2.4)
    hash_name: str | None  # hashlib / cryptography name of the HMAC hash, None for AEAD

    def __repr__(self) -> str:
        return f"EspSuite({self.name})"


def _gcm(bits: int) -> EspSuite:
    key = bits // 8
    return EspSuite(
        name=f"aes{bits}gcm16",
        aead=True,
        encryption_key_bytes=key,
        integrity_key_bytes=0,
        icv_bytes=16,  # RFC 4106 6: the 16-octet ICV variant ("gcm16")
        keymat_bytes=key + GCM_SALT_BYTES,
        ike_transform=(ENCR_AES_GCM_16, bits, None),
        iv_bytes=GCM_IV_BYTES,
        pad_align=4,  # RFC 4106 3.2: GCM needs no block alignment, ESP needs 4 octets
        hash_name=None,
    )


# (strongSwan keyword, hash, INTEG id, integrity key bytes, ICV bytes): RFC 2404 (SHA-1,
# 160-bit key, 96-bit ICV) and RFC 4868 2.1 (SHA-2: key = hash output size, ICV = half of it).
_HMACS: tuple[tuple[str, str, int, int, int], ...] = (
    ("sha1", "sha1", AUTH_HMAC_SHA1_96, 20, 12),
    ("sha256", "sha256", AUTH_HMAC_SHA2_256_128, 32, 16),
    ("sha384", "sha384", AUTH_HMAC_SHA2_384_192, 48, 24),
    ("sha512", "sha512", AUTH_HMAC_SHA2_512_256, 64, 32),
)


def _cbc(bits: int, hmac_entry: tuple[str, str, int, int, int]) -> EspSuite:
    word, hash_name, integ_id, integ_key, icv = hmac_entry
    key = bits // 8
    return EspSuite(
        name=f"aes{bits}-{word}",
        aead=False,
        encryption_key_bytes=key,
        integrity_key_bytes=integ_key,
        icv_bytes=icv,
        keymat_bytes=key + integ_key,
        ike_transform=(ENCR_AES_CBC, bits, integ_id),
        iv_bytes=CBC_IV_BYTES,
        pad_align=16,  # RFC 3602 2.4: the ciphertext is a whole number of AES blocks
        hash_name=hash_name,
    )


ALL_SUITES: tuple[EspSuite, ...] = (
    _gcm(128),
    _gcm(256),
    *(_cbc(bits, entry) for entry in _HMACS for bits in (128, 256)),
)

_BY_NAME = {suite.name: suite for suite in ALL_SUITES}
_BY_IKE = {suite.ike_transform: suite for suite in ALL_SUITES}


def suite_by_name(name: str) -> EspSuite:
    """The suite called ``name`` (e.g. ``"aes128gcm16"``, ``"aes256-sha256"``).

    Raises ValueError (never KeyError) naming the unknown suite and the known ones.
    """
    suite = _BY_NAME.get(name.strip().lower())
    if suite is None:
        known = ", ".join(_BY_NAME)
        raise ValueError(f"unknown ESP suite {name!r} (known: {known})")
    return suite


def suite_from_ike(encr_id: int, key_bits: int | None, integ_id: int | None) -> EspSuite:
    """The suite for negotiated IKEv2 transforms (ENCR id, its Key Length attribute in bits,
    INTEG id or None). An AEAD transform with INTEG "NONE" (id 0) counts as no INTEG.

    Raises ValueError when cgwd does not implement that combination.
    """
    if integ_id == 0:
        integ_id = None
    suite = _BY_IKE.get((encr_id, key_bits, integ_id))
    if suite is None:
        raise ValueError(
            f"unsupported ESP transforms: ENCR {encr_id} ({key_bits} bits), INTEG {integ_id}"
        )
    return suite
