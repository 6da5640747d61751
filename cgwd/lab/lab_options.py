"""How to build an `cgwd.lab.aws_side.AwsLab`: addresses, AWS endpoint behaviour, timers.

Defaults are AWS's (DPD after 10 s, dead after 30 s, the file's lifetimes and proposals);
`LabOptions.for_tests` shortens the timers so that failures are noticed in seconds.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv4Interface, IPv4Network
from pathlib import Path
from typing import Any

from cgwd.lab import aws_profile
from cgwd.lab.aws_profile import DpdAction, EndpointPolicy, IkeVersionChoice, StartupAction
from cgwd.lab.strongswan import DEFAULT_LOG_LEVELS, CharonSettings
from cgwd.secret import Secret

DEFAULT_LAN_PREFIX = IPv4Network("10.20.0.0/24")
DEFAULT_LAN_HOST = IPv4Interface("10.20.0.10/24")
DEFAULT_LAN_GATEWAY = IPv4Address("10.20.0.1")
DEFAULT_VPC_CIDR = IPv4Network("10.99.0.0/16")
DEFAULT_VPC_HOST = IPv4Interface("10.99.0.10/24")
# Links between the lab's namespaces (one /24 each); must not overlap the addresses above.
DEFAULT_TRANSIT = IPv4Network("10.255.0.0/16")


@dataclass(frozen=True)
class LabOptions:
    """How to build the lab. Defaults are AWS's; `LabOptions.for_tests` shortens timers.

    ``retransmit_*`` set how fast an endpoint gives up on a silent peer: IKEv2 DPD (a
    liveness request) fails after ``retransmit_timeout * (1 + base + ... + base^tries)`` s.
    The default (5 s, 5 tries, base 1) declares a peer dead 30 s after the probe, like AWS.
    """

    nat: bool = False
    nat_random_ports: bool = True
    # Seconds the NAT keeps an idle UDP mapping (Linux: 30, or 120 once both ways have
    # been seen). Short values show whether the gateway's NAT-T keepalives hold it open.
    nat_udp_timeout: int | None = None
    lan: bool = True
    lan_prefixes: tuple[IPv4Network, ...] = (DEFAULT_LAN_PREFIX,)
    lan_host: IPv4Interface = DEFAULT_LAN_HOST
    lan_gateway: IPv4Address = DEFAULT_LAN_GATEWAY
    vpc_cidr: IPv4Network = DEFAULT_VPC_CIDR
    vpc_host: IPv4Interface = DEFAULT_VPC_HOST
    transit_network: IPv4Network = DEFAULT_TRANSIT
    cgw_forwarding: bool = True
    tunnels: tuple[int, ...] = (1, 2)  # which endpoints to build
    # AWS endpoint behaviour (None: from the file, else AWS's default)
    ike_version: IkeVersionChoice | None = None
    startup_action: StartupAction | None = None
    dpd_delay: int | None = None
    dpd_timeout: int | None = None
    dpd_action: DpdAction | None = None
    phase1_lifetime: int | None = None
    phase2_lifetime: int | None = None
    rekey_margin: int | None = None
    rekey_fuzz_percentage: int | None = None
    replay_window: int | None = None
    remote_id: str | None = None
    # Per tunnel index: strongSwan proposal strings (e.g. "aes256gcm16-prfsha384-ecp384")
    # restricting that endpoint, and PSK overrides (e.g. a wrong one).
    ike_proposals: Mapping[int, str] = field(default_factory=dict)
    esp_proposals: Mapping[int, str] = field(default_factory=dict)
    psks: Mapping[int, Secret] = field(default_factory=dict)
    # charon
    retransmit_timeout: float = 5.0
    retransmit_tries: int = 5
    retransmit_base: float = 1.0
    log_levels: Mapping[str, int] = field(default_factory=lambda: dict(DEFAULT_LOG_LEVELS))
    # where things live
    workdir: Path | None = None  # default: a new temporary directory, removed by close()
    prefix: str | None = None  # namespace name prefix; default: a fresh random one
    detach: bool = False  # charons outlive this process (cgwd lab up)

    @classmethod
    def for_tests(cls, **overrides: Any) -> LabOptions:
        """Short timers: DPD probe after 2 s of silence, peer dead 3 s later."""
        base: dict[str, Any] = {
            "dpd_delay": 2,
            "dpd_timeout": 4,
            "retransmit_timeout": 1.0,
            "retransmit_tries": 2,
            "retransmit_base": 1.0,
        }
        base.update(overrides)
        return cls(**base)

    def policy(self, index: int) -> EndpointPolicy:
        return EndpointPolicy(
            ike_version=self.ike_version,
            startup_action=self.startup_action,
            dpd_delay=self.dpd_delay,
            dpd_timeout=self.dpd_timeout,
            dpd_action=self.dpd_action,
            phase1_lifetime=self.phase1_lifetime,
            phase2_lifetime=self.phase2_lifetime,
            rekey_margin=self.rekey_margin,
            rekey_fuzz_percentage=self.rekey_fuzz_percentage,
            replay_window=self.replay_window,
            ike_proposals=self.ike_proposals.get(index),
            esp_proposals=self.esp_proposals.get(index),
            remote_id=self.remote_id,
            psk=self.psks.get(index),
        )

    def charon_settings(self) -> CharonSettings:
        return CharonSettings(
            log_levels=dict(self.log_levels),
            retransmit_timeout=self.retransmit_timeout,
            retransmit_tries=self.retransmit_tries,
            retransmit_base=self.retransmit_base,
        )

    @property
    def dead_peer_after(self) -> float:
        """Upper bound on how long a silent peer stays up at an endpoint (either IKE version):
        the DPD delay, then IKEv2's liveness timeout or IKEv1's ``dpd_timeout``."""
        delay = self.dpd_delay or aws_profile.AWS_DEFAULT_DPD_DELAY
        timeout = self.dpd_timeout or aws_profile.AWS_DEFAULT_DPD_TIMEOUT
        return delay + max(self.liveness_timeout, timeout)

    @property
    def liveness_timeout(self) -> float:
        """Seconds an endpoint waits for a DPD answer before declaring the peer dead."""
        return sum(
            self.retransmit_timeout * self.retransmit_base**k
            for k in range(self.retransmit_tries + 1)
        )
