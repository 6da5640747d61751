"""Per-SA cryptographic state for ESP: AES-GCM (RFC 4106) and AES-CBC + HMAC (RFC 3602,
2404, 4868). Internal to `cgwd.esp.sa`; the SA objects own sequence numbers, padding and
counters, these classes only seal and open one packet.

Every key schedule and cipher context is built once per SA, never per packet.

Wire layout (RFC 4303 2): SPI(4) | Seq low(4) | IV | ciphertext(payload, pad, pad len,
next header) | ICV. "Header room" below is the SPI, the sequence number and the IV.

Exceptions: constructors raise ValueError for wrong key sizes; `seal*` raise ValueError
only for a caller's buffer that is too small; `open*` return None on a failed ICV and
otherwise let no exception escape for well-formed lengths (callers check lengths first).
"""

from __future__ import annotations

import hmac
import struct
from collections.abc import Callable

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives import hmac as crypto_hmac
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from cgwd.esp.suites import GCM_SALT_BYTES, EspSuite

Buffer = bytes | bytearray | memoryview
IvSource = Callable[[int], bytes]
"""Maps a sequence number to a 16-byte CBC IV; must be unpredictable (RFC 3602 3)."""

_LOW32 = 0xFFFFFFFF
_SPI_SEQ = struct.Struct(">II")
_SPI_SEQ_IV64 = struct.Struct(">IIQ")
_SPI_SEQ_ESN = struct.Struct(">III")
_HIGH32 = struct.Struct(">I")
_ESP_HEADER = 8  # SPI, sequence number (RFC 4303 2)
_GCM_HEADER = _ESP_HEADER + 8  # and the explicit IV (RFC 4106 3.1)
_GCM_TAG = 16  # RFC 4106 6: the 16-octet ICV
_AES_BLOCK = 16
# Domain separation for the CBC IV nonces: the first 8 octets of every nonce block, the
# sequence number fills the last 8 (see CbcHmacTransform).
_CBC_NONCE_PREFIX = int.from_bytes(b"cgwd-esp", "big") << 64

_HASHES: dict[str, Callable[[], hashes.HashAlgorithm]] = {
    "sha1": hashes.SHA1,
    "sha256": hashes.SHA256,
    "sha384": hashes.SHA384,
    "sha512": hashes.SHA512,
}


class GcmTransform:
    """AES-GCM-16 for one SA direction (RFC 4106).

    Nonce = 4-octet salt from the keymat || 8-octet explicit IV (RFC 4106 4). The explicit
    IV is the 64-bit sequence number (RFC 4106 3.1 allows a counter): the SA never reuses a
    sequence number (it refuses to wrap), so a nonce never repeats under one key, which is
    the one thing GCM cannot survive. AAD is SPI || seq (RFC 4106 5), with ESN SPI || seq
    high || seq low.
    """

    __slots__ = ("_aead", "_esn", "_salt", "_spi")

    header_room = _GCM_HEADER
    icv_bytes = _GCM_TAG
    tail_room = _GCM_TAG  # seal_in_place writes the tag after the payload

    def __init__(self, suite: EspSuite, keymat: bytes, spi: int, esn: bool) -> None:
        key_len = suite.encryption_key_bytes
        if len(keymat) != key_len + GCM_SALT_BYTES:
            raise ValueError(f"{suite.name} needs {key_len + GCM_SALT_BYTES} bytes of keymat")
        self._aead = AESGCM(keymat[:key_len])
        self._salt = keymat[key_len:]
        self._spi = spi
        self._esn = esn

    def _aad(self, seq: int) -> bytes:
        if self._esn:
            return _SPI_SEQ_ESN.pack(self._spi, seq >> 32, seq & _LOW32)
        return _SPI_SEQ.pack(self._spi, seq)

    def seal(self, seq: int, inner: Buffer, trailer: bytes) -> bytes:
        header = _SPI_SEQ_IV64.pack(self._spi, seq & _LOW32, seq)
        aad = self._aad(seq) if self._esn else header[:_ESP_HEADER]
        return header + self._aead.encrypt(
            self._salt + header[_ESP_HEADER:], b"".join((inner, trailer)), aad
        )

    def seal_in_place(
        self, buf: bytearray | memoryview, offset: int, seq: int, payload_len: int
    ) -> int:
        """Payload (inner + trailer) is at buf[offset + header_room:][:payload_len]; writes
        the whole ESP packet from buf[offset] and returns its length."""
        view = buf if buf.__class__ is memoryview else memoryview(buf)
        _SPI_SEQ_IV64.pack_into(view, offset, self._spi, seq & _LOW32, seq)
        start = offset + _GCM_HEADER
        end = start + payload_len
        self._aead.encrypt_into(
            self._salt + view[offset + _ESP_HEADER : start],
            view[start:end],
            self._aad(seq) if self._esn else view[offset : offset + _ESP_HEADER],
            view[start : end + _GCM_TAG],
        )
        return _GCM_HEADER + payload_len + _GCM_TAG

    def open(self, packet: Buffer, seq: int) -> bytes | None:
        """The plaintext (payload + trailer), or None if the tag does not verify."""
        aad = self._aad(seq) if self._esn else packet[:_ESP_HEADER]
        try:
            return self._aead.decrypt(
                self._salt + packet[_ESP_HEADER:_GCM_HEADER], packet[_GCM_HEADER:], aad
            )
        except InvalidTag:
            return None

    def open_into(self, packet: Buffer, seq: int, out: bytearray | memoryview) -> int:
        """Writes the plaintext to out[0:]; returns its length, or -1 on a bad tag."""
        aad = self._aad(seq) if self._esn else packet[:_ESP_HEADER]
        size = len(packet) - _GCM_HEADER - _GCM_TAG
        try:
            return self._aead.decrypt_into(
                self._salt + packet[_ESP_HEADER:_GCM_HEADER],
                packet[_GCM_HEADER:],
                aad,
                (out if out.__class__ is memoryview else memoryview(out))[:size],
            )
        except InvalidTag:
            return -1


