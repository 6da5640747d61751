"""XFRM netlink requests and answers (NETLINK_XFRM, <linux/xfrm.h>) as typed records.

Builders take typed records and return the complete netlink message (header included) as
bytes, so the tests can compare them octet for octet with what ``ip xfrm`` sends for the
same request; decoders turn the kernel's answers and events into frozen dataclasses. The
wire layouts live in `cgwd.net.xfrm.structs` (pyroute2 nlmsg/nla classes); the constants
callers need are re-exported here. This module only encodes and decodes;
`cgwd.net.xfrm.socket` does the I/O. Key material is passed as `cgwd.secret.Secret` and only
revealed into the message buffer.

Errors: decoders raise `XfrmDecodeError` on truncated or malformed input, nothing else.
"""

from __future__ import annotations

import socket
import struct
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network, ip_address
from typing import Any, Final, TypeVar

from pyroute2.netlink import NLM_F_ACK, NLM_F_DUMP, NLM_F_REQUEST, nlmsg

from cgwd.esp.suites import EspSuite
from cgwd.net.xfrm.structs import (
    DIRECTIONS,
    IPPROTO_ESP,
    MAX_REPLAY_WINDOW,
    NLMSG_DONE,
    NLMSG_ERROR,
    REPLAY_BITMAP_BITS,
    UDP_ENCAP_ESPINUDP,
    USER_TMPL_FIELDS,
    USERPOLICY_ID_FIELDS,
    USERPOLICY_INFO_FIELDS,
    USERSA_ID_FIELDS,
    USERSA_INFO_FIELDS,
    XFRM_ALG_NAME_LEN,
    XFRM_INF,
    XFRM_MODE_TUNNEL,
    XFRM_MSG_ALLOCSPI,
    XFRM_MSG_DELPOLICY,
    XFRM_MSG_DELSA,
    XFRM_MSG_EXPIRE,
    XFRM_MSG_GETPOLICY,
    XFRM_MSG_GETSA,
    XFRM_MSG_NEWPOLICY,
    XFRM_MSG_NEWSA,
    XFRM_MSG_UPDPOLICY,
    XFRM_MSG_UPDSA,
    XFRM_POLICY_ALLOW,
    XFRM_POLICY_BLOCK,
    XFRM_STATE_ESN,
    XFRMNLGRP_EXPIRE,
    XfrmDecodeError,
    struct_size,
    xfrm_user_expire,
    xfrm_userpolicy_id,
    xfrm_userpolicy_info,
    xfrm_usersa_id,
    xfrm_usersa_info,
    xfrm_userspi_info,
)
from cgwd.secret import Secret

__all__ = [  # the struct constants callers need, and this module's API
    "NLMSG_DONE",
    "NLMSG_ERROR",
    "UDP_ENCAP_ESPINUDP",
    "USERPOLICY_ID_FIELDS",
    "USERPOLICY_INFO_FIELDS",
    "USERSA_ID_FIELDS",
    "USERSA_INFO_FIELDS",
    "USER_TMPL_FIELDS",
    "XFRMNLGRP_EXPIRE",
    "XFRM_MODE_TUNNEL",
    "XFRM_MSG_EXPIRE",
    "XFRM_MSG_GETPOLICY",
    "XFRM_MSG_GETSA",
    "XFRM_MSG_NEWSA",
    "XFRM_POLICY_ALLOW",
    "XFRM_POLICY_BLOCK",
    "XFRM_STATE_ESN",
    "ExpireEvent",
    "Lifetime",
    "Mark",
    "Message",
    "PolicyInfo",
    "PolicySpec",
    "PolicyTemplate",
    "SaInfo",
    "SaSpec",
    "Selector",
    "UdpEncapsulation",
    "XfrmDecodeError",
    "decode_error",
    "decode_expire",
    "decode_policy",
    "decode_sa",
    "encode_allocspi",
    "encode_delpolicy",
    "encode_delsa",
    "encode_dump",
    "encode_getsa",
    "encode_newpolicy",
    "encode_newsa",
    "kernel_algorithms",
    "split_messages",
    "struct_size",
    "userpolicy_info_bytes",
    "xfrm_usersa_info",
]

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
    use_time: int  # wall-clock seconds of the FIRST packet (xfrm_lifetime_cur.use_time)
    last_used: int  # ... of the latest packet (XFRMA_LASTUSED); 0: none yet
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
        last_used=int(msg.get_attr("XFRMA_LASTUSED") or 0),
        replay_drops=int(msg["stats_replay"]),
        integrity_failures=int(msg["stats_integrity_failed"]),
        stats_replay_window=int(msg["stats_replay_window"]),
        soft_add_seconds=int(msg["lft_soft_add_expires_seconds"]),
        hard_add_seconds=int(msg["lft_hard_add_expires_seconds"]),
    )


_T = TypeVar("_T")


def _converted(convert: Callable[[nlmsg], _T], msg: nlmsg) -> _T:
    """``convert(msg)``, with a malformed attribute reported as XfrmDecodeError.

    pyroute2 leaves an attribute it cannot decode as raw bytes, so a field lookup on it
    fails with whatever error the raw value gives; none of those may escape a decoder.
    """
    try:
        return convert(msg)
    except XfrmDecodeError:
        raise
    except (TypeError, KeyError, IndexError, ValueError, AttributeError) as exc:
        raise XfrmDecodeError(f"malformed attribute in {type(msg).__name__}: {exc}") from None


def decode_sa(message: Message) -> SaInfo:
    """A NEWSA/UPDSA message (an SA dump entry or GETSA answer)."""
    return _converted(_sa_from, _decode(xfrm_usersa_info, message.data, USERSA_INFO_SIZE))


def decode_expire(message: Message) -> ExpireEvent:
    """An XFRM_MSG_EXPIRE event."""
    msg = _decode(xfrm_user_expire, message.data, USERSA_INFO_SIZE + 8)
    return ExpireEvent(_converted(_sa_from, msg), bool(msg["hard"]))


def decode_policy(message: Message) -> PolicyInfo:
    """A NEWPOLICY/UPDPOLICY message (a policy dump entry)."""
    msg = _decode(xfrm_userpolicy_info, message.data, USERPOLICY_INFO_SIZE)
    return _converted(_policy_from, msg)


def _policy_from(msg: nlmsg) -> PolicyInfo:
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
