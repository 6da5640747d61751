"""XFRM netlink messages (NETLINK_XFRM, <linux/xfrm.h>) on pyroute2's nlmsg/nla classes.

pyroute2 0.9 knows the XFRM *link* type but none of the SA/policy messages, so they are
declared here. Nested C structs (``xfrm_selector``, ``xfrm_id``, ``xfrm_lifetime_cfg``, ...)
are flattened into one field list per message with the C padding written out as ``x``
fields, so every layout can be checked against its ``sizeof``: ``xfrm_usersa_info`` 224,
``xfrm_userpolicy_info`` 168, ``xfrm_user_tmpl`` 64, ``xfrm_userspi_info`` 232 bytes.
Multi-byte fields are host-endian except the ones the kernel keeps in network order
(SPI, ports: ``__be32``/``__be16``), which use ``>``.

This module only encodes and decodes; `cgwd.net.xfrm.socket` does the I/O. Builders take
typed records and return the complete netlink message (header included) as bytes, so the
tests can compare them octet for octet with what ``ip xfrm`` sends. Key material is passed
as `cgwd.secret.Secret` and only revealed into the message buffer.

Errors: decoders raise `XfrmDecodeError` on truncated or malformed input, nothing else.
"""

from __future__ import annotations

import socket
import struct
from collections.abc import Iterator
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network, ip_address
from typing import Any, ClassVar, Final

from pyroute2.netlink import NLM_F_ACK, NLM_F_DUMP, NLM_F_REQUEST, nla, nlmsg

from cgwd.errors import CgwdError
from cgwd.esp.suites import EspSuite
from cgwd.secret import Secret

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


# -- typed records -------------------------------------------------------------------

IPAddress = IPv4Address | IPv6Address
IPNetwork = IPv4Network | IPv6Network


def _family(addr: IPAddress | IPNetwork) -> int:
    return socket.AF_INET if addr.version == 4 else socket.AF_INET6


def _addr16(addr: IPAddress | None) -> bytes:
    """xfrm_address_t: the address at the start of 16 bytes (IPv4 uses the first 4)."""
    return b"" if addr is None else addr.packed.ljust(16, b"\0")


def _addr_from16(raw: bytes, family: int) -> IPAddress:
    return ip_address(raw[:4] if family == socket.AF_INET else raw[:16])


@dataclass(frozen=True)
class Mark:
    """An XFRM mark: a state/policy matches packets whose ``mark & mask == value``."""

    value: int
    mask: int = 0xFFFFFFFF


@dataclass(frozen=True)
class Selector:
    """struct xfrm_selector restricted to what cgwd uses: source/destination prefixes."""

    src: IPNetwork
    dst: IPNetwork

    @staticmethod
    def any4() -> Selector:
        return Selector(IPv4Network("0.0.0.0/0"), IPv4Network("0.0.0.0/0"))


def _selector_values(sel: Selector | None) -> dict[str, Any]:
    if sel is None:
        return {}
    return {
        "sel_daddr": _addr16(sel.dst.network_address),
        "sel_saddr": _addr16(sel.src.network_address),
        "sel_family": _family(sel.dst),
        "sel_prefixlen_d": sel.dst.prefixlen,
        "sel_prefixlen_s": sel.src.prefixlen,
    }


def _infinite_lifetime() -> dict[str, int]:
    # iproute2's and strongSwan's default: no byte/packet limits, no time limits.
    return {
        "lft_soft_byte_limit": XFRM_INF,
        "lft_hard_byte_limit": XFRM_INF,
        "lft_soft_packet_limit": XFRM_INF,
        "lft_hard_packet_limit": XFRM_INF,
    }


@dataclass(frozen=True)
class Lifetime:
    """Soft/hard expiry in seconds after the SA was added (0 = none); the kernel sends an
    EXPIRE event at each (the soft one asks for a rekey)."""

    soft_add_seconds: int = 0
    hard_add_seconds: int = 0


@dataclass(frozen=True)
class UdpEncapsulation:
    """XFRMA_ENCAP: ESP-in-UDP (RFC 3948) between these ports."""

    sport: int
    dport: int


