"""XFRM message layouts, round trips, decoder robustness, error texts and the auto choice.

No root needed: these encode and decode in memory.
"""

from __future__ import annotations

import contextlib
import errno
import struct
from ipaddress import IPv4Address, IPv4Network

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from cgwd.dataplane.base import SaExistsError, UnknownSaError
from cgwd.dataplane.kernel import KernelFeatureError, explain, owned
from cgwd.dataplane.select import KernelCapabilities, choose_dataplane, create_dataplane
from cgwd.esp.suites import ALL_SUITES, EspSuite, suite_by_name
from cgwd.net.xfrm import messages as m
from cgwd.net.xfrm.socket import XfrmError, _ext_ack_message
from cgwd.secret import Secret

A = IPv4Address("192.0.2.1")
B = IPv4Address("192.0.2.2")


def test_struct_sizes_match_the_kernel_abi() -> None:
    # sizeof() in <linux/xfrm.h> on x86-64 / aarch64 (the layouts have no pointers).
    assert m.struct_size(m.USERSA_INFO_FIELDS) == 224
    assert m.struct_size(m.USERPOLICY_INFO_FIELDS) == 168
    assert m.struct_size(m.USER_TMPL_FIELDS) == 64
    assert m.struct_size(m.USERSA_ID_FIELDS) == 24
    assert m.struct_size(m.USERPOLICY_ID_FIELDS) == 64
    assert m.struct_size((*m.USERSA_INFO_FIELDS, ("min", "I"), ("max", "I"))) == 232
    assert len(m.userpolicy_info_bytes("out", 2)) == 168


def _as_kernel_reply(request: bytes) -> m.Message:
    """The kernel answers GETSA with a NEWSA carrying the same layout."""
    return next(m.split_messages(request))


@pytest.mark.parametrize("suite", ALL_SUITES, ids=lambda s: s.name)
def test_newsa_round_trips_through_the_decoder(suite: EspSuite) -> None:
    spec = m.SaSpec(
        A,
        B,
        0xC1234567,
        suite,
        Secret(bytes(range(suite.keymat_bytes))),
        reqid=77,
        replay_window=1024,
        esn=not suite.aead,
        encap=m.UdpEncapsulation(4500, 31337),
        mark=m.Mark(0x63670003),
        if_id=0x63670003,
        lifetime=m.Lifetime(soft_add_seconds=2700, hard_add_seconds=3600),
    )
    sa = m.decode_sa(_as_kernel_reply(m.encode_newsa(spec, 9)))
    assert (sa.src, sa.dst, sa.spi, sa.proto, sa.reqid) == (A, B, 0xC1234567, 50, 77)
    assert sa.replay_window == 1024
    assert sa.flags == (m.XFRM_STATE_ESN if not suite.aead else 0)
    assert sa.encap == m.UdpEncapsulation(4500, 31337)
    assert (sa.mark, sa.if_id) == (m.Mark(0x63670003), 0x63670003)
    assert (sa.soft_add_seconds, sa.hard_add_seconds) == (2700, 3600)
    expected = ("rfc4106(gcm(aes))",) if suite.aead else ("cbc(aes)", f"hmac({suite.hash_name})")
    assert sa.algorithms == expected


def test_key_lengths_and_icv_bits_in_the_algorithm_attributes() -> None:
    suite = suite_by_name("aes256-sha384")
    key = bytes(range(32)) + bytes(range(100, 148))
    data = m.encode_newsa(m.SaSpec(A, B, 0x1000, suite, Secret(key)), 1)
    msg = m.xfrm_usersa_info(bytearray(data))
    msg.decode()
    crypt, auth = msg.get_attr("XFRMA_ALG_CRYPT"), msg.get_attr("XFRMA_ALG_AUTH_TRUNC")
    assert (crypt["alg_key_len"], crypt["alg_key"]) == (256, key[:32])
    assert (auth["alg_key_len"], auth["alg_trunc_len"], auth["alg_key"]) == (384, 192, key[32:])
    gcm = suite_by_name("aes128gcm16")
    data = m.encode_newsa(m.SaSpec(A, B, 0x1000, gcm, Secret(bytes(20))), 1)
    msg = m.xfrm_usersa_info(bytearray(data))
    msg.decode()
    aead = msg.get_attr("XFRMA_ALG_AEAD")
    assert (aead["alg_key_len"], aead["alg_icv_len"]) == (160, 128)  # key + 4-byte salt


