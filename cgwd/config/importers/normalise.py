"""Each format's spelling of algorithms, DH groups, lifetimes and flags, in AWS's vocabulary.

Reference §7. Every function takes one value as a file writes it and returns the value in
the vocabulary of `cgwd.config.aws` (``AES128``, ``SHA2-256``, DH group numbers, seconds),
or raises ValueError with a short reason. The reason never repeats the value: the caller
adds the format, tunnel, field and (unless secret) the value itself.

Lookups ignore case and collapse inner blanks, so ``aes 128`` (IOS), ``aes128``
(strongSwan), ``aes-128-cbc`` (generic, XML) and ``AES128`` (CLI JSON) all meet here.
Whether a value is *allowed* (phase 1 DH groups, lifetime ranges) is checked later, by
`cgwd.config.importers.validate`, on the typed model.
"""

from __future__ import annotations

from collections.abc import Callable
from ipaddress import IPv4Address, IPv4Interface, IPv4Network, IPv6Interface, IPv6Network
from typing import Literal

from cgwd.config.aws import IkeVersion

_ENCRYPTION = {
    # generic text and XML
    "aes-128-cbc": "AES128",
    "aes-256-cbc": "AES256",
    # strongSwan, Openswan
    "aes128": "AES128",
    "aes256": "AES256",
    "aes128gcm16": "AES128-GCM-16",
    "aes256gcm16": "AES256-GCM-16",
    # Cisco IOS: IKEv1 policy, transform set, IKEv2 proposal
    "aes": "AES128",  # IOS "encryption aes" without a key size
    "aes 128": "AES128",
    "aes 256": "AES256",
    "esp-aes 128": "AES128",
    "esp-aes 256": "AES256",
    "esp-gcm 128": "AES128-GCM-16",
    "esp-gcm 256": "AES256-GCM-16",
    "aes-cbc-128": "AES128",
    "aes-cbc-256": "AES256",
    "aes-gcm-128": "AES128-GCM-16",
    "aes-gcm-256": "AES256-GCM-16",
    # the EC2 API itself (CLI JSON)
    "aes128-gcm-16": "AES128-GCM-16",
    "aes256-gcm-16": "AES256-GCM-16",
}

_INTEGRITY = {
    "sha1": "SHA1",
    "sha": "SHA1",  # IOS "hash sha"
    "hmac-sha1-96": "SHA1",
    "esp-sha-hmac": "SHA1",
    "sha256": "SHA2-256",
    "sha384": "SHA2-384",
    "sha512": "SHA2-512",
    "sha2_256": "SHA2-256",  # strongSwan aliases
    "sha2_384": "SHA2-384",
    "sha2_512": "SHA2-512",
    "esp-sha256-hmac": "SHA2-256",
    "esp-sha384-hmac": "SHA2-384",
    "esp-sha512-hmac": "SHA2-512",
    "hmac-sha256-128": "SHA2-256",
    "hmac-sha384-192": "SHA2-384",
    "hmac-sha512-256": "SHA2-512",
    "sha2-256": "SHA2-256",
    "sha2-384": "SHA2-384",
    "sha2-512": "SHA2-512",
}

# strongSwan names for the IKE DH groups (RFC 7296 3.3.2 / IANA "Transform Type 4").
_DH_NAMES = {
    "modp1024": 2,
    "modp1536": 5,
    "modp2048": 14,
    "modp3072": 15,
    "modp4096": 16,
    "modp6144": 17,
    "modp8192": 18,
    "ecp256": 19,
    "ecp384": 20,
    "ecp521": 21,
    "modp1024s160": 22,
    "modp2048s224": 23,
    "modp2048s256": 24,
}

_SECONDS_PER_UNIT = {
    "": 1,
    "s": 1,
    "sec": 1,
    "secs": 1,
    "second": 1,
    "seconds": 1,
    "m": 60,
    "min": 60,
    "mins": 60,
    "minute": 60,
    "minutes": 60,
    "h": 3600,
    "hour": 3600,
    "hours": 3600,
    "d": 86400,
    "day": 86400,
    "days": 86400,
}

_TRUE = {"true", "enabled", "yes", "on"}
_FALSE = {"false", "disabled", "no", "off"}

# Sized for every number in these files (ASNs are the largest, < 2**32): no int() of
# thousands of digits on hostile input.
_MAX_DIGITS = 10


def _key(text: str) -> str:
    return " ".join(text.lower().split())


def integer(text: str) -> int:
    """A plain decimal number: ASCII digits only (no sign, ``_``, or non-ASCII digits)."""
    text = text.strip()
    if not (text.isascii() and text.isdigit()):
        raise ValueError("not a whole number")
    if len(text) > _MAX_DIGITS:
        raise ValueError("number too large")
    return int(text)


def integer_with_unit(text: str, unit: str) -> int:
    """``1379 bytes`` or ``1379``: a number, optionally followed by ``unit``."""
    number, _, rest = text.strip().partition(" ")
    if rest.strip().lower() not in ("", unit):
        raise ValueError(f"expected a number of {unit}")
    return integer(number)


def encryption(token: str) -> str:
    """AWS name (``AES128`` ...) of an encryption algorithm token."""
    key = _key(token)
    if key in _ENCRYPTION:
        return _ENCRYPTION[key]
    raise ValueError("unknown encryption algorithm")


