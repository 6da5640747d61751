"""IKEv2 key schedules and PSK authentication (RFC 7296 §2.13-2.15, 2.17, 2.18).

Nonces and SPIs enter "stripped of any headers": the Nonce payload data and the 8-octet
SPIs. The shared secret is g^ir as `cgwd.ike.crypto.kex.DhPrivate.shared_secret` returns.
Only HMAC PRFs are supported, so prf(Ni | Nr, ...) keys with the whole concatenation
(§2.14: the 64-bit halves rule applies to fixed-key PRFs such as AES-XCBC only).
"""

from __future__ import annotations

from dataclasses import dataclass

from cgwd.ike.crypto.ikev2_sk import SkCipher
from cgwd.ike.crypto.prf import prf, prf_plus
from cgwd.ike.crypto.suite import IkeSuite
from cgwd.secret import Secret

KEY_PAD = b"Key Pad for IKEv2"  # RFC 7296 §2.15


def _raw(value: bytes | Secret) -> bytes:
    return value.reveal() if isinstance(value, Secret) else value


def _spi(value: int | bytes) -> bytes:
    if isinstance(value, int):
        return value.to_bytes(8, "big")
    if len(value) != 8:
        raise ValueError("IKE SPIs are 8 octets")
    return value


@dataclass(frozen=True)
class IkeKeys:
    """The seven keys of an IKE SA (RFC 7296 §2.14), all `Secret`."""

    sk_d: Secret
    sk_ai: Secret
    sk_ar: Secret
    sk_ei: Secret
    sk_er: Secret
    sk_pi: Secret
    sk_pr: Secret

    def sk_ciphers(self, suite: IkeSuite, *, initiator: bool) -> tuple[SkCipher, SkCipher]:
        """(outbound, inbound) Encrypted-payload ciphers for the original initiator or not."""
        i2r = SkCipher(suite, self.sk_ei, self.sk_ai if suite.integ else None)
        r2i = SkCipher(suite, self.sk_er, self.sk_ar if suite.integ else None)
        return (i2r, r2i) if initiator else (r2i, i2r)

    def sk_p(self, *, initiator: bool) -> Secret:
        """SK_pi for the initiator's AUTH, SK_pr for the responder's."""
        return self.sk_pi if initiator else self.sk_pr


def skeyseed(prf_id: int, ni: bytes, nr: bytes, shared_secret: bytes | Secret) -> Secret:
    """SKEYSEED = prf(Ni | Nr, g^ir) (RFC 7296 §2.14)."""
    return Secret(prf(prf_id, ni + nr, _raw(shared_secret)))


def _split_ike_keys(
    suite: IkeSuite, *, skeyseed_value: Secret, ni: bytes, nr: bytes, spi_i: bytes, spi_r: bytes
) -> IkeKeys:
    # {SK_d | SK_ai | SK_ar | SK_ei | SK_er | SK_pi | SK_pr} = prf+(SKEYSEED, Ni|Nr|SPIi|SPIr)
    lengths = (
        suite.prf_key_bytes,
        suite.integ_key_bytes,
        suite.integ_key_bytes,
        suite.encr_key_bytes,
        suite.encr_key_bytes,
        suite.prf_key_bytes,
        suite.prf_key_bytes,
    )
    stream = prf_plus(suite.prf_id, skeyseed_value, ni + nr + spi_i + spi_r, sum(lengths))
    keys: list[Secret] = []
    offset = 0
    for n in lengths:
        keys.append(Secret(stream[offset : offset + n]))
        offset += n
    return IkeKeys(*keys)


def derive_ike_keys(  # noqa: PLR0917 (the contract's positional shape)
    suite: IkeSuite,
    ni: bytes,
    nr: bytes,
    shared_secret: bytes | Secret,
    spi_i: int | bytes,
    spi_r: int | bytes,
) -> IkeKeys:
    """The keys of a new IKE SA from IKE_SA_INIT (RFC 7296 §2.14). ``ValueError`` on bad SPIs."""
    seed = skeyseed(suite.prf_id, ni, nr, shared_secret)
    return _split_ike_keys(
        suite, skeyseed_value=seed, ni=ni, nr=nr, spi_i=_spi(spi_i), spi_r=_spi(spi_r)
    )


