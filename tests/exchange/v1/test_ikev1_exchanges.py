"""Main Mode, Quick Mode and Informational between two in-memory IKEv1 sessions."""

from __future__ import annotations

from dataclasses import replace

from ikev1_pair import (
    AWS_IP,
    CGW_IP,
    TUNNEL,
    End,
    V1Pair,
    assert_tunnel_up,
    aws_tunnel,
    config_for,
)

from cgwd.dataplane.base import SaId
from cgwd.ike.events import ChildSaRemoved, IkeDown, IkeEstablished, InboundSpiReleased
from cgwd.ike.retransmit import ReconnectBackoff, RetransmitPolicy
from cgwd.ike.v1.constants import VID_NAT_T_RFC
from cgwd.ike.v1.message import decode_header
from cgwd.ike.v1.session import Outgoing
from cgwd.secret import Secret

AWS_DEFAULT = aws_tunnel(p1=(("AES128",), ("SHA1",), (2,)), p2=(("AES128",), ("SHA1",), (2,)))
GOV = aws_tunnel(p1=(("AES256",), ("SHA2-256",), (14,)), p2=(("AES256",), ("SHA2-256",), (14,)))


def test_establish_with_everything_offered() -> None:
    pair = V1Pair()
    pair.establish()
    assert_tunnel_up(pair)
    st = pair.cgw.session.status(pair.now)
    assert st["phase1"] == st["phase2"] == "Established"
    assert st["ike"]["suite"] == "aes256-sha512-ecp521"  # the first of our proposals
    assert st["children"][0]["suite"] == "aes256gcm16"
    assert st["children"][0]["pfs_group"] == 21
    assert st["ike"]["lifetime"] == 28800 and st["children"][0]["lifetime"] == 3600
    aws = pair.aws.session.status(pair.now)
    assert aws["ike"]["initiator"] is False and aws["phase2"] == "Established"
    assert not pair.cgw.session.counters and not pair.aws.session.counters


def test_aws_default_and_gov_suites() -> None:
    for tunnel, p1, esp, group in (
        (AWS_DEFAULT, "aes128-sha1-modp1024", "aes128-sha1", 2),
        (GOV, "aes256-sha256-modp2048", "aes256-sha256", 14),
    ):
        pair = V1Pair(aws_config=config_for(AWS_IP, CGW_IP, tunnel))
        pair.establish()
        assert_tunnel_up(pair)
        st = pair.cgw.session.status(pair.now)
        assert st["ike"]["suite"] == p1
        assert st["children"][0]["suite"] == esp and st["children"][0]["pfs_group"] == group


def test_no_common_proposal_is_reported_and_retried() -> None:
    narrow = aws_tunnel(
        p1=(("AES256",), ("SHA2-512",), (21,)), p2=(("AES256",), ("SHA2-512",), (21,))
    )
    pair = V1Pair(
        cgw_config=config_for(CGW_IP, AWS_IP, AWS_DEFAULT),
        aws_config=config_for(AWS_IP, CGW_IP, narrow),
    )
    pair.establish()
    assert "no_proposal_chosen" in pair.aws.log_names()
    assert pair.cgw.downs() and pair.cgw.downs()[0].reason == "no_proposal_chosen"
    pair.run_for(10)
    assert len(pair.cgw.downs()) >= 2  # retried with backoff


def test_wrong_psk_is_auth_failed_clearly_and_retried() -> None:
    pair = V1Pair(cgw_config=config_for(CGW_IP, AWS_IP, psk=Secret("not_the_psk_99")))
    pair.establish()
    # The responder cannot decrypt message 5 (or its HASH_I fails): it says so.
    assert "auth_failed" in pair.aws.log_names()
    pair.run_for(70)
    downs = pair.cgw.downs()
    assert downs and all(d.reason == "auth_failed" for d in downs)
    assert len(downs) >= 2 and downs[0].retry_in is not None
    msgs = [e.message for e in pair.cgw.events if getattr(e, "name", "") == "auth_failed"]
    assert any("pre-shared key mismatch" in m for m in msgs)
    assert all("not_the_psk" not in str(e) for e in pair.cgw.events + pair.aws.events)
    assert pair.cgw.current_out() is None


