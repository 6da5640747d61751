"""Integrity (MAC) algorithms: HMAC truncated per RFC 2404 and RFC 4868.

Shared by IKEv2's Encrypted payload and IKEv1; ESP has its own copy in `cgwd.esp`.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass

from cgwd.ike.constants import IntegId
from cgwd.secret import Secret


@dataclass(frozen=True)
class IntegAlgorithm:
    """One integrity transform: key length and truncated ICV length in octets."""

    integ_id: int
    hash_name: str
    key_bytes: int
    icv_bytes: int

    def compute(self, key: bytes | Secret, data: bytes) -> bytes:
        """The truncated HMAC of ``data``."""
        raw = key.reveal() if isinstance(key, Secret) else key
        return hmac.digest(raw, data, self.hash_name)[: self.icv_bytes]

    def verify(self, key: bytes | Secret, data: bytes, icv: bytes) -> bool:
        """Constant-time comparison of ``icv`` with the computed value."""
        return hmac.compare_digest(self.compute(key, data), icv)


_INTEG: dict[int, IntegAlgorithm] = {
    a.integ_id: a
    for a in (
        IntegAlgorithm(IntegId.HMAC_SHA1_96, "sha1", 20, 12),  # RFC 2404
        IntegAlgorithm(IntegId.HMAC_SHA2_256_128, "sha256", 32, 16),  # RFC 4868 §2.1
        IntegAlgorithm(IntegId.HMAC_SHA2_384_192, "sha384", 48, 24),
        IntegAlgorithm(IntegId.HMAC_SHA2_512_256, "sha512", 64, 32),
    )
}

SUPPORTED_INTEGS: frozenset[int] = frozenset(_INTEG)


def integ_algorithm(integ_id: int) -> IntegAlgorithm:
    """The algorithm for an INTEG transform id; ``ValueError`` if unsupported."""
    try:
        return _INTEG[integ_id]
    except KeyError:
        raise ValueError(f"unsupported integrity algorithm {integ_id}") from None
