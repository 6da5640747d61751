"""IKE_SA_INIT + IKE_AUTH between two in-memory IKEv2 sessions."""

from __future__ import annotations

from ipaddress import IPv4Address

from ikev2_pair import AWS_IP, CGW_IP, Pair, aws_tunnel, config_for

from cgwd.control.status import ChildSaStatus, IkeSaStatus
from cgwd.dataplane.base import SaId
from cgwd.ike.events import IkeEstablished
from cgwd.ike.v2.negotiation import Selector
from cgwd.ike.v2.status import control_fields
from cgwd.secret import Secret


def _assert_tunnel_up(pair: Pair) -> None:
    cgw, aws = pair.cgw, pair.aws
    out_c, out_a = cgw.current_out(), aws.current_out()
    assert out_c is not None and out_a is not None
    # Each side's outbound SA is the other's inbound SA, with the same keys and suite.
    assert SaId(out_c.tunnel, "in", out_c.spi) in aws.installed()
    assert SaId(out_a.tunnel, "in", out_a.spi) in cgw.installed()
    pc = cgw.dataplane.params(out_c)
    pa = aws.dataplane.params(SaId(out_c.tunnel, "in", out_c.spi))
    assert pc.keymat == pa.keymat and pc.suite == pa.suite
    assert cgw.dataplane.params(out_c).keymat != aws.dataplane.params(out_a).keymat


def test_establish_default_proposals() -> None:
    pair = Pair()
    pair.establish()
    _assert_tunnel_up(pair)
    st = pair.cgw.session.status(pair.now)
    assert st["phase1"] == "Established" and st["phase2"] == "Established"
    # Strongest first on both sides: AES256-GCM-16 with PRF SHA2-512, ECP-521.
    assert st["ike"]["suite"] == "aes256gcm16-prfsha512-ecp521"
    assert st["children"][0]["suite"] == "aes256gcm16"
    assert st["children"][0]["ts_local"] == ["0.0.0.0/0"]
    est = [e for e in pair.cgw.events if isinstance(e, IkeEstablished)]
    assert len(est) == 1 and est[0].initiator
    assert pair.aws.session.status()["ike"]["initiator"] is False
    assert pair.lost_packets == 0
    # No NAT between them: plain ESP.
    assert pair.cgw.dataplane.params(pair.cgw.current_out()).encap is None  # type: ignore[arg-type]
    assert "test_psk" not in repr(st)


def test_initial_contact_sent_on_first_sa_only() -> None:
    pair = Pair()
    pair.establish()
    assert pair.aws.session.current_ike().initial_contact  # type: ignore[union-attr]
    pair.cgw.session.terminate(pair.now)
    pair.pump()
    pair.cgw.session.initiate(pair.now)
    pair.pump()
    assert pair.aws.session.current_ike().initial_contact is False  # type: ignore[union-attr]
    _assert_tunnel_up(pair)


def test_responder_picks_lowest_when_aws_restricted_and_ke_retry() -> None:
    # AWS allows only AES128/SHA1/DH2 in both phases: our first KE (ECP-521) is refused
    # with INVALID_KE_PAYLOAD and we retry with group 2.
    t = aws_tunnel(p1=(("AES128",), ("SHA1",), (2,)), p2=(("AES128",), ("SHA1",), (2,)))
    aws_cfg = config_for(AWS_IP, CGW_IP, t)
    pair = Pair(aws_config=aws_cfg)
    pair.establish()
    _assert_tunnel_up(pair)
    st = pair.cgw.session.status()
    assert st["ike"]["suite"] == "aes128-sha1-prfsha1-modp1024"
    assert st["children"][0]["suite"] == "aes128-sha1"
    assert "invalid_ke_payload" in pair.cgw.log_names()


def test_aws_initiates_and_narrowed_selectors_are_accepted() -> None:
    narrow = (Selector(IPv4Address("10.0.0.0"), IPv4Address("10.0.255.255")),)
    aws_cfg = config_for(AWS_IP, CGW_IP, remote_ts=narrow)
    pair = Pair(aws_config=aws_cfg)
    pair.aws.session.initiate(pair.now)
    pair.pump()
    _assert_tunnel_up(pair)
    st = pair.cgw.session.status()
    assert st["ike"]["initiator"] is False
    assert st["children"][0]["ts_local"] == ["10.0.0.0-10.0.255.255"]