def test_responder_lifetime_is_honoured() -> None:
    pair = V1Pair(aws_config=config_for(AWS_IP, CGW_IP, child_lifetime=1800))
    pair.establish()
    child = pair.cgw.session.status(pair.now)["children"][0]
    assert child["lifetime"] == 1800
    assert child["rekey_in"] <= 1800 * 2880 / 3600


def test_our_child_rekey_loses_nothing_and_deletes_the_old_sa() -> None:
    cfg = config_for(CGW_IP, AWS_IP, child_rekey_time=100.0, rekey_jitter=0.0)
    pair = V1Pair(cgw_config=cfg)
    pair.establish()
    first = pair.cgw.current_out()
    pair.run_for(99)
    assert pair.cgw.current_out() == first
    pair.run_for(20)
    assert pair.cgw.current_out() != first
    assert_tunnel_up(pair)
    assert len(pair.cgw.session.children) == 1 and len(pair.aws.session.children) == 1
    assert first not in pair.cgw.installed()
    assert pair.lost_packets == 0 and pair.sent_packets > 0


def test_peer_child_rekey_and_phase1_rekey_keep_traffic() -> None:
    aws_cfg = config_for(AWS_IP, CGW_IP, child_rekey_time=200.0, ike_rekey_time=300.0,
                         rekey_jitter=0.0)  # fmt: skip
    pair = V1Pair(aws_config=aws_cfg)
    pair.establish()
    first_ike = pair.cgw.session.current
    first_out = pair.cgw.current_out()
    pair.run_for(400)
    assert pair.cgw.current_out() != first_out
    assert pair.cgw.session.current is not first_ike
    assert pair.cgw.session.current is not None and not pair.cgw.session.current.initiator
    assert len(pair.cgw.session.isakmp_sas) == 1  # the old one deleted by its replacer
    assert_tunnel_up(pair)
    assert pair.lost_packets == 0
    rekeys = [e for e in pair.cgw.events if isinstance(e, IkeEstablished) and e.rekey]
    assert rekeys


def test_phase2_sa_survives_our_phase1_rekey() -> None:
    cfg = config_for(CGW_IP, AWS_IP, ike_rekey_time=100.0, rekey_jitter=0.0)
    pair = V1Pair(cgw_config=cfg)
    pair.establish()
    out = pair.cgw.current_out()
    old = pair.cgw.session.current
    pair.run_for(120)
    assert pair.cgw.session.current is not old
    assert pair.cgw.current_out() == out  # IKEv1: IPsec SAs outlive their ISAKMP SA
    assert len(pair.cgw.session.isakmp_sas) == 1 and len(pair.aws.session.isakmp_sas) == 1
    assert not [e for e in pair.cgw.events if isinstance(e, ChildSaRemoved)]
    # and a Quick Mode on the new ISAKMP SA still works
    pair.cgw.session.children[next(iter(pair.cgw.session.children))].rekey_at = pair.now
    pair.run_for(10)
    assert pair.cgw.current_out() != out
    assert_tunnel_up(pair)


def test_dpd_keeps_an_idle_tunnel_and_detects_a_dead_peer() -> None:
    pair = V1Pair()
    pair.establish()
    pair.run_for(60)
    assert pair.cgw.session.counters["dpd_sent"] >= 2
    assert pair.aws.session.counters["dpd_answered"] >= 2
    assert not pair.cgw.downs()
    pair.filter = lambda sender, out: sender != "aws"  # AWS goes silent
    pair.run_for(60)
    downs = pair.cgw.downs()
    assert downs and downs[0].reason == "dpd_timeout"
    assert pair.cgw.current_out() is None  # the peer is dead: its SAs are gone
    pair.filter = None
    pair.run_for(120)
    assert pair.cgw.session.status(pair.now)["phase2"] == "Established"


def test_retransmission_on_loss_and_on_duplicates() -> None:
    dropped: list[int] = []

    def lose_first_of_each(sender: str, out: object) -> bool:
        data = out.data  # type: ignore[attr-defined]
        key = hash(data[:20])
        if key in dropped:
            return True
        dropped.append(key)
        return False

    pair = V1Pair()
    pair.filter = lose_first_of_each
    pair.establish()
    pair.run_for(30)
    assert_tunnel_up(pair)
    assert pair.cgw.session.counters["retransmits"] >= 1
    # Duplicates of every message are answered from the cache, never re-processed.
    pair2 = V1Pair(seed=7)
    pair2.duplicate = lambda sender, out: True
    pair2.establish()
    assert_tunnel_up(pair2)
    assert pair2.aws.session.counters["retransmit_answered"] >= 2
    assert len(pair2.cgw.session.children) == 1 and len(pair2.aws.session.children) == 1


