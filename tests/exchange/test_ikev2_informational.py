"""INFORMATIONAL, retransmission, cached responses, NAT and cookies, in memory."""

from __future__ import annotations

from ipaddress import IPv4Address

from ikev2_pair import AWS_IP, CGW_IP, NAT_PUBLIC_IP, Pair, config_for

from cgwd.ike.constants import ExchangeType
from cgwd.ike.crypto import IkeSuite
from cgwd.ike.crypto.ikev2_keys import IkeKeys
from cgwd.ike.events import IkeEstablished
from cgwd.ike.rng import SeededRng
from cgwd.ike.v2.message import Message, decode_header, encode_message
from cgwd.ike.v2.payloads import DeletePayload
from cgwd.ike.v2.session import IkeSession, Outgoing
from cgwd.ike.v2.tasks.informational import DeleteChild
from cgwd.secret import Secret


def _exchange(out: Outgoing) -> tuple[int, bool]:
    h = decode_header(out.data)
    return h.exchange_type, h.response


def test_dpd_probes_idle_peer_and_declares_it_dead() -> None:
    pair = Pair()
    pair.establish()
    pair.run_for(25)  # idle: both probe every ~10 s and answer each other
    assert not pair.cgw.downs()
    # Now the AWS side goes silent.
    pair.filter = lambda sender, out: sender != "aws"
    pair.run_for(45)
    downs = pair.cgw.downs()
    assert downs and downs[0].reason == "dpd_timeout"
    assert "dpd_timeout" in pair.cgw.log_names()
    assert pair.cgw.current_out() is None and not pair.cgw.installed()
    # The peer comes back: cgwd re-initiates by itself (backoff) and the tunnel returns.
    pair.filter = None
    pair.run_for(120)
    assert pair.cgw.session.status()["phase2"] == "Established"


def test_lost_response_is_retransmitted_and_answered_from_cache() -> None:
    pair = Pair()
    dropped: list[Outgoing] = []

    def drop_first_auth_response(sender: str, out: Outgoing) -> bool:
        if sender == "aws" and _exchange(out) == (ExchangeType.IKE_AUTH, True) and not dropped:
            dropped.append(out)
            return False
        return True

    pair.filter = drop_first_auth_response
    pair.establish()
    assert dropped and pair.cgw.session.status()["phase2"] != "Established"
    pair.run_for(3)  # our 2 s retransmit timer fires
    assert pair.cgw.session.status()["phase2"] == "Established"
    assert pair.aws.session.counters["retransmit_answered"] == 1
    assert pair.cgw.session.counters["retransmits"] == 1
    # The responder processed IKE_AUTH once: one IKE SA, one Child SA there.
    assert len([e for e in pair.aws.events if isinstance(e, IkeEstablished)]) == 1
    assert len(pair.aws.session.children) == 1


def test_unanswered_initiation_gives_up_and_retries() -> None:
    pair = Pair()
    pair.filter = lambda sender, out: sender != "aws"
    pair.establish()
    # 2, 4, 8, 16, 32 s between the six transmissions, then 32 s more: give up at 94 s.
    pair.run_for(93)
    assert not pair.cgw.downs()
    pair.run_for(2)
    downs = pair.cgw.downs()
    assert downs and downs[0].reason == "retransmit_timeout"
    pair.filter = None
    pair.run_for(10)
    assert pair.cgw.session.status()["phase2"] == "Established"


def test_peer_deletes_ike_sa_then_we_reinitiate() -> None:
    pair = Pair()
    pair.establish()
    pair.aws.session.terminate(pair.now)  # AWS side deletes (and stops initiating itself)
    pair.pump()
    assert [d.reason for d in pair.cgw.downs()] == ["deleted_by_peer"]
    assert pair.cgw.downs()[0].retry_in is not None
    pair.run_for(5)
    assert pair.cgw.session.status()["phase2"] == "Established"
    assert pair.lost_packets == 0


def test_peer_deletes_child_only_then_we_create_a_new_one() -> None:
    pair = Pair()
    pair.establish()
    aws = pair.aws.session
    child = next(iter(aws.children.values()))
    aws.queue_task(aws.current_ike(), DeleteChild(aws, aws.current_ike(), child, "test"))  # type: ignore[arg-type]
    aws.handle_timer(pair.now)
    pair.run_for(5)
    st = pair.cgw.session.status()
    assert st["phase2"] == "Established" and len(st["children"]) == 1
    assert st["children"][0]["spi_out"] != f"{child.spi_in:08x}"
    assert "child_deleted" in pair.cgw.log_names()


