"""IKE_SA_INIT (RFC 7296 §1.2, §2.6 cookies, §2.7 INVALID_KE_PAYLOAD, §2.23 NAT detection).

    HDR, [N(COOKIE),] SA, KEi, Ni, N(NAT_D_SRC), N(NAT_D_DST)  -->
                                  <--  HDR, SA, KEr, Nr, N(NAT_D_SRC), N(NAT_D_DST)
                                  or   HDR, N(COOKIE | INVALID_KE_PAYLOAD | NO_PROPOSAL_CHOSEN)

`IkeSaInit` is the initiator's task; `respond_ike_sa_init` the responder's handler. The
responder keeps no state for a request it answers with an error or a COOKIE.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from cgwd.ike.constants import ExchangeType, NotifyType, name_of
from cgwd.ike.crypto import InvalidKeyExchange, derive_ike_keys, dh_group
from cgwd.ike.crypto.kex import DhPrivate
from cgwd.ike.v2 import negotiation as neg
from cgwd.ike.v2 import wire
from cgwd.ike.v2.payloads import KePayload, NoncePayload
from cgwd.ike.v2.sa import IkeSa, IkeSessionConfig
from cgwd.ike.v2.tasks.base import Outcome, SessionOps, Task

MAX_INIT_RETRIES = 4  # COOKIE / INVALID_KE_PAYLOAD round trips before giving up
ZERO_SPI = bytes(8)


def install_ike_keys(sa: IkeSa, suite: Any, shared: Any) -> None:
    """Derive SK_* (§2.14) for a fresh IKE SA and set up its SK ciphers."""
    keys = derive_ike_keys(suite, sa.ni, sa.nr, shared, sa.spi_i, sa.spi_r)
    set_keys(sa, suite, keys)


def set_keys(sa: IkeSa, suite: Any, keys: Any) -> None:
    sa.suite = suite
    sa.suite_name = suite.name
    sa.prf_id = suite.prf_id
    sa.sk_d = keys.sk_d
    sa.sk_pi = keys.sk_pi
    sa.sk_pr = keys.sk_pr
    sa.sk_out, sa.sk_in = keys.sk_ciphers(suite, initiator=sa.initiator)


def detect_nat(sa: IkeSa, msg: wire.Received, src: tuple[str, int], dst: tuple[str, int]) -> None:
    """Compare the peer's NAT detection hashes with what we saw (§2.23).

    Hashes use the SPIs as they appear in the message's header (SPIr zero in a request).
    """
    spi_i, spi_r = msg.spi_i, msg.spi_r
    srcs = [n.data for n in msg.msg.notifies() if n.type == NotifyType.NAT_DETECTION_SOURCE_IP]
    dst_n = msg.notify(NotifyType.NAT_DETECTION_DESTINATION_IP)
    if srcs:
        sa.nat_remote = wire.nat_hash(spi_i, spi_r, src[0], src[1]) not in srcs
    if dst_n is not None:
        sa.nat_local = dst_n.data != wire.nat_hash(spi_i, spi_r, dst[0], dst[1])


def nat_notifies(
    spi_i: bytes, spi_r: bytes, local: tuple[str, int], remote: tuple[str, int], force: bool
) -> list[Any]:
    """Our NAT_DETECTION_* notifies; with ``force`` the source hash is deliberately wrong
    so the peer sees a NAT and both sides move to UDP encapsulation (strongSwan's
    ``encap = yes``)."""
    source = wire.nat_hash(spi_i, spi_r, local[0], local[1])
    if force:
        source = hashlib.sha1(b"cgwd-forced-encap" + source, usedforsecurity=False).digest()
    return [
        wire.notify(NotifyType.NAT_DETECTION_SOURCE_IP, source),
        wire.notify(NotifyType.NAT_DETECTION_DESTINATION_IP, wire.nat_hash(spi_i, spi_r, *remote)),
    ]


def float_to_nat_t(sa: IkeSa, cfg: IkeSessionConfig) -> None:
    """§2.23: once a NAT is detected (or encapsulation is forced) continue on port 4500."""
    if sa.nat_local or sa.nat_remote or cfg.force_encap:
        sa.nat_t = True
        sa.local_port = cfg.nat_t_port
        if sa.remote_port == cfg.ike_port:
            sa.remote_port = cfg.nat_t_port


class IkeSaInit(Task):
    """The initiator's IKE_SA_INIT, including COOKIE and INVALID_KE_PAYLOAD retries."""

    name = "IKE_SA_INIT"
    exchange = ExchangeType.IKE_SA_INIT

    def __init__(self, session: SessionOps, sa: IkeSa) -> None:
        super().__init__(session, sa)
        cfg = session.config
        self.offered = wire.numbered(cfg.ike_proposals, b"")
        groups = neg.dh_groups(self.offered)
        if not groups:
            raise ValueError("IKE proposals without a DH group")
        self.group = groups[0]
        self.dh: DhPrivate | None = None
        self.cookie: bytes | None = None
        self.retries = 0
        sa.ni = session.rng.bytes(cfg.nonce_bytes)

    def build(self, now: float) -> Sequence[Any]:
        if self.dh is None or self.dh.group.group_id != self.group:
            self.dh = dh_group(self.group).generate(self.session.rng)
        sa, cfg = self.sa, self.session.config
        payloads: list[Any] = []
        if self.cookie is not None:
            payloads.append(wire.notify(NotifyType.COOKIE, self.cookie))  # first, §2.6
        payloads += [
            wire.sa_payload(self.offered),
            KePayload(self.group, self.dh.public_bytes()),
            NoncePayload(sa.ni),
        ]
        payloads += nat_notifies(
            sa.spi_i,
            ZERO_SPI,
            (str(cfg.local_address), sa.local_port),
            (sa.remote_ip, sa.remote_port),
            cfg.force_encap,
        )
        return payloads

    def on_sent(self, raw: bytes) -> None:
        self.sa.init_request = raw

    def _fail(self, reason: str, message: str, now: float) -> Outcome:
        self.session.log(reason, message, "warning")
        self.session.ike_failed(self.sa, reason, now)
        return Outcome.DONE

    def process(self, msg: wire.Received, now: float) -> Outcome:
        cookie = msg.notify(NotifyType.COOKIE)
        if cookie is not None and msg.proposals() is None:
            if self.retries >= MAX_INIT_RETRIES or not 1 <= len(cookie.data) <= 64:
                return self._fail("ike_sa_init_failed", "responder keeps asking for cookies", now)
            self.retries += 1
            self.cookie = cookie.data
            self.session.log("cookie_requested", "responder asked for a COOKIE (RFC 7296 §2.6)")
            return Outcome.RETRY
        invalid_ke = msg.notify(NotifyType.INVALID_KE_PAYLOAD)
        if invalid_ke is not None:
            wanted = int.from_bytes(invalid_ke.data[:2], "big") if len(invalid_ke.data) >= 2 else 0
            if (
                wanted != self.group
                and wanted in neg.dh_groups(self.offered)
                and self.retries < MAX_INIT_RETRIES
            ):
                self.retries += 1
                self.session.log(
                    "invalid_ke_payload",
                    f"responder wants DH group {wanted} instead of {self.group}; retrying",
                )
                self.group = wanted
                self.dh = None
                return Outcome.RETRY
            return self._fail(
                "no_proposal_chosen",
                f"responder wants DH group {wanted}, which we do not offer",
                now,
            )
        error = msg.error_notify()
        if error is not None:
            if error == NotifyType.NO_PROPOSAL_CHOSEN:
                return self._fail(
                    "no_proposal_chosen", "IKE_SA_INIT: peer accepted none of our proposals", now
                )
            return self._fail(
                "ike_sa_init_failed", f"peer answered {name_of(NotifyType, error)}", now
            )
        return self._complete(msg, now)

    def _complete(self, msg: wire.Received, now: float) -> Outcome:
        sa = self.sa
        proposals = msg.proposals()
        chosen = None if proposals is None else neg.accept_choice(proposals, self.offered)
        if chosen is None:
            return self._fail(
                "ike_sa_init_failed", "responder chose a proposal we did not offer", now
            )
        try:
            suite = wire.ike_suite_of(chosen)
        except ValueError as exc:
            return self._fail("ike_sa_init_failed", f"unusable proposal: {exc}", now)
        ke, nr = msg.ke(), msg.nonce()
        if ke is None or nr is None or ke.group != self.group or suite.dh_group != self.group:
            return self._fail("ike_sa_init_failed", "response lacks a matching KE or a nonce", now)
        if msg.spi_r == ZERO_SPI:
            return self._fail("ike_sa_init_failed", "responder SPI is zero", now)
        assert self.dh is not None
        try:
            shared = self.dh.shared_secret(ke.data)
        except InvalidKeyExchange as exc:
            return self._fail("ike_sa_init_failed", f"bad KE from responder: {exc}", now)
        sa.spi_r = msg.spi_r
        sa.nr = nr
        sa.init_response = msg.raw
        install_ike_keys(sa, suite, shared)
        return Outcome.DONE