class CbcHmacTransform:
    """AES-CBC with HMAC-SHA1-96 / HMAC-SHA2 (RFC 3602, 2404, 4868) for one SA direction.

    Encrypt-then-MAC: the ICV covers SPI, sequence number, IV and ciphertext, followed
    (with ESN) by the high 32 bits of the sequence number, appended after the ciphertext
    for the computation and never sent (RFC 4303 2.2.1, 3.3.4).

    IVs. RFC 3602 3 requires CBC IVs to be unpredictable; the core draws no randomness, so
    by default the IV is the AES encryption, under the SA's own key, of a nonce that is
    unique per packet (a constant prefix and the 64-bit sequence number, never reused in
    one SA). That is the first method of NIST SP 800-38A Appendix C for generating
    unpredictable CBC IVs, and the Linux kernel's ESP IV generator for CBC (echainiv) rests
    on the same idea. Nobody without the key can predict E_K(nonce), and an attacker cannot
    have seen it earlier: every other AES input of this SA is a plaintext block XOR a fresh
    ciphertext block, equal to a given nonce with probability 2^-128.

    It also makes CBC cheap: one long-lived CBC encryptor per SA (no context per packet).
    Feeding it the block X = nonce XOR S, where S is the last ciphertext block it produced
    (its chaining value), makes the first output block E_K(nonce): that block is the IV,
    and the rest is exactly CBC of the payload under that IV. An injected `iv_source`
    (e.g. from a CSPRNG) is honoured the same way with X = D_K(iv) XOR S.

    Decryption keeps one CBC decryptor too: feeding it IV || ciphertext yields one garbage
    block (decrypt of the IV, discarded) and then the plaintext chained from that IV.
    """

    __slots__ = (
        "_chain",
        "_decryptor",
        "_ecb_decryptor",
        "_encryptor",
        "_esn",
        "_iv_source",
        "_mac",
        "_spi",
        "icv_bytes",
    )

    header_room = _ESP_HEADER + _AES_BLOCK  # the IV is one block (RFC 3602 2.1)

    def __init__(
        self,
        suite: EspSuite,
        keymat: bytes,
        spi: int,
        esn: bool,
        iv_source: IvSource | None = None,
    ) -> None:
        key_len = suite.encryption_key_bytes
        if len(keymat) != key_len + suite.integrity_key_bytes or suite.hash_name is None:
            raise ValueError(f"{suite.name} needs {suite.keymat_bytes} bytes of keymat")
        key = keymat[:key_len]
        aes = algorithms.AES(key)
        zero_iv = modes.CBC(bytes(_AES_BLOCK))
        self._encryptor = Cipher(aes, zero_iv).encryptor()
        self._decryptor = Cipher(aes, zero_iv).decryptor()
        self._chain = 0  # the encryptor's chaining value S, as an int (starts as the zero IV)
        self._iv_source = iv_source
        self._ecb_decryptor = (
            Cipher(aes, modes.ECB()).decryptor() if iv_source is not None else None  # noqa: S305
        )
        self._mac = crypto_hmac.HMAC(keymat[key_len:], _HASHES[suite.hash_name]())
        self.icv_bytes = suite.icv_bytes
        self._spi = spi
        self._esn = esn

    @property
    def tail_room(self) -> int:
        # update_into wants block_size - 1 spare octets past the ciphertext
        return max(self.icv_bytes, _AES_BLOCK - 1)

    def _first_block(self, seq: int) -> bytes:
        source = self._iv_source
        if source is None:
            target = _CBC_NONCE_PREFIX | seq
        else:
            assert self._ecb_decryptor is not None
            iv = source(seq)
            if len(iv) != _AES_BLOCK:
                raise ValueError("iv_source must return 16 bytes")
            target = int.from_bytes(self._ecb_decryptor.update(iv), "big")
        return (target ^ self._chain).to_bytes(_AES_BLOCK, "big")

    def icv(self, data: Buffer, seq: int) -> bytes:
        """The (truncated) ICV over ``data``, with the ESN high half appended if used."""
        mac = self._mac.copy()
        mac.update(data)
        if self._esn:
            mac.update(_HIGH32.pack(seq >> 32))
        return mac.finalize()[: self.icv_bytes]

    def seal(self, seq: int, inner: Buffer, trailer: bytes) -> bytes:
        ciphertext = self._encryptor.update(b"".join((self._first_block(seq), inner, trailer)))
        self._chain = int.from_bytes(ciphertext[-_AES_BLOCK:], "big")
        body = _SPI_SEQ.pack(self._spi, seq & _LOW32) + ciphertext
        return body + self.icv(body, seq)

    def seal_in_place(
        self, buf: bytearray | memoryview, offset: int, seq: int, payload_len: int
    ) -> int:
        """Payload is at buf[offset + header_room:][:payload_len]; needs tail_room spare
        octets after it. Writes the ESP packet from buf[offset]; returns its length."""
        view = buf if buf.__class__ is memoryview else memoryview(buf)
        packet = view[offset:]
        _SPI_SEQ.pack_into(packet, 0, self._spi, seq & _LOW32)
        packet[_ESP_HEADER : self.header_room] = self._first_block(seq)
        end = self.header_room + payload_len
        self._encryptor.update_into(
            packet[_ESP_HEADER:end], packet[_ESP_HEADER : end + _AES_BLOCK - 1]
        )
        self._chain = int.from_bytes(packet[end - _AES_BLOCK : end], "big")
        packet[end : end + self.icv_bytes] = self.icv(packet[:end], seq)
        return end + self.icv_bytes

    def _verify(self, packet: Buffer, seq: int) -> bool:
        body = len(packet) - self.icv_bytes
        # constant-time comparison of the truncated ICV (RFC 4303 3.4.4.1)
        return hmac.compare_digest(self.icv(packet[:body], seq), packet[body:])

    def open(self, packet: Buffer, seq: int) -> bytes | None:
        if not self._verify(packet, seq):
            return None
        decryptor = self._decryptor
        decryptor.update(packet[_ESP_HEADER : self.header_room])  # sets the chain to the IV
        return decryptor.update(packet[self.header_room : len(packet) - self.icv_bytes])

    def open_into(self, packet: Buffer, seq: int, out: bytearray | memoryview) -> int:
        if not self._verify(packet, seq):
            return -1
        out = out if out.__class__ is memoryview else memoryview(out)
        decryptor = self._decryptor
        decryptor.update(packet[_ESP_HEADER : self.header_room])
        size = len(packet) - self.header_room - self.icv_bytes
        return decryptor.update_into(
            packet[self.header_room : self.header_room + size], out[: size + _AES_BLOCK - 1]
        )


Transform = GcmTransform | CbcHmacTransform
