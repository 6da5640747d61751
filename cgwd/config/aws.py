"""What an AWS VPN configuration download says, format-independent.

Every importer in `cgwd.config.importers` produces an `AwsVpnConnection`. A value the
format does not carry is ``None``, never a default: defaults are applied later, by the
runtime configuration (`cgwd.config.model`), where they are visible and documented.

Algorithm names use AWS's tunnel-option vocabulary (see `ENCRYPTION_ALGORITHMS` ...).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv4Network, IPv6Network
from typing import Any, Literal

from cgwd.secret import Secret

# AWS tunnel-option vocabulary (EC2 API: Phase1EncryptionAlgorithmsRequestListValue etc.).
ENCRYPTION_ALGORITHMS = ("AES128", "AES256", "AES128-GCM-16", "AES256-GCM-16")
INTEGRITY_ALGORITHMS = ("SHA1", "SHA2-256", "SHA2-384", "SHA2-512")
PHASE1_DH_GROUPS = (2, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24)
PHASE2_DH_GROUPS = (2, 5, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24)

IkeVersion = Literal["ikev1", "ikev2"]
Routing = Literal["static", "bgp"]
FormatName = Literal[
    "aws-generic-text",
    "aws-customer-gateway-xml",
    "aws-cli-json",
    "aws-cisco-ios",
    "aws-strongswan",
    "aws-openswan",
]


@dataclass(frozen=True)
class PhaseSettings:
    """Algorithms and lifetime of IKE phase 1 or IPsec phase 2.

    ``encryption``/``integrity``/``dh_group`` are what the file prints (for phase 2 the DH
    group is the PFS group). When the file lists several allowed values (the CLI JSON's
    ``TunnelOptions``), the singular fields hold the first and the ``*_allowed`` tuples hold
    them all; otherwise the tuples hold the single value, or are empty when absent.
    """

    encryption: str | None = None
    integrity: str | None = None
    dh_group: int | None = None
    lifetime_seconds: int | None = None
    encryption_allowed: tuple[str, ...] = ()
    integrity_allowed: tuple[str, ...] = ()
    dh_groups_allowed: tuple[int, ...] = ()


@dataclass(frozen=True)
class DeadPeerDetection:
    interval_seconds: int | None = None
    retries: int | None = None
    timeout_seconds: int | None = None  # TunnelOptions.DpdTimeoutSeconds
    action: Literal["clear", "none", "restart"] | None = None


@dataclass(frozen=True)
class BgpSettings:
    customer_gateway_asn: int
    neighbor_asn: int
    neighbor_ip: IPv4Address
    hold_time_seconds: int | None


@dataclass(frozen=True)
class AwsTunnel:
    """One of the connection's two IPsec tunnels, as the file describes it."""

    index: int  # 1 or 2, in file order (never sorted)
    customer_gateway_outside_ip: IPv4Address | None
    vpn_gateway_outside_ip: IPv4Address
    customer_gateway_inside_ip: IPv4Address | None
    vpn_gateway_inside_ip: IPv4Address | None
    inside_cidr: IPv4Network | None
    pre_shared_key: Secret | None  # None: not in the file (e.g. kept in Secrets Manager)
    ike_version: IkeVersion | None
    phase1: PhaseSettings
    phase2: PhaseSettings
    dpd: DeadPeerDetection
    tcp_mss_adjustment: int | None = None
    tunnel_mtu: int | None = None
    clear_df_bit: bool | None = None
    fragmentation_before_encryption: bool | None = None
    static_route_next_hop: IPv4Address | None = None
    bgp: BgpSettings | None = None
    inside_ipv6_cidr: IPv6Network | None = None
    ike_versions_allowed: tuple[IkeVersion, ...] = ()
    rekey_margin_seconds: int | None = None
    rekey_fuzz_percentage: int | None = None
    replay_window_size: int | None = None
    startup_action: Literal["add", "start"] | None = None


