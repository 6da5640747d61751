"""IKEv1 / ISAKMP numbers (RFC 2408, RFC 2407 IPsec DOI, RFC 2409, RFC 3947, RFC 3706).

Decoded messages keep unknown numbers as plain ``int``; these are ``IntEnum`` so a known
value compares equal to its member.
"""

from __future__ import annotations

import enum
import hashlib

ISAKMP_VERSION = 0x10  # major 1, minor 0 (RFC 2408 §3.1)
HEADER_LENGTH = 28  # RFC 2408 §3.1
GENERIC_HEADER_LENGTH = 4  # RFC 2408 §3.2
COOKIE_LENGTH = 8
DOI_IPSEC = 1  # RFC 2407 §4.2
SIT_IDENTITY_ONLY = 1  # RFC 2407 §4.2.1
NONCE_MIN = 8  # RFC 2409 §5: nonces are 8 to 256 octets
NONCE_MAX = 256


class Flag(enum.IntFlag):
    """ISAKMP header flags, RFC 2408 §3.1."""

    ENCRYPTION = 0x01
    COMMIT = 0x02
    AUTH_ONLY = 0x04


class Exchange(enum.IntEnum):
    """RFC 2408 §3.1 and RFC 2409 §5 (Quick Mode 32)."""

    BASE = 1
    MAIN_MODE = 2  # Identity Protection
    AUTH_ONLY = 3
    AGGRESSIVE = 4
    INFORMATIONAL = 5
    QUICK_MODE = 32
    NEW_GROUP = 33


class Payload(enum.IntEnum):
    """Next Payload values, RFC 2408 §3.1, RFC 3947 §3 (NAT-D 20, NAT-OA 21)."""

    NONE = 0
    SA = 1
    PROPOSAL = 2
    TRANSFORM = 3
    KE = 4
    ID = 5
    CERT = 6
    CR = 7
    HASH = 8
    SIG = 9
    NONCE = 10
    NOTIFY = 11
    DELETE = 12
    VENDOR = 13
    NAT_D = 20
    NAT_OA = 21
    NAT_D_DRAFT = 130  # draft-ietf-ipsec-nat-t-ike-02/03 private-use numbers
    NAT_OA_DRAFT = 131


class ProtocolId(enum.IntEnum):
    """RFC 2407 §4.4.1."""

    ISAKMP = 1
    AH = 2
    ESP = 3


KEY_IKE = 1  # the one ISAKMP transform id, RFC 2407 §4.4.2


class P1Attr(enum.IntEnum):
    """Phase 1 SA attribute classes, RFC 2409 Appendix A."""

    ENCRYPTION = 1
    HASH = 2
    AUTH_METHOD = 3
    GROUP_DESCRIPTION = 4
    LIFE_TYPE = 11
    LIFE_DURATION = 12
    KEY_LENGTH = 14


P1_ENCR_AES_CBC = 7  # RFC 3602 §5 / IANA
P1_AUTH_PSK = 1


class P1Hash(enum.IntEnum):
    """Phase 1 hash algorithms (IANA "IPSEC Hash Algorithm", RFC 4868 §3)."""

    MD5 = 1
    SHA1 = 2
    SHA2_256 = 4
    SHA2_384 = 5
    SHA2_512 = 6


class P2Attr(enum.IntEnum):
    """IPsec SA attributes, RFC 2407 §4.5."""

    LIFE_TYPE = 1
    LIFE_DURATION = 2
    GROUP_DESCRIPTION = 3
    ENCAPSULATION_MODE = 4
    AUTH_ALGORITHM = 5
    KEY_LENGTH = 6


LIFE_SECONDS = 1  # RFC 2407 §4.5 / RFC 2409 App. A
LIFE_KILOBYTES = 2


class EncapMode(enum.IntEnum):
    """RFC 2407 §4.5, RFC 3947 §5.1, and the draft values older peers send."""

    TUNNEL = 1
    TRANSPORT = 2
    UDP_TUNNEL = 3
    UDP_TRANSPORT = 4
    UDP_TUNNEL_DRAFT = 61443
    UDP_TRANSPORT_DRAFT = 61444


class EspTransform(enum.IntEnum):
    """ESP transform ids, RFC 2407 §4.4.4, RFC 4106 §8."""

    ESP_AES = 12
    ESP_AES_GCM_16 = 20


class AuthAlg(enum.IntEnum):
    """IPsec authentication algorithm attribute values, RFC 2407 §4.5, RFC 4868 §2.1."""

    HMAC_SHA1 = 2
    HMAC_SHA2_256 = 5
    HMAC_SHA2_384 = 6
    HMAC_SHA2_512 = 7


class IdType(enum.IntEnum):
    """RFC 2407 §4.6.2.1."""

    IPV4_ADDR = 1
    FQDN = 2
    USER_FQDN = 3
    IPV4_ADDR_SUBNET = 4
    IPV6_ADDR = 5
    IPV6_ADDR_SUBNET = 6
    IPV4_ADDR_RANGE = 7
    KEY_ID = 11


class Notify(enum.IntEnum):
    """Notify message types, RFC 2408 §3.14.1, RFC 2407 §4.6.3, RFC 3706 §5."""

    INVALID_PAYLOAD_TYPE = 1
    DOI_NOT_SUPPORTED = 2
    SITUATION_NOT_SUPPORTED = 3
    INVALID_COOKIE = 4
    INVALID_MAJOR_VERSION = 5
    INVALID_EXCHANGE_TYPE = 7
    INVALID_FLAGS = 8
    INVALID_MESSAGE_ID = 9
    INVALID_PROTOCOL_ID = 10
    INVALID_SPI = 11
    INVALID_TRANSFORM_ID = 12
    ATTRIBUTES_NOT_SUPPORTED = 13
    NO_PROPOSAL_CHOSEN = 14
    BAD_PROPOSAL_SYNTAX = 15
    PAYLOAD_MALFORMED = 16
    INVALID_KEY_INFORMATION = 17
    INVALID_ID_INFORMATION = 18
    INVALID_HASH_INFORMATION = 23
    AUTHENTICATION_FAILED = 24
    INVALID_SIGNATURE = 25
    RESPONDER_LIFETIME = 24576  # RFC 2407 §4.6.3.1
    REPLAY_STATUS = 24577
    INITIAL_CONTACT = 24578  # RFC 2407 §4.6.3.3
    R_U_THERE = 36136  # RFC 3706 §5
    R_U_THERE_ACK = 36137


ERROR_NOTIFY_MAX = 16383  # RFC 2408 §3.14.1: 1-16383 are errors


def _md5(text: bytes) -> bytes:
    return hashlib.md5(text, usedforsecurity=False).digest()


# Vendor IDs. RFC 3947 §3.1: MD5("RFC 3947"); drafts as listed in the RFC's history.
VID_NAT_T_RFC = _md5(b"RFC 3947")
VID_NAT_T_DRAFT_02 = bytes.fromhex("cd60464335df21f87cfdb2fc68b6a448")
VID_NAT_T_DRAFT_02N = bytes.fromhex("90cb80913ebb696e086381b5ec427b1f")
VID_NAT_T_DRAFT_03 = bytes.fromhex("7d9419a65310ca6f2c179d9215529d56")
NAT_T_DRAFT_VIDS = frozenset({VID_NAT_T_DRAFT_02, VID_NAT_T_DRAFT_02N, VID_NAT_T_DRAFT_03})
# RFC 3706 §5.1: the DPD vendor ID (version 1.0).
VID_DPD = bytes.fromhex("afcad71368a1f1c96b8696fc77570100")