@dataclass(frozen=True)
class SaSpec:
    """Everything an XFRM_MSG_NEWSA/UPDSA carries for one tunnel-mode ESP SA."""

    src: IPAddress
    dst: IPAddress
    spi: int
    suite: EspSuite
    keymat: Secret
    reqid: int = 0
    replay_window: int = 0
    esn: bool = False
    encap: UdpEncapsulation | None = None
    mark: Mark | None = None
    if_id: int | None = None
    lifetime: Lifetime = field(default_factory=Lifetime)
    selector: Selector | None = None

    def __post_init__(self) -> None:
        if self.src.version != self.dst.version:
            raise ValueError("SA source and destination are of different IP versions")
        if not 0 <= self.replay_window <= MAX_REPLAY_WINDOW:
            raise ValueError(f"replay window {self.replay_window} outside 0..{MAX_REPLAY_WINDOW}")
        if len(self.keymat) != self.suite.keymat_bytes:
            raise ValueError(f"suite {self.suite.name} needs {self.suite.keymat_bytes} key bytes")


def _alg_name(name: str) -> bytes:
    raw = name.encode("ascii")
    if len(raw) >= XFRM_ALG_NAME_LEN:
        raise ValueError(f"algorithm name {name!r} too long")
    return raw


def kernel_algorithms(suite: EspSuite) -> list[tuple[str, dict[str, Any]]]:
    """The kernel crypto API names for ``suite``, as (attribute, value without key) pairs.

    GCM (RFC 4106): ``rfc4106(gcm(aes))`` with the ICV length in bits and a key that
    includes the 4-byte salt. CBC (RFC 3602) + HMAC (RFC 2404, RFC 4868): ``cbc(aes)`` and
    ``hmac(shaN)`` with the truncation (ICV) length in bits.
    """
    if suite.aead:
        return [
            (
                "XFRMA_ALG_AEAD",
                {"alg_name": _alg_name("rfc4106(gcm(aes))"), "alg_icv_len": suite.icv_bytes * 8},
            )
        ]
    if suite.hash_name is None:  # pragma: no cover - every non-AEAD suite has an HMAC
        raise ValueError(f"suite {suite.name} has no integrity algorithm")
    return [
        ("XFRMA_ALG_CRYPT", {"alg_name": _alg_name("cbc(aes)")}),
        (
            "XFRMA_ALG_AUTH_TRUNC",
            {
                "alg_name": _alg_name(f"hmac({suite.hash_name})"),
                "alg_trunc_len": suite.icv_bytes * 8,
            },
        ),
    ]


def _header(msg: nlmsg, msg_type: int, flags: int, seq: int) -> None:
    msg["header"]["type"] = msg_type
    msg["header"]["flags"] = flags
    msg["header"]["sequence_number"] = seq
    msg["header"]["pid"] = 0


def _encode(msg: nlmsg) -> bytes:
    msg.encode()
    return bytes(msg.data)


def _sa_attrs(spec: SaSpec) -> list[list[Any]]:
    """Attributes in the order iproute2 emits them for the equivalent command line."""
    attrs: list[list[Any]] = []
    key = spec.keymat.reveal()
    enc_len = len(key) - spec.suite.integrity_key_bytes
    for name, value in kernel_algorithms(spec.suite):
        alg_key = key[enc_len:] if name == "XFRMA_ALG_AUTH_TRUNC" else key[:enc_len]
        attrs.append([name, {**value, "alg_key_len": len(alg_key) * 8, "alg_key": alg_key}])
    if spec.encap is not None:
        attrs.append(
            [
                "XFRMA_ENCAP",
                {
                    "encap_type": UDP_ENCAP_ESPINUDP,
                    "encap_sport": spec.encap.sport,
                    "encap_dport": spec.encap.dport,
                    "encap_oa": b"\0" * 16,
                },
            ]
        )
    if spec.esn or spec.replay_window > REPLAY_BITMAP_BITS:
        # A window wider than the 32-bit legacy bitmap needs the ESN replay state (as
        # iproute2 and strongSwan's kernel_netlink_ipsec.c do); bmp_len counts __u32 words.
        attrs.append(
            [
                "XFRMA_REPLAY_ESN_VAL",
                {
                    "bmp_len": (spec.replay_window + 31) // 32,
                    "replay_window": spec.replay_window,
                },
            ]
        )
    if spec.mark is not None:
        attrs.append(["XFRMA_MARK", {"v": spec.mark.value, "m": spec.mark.mask}])
    if spec.if_id is not None:
        attrs.append(["XFRMA_IF_ID", spec.if_id])
    return attrs