def test_replay_window_uses_the_legacy_field_up_to_32_and_esn_state_above() -> None:
    suite = suite_by_name("aes128gcm16")
    for window, legacy, has_esn in ((32, 32, False), (33, 0, True), (2048, 0, True)):
        data = m.encode_newsa(
            m.SaSpec(A, B, 1000, suite, Secret(bytes(20)), replay_window=window), 1
        )
        assert data[16 + 215] == legacy  # xfrm_usersa_info.replay_window
        msg = m.xfrm_usersa_info(bytearray(data))
        msg.decode()
        esn = msg.get_attr("XFRMA_REPLAY_ESN_VAL")
        assert (esn is not None) == has_esn
        if esn is not None:
            assert (esn["replay_window"], esn["bmp_len"]) == (window, (window + 31) // 32)


def test_sa_spec_refuses_bad_input_and_keeps_keys_out_of_its_repr() -> None:
    gcm = suite_by_name("aes128gcm16")
    with pytest.raises(ValueError, match="key bytes"):
        m.SaSpec(A, B, 1, gcm, Secret(bytes(16)))
    with pytest.raises(ValueError, match="replay window"):
        m.SaSpec(A, B, 1, gcm, Secret(bytes(20)), replay_window=5000)
    spec = m.SaSpec(A, B, 1, gcm, Secret(b"\x5a" * 20))
    assert "5a5a" not in repr(spec) and "ZZZZ" not in repr(spec)
    with pytest.raises(ValueError):
        m.PolicySpec(m.Selector.any4(), "sideways")


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=600))
def test_decoders_raise_only_their_own_error(data: bytes) -> None:
    for decode in (m.decode_sa, m.decode_policy, m.decode_expire):
        with contextlib.suppress(m.XfrmDecodeError):
            decode(m.Message(m.XFRM_MSG_NEWSA, 0, 0, data))
    with contextlib.suppress(m.XfrmDecodeError):
        list(m.split_messages(data))


@settings(max_examples=200, deadline=None)
@given(st.binary(min_size=1, max_size=200), st.integers(16, 400))
@example(junk=b"\x00", cut=328)  # a truncated XFRMA_ALG_CRYPT that pyroute2 left as raw bytes
def test_decoders_survive_corrupted_real_messages(junk: bytes, cut: int) -> None:
    spec = m.SaSpec(A, B, 0x1000, suite_by_name("aes128-sha1"), Secret(bytes(36)), mark=m.Mark(5))
    real = bytearray(m.encode_newsa(spec, 3))
    real[cut % len(real) : cut % len(real) + len(junk)] = junk
    with contextlib.suppress(m.XfrmDecodeError):
        m.decode_sa(m.Message(m.XFRM_MSG_NEWSA, 0, 0, bytes(real)))


def test_policy_round_trip() -> None:
    spec = m.PolicySpec(
        m.Selector(IPv4Network("10.0.0.0/8"), IPv4Network("0.0.0.0/0")),
        "fwd",
        priority=4,
        template=m.PolicyTemplate(B, A, reqid=3),
        mark=m.Mark(7, 0xFF),
    )
    pol = m.decode_policy(next(m.split_messages(m.encode_newpolicy(spec, 1))))
    assert (pol.selector, pol.direction, pol.priority, pol.mark) == (
        spec.selector,
        "fwd",
        4,
        m.Mark(7, 0xFF),
    )
    assert pol.templates == (m.PolicyTemplate(B, A, reqid=3),)


def test_extended_ack_text_is_extracted() -> None:
    # nlmsgerr: error, the original header (capped), then NLMSGERR_ATTR_MSG.
    text = b"Requested AEAD algorithm not found\0"
    attr = struct.pack("=HH", 4 + len(text), 1) + text + b"\0" * (-len(text) % 4)
    body = struct.pack("=i", -errno.ENOSYS) + struct.pack("=IHHII", 300, 0x10, 5, 9, 0)
    data = struct.pack("=IHHII", 16 + len(body) + len(attr), 2, 0x300, 9, 0) + body + attr
    message = next(m.split_messages(data))
    assert m.decode_error(message) == (errno.ENOSYS, 9)
    assert _ext_ack_message(message.data, message.flags) == "Requested AEAD algorithm not found"


