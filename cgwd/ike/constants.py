"""IANA numbers for IKE (IKEv2 Parameters registry; RFC 7296 §3 unless noted).

Decoded messages keep unknown numbers as plain ``int``; these are ``IntEnum`` so a known
value compares equal to its member (``payload.type == NotifyType.COOKIE``). Use `name_of`
to render a number that may or may not be known.
"""

from __future__ import annotations

import enum

IKE_VERSION_MAJOR = 2  # RFC 7296 §3.1
IKE_VERSION_MINOR = 0
IKE_HEADER_LENGTH = 28  # RFC 7296 §3.1
GENERIC_PAYLOAD_HEADER_LENGTH = 4  # RFC 7296 §3.2
IKE_SPI_LENGTH = 8
CHILD_SPI_LENGTH = 4  # ESP/AH, RFC 7296 §3.3.1
NONCE_MIN_LENGTH = 16  # RFC 7296 §3.9
NONCE_MAX_LENGTH = 256


class HeaderFlag(enum.IntFlag):
    """IKE header flags, RFC 7296 §3.1."""

    INITIATOR = 0x08  # I: sent by the original initiator of the IKE SA
    VERSION = 0x10  # V: the sender can speak a higher major version
    RESPONSE = 0x20  # R: this message is a response


class ExchangeType(enum.IntEnum):
    """RFC 7296 §3.1."""

    IKE_SA_INIT = 34
    IKE_AUTH = 35
    CREATE_CHILD_SA = 36
    INFORMATIONAL = 37


class PayloadType(enum.IntEnum):
    """Next Payload values, RFC 7296 §3.2 (and RFC 7383 for SKF)."""

    NONE = 0
    SA = 33
    KE = 34
    IDI = 35
    IDR = 36
    CERT = 37
    CERTREQ = 38
    AUTH = 39
    NONCE = 40
    NOTIFY = 41
    DELETE = 42
    VENDOR_ID = 43
    TSI = 44
    TSR = 45
    SK = 46
    CP = 47
    EAP = 48
    SKF = 53  # RFC 7383 fragment


# Payload types RFC 7296 defines: their critical bit is ignored (§3.2), every other type
# is "unrecognized" and its critical bit decides between skipping and rejecting.
RFC7296_PAYLOAD_TYPES = frozenset(range(33, 49))


class TransformType(enum.IntEnum):
    """RFC 7296 §3.3.2."""

    ENCR = 1
    PRF = 2
    INTEG = 3
    DH = 4  # "Key Exchange Method" since RFC 9370
    ESN = 5


class TransformAttributeType(enum.IntEnum):
    """RFC 7296 §3.3.5."""

    KEY_LENGTH = 14  # TV format, key length in bits


class EncrId(enum.IntEnum):
    """Transform Type 1, RFC 7296 §3.3.2, RFC 5282, RFC 4106, RFC 7634."""

    DES = 2
    TRIPLE_DES = 3
    NULL = 11
    AES_CBC = 12
    AES_CTR = 13
    AES_CCM_8 = 14
    AES_CCM_12 = 15
    AES_CCM_16 = 16
    AES_GCM_8 = 18
    AES_GCM_12 = 19
    AES_GCM_16 = 20
    NULL_AUTH_AES_GMAC = 21
    CHACHA20_POLY1305 = 28


class PrfId(enum.IntEnum):
    """Transform Type 2, RFC 7296 §3.3.2, RFC 4868."""

    HMAC_MD5 = 1
    HMAC_SHA1 = 2
    HMAC_TIGER = 3
    AES128_XCBC = 4
    HMAC_SHA2_256 = 5
    HMAC_SHA2_384 = 6
    HMAC_SHA2_512 = 7
    AES128_CMAC = 8


class IntegId(enum.IntEnum):
    """Transform Type 3, RFC 7296 §3.3.2, RFC 4868."""

    NONE = 0
    HMAC_MD5_96 = 1
    HMAC_SHA1_96 = 2
    DES_MAC = 3
    KPDK_MD5 = 4
    AES_XCBC_96 = 5
    HMAC_MD5_128 = 6
    HMAC_SHA1_160 = 7
    AES_CMAC_96 = 8
    AES_128_GMAC = 9
    AES_192_GMAC = 10
    AES_256_GMAC = 11
    HMAC_SHA2_256_128 = 12
    HMAC_SHA2_384_192 = 13
    HMAC_SHA2_512_256 = 14


