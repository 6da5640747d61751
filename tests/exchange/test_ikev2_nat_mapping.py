"""The CGW's NAT rebinds (a new public port) while the SAs are up: the peer follows the
new port for IKE and, by rekeying, for the Child SA's ESP-in-UDP (RFC 7296 §2.23), but only
on the strength of authenticated, fresh messages."""

from __future__ import annotations

from ipaddress import IPv4Address

from ikev2_pair import AWS_IP, CGW_IP, NAT_PUBLIC_IP, Pair, config_for

from cgwd.ike.v2.session import Outgoing

NEW_BASE = 41000  # the NAT's new mapping: CGW port p -> public port 41000 + p


def _pair() -> Pair:
    cgw = config_for(
        CGW_IP, AWS_IP, local_id=IPv4Address(NAT_PUBLIC_IP), dpd_delay=10.0, rekey_jitter=0.0
    )
    aws = config_for(AWS_IP, NAT_PUBLIC_IP, dpd_delay=1000.0, rekey_jitter=0.0)
    pair = Pair(cgw, aws, nat=True)
    pair.establish()
    return pair


def _aws_ike_port(pair: Pair) -> int:
    """Where the AWS side sends IKE to (the CGW's public NAT-T port as it believes)."""
    sa = pair.aws.session.current_ike()
    assert sa is not None
    return sa.remote_port


def _aws_out_port(pair: Pair) -> int:
    out = pair.aws.current_out()
    assert out is not None
    encap = pair.aws.dataplane.params(out).encap
    assert encap is not None
    return encap.remote_port


def test_new_nat_mapping_moves_the_child_sa_to_the_new_port() -> None:
    pair = _pair()
    assert _aws_out_port(pair) == 40000 + 4500
    first_child = pair.aws.session.status()["children"][0]["spi_in"]
    pair.nat_port_base = NEW_BASE
    pair.run_for(15)  # the CGW's DPD comes from the new port; the answer must reach it
    assert "nat_mapping_changed" in pair.aws.log_names()
    assert _aws_ike_port(pair) == NEW_BASE + 4500
    assert _aws_out_port(pair) == NEW_BASE + 4500
    status = pair.aws.session.status()
    assert len(status["children"]) == 1 and status["children"][0]["spi_in"] != first_child
    assert not pair.cgw.downs() and not pair.aws.downs()
    pair.assert_make_before_break()
    pair.run_for(200)  # and it stays up through the new mapping (DPD every 10 s)
    assert not pair.cgw.downs() and _aws_out_port(pair) == NEW_BASE + 4500
    assert pair.aws.log_names().count("nat_mapping_changed") == 1


def test_a_replayed_message_from_another_port_moves_nothing() -> None:
    """An attacker who replays a captured (authentic) request from a port of its own must
    not redirect the tunnel: only fresh messages move the peer's port."""
    pair = _pair()
    captured: list[Outgoing] = []
    pair.filter = lambda sender, out: sender != "cgw" or not captured.append(out)
    pair.run_for(12)  # one DPD request from the CGW, delivered, and its answer
    pair.filter = None
    assert captured
    replay = captured[-1]
    pair.aws.session.receive_datagram(replay.data, (NAT_PUBLIC_IP, 33333), (AWS_IP, 4500), pair.now)
    pair.pump()
    assert _aws_ike_port(pair) == 40000 + 4500
    assert _aws_out_port(pair) == 40000 + 4500
    assert "nat_mapping_changed" not in pair.aws.log_names()
    assert pair.aws.session.counters["retransmit_answered"] >= 1  # it was seen and answered
