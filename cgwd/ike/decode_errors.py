"""The only exceptions IKE decoders let escape (IKEv2 now, IKEv1 later).

Every decoder in `cgwd.ike` turns malformed input into one of these, never into an
``IndexError``, ``struct.error`` or ``ValueError``; callers catch `IkeDecodeError`, count
the drop and, where the RFC asks for it, answer with the notify named below.
"""

from __future__ import annotations


class IkeDecodeError(Exception):
    """A received message could not be decoded. Messages never contain key material."""


class ParseError(IkeDecodeError):
    """Malformed message: bad lengths, counts, nesting or field values.

    For a message that passed its integrity check the responder answers INVALID_SYNTAX
    (RFC 7296 §3.10.1); for an unprotected one it is dropped.
    """


class InvalidMajorVersion(ParseError):
    """The header's major version is not 2 (RFC 7296 §2.5): answer INVALID_MAJOR_VERSION.

    The header layout is the same in every IKE version, so the fields needed to address
    the answer (§2.21.4: same SPIs and message ID, R flag) come with the error.
    """

    def __init__(
        self,
        major: int,
        minor: int,
        *,
        spi_i: int = 0,
        spi_r: int = 0,
        exchange_type: int = 0,
        message_id: int = 0,
    ) -> None:
        super().__init__(f"unsupported IKE version {major}.{minor} (only 2.x is spoken)")
        self.major = major
        self.minor = minor
        self.spi_i = spi_i
        self.spi_r = spi_r
        self.exchange_type = exchange_type
        self.message_id = message_id


class IntegrityError(IkeDecodeError):
    """The Encrypted payload failed its ICV check or decryption: drop silently (§2.21.2)."""


class UnsupportedCritical(IkeDecodeError):
    """A payload of an unrecognized type has the critical bit set (RFC 7296 §2.5).

    The caller answers UNSUPPORTED_CRITICAL_PAYLOAD with ``payload_type`` as notify data
    (one octet, §3.10.1) when the message was a request.
    """

    def __init__(self, payload_type: int) -> None:
        super().__init__(f"unsupported critical payload type {payload_type}")
        self.payload_type = payload_type
