"""Inbound SPIs allocated for exchanges that fail are given back to the dataplane.

The initiator of IKE_AUTH or CREATE_CHILD_SA reserves its inbound SPI before it knows the
outcome; the fake dataplane keeps every reservation until an SA is installed with it or it
is released (its own expiry runs on the wall clock and never fires in these tests), so a
reservation left over after the exchanges are done is a leak.
"""

from __future__ import annotations

from ikev2_pair import AWS_IP, CGW_IP, TUNNEL, Endpoint, Pair, aws_tunnel, config_for

from cgwd.ike.events import InboundSpiReleased, LogEvent
from cgwd.secret import Secret


def _reserved(ep: Endpoint) -> set[int]:
    return set(ep.dataplane.tunnels[TUNNEL].reserved_spis)


def _released(ep: Endpoint) -> list[int]:
    return [e.sa.spi for e in ep.events if isinstance(e, InboundSpiReleased)]


def _in_flight(ep: Endpoint) -> set[int]:
    """SPIs of exchanges still queued or waiting for an answer (legitimately reserved)."""
    return {
        t.spi_in
        for sa in ep.session.ike_sas
        for t in (sa.tm.active, *sa.tm.queued)
        if t is not None and t.spi_in is not None
    }


def test_failed_child_rekeys_release_their_spis() -> None:
    """The PFS trap: every rekey is refused (NO_PROPOSAL_CHOSEN) and retried with a new SPI."""
    t_c = aws_tunnel(p1=(("AES128",), ("SHA1",), (14,)), p2=(("AES128",), ("SHA1",), (14,)))
    t_a = aws_tunnel(p1=(("AES128",), ("SHA1",), (14,)), p2=(("AES128",), ("SHA1",), (19,)))
    pair = Pair(
        config_for(CGW_IP, AWS_IP, t_c, child_rekey_time=100.0, child_lifetime=10_000.0,
                   rekey_jitter=0.0),
        config_for(AWS_IP, CGW_IP, t_a, child_rekey_time=10_000.0, child_lifetime=30_000.0),
    )  # fmt: skip
    pair.establish()
    pair.run_for(400)  # the rekey at 100 s and its retries every 60 s: five failures
    failures = [
        e for e in pair.cgw.events if isinstance(e, LogEvent) and e.name == "child_create_failed"
    ]
    assert len(failures) >= 4
    assert len(_released(pair.cgw)) >= len(failures)
    assert _reserved(pair.cgw) <= _in_flight(pair.cgw)
    assert pair.cgw.session.status()["phase2"] == "Established"  # the old one still works


def test_failed_ike_auth_releases_its_spi() -> None:
    aws_cfg = config_for(AWS_IP, CGW_IP, psk=Secret("another_psk_99"))
    pair = Pair(config_for(CGW_IP, AWS_IP), aws_cfg)
    pair.establish()
    pair.run_for(120)  # several attempts, each refused with AUTHENTICATION_FAILED
    attempts = pair.cgw.log_names().count("auth_failed")
    assert attempts >= 2
    assert len(_released(pair.cgw)) == attempts
    assert _reserved(pair.cgw) <= _in_flight(pair.cgw)


def test_child_creation_lost_with_a_dead_peer_releases_its_spi() -> None:
    """The peer stops answering during a rekey: retransmissions give up, the IKE SA is
    dropped, and its exchange's SPI is released with it."""
    pair = Pair(
        config_for(CGW_IP, AWS_IP, child_rekey_time=100.0, rekey_jitter=0.0, dpd_delay=1000.0),
        config_for(AWS_IP, CGW_IP, child_rekey_time=10_000.0, dpd_delay=1000.0),
    )
    pair.establish()
    installed_before = {sa.spi for sa in pair.cgw.installed() if sa.direction == "in"}
    pair.filter = lambda sender, out: False  # from now on, nothing gets through
    pair.run_for(99.5)
    pair.run_for(200)
    assert "retransmit_timeout" in [d.reason for d in pair.cgw.downs()]
    released = set(_released(pair.cgw))
    assert released and released.isdisjoint(installed_before)
    assert _reserved(pair.cgw) <= _in_flight(pair.cgw)
