"""The negotiated algorithms of an IKE SA and the key lengths they imply."""

from __future__ import annotations

from dataclasses import dataclass

from cgwd.ike.constants import DhGroup as DhGroupId
from cgwd.ike.constants import EncrId, IntegId, PrfId, name_of
from cgwd.ike.crypto.cipher import EncrAlgorithm, encr_algorithm
from cgwd.ike.crypto.dh import dh_group
from cgwd.ike.crypto.integ import IntegAlgorithm, integ_algorithm
from cgwd.ike.crypto.prf import prf_key_length

_ENCR_NAMES = {EncrId.AES_CBC: "aes{}", EncrId.AES_GCM_16: "aes{}gcm16"}
_INTEG_NAMES = {
    IntegId.HMAC_SHA1_96: "sha1",
    IntegId.HMAC_SHA2_256_128: "sha256",
    IntegId.HMAC_SHA2_384_192: "sha384",
    IntegId.HMAC_SHA2_512_256: "sha512",
}
_PRF_NAMES = {
    PrfId.HMAC_SHA1: "prfsha1",
    PrfId.HMAC_SHA2_256: "prfsha256",
    PrfId.HMAC_SHA2_384: "prfsha384",
    PrfId.HMAC_SHA2_512: "prfsha512",
}
_DH_NAMES = {
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
    DhGroupId.CURVE25519: "curve25519",
}


@dataclass(frozen=True)
class IkeSuite:
    """ENCR (+ key bits), INTEG (``None`` with an AEAD cipher), PRF and DH group.

    Construction raises ``ValueError`` for anything we do not implement, so a suite that
    exists can always be used. An IKE SA always has a DH group (also when rekeyed, §2.18).
    """

    encr_id: int
    encr_key_bits: int
    integ_id: int | None
    prf_id: int
    dh_group: int

    def __post_init__(self) -> None:
        encr = encr_algorithm(self.encr_id, self.encr_key_bits)
        if encr.aead and self.integ_id not in (None, IntegId.NONE):
            raise ValueError("an AEAD cipher takes no integrity algorithm (RFC 5282 §8)")
        if not encr.aead:
            if self.integ_id is None or self.integ_id == IntegId.NONE:
                raise ValueError(f"{name_of(EncrId, self.encr_id)} needs an integrity algorithm")
            integ_algorithm(self.integ_id)
        prf_key_length(self.prf_id)
        dh_group(self.dh_group)

    @property
    def encr(self) -> EncrAlgorithm:
        return encr_algorithm(self.encr_id, self.encr_key_bits)

    @property
    def integ(self) -> IntegAlgorithm | None:
        if self.integ_id is None or self.integ_id == IntegId.NONE:
            return None
        return integ_algorithm(self.integ_id)

    @property
    def aead(self) -> bool:
        return self.encr.aead

    @property
    def encr_key_bytes(self) -> int:
        """Length of SK_ei/SK_er, including the 4-octet GCM salt (RFC 5282 §7.1)."""
        return self.encr.key_bytes

    @property
    def integ_key_bytes(self) -> int:
        """Length of SK_ai/SK_ar (0 with AEAD)."""
        integ = self.integ
        return integ.key_bytes if integ else 0

    @property
    def prf_key_bytes(self) -> int:
        """Length of SK_d, SK_pi, SK_pr (RFC 7296 §2.14)."""
        return prf_key_length(self.prf_id)

    @property
    def name(self) -> str:
        """strongSwan-style proposal name, e.g. ``aes128-sha1-prfsha1-modp1024``."""
        parts = [_ENCR_NAMES[EncrId(self.encr_id)].format(self.encr_key_bits)]
        if self.integ_id is not None and self.integ_id != IntegId.NONE:
            parts.append(_INTEG_NAMES[IntegId(self.integ_id)])
        parts.append(_PRF_NAMES[PrfId(self.prf_id)])
        parts.append(_DH_NAMES[DhGroupId(self.dh_group)])
        return "-".join(parts)

    def __str__(self) -> str:
        return self.name
