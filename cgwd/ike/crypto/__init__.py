"""IKE cryptography: PRFs, integrity and encryption primitives, DH groups (shared by IKEv1
and IKEv2), and the IKEv2 key schedules and Encrypted payload (`ikev2_keys`, `ikev2_sk`).
"""

from cgwd.ike.crypto.cipher import (
    SUPPORTED_ENCRS,
    AesGcm,
    EncrAlgorithm,
    aes_cbc_decrypt,
    aes_cbc_encrypt,
    encr_algorithm,
)
from cgwd.ike.crypto.dh import SUPPORTED_DH_GROUPS, dh_group
from cgwd.ike.crypto.ikev2_keys import (
    KEY_PAD,
    IkeKeys,
    auth_signed_octets,
    child_keymat,
    derive_ike_keys,
    derive_rekeyed_ike_keys,
    psk_auth,
    skeyseed,
    split_child_keymat,
)
from cgwd.ike.crypto.ikev2_sk import SkCipher
from cgwd.ike.crypto.integ import SUPPORTED_INTEGS, IntegAlgorithm, integ_algorithm
from cgwd.ike.crypto.kex import DhGroup, DhPrivate, InvalidKeyExchange
from cgwd.ike.crypto.prf import (
    SUPPORTED_PRFS,
    prf,
    prf_key_length,
    prf_output_length,
    prf_plus,
)
from cgwd.ike.crypto.suite import IkeSuite

__all__ = [
    "KEY_PAD",
    "SUPPORTED_DH_GROUPS",
    "SUPPORTED_ENCRS",
    "SUPPORTED_INTEGS",
    "SUPPORTED_PRFS",
    "AesGcm",
    "DhGroup",
    "DhPrivate",
    "EncrAlgorithm",
    "IkeKeys",
    "IkeSuite",
    "IntegAlgorithm",
    "InvalidKeyExchange",
    "SkCipher",
    "aes_cbc_decrypt",
    "aes_cbc_encrypt",
    "auth_signed_octets",
    "child_keymat",
    "derive_ike_keys",
    "derive_rekeyed_ike_keys",
    "dh_group",
    "encr_algorithm",
    "integ_algorithm",
    "prf",
    "prf_key_length",
    "prf_output_length",
    "prf_plus",
    "psk_auth",
    "skeyseed",
    "split_child_keymat",
]
