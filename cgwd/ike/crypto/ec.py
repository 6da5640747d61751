"""Elliptic-curve groups: ECP 19/20/21 (RFC 5903) and Curve25519, group 31 (RFC 8031).

Key exchange data: ECP is x | y, each coordinate padded to the field size, without the
0x04 point-format octet (RFC 5903 §7); the shared secret is the x coordinate (§9).
Curve25519 is the 32-octet u coordinate (RFC 8031 §2). RFC 6989 checks: the peer's ECP
point must lie on the curve (cryptography refuses others), and an all-zero X25519 result is
rejected (RFC 8031 §2.3).
"""

from __future__ import annotations

from cryptography.hazmat.primitives.asymmetric import ec, x25519

from cgwd.ike.constants import DhGroup as DhGroupId
from cgwd.ike.crypto.kex import DhGroup, DhPrivate, InvalidKeyExchange
from cgwd.ike.rng import Rng
from cgwd.secret import Secret


class EcpGroup(DhGroup):
    """A NIST prime curve; ``order`` is the base point order n (SEC 2 / FIPS 186-4 D.1.2)."""

    def __init__(self, group_id: int, curve: ec.EllipticCurve, coordinate_bytes: int, order: int):
        self.group_id = group_id
        self.curve = curve
        self.coordinate_bytes = coordinate_bytes
        self.order = order
        self.public_length = 2 * coordinate_bytes

    def generate(self, rng: Rng) -> EcpPrivate:
        bits = self.order.bit_length()
        while True:  # rejection sampling: uniform in [1, n-1]
            d = int.from_bytes(rng.bytes((bits + 7) // 8), "big") & ((1 << bits) - 1)
            if 1 <= d < self.order:
                return EcpPrivate(self, ec.derive_private_key(d, self.curve))

    def load_public(self, data: bytes) -> ec.EllipticCurvePublicKey:
        if len(data) != self.public_length:
            raise InvalidKeyExchange(
                f"group {self.group_id}: public value is {len(data)} octets,"
                f" expected {self.public_length}"
            )
        try:
            return ec.EllipticCurvePublicKey.from_encoded_point(self.curve, b"\x04" + data)
        except ValueError:
            raise InvalidKeyExchange(f"group {self.group_id}: point not on the curve") from None


class EcpPrivate(DhPrivate):
    __slots__ = ("_key", "_public", "group")

    def __init__(self, group: EcpGroup, key: ec.EllipticCurvePrivateKey) -> None:
        self.group: EcpGroup = group
        self._key = key
        numbers = key.public_key().public_numbers()
        size = group.coordinate_bytes
        self._public = numbers.x.to_bytes(size, "big") + numbers.y.to_bytes(size, "big")

    def public_bytes(self) -> bytes:
        return self._public

    def shared_secret(self, peer_public: bytes) -> Secret:
        peer = self.group.load_public(peer_public)
        try:
            return Secret(self._key.exchange(ec.ECDH(), peer))
        except ValueError:
            raise InvalidKeyExchange(f"group {self.group.group_id}: ECDH failed") from None


class Curve25519Group(DhGroup):
    group_id = int(DhGroupId.CURVE25519)
    public_length = 32

    def generate(self, rng: Rng) -> X25519Private:
        # RFC 7748 §5: any 32 octets; the library clamps.
        return X25519Private(self, x25519.X25519PrivateKey.from_private_bytes(rng.bytes(32)))


class X25519Private(DhPrivate):
    __slots__ = ("_key", "_public", "group")

    def __init__(self, group: Curve25519Group, key: x25519.X25519PrivateKey) -> None:
        self.group: Curve25519Group = group
        self._key = key
        self._public = key.public_key().public_bytes_raw()

    def public_bytes(self) -> bytes:
        return self._public

    def shared_secret(self, peer_public: bytes) -> Secret:
        if len(peer_public) != 32:
            raise InvalidKeyExchange(f"group 31: public value is {len(peer_public)} octets")
        try:
            z = self._key.exchange(x25519.X25519PublicKey.from_public_bytes(peer_public))
        except ValueError:  # cryptography refuses the all-zero result
            raise InvalidKeyExchange("group 31: all-zero shared secret") from None
        if z == bytes(32):
            raise InvalidKeyExchange("group 31: all-zero shared secret")
        return Secret(z)


EC_GROUPS: dict[int, DhGroup] = {
    g.group_id: g
    for g in (
        EcpGroup(
            DhGroupId.ECP_256,
            ec.SECP256R1(),
            32,
            0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551,
        ),
        EcpGroup(
            DhGroupId.ECP_384,
            ec.SECP384R1(),
            48,
            int(
                "FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFC7634D81F4372DDF"
                "581A0DB248B0A77AECEC196ACCC52973",
                16,
            ),
        ),
        EcpGroup(
            DhGroupId.ECP_521,
            ec.SECP521R1(),
            66,
            int(
                "01FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF"
                "FA51868783BF2F966B7FCC0148F709A5D03BB5C9B8899C47AEBB6FB71E91386409",
                16,
            ),
        ),
        Curve25519Group(),
    )
}