def integrity(token: str) -> str:
    """AWS name (``SHA1``, ``SHA2-256`` ...) of an integrity algorithm token."""
    key = _key(token)
    if key in _INTEGRITY:
        return _INTEGRITY[key]
    raise ValueError("unknown integrity algorithm")


def dh_group(token: str) -> int:
    """The DH group number of ``Group 2``, ``group14``, ``Diffie-Hellman Group 2``,
    ``modp2048`` or ``14``."""
    key = _key(token)
    if key in _DH_NAMES:
        return _DH_NAMES[key]
    key = key.removeprefix("diffie-hellman ").removeprefix("group").strip()
    try:
        return integer(key)
    except ValueError:
        raise ValueError("unknown Diffie-Hellman group") from None


def lifetime_seconds(text: str) -> int:
    """Seconds in ``28800 seconds``, ``28800``, ``8h``, ``60m``, ``1d`` or ``3600s``."""
    key = _key(text)
    digits = len(key) - len(key.lstrip("0123456789"))
    number, unit = key[:digits], key[digits:].strip()
    if not number or unit not in _SECONDS_PER_UNIT:
        raise ValueError("expected a lifetime such as 3600, 3600 seconds, 60m or 1h")
    return integer(number) * _SECONDS_PER_UNIT[unit]


def flag(text: str) -> bool:
    """``enabled``/``true`` or ``disabled``/``false``."""
    key = _key(text)
    if key in _TRUE:
        return True
    if key in _FALSE:
        return False
    raise ValueError("expected enabled/disabled or true/false")


def fragmentation_before_encryption(text: str) -> bool:
    """Generic ``Before encryption`` / ``After encryption``, or XML ``true`` / ``false``."""
    key = _key(text)
    if key == "before encryption":
        return True
    if key == "after encryption":
        return False
    try:
        return flag(key)
    except ValueError:
        raise ValueError("expected 'Before encryption' or 'After encryption'") from None


def bytes_count(text: str) -> int:
    """``1379 bytes`` or ``1379``."""
    return integer_with_unit(text, "bytes")


def expect(*accepted: str) -> Callable[[str], str]:
    """A converter accepting only ``accepted`` (any case), for values cgwd must agree with."""

    def check(text: str) -> str:
        key = _key(text)
        if key in accepted:
            return key
        raise ValueError(f"cgwd supports only {' or '.join(accepted)}")

    return check


def ike_version(text: str) -> IkeVersion:
    """``ikev1`` or ``ikev2`` from ``IKEv1``, ``ikev2`` ..."""
    key = _key(text)
    if key == "ikev1":
        return "ikev1"
    if key == "ikev2":
        return "ikev2"
    raise ValueError("expected IKEv1 or IKEv2")


def dpd_action(text: str) -> Literal["clear", "none", "restart"]:
    """AWS's DPD timeout action; Openswan's ``restart_by_peer`` is a restart too."""
    key = _key(text)
    if key == "clear":
        return "clear"
    if key == "none":
        return "none"
    if key in ("restart", "restart_by_peer"):
        return "restart"
    raise ValueError("expected clear, none or restart")


def startup_action(text: str) -> Literal["add", "start"]:
    key = _key(text)
    if key == "add":
        return "add"
    if key == "start":
        return "start"
    raise ValueError("expected add or start")


def ipv4(text: str) -> IPv4Address:
    """A dotted-quad IPv4 address, parsed strictly (``169.254.256.9`` and ``010.1.1.1`` fail)."""
    try:
        return IPv4Address(text.strip())
    except ValueError:
        raise ValueError("not an IPv4 address") from None


def ipv4_interface(text: str) -> IPv4Interface:
    """An address with its prefix: ``169.254.141.38/30`` or ``169.254.141.38 255.255.255.252``.

    A bare address gets /32, which the /30 check later rejects unless the caller knows
    the prefix from elsewhere.
    """
    parts = text.split()
    if len(parts) == 2:
        address, mask = parts
        spec = f"{address}/{mask}"
    elif len(parts) == 1:
        spec = parts[0]
    else:
        raise ValueError("expected ADDRESS/PREFIX or ADDRESS NETMASK")
    address = spec.partition("/")[0]
    ipv4(address)  # strict dotted quad before ipaddress' laxer netmask handling
    try:
        return IPv4Interface(spec)
    except ValueError:
        raise ValueError("not an IPv4 address with a prefix or netmask") from None


def ipv6_interface(text: str) -> IPv6Interface:
    """An IPv6 address with its prefix, ``fd00::1/126``."""
    try:
        return IPv6Interface(text.strip())
    except ValueError:
        raise ValueError("not an IPv6 address with a prefix") from None


def ipv4_network(text: str) -> IPv4Network:
    """A network in CIDR form, ``169.254.141.36/30`` (host bits must be zero)."""
    address, _, prefix = text.strip().partition("/")
    ipv4(address)
    try:
        return IPv4Network(f"{address}/{integer(prefix)}")
    except ValueError:
        raise ValueError("not an IPv4 network in CIDR form") from None


def inside_ipv6_network(text: str) -> IPv6Network:
    """The inside IPv6 block from ``fd00::/126`` or an address with its prefix.

    AWS's XML may print the address with prefix 128, but the tunnel's block is a /126.
    """
    interface = ipv6_interface(text)
    if interface.network.prefixlen == 128:
        return IPv6Interface(f"{interface.ip}/126").network
    return interface.network
