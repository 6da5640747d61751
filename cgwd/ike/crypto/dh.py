"""Look up a Diffie-Hellman group by its IANA number (RFC 7296 Transform Type 4 / RFC 2409)."""

from __future__ import annotations

from cgwd.ike.crypto.ec import EC_GROUPS
from cgwd.ike.crypto.kex import DhGroup
from cgwd.ike.crypto.modp import MODP_GROUPS

_GROUPS: dict[int, DhGroup] = {**MODP_GROUPS, **EC_GROUPS}

SUPPORTED_DH_GROUPS: frozenset[int] = frozenset(_GROUPS)


def dh_group(group_id: int) -> DhGroup:
    """The group for an IANA number; ``ValueError`` if we do not implement it."""
    try:
        return _GROUPS[group_id]
    except KeyError:
        raise ValueError(f"unsupported Diffie-Hellman group {group_id}") from None