def test_forged_and_garbage_messages_cannot_tear_down() -> None:
    pair = Pair()
    pair.establish()
    cgw = pair.cgw.session
    ike = cgw.current_ike()
    assert ike is not None
    # An INFORMATIONAL { D(IKE) } with the right SPIs but protected with other keys.
    suite = IkeSuite(20, 256, None, 7, 21)
    k = Secret(bytes(64))
    wrong = IkeKeys(k, k, k, Secret(bytes(36)), Secret(bytes(36)), k, k)
    sk_out, _ = wrong.sk_ciphers(suite, initiator=False)
    msg = Message(
        ExchangeType.INFORMATIONAL,
        0,
        ike.spi_i_int,
        ike.spi_r_int,
        False,
        False,
        [DeletePayload(1)],
    )
    forged = encode_message(msg, sk_out, SeededRng(5))
    for data in (forged, b"", b"\x00" * 27, b"garbage" * 10, forged[:40]):
        cgw.receive_datagram(data, (AWS_IP, 4500), (CGW_IP, 4500), pair.now)
    cgw.receive_datagram(forged, ("203.0.113.99", 500), (CGW_IP, 500), pair.now)
    pair.pump()
    assert cgw.status()["phase2"] == "Established"
    assert not pair.cgw.downs()
    assert cgw.counters["integrity_failed"] == 1
    assert cgw.counters["malformed"] >= 3
    assert cgw.counters["unknown_peer"] == 1


def test_behind_nat_moves_to_4500_and_keeps_public_identity() -> None:
    cgw_cfg = config_for(CGW_IP, AWS_IP, local_id=IPv4Address(NAT_PUBLIC_IP))
    aws_cfg = config_for(AWS_IP, NAT_PUBLIC_IP)
    pair = Pair(cgw_cfg, aws_cfg, nat=True)
    pair.establish()
    st = pair.cgw.session.status()
    assert st["phase2"] == "Established"
    assert st["ike"]["nat_local"] is True and st["ike"]["port"] == 4500
    out = pair.cgw.current_out()
    assert out is not None
    encap = pair.cgw.dataplane.params(out).encap
    assert encap is not None and encap.local_port == 4500 and encap.remote_port == 4500
    aws_out = pair.aws.current_out()
    assert aws_out is not None
    aws_encap = pair.aws.dataplane.params(aws_out).encap
    assert aws_encap is not None and aws_encap.remote_port == 44500  # the NAT's port
    assert pair.aws.session.status()["ike"]["nat_remote"] is True
    pair.run_for(200)  # rekeys and DPD keep working through the NAT
    assert pair.cgw.session.status()["phase2"] == "Established"


def test_init_flood_triggers_cookies_and_stays_bounded() -> None:
    cfg = config_for(CGW_IP, AWS_IP, half_open_cookie_threshold=4, half_open_limit=16)
    pair = Pair(cgw_config=cfg)
    cgw = pair.cgw.session
    replies: list[Outgoing] = []
    for i in range(200):
        attacker = IkeSession(config_for(AWS_IP, CGW_IP), SeededRng(50_000 + i), lambda: 4096, 0.0)
        attacker.initiate(pair.now)
        (req,) = attacker.datagrams_to_send()
        cgw.receive_datagram(req.data, (AWS_IP, 500), (CGW_IP, 500), pair.now)
        replies += cgw.datagrams_to_send()
    half_open = [sa for sa in cgw.ike_sas if not sa.initiator]
    assert len(half_open) == 4  # after the threshold, only requests with a valid cookie
    cookie_replies = [r for r in replies if b"\x40\x06" in r.data[28:40] or len(r.data) < 80]
    assert len(cookie_replies) >= 190
    # A real peer that answers the cookie still gets in.
    pair.aws.session.initiate(pair.now)
    pair.pump()
    assert pair.aws.session.status()["phase2"] == "Established"
    assert "cookie_requested" in pair.aws.log_names()
    # Half-open SAs expire.
    pair.run_for(40)
    assert len(cgw.ike_sas) == 1
    assert "ike_half_open_timeout" in pair.cgw.log_names()


def test_esp_from_the_peer_defers_dpd_until_the_tunnel_goes_quiet() -> None:
    """RFC 7296 2.4: a liveness check only when nothing protected arrived lately. The host
    tells the session when ESP last arrived (`note_traffic`); here every second."""
    pair = Pair()
    pair.establish()
    probes: list[float] = []

    def count_probes(sender: str, out: Outgoing) -> bool:
        if _exchange(out) == (ExchangeType.INFORMATIONAL, False):
            probes.append(pair.now)
        return True

    pair.filter = count_probes
    for _ in range(60):
        for end in (pair.cgw, pair.aws):
            end.session.note_traffic(pair.now)
        pair.run_for(1)
    assert probes == []
    # The peer dies: the first probe goes out dpd_delay after the last ESP.
    quiet_from = pair.now
    pair.filter = lambda sender, out: count_probes(sender, out) and sender != "aws"
    pair.run_for(45)
    delay = pair.cgw.session.config.dpd_delay
    assert probes and quiet_from + delay - 1 <= probes[0] <= quiet_from + delay + 1
    downs = pair.cgw.downs()
    assert downs and downs[0].reason == "dpd_timeout"
