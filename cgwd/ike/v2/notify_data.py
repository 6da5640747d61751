"""Data of the IKEv2 notifies we compute: NAT detection (RFC 7296 §2.23) and COOKIE (§2.6).

Pure functions; the caller keeps the cookie secret (from its `Rng`) and rotates it.
"""

from __future__ import annotations

import hashlib
import hmac
from ipaddress import IPv4Address, IPv6Address, ip_address

from cgwd.secret import Secret

COOKIE_VERSION_LENGTH = 4  # <VersionIDofSecret>, our choice (§2.6 leaves it open)
COOKIE_MAX_LENGTH = 64  # §2.6: the responder's cookie is 1-64 octets


def _spi(value: int | bytes) -> bytes:
    return value.to_bytes(8, "big") if isinstance(value, int) else bytes(value)


def nat_detection_hash(
    spi_i: int | bytes, spi_r: int | bytes, address: IPv4Address | IPv6Address | str, port: int
) -> bytes:
    """SHA-1(SPIi | SPIr | IP | Port) (RFC 7296 §2.23); SPIr is zero in the IKE_SA_INIT request.

    NAT_DETECTION_SOURCE_IP hashes the sender's address and port, _DESTINATION_IP the
    receiver's; a mismatch on receipt means that side is behind a NAT.
    """
    packed = ip_address(address).packed
    return hashlib.sha1(  # noqa: S324 (SHA-1 is what §2.23 prescribes)
        _spi(spi_i) + _spi(spi_r) + packed + port.to_bytes(2, "big")
    ).digest()


def make_cookie(
    secret: Secret,
    version: int,
    ni: bytes,
    initiator_address: IPv4Address | IPv6Address | str,
    spi_i: int | bytes,
) -> bytes:
    """Cookie = <VersionIDofSecret> | Hash(Ni | IPi | SPIi | <secret>) (RFC 7296 §2.6).

    The hash is HMAC-SHA-256 keyed with the secret (a keyed hash is the safer reading of
    "Hash(... | <secret>)"); the result is 4 + 32 = 36 octets.
    """
    tag = hmac.digest(
        secret.reveal(), ni + ip_address(initiator_address).packed + _spi(spi_i), "sha256"
    )
    return version.to_bytes(COOKIE_VERSION_LENGTH, "big") + tag


def cookie_version(cookie: bytes) -> int | None:
    """The secret version a cookie names, or ``None`` if it cannot be one of ours."""
    if len(cookie) != COOKIE_VERSION_LENGTH + 32:
        return None
    return int.from_bytes(cookie[:COOKIE_VERSION_LENGTH], "big")


def verify_cookie(
    cookie: bytes,
    *,
    secret: Secret,
    version: int,
    ni: bytes,
    initiator_address: IPv4Address | IPv6Address | str,
    spi_i: int | bytes,
) -> bool:
    """Constant-time check of a returned cookie against the secret of ``version``."""
    expected = make_cookie(secret, version, ni, initiator_address, spi_i)
    return hmac.compare_digest(cookie, expected)