def derive_rekeyed_ike_keys(  # noqa: PLR0917
    suite: IkeSuite,
    old_sk_d: bytes | Secret,
    shared_secret: bytes | Secret,
    ni: bytes,
    nr: bytes,
    spi_i: int | bytes,
    spi_r: int | bytes,
    *,
    old_prf_id: int | None = None,
) -> IkeKeys:
    """The keys of an IKE SA created by rekeying (RFC 7296 §2.18).

    SKEYSEED = prf(SK_d (old), g^ir (new) | Ni | Nr), computed with the OLD IKE SA's PRF
    (pass ``old_prf_id`` when the new suite's PRF differs); the rest uses ``suite`` and
    the new SPIs, with Ni/Nr of the CREATE_CHILD_SA exchange.

    Interop note: when the PRF changes, implementations disagree on prf+. This follows the
    RFC text (new PRF for prf+, as libreswan does); strongSwan 5.9 uses the old PRF for
    prf+ as well. Exchanges should therefore keep the PRF when rekeying an IKE SA
    (propose, and prefer, the current one); with the same PRF both readings agree, which
    tests/netns/test_ike_crypto_strongswan.py checks against charon.
    """
    prf_id = suite.prf_id if old_prf_id is None else old_prf_id
    seed = Secret(prf(prf_id, old_sk_d, _raw(shared_secret) + ni + nr))
    return _split_ike_keys(
        suite, skeyseed_value=seed, ni=ni, nr=nr, spi_i=_spi(spi_i), spi_r=_spi(spi_r)
    )


def child_keymat(  # noqa: PLR0917
    prf_id: int,
    sk_d: bytes | Secret,
    ni: bytes,
    nr: bytes,
    length: int,
    shared_secret: bytes | Secret | None = None,
) -> Secret:
    """KEYMAT = prf+(SK_d, [g^ir (new) |] Ni | Nr) (RFC 7296 §2.17).

    ``length`` covers both directions; the keys are taken initiator-to-responder first,
    each direction as encryption key (with GCM salt) then integrity key: see
    `split_child_keymat`. ``ValueError`` if prf+ cannot produce that much.
    """
    seed = (b"" if shared_secret is None else _raw(shared_secret)) + ni + nr
    return Secret(prf_plus(prf_id, sk_d, seed, length))


def split_child_keymat(keymat: Secret, per_direction: int) -> tuple[Secret, Secret]:
    """(initiator-to-responder, responder-to-initiator) halves of a child KEYMAT."""
    raw = keymat.reveal()
    if len(raw) != 2 * per_direction:
        raise ValueError("KEYMAT length does not match two directions")
    return Secret(raw[:per_direction]), Secret(raw[per_direction:])


def auth_signed_octets(
    prf_id: int, message: bytes, peer_nonce: bytes, sk_p: bytes | Secret, id_body: bytes
) -> bytes:
    """<InitiatorSignedOctets> / <ResponderSignedOctets> (RFC 7296 §2.15).

    ``message``: our own first message (the IKE_SA_INIT request for the initiator, the
    response for the responder) exactly as sent; ``peer_nonce``: the other side's nonce
    data; ``sk_p``: SK_pi or SK_pr of the side being authenticated; ``id_body``: the ID
    payload body of that side (ID type, three reserved octets, data: `IdPayload.body`).
    """
    return message + peer_nonce + prf(prf_id, sk_p, id_body)


def psk_auth(prf_id: int, psk: Secret, signed_octets: bytes) -> bytes:
    """AUTH = prf(prf(Shared Secret, "Key Pad for IKEv2"), <SignedOctets>) (§2.15)."""
    return prf(prf_id, prf(prf_id, psk, KEY_PAD), signed_octets)