def _usersa_values(spec: SaSpec) -> dict[str, Any]:
    wide = spec.esn or spec.replay_window > REPLAY_BITMAP_BITS
    return {
        **_selector_values(spec.selector),
        "id_daddr": _addr16(spec.dst),
        "id_spi": spec.spi,
        "id_proto": IPPROTO_ESP,
        "saddr": _addr16(spec.src),
        **_infinite_lifetime(),
        "lft_soft_add_expires_seconds": spec.lifetime.soft_add_seconds,
        "lft_hard_add_expires_seconds": spec.lifetime.hard_add_seconds,
        "reqid": spec.reqid,
        "family": _family(spec.dst),
        "mode": XFRM_MODE_TUNNEL,
        "replay_window": 0 if wide else spec.replay_window,
        "flags": XFRM_STATE_ESN if spec.esn else 0,
    }


def encode_newsa(spec: SaSpec, seq: int, *, update: bool = False) -> bytes:
    """XFRM_MSG_NEWSA (or UPDSA, which replaces the larval SA that ALLOCSPI left)."""
    msg = xfrm_usersa_info()
    _header(msg, XFRM_MSG_UPDSA if update else XFRM_MSG_NEWSA, NLM_F_REQUEST | NLM_F_ACK, seq)
    msg.update(_usersa_values(spec))
    msg["attrs"] = _sa_attrs(spec)
    return _encode(msg)


def _sa_id_msg(
    msg_type: int,
    flags: int,
    seq: int,
    *,
    src: IPAddress,
    dst: IPAddress,
    spi: int,
    mark: Mark | None,
) -> bytes:
    msg = xfrm_usersa_id()
    _header(msg, msg_type, flags, seq)
    msg.update({"daddr": _addr16(dst), "spi": spi, "family": _family(dst), "proto": IPPROTO_ESP})
    attrs: list[list[Any]] = [["XFRMA_SRCADDR", {"addr": _addr16(src)}]]
    if mark is not None:
        attrs.append(["XFRMA_MARK", {"v": mark.value, "m": mark.mask}])
    msg["attrs"] = attrs
    return _encode(msg)


def encode_delsa(
    src: IPAddress, dst: IPAddress, spi: int, seq: int, *, mark: Mark | None = None
) -> bytes:
    """XFRM_MSG_DELSA for the ESP SA (dst, spi) with this mark (as ``ip xfrm state delete``)."""
    return _sa_id_msg(
        XFRM_MSG_DELSA, NLM_F_REQUEST | NLM_F_ACK, seq, src=src, dst=dst, spi=spi, mark=mark
    )


def encode_getsa(
    src: IPAddress, dst: IPAddress, spi: int, seq: int, *, mark: Mark | None = None
) -> bytes:
    """XFRM_MSG_GETSA for one SA; the answer is a NEWSA with its counters."""
    return _sa_id_msg(XFRM_MSG_GETSA, NLM_F_REQUEST, seq, src=src, dst=dst, spi=spi, mark=mark)


def encode_dump(msg_type: int, seq: int) -> bytes:
    """A dump request of every SA (GETSA) or policy (GETPOLICY) in the namespace.

    Dumps carry no fixed header: the kernel reads optional filter attributes right after
    the nlmsghdr (``ip xfrm state list`` adds an empty XFRMA_ADDRESS_FILTER, which matches
    everything, as no filter does).
    """
    header = struct.pack("=IHHII", 16, msg_type, NLM_F_REQUEST | NLM_F_DUMP, seq, 0)
    return header


def encode_allocspi(
    src: IPAddress,
    dst: IPAddress,
    seq: int,
    *,
    spi_min: int,
    spi_max: int,
    reqid: int = 0,
    mark: Mark | None = None,
    if_id: int | None = None,
) -> bytes:
    """XFRM_MSG_ALLOCSPI: the kernel picks an unused SPI in [min, max] and holds it in a
    larval SA (expiring after XFRM_ACQ_EXPIRES, 30 s, unless updated)."""
    msg = xfrm_userspi_info()
    _header(msg, XFRM_MSG_ALLOCSPI, NLM_F_REQUEST, seq)
    msg.update(
        {
            "id_daddr": _addr16(dst),
            "id_proto": IPPROTO_ESP,
            "saddr": _addr16(src),
            "reqid": reqid,
            "family": _family(dst),
            "mode": XFRM_MODE_TUNNEL,
            "min": spi_min,
            "max": spi_max,
        }
    )
    attrs: list[list[Any]] = []
    if mark is not None:
        attrs.append(["XFRMA_MARK", {"v": mark.value, "m": mark.mask}])
    if if_id is not None:
        attrs.append(["XFRMA_IF_ID", if_id])
    msg["attrs"] = attrs
    return _encode(msg)


