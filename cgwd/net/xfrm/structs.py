"""The XFRM netlink ABI (<linux/xfrm.h>) as pyroute2 nlmsg/nla classes.

pyroute2 0.9 knows the XFRM *link* type but none of the SA/policy messages, so they are
declared here. Nested C structs (``xfrm_selector``, ``xfrm_id``, ``xfrm_lifetime_cfg``, ...)
are flattened into one field list per message with the C padding written out as ``x``
fields, so every layout can be checked against its ``sizeof``: ``xfrm_usersa_info`` 224,
``xfrm_userpolicy_info`` 168, ``xfrm_user_tmpl`` 64, ``xfrm_userspi_info`` 232 bytes.
Multi-byte fields are host-endian except the ones the kernel keeps in network order
(SPI, ports: ``__be32``/``__be16``), which use ``>``. The typed API is
`cgwd.net.xfrm.messages`.
"""

from __future__ import annotations

import struct
from typing import ClassVar, Final

from pyroute2.netlink import nla, nlmsg

from cgwd.errors import CgwdError

# -- message types (<linux/xfrm.h>, XFRM_MSG_BASE = 0x10) ------------------------------
XFRM_MSG_NEWSA: Final = 0x10
XFRM_MSG_DELSA: Final = 0x11
XFRM_MSG_GETSA: Final = 0x12
XFRM_MSG_NEWPOLICY: Final = 0x13
XFRM_MSG_DELPOLICY: Final = 0x14
XFRM_MSG_GETPOLICY: Final = 0x15
XFRM_MSG_ALLOCSPI: Final = 0x16
XFRM_MSG_ACQUIRE: Final = 0x17
XFRM_MSG_EXPIRE: Final = 0x18
XFRM_MSG_UPDPOLICY: Final = 0x19
XFRM_MSG_UPDSA: Final = 0x1A
XFRM_MSG_POLEXPIRE: Final = 0x1B

NLMSG_ERROR: Final = 2
NLMSG_DONE: Final = 3

# Multicast groups (enum xfrm_nlgroups); a socket joins group N with bit 1 << (N - 1).
XFRMNLGRP_ACQUIRE: Final = 1
XFRMNLGRP_EXPIRE: Final = 2

# -- attribute types (enum xfrm_attr_type_t) -----------------------------------------
XFRMA_ALG_AUTH: Final = 1
XFRMA_ALG_CRYPT: Final = 2
XFRMA_ENCAP: Final = 4
XFRMA_TMPL: Final = 5
XFRMA_LTIME_VAL: Final = 9
XFRMA_REPLAY_VAL: Final = 10
XFRMA_SRCADDR: Final = 13
XFRMA_LASTUSED: Final = 15  # u64: wall-clock seconds of the SA's last packet
XFRMA_ALG_AEAD: Final = 18
XFRMA_ALG_AUTH_TRUNC: Final = 20
XFRMA_MARK: Final = 21
XFRMA_REPLAY_ESN_VAL: Final = 23
XFRMA_IF_ID: Final = 31

# -- values ---------------------------------------------------------------------------
IPPROTO_ESP: Final = 50  # RFC 4303
XFRM_MODE_TUNNEL: Final = 1
XFRM_POLICY_IN: Final = 0
XFRM_POLICY_OUT: Final = 1
XFRM_POLICY_FWD: Final = 2
XFRM_POLICY_ALLOW: Final = 0
XFRM_POLICY_BLOCK: Final = 1
XFRM_STATE_ESN: Final = 128  # xfrm_usersa_info.flags
UDP_ENCAP_ESPINUDP: Final = 2  # RFC 3948 (non-ESP marker on IKE), <linux/udp.h>
XFRM_INF: Final = 0xFFFFFFFFFFFFFFFF  # "no limit" in xfrm_lifetime_cfg
REPLAY_BITMAP_BITS: Final = 32  # xfrm_replay_state.bitmap: larger windows need ESN_VAL
MAX_REPLAY_WINDOW: Final = 4096  # XFRMA_REPLAY_ESN_VAL limit in the kernel (bmp_len <= 128)
XFRM_ALG_NAME_LEN: Final = 64