def test_peer_delete_of_isakmp_and_esp() -> None:
    pair = V1Pair()
    pair.establish()
    pair.aws.session.terminate(pair.now)
    pair.pump()
    assert "child_deleted_by_peer" in pair.cgw.log_names()
    assert "ike_deleted_by_peer" in pair.cgw.log_names()
    assert pair.cgw.current_out() is None
    assert pair.cgw.downs()[-1].reason == "deleted_by_peer"
    pair.aws.session.wanted = True  # the peer is back (answers again)
    pair.run_for(5)
    assert pair.cgw.session.status(pair.now)["phase2"] == "Established"


def test_initial_contact_replaces_what_the_peer_had() -> None:
    pair = V1Pair()
    pair.establish()
    old_children = set(pair.aws.session.children)
    # cgwd restarts: a fresh session (INITIAL-CONTACT) towards the same AWS endpoint
    fresh = V1Pair(seed=99)
    pair.cgw = fresh.cgw
    pair.establish()
    assert set(pair.aws.session.children).isdisjoint(old_children)
    assert len(pair.aws.session.children) == 1 and len(pair.aws.session.isakmp_sas) == 1
    assert_tunnel_up(pair)


def test_behind_nat_floats_to_4500_and_encapsulates() -> None:
    pair = V1Pair(nat=True)
    pair.establish()
    st = pair.cgw.session.status(pair.now)
    assert st["ike"]["nat_local"] is True and st["ike"]["port"] == 4500
    out = pair.cgw.current_out()
    assert out is not None
    encap = pair.cgw.dataplane.params(out).encap
    assert encap is not None and encap.remote_port == 4500
    aws_in = pair.aws.dataplane.params(SaId(TUNNEL, "in", out.spi))
    assert aws_in.encap is not None
    assert pair.aws.session.status(pair.now)["ike"]["nat_remote"] is True


def test_forced_encapsulation_without_nat() -> None:
    pair = V1Pair(cgw_config=config_for(CGW_IP, AWS_IP, force_encap=True))
    pair.establish()
    assert pair.cgw.session.status(pair.now)["ike"]["port"] == 4500
    assert_tunnel_up(pair)


def test_unauthenticated_messages_cannot_tear_down() -> None:
    pair = V1Pair()
    pair.establish()
    sa = pair.cgw.session.current
    assert sa is not None
    # A forged INFORMATIONAL with the right cookies but garbage (no keys) is dropped.
    hdr = sa.cky_i + sa.cky_r + bytes([8, 0x10, 5, 1]) + (7).to_bytes(4, "big")
    forged = hdr + (28 + 32).to_bytes(4, "big") + bytes(32)
    pair.cgw.session.receive_datagram(forged, (AWS_IP, 500), (CGW_IP, 500), pair.now)
    # A plaintext DELETE (no HASH) is ignored too.
    plain = (
        sa.cky_i + sa.cky_r + bytes([12, 0x10, 5, 0]) + (9).to_bytes(4, "big")
        + (28 + 28).to_bytes(4, "big")
        + bytes([0, 0]) + (28).to_bytes(2, "big") + (1).to_bytes(4, "big") + bytes([1, 16])
        + (1).to_bytes(2, "big") + sa.cky_i + sa.cky_r
    )  # fmt: skip
    decode_header(plain)
    pair.cgw.session.receive_datagram(plain, (AWS_IP, 500), (CGW_IP, 500), pair.now)
    pair.pump()
    assert pair.cgw.session.current is sa
    assert pair.cgw.session.counters["integrity_failed"] >= 1
    assert not [e for e in pair.cgw.events if isinstance(e, IkeDown)]
    assert_tunnel_up(pair)