class DhGroup(enum.IntEnum):
    """Transform Type 4 (Diffie-Hellman group numbers), shared with IKEv1 (RFC 2409 §6).

    RFC 2409 (1, 2), RFC 3526 (5, 14-18), RFC 5903 (19-21), RFC 5114 (22-26),
    RFC 6932 (27-30), RFC 8031 (31, 32).
    """

    NONE = 0
    MODP_768 = 1
    MODP_1024 = 2
    MODP_1536 = 5
    MODP_2048 = 14
    MODP_3072 = 15
    MODP_4096 = 16
    MODP_6144 = 17
    MODP_8192 = 18
    ECP_256 = 19
    ECP_384 = 20
    ECP_521 = 21
    MODP_1024_160 = 22
    MODP_2048_224 = 23
    MODP_2048_256 = 24
    ECP_192 = 25
    ECP_224 = 26
    BRAINPOOL_224 = 27
    BRAINPOOL_256 = 28
    BRAINPOOL_384 = 29
    BRAINPOOL_512 = 30
    CURVE25519 = 31
    CURVE448 = 32


class EsnId(enum.IntEnum):
    """Transform Type 5, RFC 7296 §3.3.2."""

    NO_ESN = 0
    ESN = 1


class ProtocolId(enum.IntEnum):
    """Security protocol identifiers, RFC 7296 §3.3.1."""

    IKE = 1
    AH = 2
    ESP = 3


class AuthMethod(enum.IntEnum):
    """RFC 7296 §3.8, RFC 4754, RFC 7427."""

    RSA_SIG = 1
    SHARED_KEY_MIC = 2  # PSK
    DSS_SIG = 3
    ECDSA_SHA256_P256 = 9
    ECDSA_SHA384_P384 = 10
    ECDSA_SHA512_P521 = 11
    GENERIC_SECURE_PASSWORD = 12
    NULL_AUTH = 13
    DIGITAL_SIGNATURE = 14


class IdType(enum.IntEnum):
    """RFC 7296 §3.5."""

    IPV4_ADDR = 1
    FQDN = 2
    RFC822_ADDR = 3
    IPV6_ADDR = 5
    DER_ASN1_DN = 9
    DER_ASN1_GN = 10
    KEY_ID = 11


class TsType(enum.IntEnum):
    """RFC 7296 §3.13.1."""

    IPV4_ADDR_RANGE = 7
    IPV6_ADDR_RANGE = 8


class NotifyType(enum.IntEnum):
    """Notify Message Types, RFC 7296 §3.10.1 (errors < 16384, status >= 16384).

    The codec keeps the number as an ``int``; unknown error types still mean failure
    (§3.10.1) and unknown status types are ignored by the exchanges.
    """

    # Errors
    UNSUPPORTED_CRITICAL_PAYLOAD = 1
    INVALID_IKE_SPI = 4
    INVALID_MAJOR_VERSION = 5
    INVALID_SYNTAX = 7
    INVALID_MESSAGE_ID = 9
    INVALID_SPI = 11
    NO_PROPOSAL_CHOSEN = 14
    INVALID_KE_PAYLOAD = 17
    AUTHENTICATION_FAILED = 24
    SINGLE_PAIR_REQUIRED = 34
    NO_ADDITIONAL_SAS = 35
    INTERNAL_ADDRESS_FAILURE = 36
    FAILED_CP_REQUIRED = 37
    TS_UNACCEPTABLE = 38
    INVALID_SELECTORS = 39
    TEMPORARY_FAILURE = 43
    CHILD_SA_NOT_FOUND = 44
    # Status
    INITIAL_CONTACT = 16384
    SET_WINDOW_SIZE = 16385
    ADDITIONAL_TS_POSSIBLE = 16386
    IPCOMP_SUPPORTED = 16387
    NAT_DETECTION_SOURCE_IP = 16388
    NAT_DETECTION_DESTINATION_IP = 16389
    COOKIE = 16390
    USE_TRANSPORT_MODE = 16391
    HTTP_CERT_LOOKUP_SUPPORTED = 16392
    REKEY_SA = 16393
    ESP_TFC_PADDING_NOT_SUPPORTED = 16394
    NON_FIRST_FRAGMENTS_ALSO = 16395
    MOBIKE_SUPPORTED = 16396
    MULTIPLE_AUTH_SUPPORTED = 16404
    REDIRECT_SUPPORTED = 16406
    IKEV2_FRAGMENTATION_SUPPORTED = 16430  # RFC 7383
    SIGNATURE_HASH_ALGORITHMS = 16431  # RFC 7427


NOTIFY_STATUS_MIN = 16384  # RFC 7296 §3.10.1: types below are errors


def is_error_notify(notify_type: int) -> bool:
    """RFC 7296 §3.10.1: types 0-16383 report errors."""
    return notify_type < NOTIFY_STATUS_MIN


def name_of(enum_type: type[enum.IntEnum], value: int) -> str:
    """``enum_type(value).name`` when known, else ``"<EnumName> 1234"`` for logs."""
    try:
        return enum_type(value).name
    except ValueError:
        return f"{enum_type.__name__} {value}"