def test_netlink_errors_become_messages_naming_the_kernel_feature() -> None:
    esp = explain(XfrmError("x", errno.EPROTONOSUPPORT), "installing SA t/in/0x1")
    assert isinstance(esp, KernelFeatureError) and "CONFIG_INET_ESP" in str(esp)
    alg = explain(
        XfrmError("x", errno.ENOSYS, "Requested AEAD algorithm not found"), "installing SA"
    )
    assert isinstance(alg, KernelFeatureError) and "CONFIG_CRYPTO_GCM" in str(alg)
    crypto = explain(XfrmError("x", errno.ENOENT), "installing SA t/in/0x1", adding=True)
    assert isinstance(crypto, KernelFeatureError) and "authencesn" in str(crypto)
    assert isinstance(explain(XfrmError("x", errno.EEXIST), "SA t/in/0x1"), SaExistsError)
    assert isinstance(explain(XfrmError("x", errno.ESRCH), "SA t/in/0x1"), UnknownSaError)
    other = explain(XfrmError("x", errno.EINVAL, "Invalid mark"), "installing SA t/out/0x2")
    assert str(other) == "installing SA t/out/0x2: Invalid mark"


def test_owned_range() -> None:
    assert owned(0x63670001) and owned(0x6367FFFF)
    assert not owned(0x63670000) and not owned(0x10) and not owned(None)


def test_choose_dataplane_reasons() -> None:
    good = KernelCapabilities("", "xfrm", "")
    no_esp = KernelCapabilities("the kernel has no ESP (CONFIG_INET_ESP)", "vti", "")
    no_if = KernelCapabilities("", None, "neither xfrm interfaces nor VTIs")
    assert choose_dataplane("auto", good) == (
        "kernel",
        "auto: the kernel has ESP and xfrm interfaces",
    )
    assert choose_dataplane("auto", no_esp) == (
        "userspace",
        "auto: the kernel has no ESP (CONFIG_INET_ESP)",
    )
    assert choose_dataplane("auto", no_if)[0] == "userspace"
    assert "neither" in choose_dataplane("auto", no_if)[1]
    kind, why = choose_dataplane("kernel", no_esp)
    assert kind == "kernel" and "will fail" in why and "CONFIG_INET_ESP" in why
    assert choose_dataplane("userspace", good)[0] == "userspace"
    assert choose_dataplane("userspace", good)[1].startswith("configured")


def test_create_dataplane_follows_the_choice() -> None:
    good = KernelCapabilities("", "vti", "")
    bad = KernelCapabilities("the kernel has no ESP (CONFIG_INET_ESP)", None, "no VTI")
    dp, why = create_dataplane("auto", good)
    assert dp.kind == "kernel" and why.startswith("auto:")
    dp, why = create_dataplane("auto", bad)
    assert dp.kind == "userspace" and "CONFIG_INET_ESP" in why
    assert create_dataplane("userspace", good)[0].kind == "userspace"


def test_the_last_packets_time_comes_from_xfrma_lastused_not_the_first_use() -> None:
    """The kernel's ``curlft.use_time`` is the first packet's time; XFRMA_LASTUSED (u64,
    wall-clock seconds, <linux/xfrm.h>) the latest's. An SA that never carried a packet
    has no such attribute."""
    spec = m.SaSpec(A, B, 0x1000, suite_by_name("aes128gcm16"), Secret(bytes(20)))
    plain = bytearray(m.encode_newsa(spec, 1))
    assert m.decode_sa(next(m.split_messages(bytes(plain)))).last_used == 0
    # struct nlattr {u16 nla_len; u16 nla_type} + u64 value, appended as the kernel would.
    answer = plain + struct.pack("=HHQ", 12, 15, 1_764_300_000)
    struct.pack_into("=I", answer, 0, len(answer))  # nlmsghdr.nlmsg_len
    sa = m.decode_sa(next(m.split_messages(bytes(answer))))
    assert sa.last_used == 1_764_300_000 and sa.use_time == 0