@dataclass(frozen=True)
class PolicyTemplate:
    """The one xfrm_user_tmpl of a tunnel policy: ESP in tunnel mode between two gateways."""

    src: IPAddress
    dst: IPAddress
    reqid: int = 0
    spi: int = 0


@dataclass(frozen=True)
class PolicySpec:
    """A policy as cgwd installs it (XFRM_MSG_NEWPOLICY / UPDPOLICY / DELPOLICY)."""

    selector: Selector
    direction: str  # "in" | "out" | "fwd"
    priority: int = 0
    action: int = XFRM_POLICY_ALLOW
    template: PolicyTemplate | None = None
    mark: Mark | None = None
    if_id: int | None = None

    def __post_init__(self) -> None:
        if self.direction not in DIRECTIONS:
            raise ValueError(f"policy direction {self.direction!r} is not in/out/fwd")


def _tmpl_values(t: PolicyTemplate) -> dict[str, Any]:
    return {
        "id_daddr": _addr16(t.dst),
        "id_spi": t.spi,
        "id_proto": IPPROTO_ESP,
        "family": _family(t.dst),
        "saddr": _addr16(t.src),
        "reqid": t.reqid,
        "mode": XFRM_MODE_TUNNEL,
        # iproute2's and strongSwan's default: any algorithm.
        "aalgos": 0xFFFFFFFF,
        "ealgos": 0xFFFFFFFF,
        "calgos": 0xFFFFFFFF,
    }


def encode_newpolicy(spec: PolicySpec, seq: int, *, update: bool = False) -> bytes:
    """XFRM_MSG_NEWPOLICY (or UPDPOLICY, which replaces one with the same selector/mark)."""
    msg = xfrm_userpolicy_info()
    msg_type = XFRM_MSG_UPDPOLICY if update else XFRM_MSG_NEWPOLICY
    _header(msg, msg_type, NLM_F_REQUEST | NLM_F_ACK, seq)
    msg.update(
        {
            **_selector_values(spec.selector),
            **_infinite_lifetime(),
            "priority": spec.priority,
            "dir": DIRECTIONS[spec.direction],
            "action": spec.action,
        }
    )
    attrs: list[list[Any]] = []
    if spec.template is not None:
        attrs.append(["XFRMA_TMPL", _tmpl_values(spec.template)])
    if spec.mark is not None:
        attrs.append(["XFRMA_MARK", {"v": spec.mark.value, "m": spec.mark.mask}])
    if spec.if_id is not None:
        attrs.append(["XFRMA_IF_ID", spec.if_id])
    msg["attrs"] = attrs
    return _encode(msg)


def encode_delpolicy(
    selector: Selector,
    direction: str,
    seq: int,
    *,
    mark: Mark | None = None,
    if_id: int | None = None,
) -> bytes:
    """XFRM_MSG_DELPOLICY by selector, direction, mark and if_id."""
    msg = xfrm_userpolicy_id()
    _header(msg, XFRM_MSG_DELPOLICY, NLM_F_REQUEST | NLM_F_ACK, seq)
    msg.update({**_selector_values(selector), "dir": DIRECTIONS[direction]})
    attrs: list[list[Any]] = []
    if mark is not None:
        attrs.append(["XFRMA_MARK", {"v": mark.value, "m": mark.mask}])
    if if_id is not None:
        attrs.append(["XFRMA_IF_ID", if_id])
    msg["attrs"] = attrs
    return _encode(msg)


