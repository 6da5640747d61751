"""A tunnel's plan (`cgwd.config.tunnel_plan.TunnelPlan`) as the policy of its IKE session.

Pure: no I/O, no clock. The plan already decided lifetimes, rekey windows, DPD and the
proposals; this module only maps them onto `IkeSessionConfig` (IKEv2) or
`Ikev1SessionConfig` (IKEv1), plus two timings the plan does not name:

- how long an exchange is retransmitted before it is given up, and
- the cap of the re-initiation backoff after a loss,

both scaled to the tunnel's DPD timeout, so that a tunnel with a short DPD (the lab's, a
test's) notices a dead path and comes back on the same short timescale as its DPD, and one
with AWS's default DPD (dead after 30 s) keeps AWS's timescale.
"""

from __future__ import annotations

from dataclasses import replace
from ipaddress import IPv4Address
from typing import Any

from cgwd.config.tunnel_plan import DpdPlan, RekeyPlan, TunnelPlan
from cgwd.errors import ConfigError
from cgwd.ike.constants import ProtocolId
from cgwd.ike.retransmit import DEFAULT_POLICY, ReconnectBackoff, RetransmitPolicy
from cgwd.ike.v1.proposals import from_config as ikev1_from_config
from cgwd.ike.v1.sa import Ikev1SessionConfig
from cgwd.ike.v2.sa import IkeSessionConfig
from cgwd.ike.v2.wire import proposals_from_config

RECONNECT_CAP = 60.0  # seconds: the engines' default cap of the re-initiation backoff


def dpd_retransmit(dpd: DpdPlan) -> RetransmitPolicy:
    """The probe's retransmissions so that the peer is dead ``dpd.dead_after`` s (interval x
    retries, AWS's "DPD timeout") after the last message heard: the first probe goes after
    ``interval`` s of silence, then one per interval (with one retry, the earliest is two
    intervals: a probe needs an interval to be answered)."""
    interval = float(dpd.interval)
    return RetransmitPolicy(
        initial=interval, factor=1.0, max_interval=interval, tries=max(dpd.retries - 2, 0)
    )


def exchange_retransmit(dpd: DpdPlan) -> RetransmitPolicy:
    """Retransmission of other requests: the engines' default (2, 4, 8, ... s, 5 tries) with
    the longest interval capped at half the DPD timeout, so a request is retried at least
    twice within the time DPD would need to call the peer dead (AWS's DPD: 2, 4, 8, 15, 15,
    15 s)."""
    cap = max(DEFAULT_POLICY.initial, min(DEFAULT_POLICY.max_interval, dpd.dead_after / 2))
    initial = min(DEFAULT_POLICY.initial, cap)
    return RetransmitPolicy(
        initial=initial, factor=DEFAULT_POLICY.factor, max_interval=cap, tries=DEFAULT_POLICY.tries
    )


def reconnect_backoff(dpd: DpdPlan) -> ReconnectBackoff:
    """Capped, jittered re-initiation delays: 1, 2, 4, ... s up to twice the DPD timeout,
    at most `RECONNECT_CAP` (60 s with AWS's default DPD)."""
    return ReconnectBackoff(cap=max(2.0, min(RECONNECT_CAP, 2.0 * dpd.dead_after)))


def _rekey(plan: RekeyPlan) -> tuple[float, float]:
    """(rekey time, downward jitter fraction) reproducing the plan's window: the engines
    rekey at ``time * (1 - jitter * u)`` for u uniform in [0, 1)."""
    top = float(plan.rekey_max)
    jitter = 0.0 if top <= 0 else (plan.rekey_max - plan.rekey_min) / top
    return top, jitter


def _common(plan: TunnelPlan, local: IPv4Address) -> dict[str, Any]:
    ike_rekey, ike_jitter = _rekey(plan.phase1)
    child_rekey, child_jitter = _rekey(plan.phase2)
    return {
        "tunnel": plan.interface,
        "local_address": local,
        "remote_address": plan.remote_address,
        "psk": plan.psk,
        "local_id": plan.identity or local,
        "ike_rekey_time": ike_rekey,
        "child_rekey_time": child_rekey,
        # One jitter fraction for both: the wider window of the two (both stay below
        # rekey_max, i.e. before AWS may rekey).
        "rekey_jitter": max(ike_jitter, child_jitter),
        "dpd_delay": float(plan.dpd.interval),
        "dpd_retransmit": dpd_retransmit(plan.dpd),
        "retransmit": exchange_retransmit(plan.dpd),
        "reconnect": reconnect_backoff(plan.dpd),
        "auto_initiate": True,
        "replay_window": plan.replay_window,
        "force_encap": plan.nat_traversal == "force",
    }


def ikev2_config(plan: TunnelPlan, local: IPv4Address, **overrides: Any) -> IkeSessionConfig:
    """The IKEv2 session policy of ``plan``, bound to ``local`` (``overrides``: e.g. ports)."""
    cfg = IkeSessionConfig(
        ike_proposals=proposals_from_config(plan.proposals.ike, ProtocolId.IKE),
        esp_proposals=proposals_from_config(plan.proposals.esp, ProtocolId.ESP),
        ike_lifetime=float(plan.phase1.lifetime),
        child_lifetime=float(plan.phase2.lifetime),
        **_common(plan, local),
    )
    return replace(cfg, **overrides) if overrides else cfg


def ikev1_config(plan: TunnelPlan, local: IPv4Address, **overrides: Any) -> Ikev1SessionConfig:
    """The IKEv1 session policy of ``plan``: AWS's lifetimes are proposed as they are.

    Raises:
        ConfigError: the proposal set names something the IKEv1 engine does not implement.
    """
    try:
        phase1, esp, groups = ikev1_from_config(plan.proposals)
    except ValueError as exc:
        raise ConfigError(f"{plan.interface}: {exc}") from None
    cfg = Ikev1SessionConfig(
        phase1_suites=phase1,
        esp_suites=esp,
        pfs_groups=groups,
        ike_lifetime=plan.phase1.lifetime,
        child_lifetime=plan.phase2.lifetime,
        **_common(plan, local),
    )
    return replace(cfg, **overrides) if overrides else cfg
