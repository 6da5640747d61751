"""The key exchange interface every Diffie-Hellman group implements (IKEv1 and IKEv2).

`DhGroup.generate` draws the private value from an injected `Rng`; the public value is
the KE payload's data as RFC 7296 §3.4 / RFC 5903 §7 / RFC 8031 §2 encode it, and
`DhPrivate.shared_secret` applies the RFC 6989 checks to the peer's value first.
`DhGroup` here is the implementation; `cgwd.ike.constants.DhGroup` holds the IANA numbers.
"""

from __future__ import annotations

from abc import ABC, abstractmethod

from cgwd.ike.rng import Rng
from cgwd.secret import Secret


class InvalidKeyExchange(Exception):
    """The peer's public value is malformed or fails a RFC 6989 check.

    In IKE_SA_INIT the responder drops the exchange (or answers INVALID_SYNTAX); in
    CREATE_CHILD_SA the exchange fails. The message never contains key material.
    """


class DhGroup(ABC):
    """A Diffie-Hellman group (MODP, ECP or Curve25519)."""

    group_id: int
    public_length: int  # octets of the KE payload's key exchange data

    @abstractmethod
    def generate(self, rng: Rng) -> DhPrivate:
        """A fresh private value and its public value."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}(group={self.group_id})"


class DhPrivate(ABC):
    """Our half of one exchange. Its repr never shows the private value."""

    group: DhGroup

    @abstractmethod
    def public_bytes(self) -> bytes:
        """The KE payload data for our public value."""

    @abstractmethod
    def shared_secret(self, peer_public: bytes) -> Secret:
        """g^ir as IKE uses it (fixed length, big endian). Raises `InvalidKeyExchange`."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}(group={self.group.group_id}, private=<redacted>)"