def userpolicy_info_bytes(direction: str, family: int) -> bytes:
    """A bare xfrm_userpolicy_info (no netlink header) allowing everything in ``direction``:
    the IP_XFRM_POLICY socket option value that exempts a socket from IPsec policies."""
    msg = xfrm_userpolicy_info()
    msg.header = None
    msg.update({"sel_family": family, "dir": DIRECTIONS[direction], "action": XFRM_POLICY_ALLOW})
    msg.encode()
    return bytes(msg.data)


# -- decoding ------------------------------------------------------------------------


@dataclass(frozen=True)
class SaInfo:
    """An SA as the kernel reports it (GETSA answer, dump entry, NEWSA/EXPIRE event)."""

    src: IPAddress
    dst: IPAddress
    spi: int
    proto: int
    reqid: int
    mode: int
    flags: int
    replay_window: int
    mark: Mark | None
    if_id: int | None
    algorithms: tuple[str, ...]
    encap: UdpEncapsulation | None
    bytes: int
    packets: int
    add_time: int
    use_time: int
    replay_drops: int  # xfrm_stats.replay: packets refused by the replay window
    integrity_failures: int  # xfrm_stats.integrity_failed
    stats_replay_window: int
    soft_add_seconds: int
    hard_add_seconds: int


@dataclass(frozen=True)
class PolicyInfo:
    """A policy as the kernel reports it."""

    selector: Selector
    direction: str
    action: int
    priority: int
    index: int
    mark: Mark | None
    if_id: int | None
    templates: tuple[PolicyTemplate, ...]


@dataclass(frozen=True)
class ExpireEvent:
    """XFRM_MSG_EXPIRE: ``hard`` False asks for a rekey, True means the SA is gone."""

    sa: SaInfo
    hard: bool


@dataclass(frozen=True)
class Message:
    """One undecoded netlink message: type, flags, sequence number and its bytes."""

    type: int
    flags: int
    seq: int
    data: bytes


def split_messages(data: bytes) -> Iterator[Message]:
    """The netlink messages in a datagram (nlmsghdr: len, type, flags, seq, pid)."""
    offset = 0
    while offset + 16 <= len(data):
        length, msg_type, flags, seq, _pid = struct.unpack_from("=IHHII", data, offset)
        if length < 16 or offset + length > len(data):
            raise XfrmDecodeError(f"netlink message length {length} at offset {offset} is invalid")
        yield Message(msg_type, flags, seq, data[offset : offset + length])
        offset += (length + 3) & ~3


def decode_error(message: Message) -> tuple[int, int]:
    """NLMSG_ERROR: (errno as a positive number or 0 for an ACK, the failed request's seq)."""
    if len(message.data) < 20:
        raise XfrmDecodeError("truncated NLMSG_ERROR")
    (error,) = struct.unpack_from("=i", message.data, 16)
    seq = message.seq
    if len(message.data) >= 36:
        seq = struct.unpack_from("=I", message.data, 28)[0]
    return -error, seq


def _decode(cls: type[nlmsg], data: bytes, size: int) -> nlmsg:
    if len(data) < 16 + size:
        raise XfrmDecodeError(f"{cls.__name__} message of {len(data)} bytes is truncated")
    msg = cls(bytearray(data))
    try:
        msg.decode()
    except XfrmDecodeError:
        raise
    except Exception as exc:  # pyroute2 raises assorted errors on malformed NLAs
        raise XfrmDecodeError(f"cannot decode {cls.__name__}: {exc}") from None
    return msg


def _mark(msg: nlmsg) -> Mark | None:
    value = msg.get_attr("XFRMA_MARK")
    return None if value is None else Mark(int(value["v"]), int(value["m"]))


def _if_id(msg: nlmsg) -> int | None:
    value = msg.get_attr("XFRMA_IF_ID")
    return None if value is None else int(value)


def _selector_from(msg: nlmsg) -> Selector:
    family = int(msg["sel_family"]) or socket.AF_INET
    dst = _addr_from16(msg["sel_daddr"], family)
    src = _addr_from16(msg["sel_saddr"], family)
    net: type[IPv4Network] | type[IPv6Network] = (
        IPv4Network if family == socket.AF_INET else IPv6Network
    )
    try:
        return Selector(
            net(f"{src}/{msg['sel_prefixlen_s']}", strict=False),
            net(f"{dst}/{msg['sel_prefixlen_d']}", strict=False),
        )
    except ValueError as exc:
        raise XfrmDecodeError(f"bad selector: {exc}") from None