DIRECTIONS: Final = {"in": XFRM_POLICY_IN, "out": XFRM_POLICY_OUT, "fwd": XFRM_POLICY_FWD}


class XfrmDecodeError(CgwdError):
    """A message from the kernel is truncated or does not have the expected layout."""


# -- flattened C structs -------------------------------------------------------------

FieldList = tuple[tuple[str, str], ...]


def _selector(prefix: str) -> FieldList:
    """struct xfrm_selector (56 bytes)."""
    return (
        (f"{prefix}daddr", "16s"),
        (f"{prefix}saddr", "16s"),
        (f"{prefix}dport", ">H"),
        (f"{prefix}dport_mask", ">H"),
        (f"{prefix}sport", ">H"),
        (f"{prefix}sport_mask", ">H"),
        (f"{prefix}family", "H"),
        (f"{prefix}prefixlen_d", "B"),
        (f"{prefix}prefixlen_s", "B"),
        (f"{prefix}proto", "B"),
        (f"__{prefix}pad", "3x"),  # int ifindex is 4-aligned
        (f"{prefix}ifindex", "i"),
        (f"{prefix}user", "I"),
    )


_LIFETIME_CFG: FieldList = tuple(
    (f"lft_{name}", "Q")
    for name in (
        "soft_byte_limit",
        "hard_byte_limit",
        "soft_packet_limit",
        "hard_packet_limit",
        "soft_add_expires_seconds",
        "hard_add_expires_seconds",
        "soft_use_expires_seconds",
        "hard_use_expires_seconds",
    )
)  # struct xfrm_lifetime_cfg (64 bytes)
_LIFETIME_CUR: FieldList = (
    ("cur_bytes", "Q"),
    ("cur_packets", "Q"),
    ("cur_add_time", "Q"),
    ("cur_use_time", "Q"),
)  # struct xfrm_lifetime_cur (32 bytes)

USERSA_INFO_FIELDS: FieldList = (
    *_selector("sel_"),
    # struct xfrm_id (24 bytes)
    ("id_daddr", "16s"),
    ("id_spi", ">I"),
    ("id_proto", "B"),
    ("__id_pad", "3x"),
    ("saddr", "16s"),
    *_LIFETIME_CFG,
    *_LIFETIME_CUR,
    # struct xfrm_stats (12 bytes)
    ("stats_replay_window", "I"),
    ("stats_replay", "I"),
    ("stats_integrity_failed", "I"),
    ("seq", "I"),
    ("reqid", "I"),
    ("family", "H"),
    ("mode", "B"),
    ("replay_window", "B"),
    ("flags", "B"),
    ("__tail_pad", "7x"),  # the struct holds __u64s: sizeof is a multiple of 8
)

USERPOLICY_INFO_FIELDS: FieldList = (
    *_selector("sel_"),
    *_LIFETIME_CFG,
    *_LIFETIME_CUR,
    ("priority", "I"),
    ("index", "I"),
    ("dir", "B"),
    ("action", "B"),
    ("flags", "B"),
    ("share", "B"),
    ("__tail_pad", "4x"),
)

USER_TMPL_FIELDS: FieldList = (
    ("id_daddr", "16s"),
    ("id_spi", ">I"),
    ("id_proto", "B"),
    ("__id_pad", "3x"),
    ("family", "H"),
    ("__family_pad", "2x"),  # xfrm_address_t is 4-aligned
    ("saddr", "16s"),
    ("reqid", "I"),
    ("mode", "B"),
    ("share", "B"),
    ("optional", "B"),
    ("__opt_pad", "x"),
    ("aalgos", "I"),
    ("ealgos", "I"),
    ("calgos", "I"),
)

USERSA_ID_FIELDS: FieldList = (
    ("daddr", "16s"),
    ("spi", ">I"),
    ("family", "H"),
    ("proto", "B"),
    ("__pad", "x"),
)