def test_passive_side_waits_and_retry_backoff_is_capped() -> None:
    cfg = config_for(
        CGW_IP, AWS_IP,
        retransmit=RetransmitPolicy(initial=1.0, factor=1.0, max_interval=1.0, tries=2),
        reconnect=ReconnectBackoff(cap=4.0),
    )  # fmt: skip
    pair = V1Pair(cgw_config=cfg)
    pair.filter = lambda sender, out: False  # nothing gets through
    pair.establish()
    pair.run_for(60)
    downs = pair.cgw.downs()
    assert len(downs) >= 5
    assert all(d.retry_in is not None and d.retry_in <= 4.0 for d in downs)
    assert downs[0].reason == "retransmit_timeout"
    assert not pair.aws.session.isakmp_sas  # the passive side never heard anything


def test_terminate_deletes_everything() -> None:
    pair = V1Pair()
    pair.establish()
    pair.cgw.session.terminate(pair.now)
    pair.pump()
    assert not pair.cgw.installed() and not pair.aws.installed()
    assert pair.cgw.downs()[-1].reason == "terminated"
    assert replace(pair.cgw.session.config).tunnel == TUNNEL


def test_simultaneous_child_rekeys_keep_one_sa_and_lose_nothing() -> None:
    cfg_c = config_for(CGW_IP, AWS_IP, child_rekey_time=100.0, rekey_jitter=0.0)
    cfg_a = config_for(AWS_IP, CGW_IP, child_rekey_time=100.0, rekey_jitter=0.0)
    pair = V1Pair(cgw_config=cfg_c, aws_config=cfg_a)
    pair.establish()
    first = pair.cgw.current_out()
    for end in (pair.cgw, pair.aws):  # both Quick Modes leave before either arrives
        (child,) = end.session.children.values()
        child.rekey_at = pair.now + 10
    pair.run_for(140)
    assert "child_rekey_collision" in pair.cgw.log_names()
    assert "child_rekey_collision" in pair.aws.log_names()
    assert len(pair.cgw.session.children) == 1 and len(pair.aws.session.children) == 1
    (c,) = pair.cgw.session.children.values()
    (a,) = pair.aws.session.children.values()
    assert (c.spi_in, c.spi_out) == (a.spi_out, a.spi_in)  # the same survivor on both sides
    assert pair.cgw.current_out() != first
    assert_tunnel_up(pair)
    assert pair.lost_packets == 0


def test_main_mode_message_1_is_not_fragmented() -> None:
    """The default IKEv1 offer (26 transforms) keeps MM1 well under a 1280-octet path."""
    sizes: list[int] = []

    def watch(sender: str, out: object) -> bool:
        data = out.data  # type: ignore[attr-defined]
        if sender == "cgw" and not sizes:
            sizes.append(len(data))
        return True

    pair = V1Pair()
    pair.filter = watch
    pair.establish()
    assert sizes and sizes[0] + 28 < 1280  # + IPv4/UDP headers


def test_draft_nat_t_peer() -> None:
    """A peer that knows only the pre-RFC NAT-T drafts: NAT-D payloads 130 and the
    UDP-encapsulated tunnel mode 61443 (RFC 3947 history)."""
    pair = V1Pair(nat=True)
    original = pair.deliver

    def deliver(sender: End, receiver: End, out: Outgoing) -> None:
        if sender is pair.cgw and VID_NAT_T_RFC in out.data:
            out = replace(out, data=out.data.replace(VID_NAT_T_RFC, bytes(16)))
        original(sender, receiver, out)

    pair.deliver = deliver  # type: ignore[method-assign]
    pair.establish()
    aws_sa = pair.aws.session.current
    assert aws_sa is not None and aws_sa.nat_t == "draft"
    assert pair.cgw.session.current is not None and pair.cgw.session.current.nat_t == "draft"
    assert pair.cgw.session.status(pair.now)["ike"]["nat_local"] is True
    assert_tunnel_up(pair)
    (child,) = pair.cgw.session.children.values()
    assert child.out_params.encap is not None


