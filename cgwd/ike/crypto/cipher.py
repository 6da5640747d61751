"""Encryption primitives (AES-CBC, AES-GCM) and their parameters, shared by IKEv1 and IKEv2.

These are raw primitives: padding, IV handling and ICV placement belong to the protocol
that uses them (IKEv2: `cgwd.ike.crypto.ikev2_sk`).
"""

from __future__ import annotations

from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from cgwd.ike.constants import EncrId
from cgwd.secret import Secret

AES_BLOCK = 16


@dataclass(frozen=True)
class EncrAlgorithm:
    """One ENCR transform with its key size.

    ``key_bytes`` is the key material to derive: the cipher key plus, for GCM, the 4-octet
    salt (RFC 5282 §7.1) that is the first part of the nonce.
    """

    encr_id: int
    key_bits: int
    aead: bool
    block_bytes: int  # plaintext alignment (1 for GCM: no padding needed, RFC 5282 §3)
    iv_bytes: int
    icv_bytes: int  # AEAD tag length; 0 for CBC (the INTEG transform provides the ICV)
    salt_bytes: int

    @property
    def key_bytes(self) -> int:
        return self.key_bits // 8 + self.salt_bytes


_ENCR: dict[tuple[int, int], EncrAlgorithm] = {}
for _bits in (128, 192, 256):
    _ENCR[(EncrId.AES_CBC, _bits)] = EncrAlgorithm(EncrId.AES_CBC, _bits, False, 16, 16, 0, 0)
    # RFC 5282 §3: 8-octet explicit IV, 16-octet ICV for AES-GCM-16; §7.1: 4-octet salt.
    _ENCR[(EncrId.AES_GCM_16, _bits)] = EncrAlgorithm(EncrId.AES_GCM_16, _bits, True, 1, 8, 16, 4)

SUPPORTED_ENCRS: frozenset[tuple[int, int]] = frozenset(_ENCR)


def encr_algorithm(encr_id: int, key_bits: int | None) -> EncrAlgorithm:
    """Parameters of an ENCR transform; ``ValueError`` if unsupported.

    AES requires the Key Length attribute (RFC 7296 §3.3.5), so ``key_bits=None`` is
    rejected for it.
    """
    if key_bits is None:
        raise ValueError(f"encryption algorithm {encr_id} needs a key length")
    try:
        return _ENCR[(encr_id, key_bits)]
    except KeyError:
        raise ValueError(f"unsupported encryption algorithm {encr_id}/{key_bits}") from None


def _raw(key: bytes | Secret) -> bytes:
    return key.reveal() if isinstance(key, Secret) else key


def aes_cbc_encrypt(key: bytes | Secret, iv: bytes, data: bytes) -> bytes:
    """AES-CBC without padding; ``len(data)`` must be a multiple of 16 (else ``ValueError``)."""
    if len(data) % AES_BLOCK or len(iv) != AES_BLOCK:
        raise ValueError("AES-CBC needs whole blocks and a 16-octet IV")
    enc = Cipher(algorithms.AES(_raw(key)), modes.CBC(iv)).encryptor()
    return enc.update(data) + enc.finalize()


def aes_cbc_decrypt(key: bytes | Secret, iv: bytes, data: bytes) -> bytes:
    """Inverse of `aes_cbc_encrypt`; ``ValueError`` on a partial block."""
    if len(data) % AES_BLOCK or len(iv) != AES_BLOCK:
        raise ValueError("AES-CBC needs whole blocks and a 16-octet IV")
    dec = Cipher(algorithms.AES(_raw(key)), modes.CBC(iv)).decryptor()
    return dec.update(data) + dec.finalize()


class AesGcm:
    """AES-GCM with a 16-octet tag and a caller-built 12-octet nonce (key set up once)."""

    __slots__ = ("_aead",)

    def __init__(self, key: bytes | Secret) -> None:
        self._aead = AESGCM(_raw(key))

    def seal(self, nonce: bytes, plaintext: bytes, aad: bytes) -> bytes:
        """ciphertext | tag."""
        return self._aead.encrypt(nonce, plaintext, aad)

    def open(self, nonce: bytes, data: bytes, aad: bytes) -> bytes | None:
        """The plaintext, or ``None`` if the tag does not verify."""
        try:
            return self._aead.decrypt(nonce, data, aad)
        except InvalidTag:
            return None

    def __repr__(self) -> str:
        return "AesGcm(<key redacted>)"