USERPOLICY_ID_FIELDS: FieldList = (
    *_selector("sel_"),
    ("index", "I"),
    ("dir", "B"),
    ("__pad", "3x"),
)


def _byte_defaults(fields: FieldList) -> dict[str, bytes]:
    """pyroute2 fills unset fields with 0, which ``struct`` refuses for ``s`` fields."""
    return {name: b"" for name, fmt in fields if fmt.endswith("s")}


def struct_size(fields: FieldList) -> int:
    """sizeof() of a flattened struct (fields are packed as listed)."""
    return sum(struct.calcsize(fmt if fmt[0] in "<>=!" else "=" + fmt) for _, fmt in fields)


# -- NLA classes ---------------------------------------------------------------------


class _AlgBase(nla):  # type: ignore[misc]
    """struct xfrm_algo{,_auth,_aead}: a 64-byte name, lengths in bits, then the key."""

    __slots__ = ()
    fixed_fields: FieldList = ()

    def ft_decode(self, offset: int) -> None:
        pos = offset
        for name, fmt in self.fixed_fields:
            (self[name],) = struct.unpack_from("=" + fmt, self.data, pos)
            pos += struct.calcsize("=" + fmt)
        end = self.offset + self.length
        if end < pos:
            raise XfrmDecodeError("algorithm attribute shorter than its header")
        self["alg_key"] = bytes(self.data[pos:end])
        del self["attrs"]
        if "value" in self:
            del self["value"]


class xfrm_algo(_AlgBase):
    __slots__ = ()
    fixed_fields = (("alg_name", "64s"), ("alg_key_len", "I"))
    fields = (*fixed_fields, ("alg_key", "s"))


class xfrm_algo_auth(_AlgBase):
    __slots__ = ()
    fixed_fields = (("alg_name", "64s"), ("alg_key_len", "I"), ("alg_trunc_len", "I"))
    fields = (*fixed_fields, ("alg_key", "s"))


class xfrm_algo_aead(_AlgBase):
    __slots__ = ()
    fixed_fields = (("alg_name", "64s"), ("alg_key_len", "I"), ("alg_icv_len", "I"))
    fields = (*fixed_fields, ("alg_key", "s"))


class xfrm_encap_tmpl(nla):  # type: ignore[misc]
    __slots__ = ()
    fields = (
        ("encap_type", "H"),
        ("encap_sport", ">H"),
        ("encap_dport", ">H"),
        ("__pad", "2x"),
        ("encap_oa", "16s"),
    )
    defaults: ClassVar[dict[str, bytes]] = {"encap_oa": b""}


class xfrm_mark(nla):  # type: ignore[misc]
    __slots__ = ()
    fields = (("v", "I"), ("m", "I"))


class xfrm_replay_state_esn(nla):  # type: ignore[misc]
    """The fixed part only: the kernel accepts the attribute without the bitmap (it starts
    zeroed), which is also what iproute2 sends."""

    __slots__ = ()
    fields = (
        ("bmp_len", "I"),
        ("oseq", "I"),
        ("seq", "I"),
        ("oseq_hi", "I"),
        ("seq_hi", "I"),
        ("replay_window", "I"),
    )


class xfrm_replay_state(nla):  # type: ignore[misc]
    __slots__ = ()
    fields = (("oseq", "I"), ("seq", "I"), ("bitmap", "I"))


class xfrm_lifetime_cur_nla(nla):  # type: ignore[misc]
    __slots__ = ()
    fields = (("bytes", "Q"), ("packets", "Q"), ("add_time", "Q"), ("use_time", "Q"))


class xfrm_user_tmpl(nla):  # type: ignore[misc]
    __slots__ = ()
    fields = USER_TMPL_FIELDS
    defaults = _byte_defaults(USER_TMPL_FIELDS)


class xfrm_address(nla):  # type: ignore[misc]
    __slots__ = ()
    fields = (("addr", "16s"),)
    defaults: ClassVar[dict[str, bytes]] = {"addr": b""}