def test_wrong_psk_is_auth_failed_and_retried_with_backoff() -> None:
    aws_cfg = config_for(AWS_IP, CGW_IP, psk=Secret("another_psk_99"))
    pair = Pair(aws_config=aws_cfg)
    pair.establish()
    downs = pair.cgw.downs()
    assert [d.reason for d in downs] == ["auth_failed"]
    assert downs[0].retry_in is not None and 0 < downs[0].retry_in <= 1.0
    assert "auth_failed" in pair.aws.log_names()
    assert pair.cgw.current_out() is None
    pair.run_for(30)
    reasons = [d.reason for d in pair.cgw.downs()]
    assert len(reasons) >= 4 and set(reasons) == {"auth_failed"}
    retries = [d.retry_in for d in pair.cgw.downs()]
    assert retries == sorted(retries)  # backoff grows (with downward jitter, capped)
    assert pair.aws.session.status()["ike"] is None
    assert "another_psk" not in repr(pair.aws.events) + repr(pair.cgw.events)


def test_no_common_proposal() -> None:
    t = aws_tunnel(p1=(("AES128",), ("SHA1",), (2,)), p2=(("AES128",), ("SHA1",), (2,)))
    cgw_only = aws_tunnel(
        p1=(("AES256-GCM-16",), ("SHA2-384",), (20,)),
        p2=(("AES256-GCM-16",), ("SHA2-384",), (20,)),
    )
    pair = Pair(
        cgw_config=config_for(CGW_IP, AWS_IP, cgw_only), aws_config=config_for(AWS_IP, CGW_IP, t)
    )
    pair.establish()
    assert [d.reason for d in pair.cgw.downs()] == ["no_proposal_chosen"]
    assert "no_proposal_chosen" in pair.aws.log_names()
    pair.run_for(10)
    assert len(pair.cgw.downs()) >= 3


def test_both_sides_initiate_at_once_end_with_one_shared_sa() -> None:
    """AWS's "start" plus our own initiation: two IKE SAs; the same one survives at both
    ends (nonce rule as in RFC 7296 §2.8.2) and the tunnel never goes down."""
    for seed in range(1, 7):
        pair = Pair(seed=seed)
        pair.cgw.session.initiate(pair.now)
        pair.aws.session.initiate(pair.now)
        pair.run_for(60)
        c, a = pair.cgw.session.status(), pair.aws.session.status()
        assert c["phase2"] == "Established" and a["phase2"] == "Established", seed
        assert c["ike"]["spi_i"] == a["ike"]["spi_i"], seed
        assert len(pair.cgw.session.ike_sas) == 1 and len(pair.aws.session.ike_sas) == 1
        assert len(c["children"]) == 1 and len(a["children"]) == 1
        assert c["children"][0]["spi_in"] == a["children"][0]["spi_out"]
        _assert_tunnel_up(pair)
        # Decided by the nonce rule on both ends alike: nobody went down meanwhile.
        assert not pair.cgw.downs() and not pair.aws.downs()
        names = pair.cgw.log_names() + pair.aws.log_names()
        assert names.count("redundant_ike_deleted") == 1


def test_control_status_fields_fit_the_status_schema() -> None:
    pair = Pair()
    pair.establish()
    pair.run_for(5)
    for ep in (pair.cgw, pair.aws):
        ike, children = control_fields(ep.session, pair.now)
        assert ike is not None
        model = IkeSaStatus.model_validate(ike)
        assert model.state == "established" and model.version == 2
        assert model.encryption == "aes256gcm16" and model.integrity is None
        assert model.prf == "prfsha512" and model.dh_group == 21
        assert model.established_seconds == 5
        (child,) = (ChildSaStatus.model_validate(c) for c in children)
        assert child.encryption == "aes256gcm16" and child.udp_encap is False
    c_ike, _ = control_fields(pair.cgw.session, pair.now)
    a_ike, _ = control_fields(pair.aws.session, pair.now)
    assert c_ike is not None and a_ike is not None
    assert c_ike["local_spi"] == a_ike["remote_spi"]


def test_peer_restart_soon_after_establishment_replaces_the_stale_sa() -> None:
    """AWS's endpoint restarts (all state lost) 3 s after the tunnel came up and initiates
    again: its new IKE SA replaces ours at once; no duplicate handling, no outage to DPD."""
    pair = Pair()
    pair.establish()
    pair.run_for(3)
    old_spi = pair.cgw.session.status()["ike"]["spi_i"]
    fresh = Pair(seed=77)  # a restarted AWS side: new session, empty dataplane
    pair.aws = fresh.aws
    pair.aws.session.initiate(pair.now)
    pair.pump()
    c, a = pair.cgw.session.status(), pair.aws.session.status()
    assert c["ike"]["spi_i"] == a["ike"]["spi_i"] != old_spi
    assert len(pair.cgw.session.ike_sas) == 1
    assert len(c["children"]) == 1 and c["children"][0]["spi_out"] == a["children"][0]["spi_in"]
    assert "duplicate_ike_sa" not in pair.cgw.log_names()
    assert "redundant_ike_deleted" not in pair.cgw.log_names()
    pair.run_for(60)
    assert not pair.cgw.downs()
    _assert_tunnel_up(pair)
