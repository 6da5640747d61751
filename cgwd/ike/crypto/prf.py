"""Pseudo-random functions and prf+ (RFC 7296 §2.13), shared by IKEv1 and IKEv2.

Only the HMAC PRFs are implemented (RFC 2104 with SHA-1, RFC 4868 with SHA-2); for them
the preferred key length equals the output length.
"""

from __future__ import annotations

import hmac

from cgwd.ike.constants import PrfId
from cgwd.secret import Secret

_HASH_OF_PRF: dict[int, tuple[str, int]] = {
    PrfId.HMAC_SHA1: ("sha1", 20),  # RFC 2104
    PrfId.HMAC_SHA2_256: ("sha256", 32),  # RFC 4868 §2.1
    PrfId.HMAC_SHA2_384: ("sha384", 48),
    PrfId.HMAC_SHA2_512: ("sha512", 64),
}

SUPPORTED_PRFS: frozenset[int] = frozenset(_HASH_OF_PRF)


def _lookup(prf_id: int) -> tuple[str, int]:
    try:
        return _HASH_OF_PRF[prf_id]
    except KeyError:
        raise ValueError(f"unsupported PRF {prf_id}") from None


def prf_hash_name(prf_id: int) -> str:
    """The hashlib name behind an HMAC PRF; ``ValueError`` if unsupported."""
    return _lookup(prf_id)[0]


def prf_output_length(prf_id: int) -> int:
    """Octets one prf() call produces; ``ValueError`` if unsupported."""
    return _lookup(prf_id)[1]


def prf_key_length(prf_id: int) -> int:
    """Preferred key length, the length of SK_d, SK_pi and SK_pr (RFC 7296 §2.14)."""
    return _lookup(prf_id)[1]


def _raw(key: bytes | Secret) -> bytes:
    return key.reveal() if isinstance(key, Secret) else key


def prf(prf_id: int, key: bytes | Secret, data: bytes) -> bytes:
    """prf(key, data). Raises ``ValueError`` for an unsupported ``prf_id``."""
    return hmac.digest(_raw(key), data, _lookup(prf_id)[0])


def prf_plus(prf_id: int, key: bytes | Secret, seed: bytes, length: int) -> bytes:
    """prf+ (RFC 7296 §2.13): T1 | T2 | ... truncated to ``length`` octets.

    T1 = prf(K, S | 0x01), Tn = prf(K, Tn-1 | S | n). The counter is one octet, so at most
    255 blocks can be produced; asking for more raises ``ValueError``.
    """
    name, out_len = _lookup(prf_id)
    if length < 0 or length > 255 * out_len:
        raise ValueError(f"prf+ cannot produce {length} octets with PRF {prf_id}")
    raw = _raw(key)
    out = bytearray()
    block = b""
    counter = 1
    while len(out) < length:
        block = hmac.digest(raw, block + seed + bytes([counter]), name)
        out += block
        counter += 1
    return bytes(out[:length])