def test_half_open_responder_sas_are_bounded_and_expire() -> None:
    pair = V1Pair()
    sent: list[Outgoing] = []
    for _ in range(40):  # Main Mode message 1 floods from the peer's address
        pair.aws.session.initiate(pair.now)
        sent += pair.aws.session.datagrams_to_send()
        pair.aws.session.isakmp_sas.clear()
    for out in sent:
        pair.cgw.session.receive_datagram(out.data, (AWS_IP, 500), (CGW_IP, 500), pair.now)
    half_open = [s for s in pair.cgw.session.isakmp_sas if not s.initiator]
    assert len(half_open) == pair.cgw.session.config.half_open_limit
    assert pair.cgw.session.counters["half_open_limit"] == 40 - len(half_open)
    pair.cgw.session.datagrams_to_send()
    deadline = pair.cgw.session.next_deadline()
    assert deadline is not None
    pair.cgw.session.handle_timer(deadline)
    assert not pair.cgw.session.isakmp_sas
    assert "ike_half_open_timeout" in [
        e.name for e in pair.cgw.session.events() if hasattr(e, "name")
    ]


def test_quick_mode_finds_the_pfs_group_the_peer_allows() -> None:
    """Phase 1 settles on ECP-521, but AWS's tunnel allows only group 2 for PFS: each
    refusal (NO_PROPOSAL_CHOSEN) makes the next Quick Mode offer the next group."""
    only_2 = aws_tunnel(
        p1=(("AES128", "AES256"), ("SHA1", "SHA2-256"), (21, 2)),
        p2=(("AES128",), ("SHA1",), (2,)),
    )
    pair = V1Pair(aws_config=config_for(AWS_IP, CGW_IP, only_2))
    pair.establish()
    assert pair.cgw.session.status(pair.now)["phase2"] != "Established"
    pair.run_for(30)
    st = pair.cgw.session.status(pair.now)
    assert st["ike"]["suite"].endswith("ecp521")
    assert st["phase2"] == "Established" and st["children"][0]["pfs_group"] == 2
    assert "child_create_failed" in pair.cgw.log_names()
    assert_tunnel_up(pair)


def test_failed_quick_modes_give_their_spis_back() -> None:
    only_2 = aws_tunnel(
        p1=(("AES128", "AES256"), ("SHA1", "SHA2-256"), (21, 2)),
        p2=(("AES128",), ("SHA1",), (2,)),
    )
    pair = V1Pair(aws_config=config_for(AWS_IP, CGW_IP, only_2))
    pair.establish()
    pair.run_for(30)
    released = [e.sa for e in pair.cgw.events if isinstance(e, InboundSpiReleased)]
    assert released and all(sa.direction == "in" for sa in released)
    installed = {sa.spi for sa in pair.cgw.installed()}
    assert not installed & {sa.spi for sa in released}


def test_responder_reports_established_only_with_its_outbound_sa() -> None:
    """Between Quick Mode messages 2 and 3 the responder has only the inbound SA: its
    status must not say the tunnel is up yet."""
    pair = V1Pair()
    pair.filter = lambda sender, out: not (sender == "cgw" and len(pair.aws.session.children))
    pair.cgw.session.initiate(pair.now)
    pair.run_for(0.5)
    st = pair.aws.session.status(pair.now)
    assert pair.aws.session.children and st["phase2"] == "Negotiating"
    pair.filter = None
    pair.run_for(5)
    assert pair.aws.session.status(pair.now)["phase2"] == "Established"
    assert_tunnel_up(pair)


def test_esp_from_the_peer_defers_dpd_until_the_tunnel_goes_quiet() -> None:
    """RFC 3706 5.3: R-U-THERE only when no traffic came from the peer. The host tells the
    session when ESP last arrived (`note_traffic`); here every second, on both ends."""
    pair = V1Pair()
    pair.establish()
    for _ in range(60):
        for end in (pair.cgw, pair.aws):
            end.session.note_traffic(pair.now)
        pair.run_for(1)
    assert pair.cgw.session.counters["dpd_sent"] == 0
    assert pair.aws.session.counters["dpd_sent"] == 0
    # The peer dies: no more ESP (the last came a second ago), no answers. The first
    # probe goes out dpd_delay after the last ESP, and the peer is found dead as on an
    # idle tunnel.
    quiet_from = pair.now
    pair.filter = lambda sender, out: sender != "aws"
    pair.run_for(pair.cgw.session.config.dpd_delay - 2)
    assert pair.cgw.session.counters["dpd_sent"] == 0
    pair.run_for(60)
    assert pair.cgw.session.counters["dpd_sent"] >= 1
    downs = pair.cgw.downs()
    assert downs and downs[0].reason == "dpd_timeout" and pair.now - quiet_from <= 70