@dataclass
class InitReply:
    """What the session sends back for an IKE_SA_INIT request."""

    payloads: list[Any]
    sa: IkeSa | None  # the new half-open IKE SA, None for a stateless error/COOKIE reply
    spi_r: bytes


def make_cookie(secret: bytes, ni: bytes, ip: str, spi_i: bytes) -> bytes:
    """Cookie = <VersionIDofSecret> | Hash(Ni | IPi | SPIi | <secret>) (RFC 7296 §2.6)."""
    digest = hmac.new(secret, ni + ip.encode() + spi_i, hashlib.sha256).digest()
    return b"\x00\x01" + digest[:16]


def respond_ike_sa_init(
    session: SessionOps,
    msg: wire.Received,
    src: tuple[str, int],
    dst: tuple[str, int],
    now: float,
    *,
    half_open: int,
    cookie_secret: bytes,
) -> InitReply | None:
    """The responder's side. Returns None to drop the request silently."""
    cfg = session.config
    proposals, ke, ni = msg.proposals(), msg.ke(), msg.nonce()
    if proposals is None or ke is None or ni is None or msg.spi_r != ZERO_SPI:
        session.log("ike_sa_init_invalid", "IKE_SA_INIT request without SA, KE or nonce", "debug")
        return None
    chosen = neg.select_proposal(proposals, cfg.ike_proposals)
    if chosen is None:
        session.log(
            "no_proposal_chosen",
            "IKE_SA_INIT: none of the peer's proposals is acceptable",
            "warning",
        )
        return InitReply([wire.notify(NotifyType.NO_PROPOSAL_CHOSEN)], None, ZERO_SPI)
    try:
        suite = wire.ike_suite_of(chosen)
    except ValueError:
        return InitReply([wire.notify(NotifyType.NO_PROPOSAL_CHOSEN)], None, ZERO_SPI)
    if ke.group != suite.dh_group:
        return InitReply(
            [wire.notify(NotifyType.INVALID_KE_PAYLOAD, suite.dh_group.to_bytes(2, "big"))],
            None,
            ZERO_SPI,
        )
    if half_open >= cfg.half_open_cookie_threshold:
        expected = make_cookie(cookie_secret, ni, src[0], msg.spi_i)
        got = msg.notify(NotifyType.COOKIE)
        if got is None or not hmac.compare_digest(got.data, expected):
            return InitReply([wire.notify(NotifyType.COOKIE, expected)], None, ZERO_SPI)
    group = dh_group(suite.dh_group)
    dh = group.generate(session.rng)
    try:
        shared = dh.shared_secret(ke.data)
    except InvalidKeyExchange:
        session.log("ike_sa_init_invalid", "peer's KE fails the RFC 6989 checks", "warning")
        return None
    sa = IkeSa(
        spi_i=msg.spi_i,
        spi_r=session.rng.bytes(8),
        initiator=False,
        created_at=now,
        remote_ip=src[0],
        remote_port=src[1],
        local_port=dst[1],
        nat_t=dst[1] == cfg.nat_t_port,
    )
    sa.ni, sa.nr = ni, session.rng.bytes(cfg.nonce_bytes)
    sa.init_request = msg.raw
    detect_nat(sa, msg, src, dst)
    install_ike_keys(sa, suite, shared)
    sa.delete_deadline = now + cfg.half_open_timeout
    chosen_out = neg.Proposal(chosen.number, chosen.protocol, b"", chosen.transforms)
    payloads: list[Any] = [
        wire.sa_payload([chosen_out]),
        KePayload(suite.dh_group, dh.public_bytes()),
        NoncePayload(sa.nr),
    ]
    payloads += nat_notifies(sa.spi_i, sa.spi_r, (dst[0], dst[1]), src, cfg.force_encap)
    return InitReply(payloads, sa, sa.spi_r)