@dataclass(frozen=True)
class AwsVpnConnection:
    """A whole download: the connection's ids, routing and its two tunnels."""

    format: FormatName
    vpn_connection_id: str | None
    vpn_gateway_id: str | None  # None for a Transit Gateway attachment
    customer_gateway_id: str | None
    routing: Routing
    tunnels: tuple[AwsTunnel, AwsTunnel]
    transit_gateway_id: str | None = None
    # Non-fatal findings (e.g. TunnelOptions disagreeing with the XML); never contain secrets.
    warnings: tuple[str, ...] = field(default=())

    def to_json(self, *, show_secrets: bool = False) -> dict[str, Any]:
        """The `cgwd import --json` document. The PSK is ``***`` unless ``show_secrets``."""
        return {
            "format": self.format,
            "vpn_connection_id": self.vpn_connection_id,
            "vpn_gateway_id": self.vpn_gateway_id,
            "transit_gateway_id": self.transit_gateway_id,
            "customer_gateway_id": self.customer_gateway_id,
            "routing": self.routing,
            "tunnels": [_tunnel_json(t, show_secrets) for t in self.tunnels],
            "warnings": list(self.warnings),
        }


def _str(value: object | None) -> str | None:
    return None if value is None else str(value)


def _phase_json(phase: PhaseSettings, dh_key: str) -> dict[str, Any]:
    return {
        "encryption": phase.encryption,
        "integrity": phase.integrity,
        dh_key: phase.dh_group,
        "lifetime_seconds": phase.lifetime_seconds,
        "encryption_allowed": list(phase.encryption_allowed),
        "integrity_allowed": list(phase.integrity_allowed),
        "dh_groups_allowed": list(phase.dh_groups_allowed),
    }


def _tunnel_json(t: AwsTunnel, show_secrets: bool) -> dict[str, Any]:
    if t.pre_shared_key is None:
        psk: str | None = None
    elif show_secrets:
        psk = t.pre_shared_key.reveal().decode()
    else:
        psk = "***"
    return {
        "index": t.index,
        "customer_gateway_outside_ip": _str(t.customer_gateway_outside_ip),
        "vpn_gateway_outside_ip": _str(t.vpn_gateway_outside_ip),
        "customer_gateway_inside_ip": _str(t.customer_gateway_inside_ip),
        "vpn_gateway_inside_ip": _str(t.vpn_gateway_inside_ip),
        "inside_cidr": _str(t.inside_cidr),
        "inside_ipv6_cidr": _str(t.inside_ipv6_cidr),
        "pre_shared_key": psk,
        "ike_version": t.ike_version,
        "ike_versions_allowed": list(t.ike_versions_allowed),
        "phase1": _phase_json(t.phase1, "dh_group"),
        "phase2": _phase_json(t.phase2, "pfs_dh_group"),
        "dpd": {
            "interval_seconds": t.dpd.interval_seconds,
            "retries": t.dpd.retries,
            "timeout_seconds": t.dpd.timeout_seconds,
            "action": t.dpd.action,
        },
        "tcp_mss_adjustment": t.tcp_mss_adjustment,
        "tunnel_mtu": t.tunnel_mtu,
        "clear_df_bit": t.clear_df_bit,
        "fragmentation_before_encryption": t.fragmentation_before_encryption,
        "static_route_next_hop": _str(t.static_route_next_hop),
        "bgp": None
        if t.bgp is None
        else {
            "customer_gateway_asn": t.bgp.customer_gateway_asn,
            "neighbor_asn": t.bgp.neighbor_asn,
            "neighbor_ip": str(t.bgp.neighbor_ip),
            "hold_time_seconds": t.bgp.hold_time_seconds,
        },
        "rekey_margin_seconds": t.rekey_margin_seconds,
        "rekey_fuzz_percentage": t.rekey_fuzz_percentage,
        "replay_window_size": t.replay_window_size,
        "startup_action": t.startup_action,
    }