_XFRM_NLA_MAP: tuple[tuple[int, str, str], ...] = (
    (XFRMA_ALG_AUTH, "XFRMA_ALG_AUTH", "xfrm_algo"),
    (XFRMA_ALG_CRYPT, "XFRMA_ALG_CRYPT", "xfrm_algo"),
    (XFRMA_ENCAP, "XFRMA_ENCAP", "xfrm_encap_tmpl"),
    (XFRMA_TMPL, "XFRMA_TMPL", "xfrm_user_tmpl"),
    (XFRMA_LTIME_VAL, "XFRMA_LTIME_VAL", "xfrm_lifetime_cur_nla"),
    (XFRMA_REPLAY_VAL, "XFRMA_REPLAY_VAL", "xfrm_replay_state"),
    (XFRMA_SRCADDR, "XFRMA_SRCADDR", "xfrm_address"),
    (XFRMA_LASTUSED, "XFRMA_LASTUSED", "uint64"),
    (XFRMA_ALG_AEAD, "XFRMA_ALG_AEAD", "xfrm_algo_aead"),
    (XFRMA_ALG_AUTH_TRUNC, "XFRMA_ALG_AUTH_TRUNC", "xfrm_algo_auth"),
    (XFRMA_MARK, "XFRMA_MARK", "xfrm_mark"),
    (XFRMA_REPLAY_ESN_VAL, "XFRMA_REPLAY_ESN_VAL", "xfrm_replay_state_esn"),
    (XFRMA_IF_ID, "XFRMA_IF_ID", "uint32"),
)


class _XfrmMsg(nlmsg):  # type: ignore[misc]
    """Base of the XFRM messages: pyroute2 looks NLA classes up by name on the message."""

    __slots__ = ()
    nla_map = _XFRM_NLA_MAP
    xfrm_algo = xfrm_algo
    xfrm_algo_auth = xfrm_algo_auth
    xfrm_algo_aead = xfrm_algo_aead
    xfrm_encap_tmpl = xfrm_encap_tmpl
    xfrm_user_tmpl = xfrm_user_tmpl
    xfrm_lifetime_cur_nla = xfrm_lifetime_cur_nla
    xfrm_replay_state = xfrm_replay_state
    xfrm_replay_state_esn = xfrm_replay_state_esn
    xfrm_mark = xfrm_mark
    xfrm_address = xfrm_address


class xfrm_usersa_info(_XfrmMsg):
    __slots__ = ()
    fields = USERSA_INFO_FIELDS
    defaults = _byte_defaults(USERSA_INFO_FIELDS)


class xfrm_userspi_info(_XfrmMsg):
    __slots__ = ()
    fields = (*USERSA_INFO_FIELDS, ("min", "I"), ("max", "I"))
    defaults = _byte_defaults(USERSA_INFO_FIELDS)


class xfrm_usersa_id(_XfrmMsg):
    __slots__ = ()
    fields = USERSA_ID_FIELDS
    defaults = _byte_defaults(USERSA_ID_FIELDS)


class xfrm_userpolicy_info(_XfrmMsg):
    __slots__ = ()
    fields = USERPOLICY_INFO_FIELDS
    defaults = _byte_defaults(USERPOLICY_INFO_FIELDS)


class xfrm_userpolicy_id(_XfrmMsg):
    __slots__ = ()
    fields = USERPOLICY_ID_FIELDS
    defaults = _byte_defaults(USERPOLICY_ID_FIELDS)


class xfrm_user_expire(_XfrmMsg):
    __slots__ = ()
    fields = (*USERSA_INFO_FIELDS, ("hard", "B"), ("__pad", "7x"))
    defaults = _byte_defaults(USERSA_INFO_FIELDS)


class xfrm_user_polexpire(_XfrmMsg):
    __slots__ = ()
    fields = (*USERPOLICY_INFO_FIELDS, ("hard", "B"), ("__pad", "7x"))
    defaults = _byte_defaults(USERPOLICY_INFO_FIELDS)
