"""Protection of the IKEv2 Encrypted payload (RFC 7296 §3.14; AES-GCM: RFC 5282).

Body layout (what follows the SK payload's generic header):
  CBC: IV(16) | E(inner payloads | padding | pad length) | ICV
       ICV = INTEG(SK_a, message from the IKE header through the ciphertext)
  GCM: IV(8) | E(inner payloads | padding | pad length) | tag(16)
       nonce = salt (last 4 octets of SK_e) | IV, AAD = IKE header .. end of SK header
``aad`` below is always "every octet of the message before the IV": the caller builds the
IKE header and SK generic header with lengths from `SkCipher.body_length` first.
"""

from __future__ import annotations

from cgwd.ike.crypto.cipher import AesGcm, aes_cbc_decrypt, aes_cbc_encrypt
from cgwd.ike.crypto.suite import IkeSuite
from cgwd.ike.decode_errors import IntegrityError, ParseError
from cgwd.ike.rng import Rng
from cgwd.secret import Secret


def _raw(key: bytes | Secret) -> bytes:
    return key.reveal() if isinstance(key, Secret) else key


class SkCipher:
    """One direction's SK_e/SK_a pair. Reprs never show keys.

    Raises ``ValueError`` at construction if the key lengths do not match the suite.
    """

    __slots__ = ("_enc_key", "_gcm", "_integ_key", "_next_iv", "_salt", "suite")

    def __init__(
        self, suite: IkeSuite, enc_key: bytes | Secret, integ_key: bytes | Secret | None
    ) -> None:
        self.suite = suite
        enc = _raw(enc_key)
        if len(enc) != suite.encr_key_bytes:
            raise ValueError(f"SK_e must be {suite.encr_key_bytes} octets")
        integ = suite.integ
        if integ is None:
            if integ_key is not None and len(_raw(integ_key)) != 0:
                raise ValueError("an AEAD suite takes no SK_a")
            self._integ_key = b""
        else:
            if integ_key is None or len(_raw(integ_key)) != integ.key_bytes:
                raise ValueError(f"SK_a must be {integ.key_bytes} octets")
            self._integ_key = _raw(integ_key)
        encr = suite.encr
        if encr.aead:
            key_len = encr.key_bits // 8
            self._gcm: AesGcm | None = AesGcm(enc[:key_len])
            self._salt = enc[key_len:]
            self._enc_key = b""
        else:
            self._gcm = None
            self._salt = b""
            self._enc_key = enc
        self._next_iv: int | None = None

    @property
    def iv_bytes(self) -> int:
        return self.suite.encr.iv_bytes

    @property
    def icv_bytes(self) -> int:
        encr = self.suite.encr
        if encr.aead:
            return encr.icv_bytes
        integ = self.suite.integ
        assert integ is not None
        return integ.icv_bytes

    def _pad_length(self, plaintext_len: int) -> int:
        block = self.suite.encr.block_bytes
        return (-(plaintext_len + 1)) % block

    def body_length(self, plaintext_len: int) -> int:
        """Octets of the SK payload body for ``plaintext_len`` octets of inner payloads."""
        return self.iv_bytes + plaintext_len + self._pad_length(plaintext_len) + 1 + self.icv_bytes

    def _iv(self, rng: Rng) -> bytes:
        if self._gcm is None:
            # CBC: the IV must be unpredictable (RFC 7296 §3.14), so fresh random octets.
            return rng.bytes(self.iv_bytes)
        # GCM: the IV must never repeat under one key (RFC 5282 §3.1): a 64-bit counter
        # from a random start guarantees that, where independent random IVs only make a
        # repeat unlikely.
        if self._next_iv is None:
            self._next_iv = int.from_bytes(rng.bytes(8), "big")
        value = self._next_iv
        self._next_iv = (value + 1) % (1 << 64)
        return value.to_bytes(8, "big")

    def encrypt(self, plaintext: bytes, aad: bytes, rng: Rng) -> bytes:
        """The SK body (IV | ciphertext | ICV) protecting ``plaintext`` (the inner payloads).

        ``aad`` is the message up to the IV, lengths already final. CBC draws a random IV
        from ``rng`` per message; GCM counts from a random start drawn on first use.
        """
        pad = self._pad_length(len(plaintext))
        # RFC 7296 §3.14: padding may hold any value; zeros leak nothing.
        padded = plaintext + bytes(pad) + bytes([pad])
        iv = self._iv(rng)
        if self._gcm is not None:
            return iv + self._gcm.seal(self._salt + iv, padded, aad)
        integ = self.suite.integ
        assert integ is not None
        ciphertext = iv + aes_cbc_encrypt(self._enc_key, iv, padded)
        return ciphertext + integ.compute(self._integ_key, aad + ciphertext)

    def decrypt(self, body: bytes, aad: bytes) -> bytes:
        """The inner payloads of an SK body.

        Raises `IntegrityError` if the ICV/tag does not verify and `ParseError` if the body
        is too short, misaligned, or (after a successful check) the pad length is
        impossible.
        """
        iv_len, icv_len = self.iv_bytes, self.icv_bytes
        if len(body) < iv_len + icv_len + 1:
            raise ParseError(f"Encrypted payload too short ({len(body)} octets)")
        iv = body[:iv_len]
        if self._gcm is not None:
            padded = self._gcm.open(self._salt + iv, body[iv_len:], aad)
            if padded is None:
                raise IntegrityError("Encrypted payload: AES-GCM tag mismatch")
        else:
            integ = self.suite.integ
            assert integ is not None
            ciphertext, icv = body[:-icv_len], body[-icv_len:]
            if (len(ciphertext) - iv_len) % self.suite.encr.block_bytes:
                raise ParseError("Encrypted payload: ciphertext is not whole blocks")
            if not integ.verify(self._integ_key, aad + ciphertext, icv):
                raise IntegrityError("Encrypted payload: ICV mismatch")
            padded = aes_cbc_decrypt(self._enc_key, iv, ciphertext[iv_len:])
        pad = padded[-1]
        if pad + 1 > len(padded):
            raise ParseError(f"Encrypted payload: pad length {pad} exceeds the plaintext")
        return padded[: len(padded) - pad - 1]

    def __repr__(self) -> str:
        return f"SkCipher({self.suite.name}, keys=<redacted>)"