USERSA_INFO_SIZE: Final = struct_size(USERSA_INFO_FIELDS)
USERPOLICY_INFO_SIZE: Final = struct_size(USERPOLICY_INFO_FIELDS)


def _sa_from(msg: nlmsg) -> SaInfo:
    family = int(msg["family"])
    if family not in (socket.AF_INET, socket.AF_INET6):
        raise XfrmDecodeError(f"SA with address family {family}")
    algorithms = []
    # The kernel reports an HMAC both as XFRMA_ALG_AUTH_TRUNC and (for old tools) as
    # XFRMA_ALG_AUTH: name it once.
    for name in ("XFRMA_ALG_AEAD", "XFRMA_ALG_CRYPT", "XFRMA_ALG_AUTH_TRUNC", "XFRMA_ALG_AUTH"):
        alg = msg.get_attr(name)
        if alg is None or (name == "XFRMA_ALG_AUTH" and msg.get_attr("XFRMA_ALG_AUTH_TRUNC")):
            continue
        algorithms.append(bytes(alg["alg_name"]).split(b"\0", 1)[0].decode("ascii", "replace"))
    encap_attr = msg.get_attr("XFRMA_ENCAP")
    encap = (
        None
        if encap_attr is None
        else UdpEncapsulation(int(encap_attr["encap_sport"]), int(encap_attr["encap_dport"]))
    )
    window = int(msg["replay_window"])
    esn = msg.get_attr("XFRMA_REPLAY_ESN_VAL")
    if esn is not None:
        window = int(esn["replay_window"])
    return SaInfo(
        src=_addr_from16(msg["saddr"], family),
        dst=_addr_from16(msg["id_daddr"], family),
        spi=int(msg["id_spi"]),
        proto=int(msg["id_proto"]),
        reqid=int(msg["reqid"]),
        mode=int(msg["mode"]),
        flags=int(msg["flags"]),
        replay_window=window,
        mark=_mark(msg),
        if_id=_if_id(msg),
        algorithms=tuple(algorithms),
        encap=encap,
        bytes=int(msg["cur_bytes"]),
        packets=int(msg["cur_packets"]),
        add_time=int(msg["cur_add_time"]),
        use_time=int(msg["cur_use_time"]),
        replay_drops=int(msg["stats_replay"]),
        integrity_failures=int(msg["stats_integrity_failed"]),
        stats_replay_window=int(msg["stats_replay_window"]),
        soft_add_seconds=int(msg["lft_soft_add_expires_seconds"]),
        hard_add_seconds=int(msg["lft_hard_add_expires_seconds"]),
    )


def decode_sa(message: Message) -> SaInfo:
    """A NEWSA/UPDSA message (an SA dump entry or GETSA answer)."""
    return _sa_from(_decode(xfrm_usersa_info, message.data, USERSA_INFO_SIZE))


def decode_expire(message: Message) -> ExpireEvent:
    """An XFRM_MSG_EXPIRE event."""
    msg = _decode(xfrm_user_expire, message.data, USERSA_INFO_SIZE + 8)
    return ExpireEvent(_sa_from(msg), bool(msg["hard"]))


def decode_policy(message: Message) -> PolicyInfo:
    """A NEWPOLICY/UPDPOLICY message (a policy dump entry)."""
    msg = _decode(xfrm_userpolicy_info, message.data, USERPOLICY_INFO_SIZE)
    direction = {v: k for k, v in DIRECTIONS.items()}.get(int(msg["dir"]))
    if direction is None:
        raise XfrmDecodeError(f"policy direction {msg['dir']}")
    templates = []
    for tmpl in msg.get_attrs("XFRMA_TMPL"):
        family = int(tmpl["family"]) or socket.AF_INET
        templates.append(
            PolicyTemplate(
                src=_addr_from16(tmpl["saddr"], family),
                dst=_addr_from16(tmpl["id_daddr"], family),
                reqid=int(tmpl["reqid"]),
                spi=int(tmpl["id_spi"]),
            )
        )
    return PolicyInfo(
        selector=_selector_from(msg),
        direction=direction,
        action=int(msg["action"]),
        priority=int(msg["priority"]),
        index=int(msg["index"]),
        mark=_mark(msg),
        if_id=_if_id(msg),
        templates=tuple(templates),
    )
