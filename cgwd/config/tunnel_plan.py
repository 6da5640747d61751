"""The resolved plan of every tunnel: what cgwd will do, and why.

`plan_connection` joins a `[[connection]]` of cgwd.toml with the AWS download it names and
decides, per tunnel: the interface name, inside addresses, MTU and MSS, routes and metrics,
lifetimes and rekey times, DPD, replay window, IKE version and the proposals to offer. The
precedence is always the same: the cgwd.toml key, then the AWS file, then AWS's default.
`cgwd check` prints the plan with the reasons; the daemon runs it.

Pure functions: no I/O, no clock. Errors are `PlanError` (a `ConfigError`) carrying the key
path of the cgwd.toml key at fault, so the loader can point at its line.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Interface, IPv4Network
from typing import Literal, Protocol

from cgwd.config.aws import AwsTunnel, AwsVpnConnection, BgpSettings, IkeVersion
from cgwd.config.model import (
    AWS_DEFAULT_PHASE1_LIFETIME,
    AWS_DEFAULT_PHASE2_LIFETIME,
    AWS_DEFAULT_REKEY_FUZZ,
    AWS_DEFAULT_REKEY_MARGIN,
    DEFAULT_DPD_INTERVAL,
    DEFAULT_DPD_RETRIES,
    ConnectionConfig,
    DaemonConfig,
    Dataplane,
    KeyPath,
)
from cgwd.config.proposals import (
    AEAD_ENCRYPTION,
    ProposalError,
    ProposalSet,
    parse_esp_suite_name,
    proposals_for,
)
from cgwd.errors import ConfigError
from cgwd.secret import Secret

# --- MTU and MSS (aws-behaviour.md §8) ------------------------------------------------------
OUTER_MTU = 1500  # AWS: no jumbo frames, no PMTUD on the tunnel path
IPV4_HEADER = 20  # outer header, RFC 791 (no options)
UDP_HEADER = 8  # NAT-T encapsulation, RFC 3948 §2.1
ESP_HEADER = 8  # SPI + sequence number, RFC 4303 §2
ESP_TRAILER = 2  # pad length + next header, RFC 4303 §2.4-2.6
TCP_IPV4_HEADERS = 40  # MSS = MTU - IPv4 - TCP headers (RFC 879)
TCP_IPV6_HEADERS = 60  # IPv6 inner packets: 20 more (aws-behaviour.md §8)
AWS_MAX_MTU = 1446  # AWS caps the tunnel MTU (aws-config-formats.md §7)
# IV and block size: AES-CBC 16/16 (RFC 3602 §3), AES-GCM 8-byte IV, 4-byte alignment
# (RFC 4106 §3.1-3.2). ICV: GCM 16 (RFC 4106 §3.3); HMAC truncated per RFC 2404 / RFC 4868 §2.3.
_IV_AND_BLOCK = {"cbc": (16, 16), "gcm": (8, 4)}
ICV_BYTES = {"SHA1": 12, "SHA2-256": 16, "SHA2-384": 24, "SHA2-512": 32}
GCM_ICV_BYTES = 16

REPLAY_WINDOW = 1024  # aws-behaviour.md §5


class _NamedSuite(Protocol):
    @property
    def name(self) -> str: ...


@dataclass(frozen=True)
class MtuMss:
    """Tunnel MTU and the TCP MSS to clamp to, for IPv4 and IPv6 inner packets."""

    mtu: int
    mss: int
    mss_ipv6: int


def mtu_mss(
    suite: str | tuple[str, str | None] | _NamedSuite,
    natt: bool,
    *,
    outer_mtu: int = OUTER_MTU,
) -> MtuMss:
    """The largest inner packet that fits one outer ``outer_mtu`` packet, and its MSS.

    ``suite`` is a strongSwan-style ESP suite name (``aes256gcm16``, ``aes128-sha1``), an
    object with such a ``name`` (``cgwd.esp.suites.EspSuite``) or an AWS pair
    ``("AES256", "SHA2-256")``. ``natt`` adds the UDP header of RFC 3948. The result is the
    largest MTU whose ESP payload plus trailer, padded to the cipher's block, fits (RFC 4303
    §2.4), capped at AWS's 1446. For a 1500-byte path it reproduces AWS's table.

    Raises:
        ProposalError: an unknown suite name.
    """
    if isinstance(suite, tuple):
        encryption, integrity = suite
    else:
        name = suite if isinstance(suite, str) else suite.name
        encryption, integrity = parse_esp_suite_name(name)
    if encryption in AEAD_ENCRYPTION:
        iv, block = _IV_AND_BLOCK["gcm"]
        icv = GCM_ICV_BYTES
    else:
        if integrity is None:
            raise ProposalError(f"{encryption} needs an integrity algorithm")
        iv, block = _IV_AND_BLOCK["cbc"]
        icv = ICV_BYTES[integrity]
    room = outer_mtu - IPV4_HEADER - (UDP_HEADER if natt else 0) - ESP_HEADER - iv - icv
    mtu = min(room // block * block - ESP_TRAILER, AWS_MAX_MTU)
    return MtuMss(mtu, mtu - TCP_IPV4_HEADERS, mtu - TCP_IPV6_HEADERS)


# --- lifetimes and rekey (aws-behaviour.md §4) -----------------------------------------------
REKEY_SLACK_MIN = 60  # time for the exchange itself, retransmits included
REKEY_SLACK_FRACTION = 100  # ... or 1 % of the lifetime, whichever is more
REKEY_JITTER_FRACTION = 20  # rekey somewhere in the last 5 % before our deadline
REKEY_FLOOR_FRACTION = 2  # never rekey before half the lifetime


@dataclass(frozen=True)
class RekeyPlan:
    """When one kind of SA is rekeyed, and why.

    AWS rekeys at a random point in ``[lifetime - margin*(1+fuzz), lifetime - margin]``. cgwd
    rekeys first: at a time drawn uniformly from ``[rekey_min, rekey_max]`` (jitter only
    downwards), where ``rekey_max = lifetime - margin*(1+fuzz) - slack``.
    """

    lifetime: int  # the AWS tunnel's lifetime; the SA's hard expiry for cgwd too
    aws_margin: int
    aws_fuzz_percent: int
    aws_earliest: int  # the earliest moment AWS may start its own rekey
    rekey_min: int
    rekey_max: int
    reason: str

    def rekey_after(self, fraction: float) -> float:
        """Seconds after SA creation to rekey, for ``fraction`` drawn uniformly in [0, 1)
        (from the caller's Rng)."""
        fraction = min(max(fraction, 0.0), 1.0)
        return self.rekey_max - (self.rekey_max - self.rekey_min) * fraction


def rekey_plan(lifetime: int, margin: int, fuzz_percent: int, *, what: str) -> RekeyPlan:
    """The rekey window for an SA of ``lifetime`` seconds against AWS's margin and fuzz."""
    aws_earliest = lifetime - math.ceil(margin * (100 + fuzz_percent) / 100)
    slack = max(REKEY_SLACK_MIN, lifetime // REKEY_SLACK_FRACTION)
    rekey_max = aws_earliest - slack
    floor = lifetime // REKEY_FLOOR_FRACTION
    if rekey_max >= floor:
        reason = (
            f"{what}: AWS rekeys between {aws_earliest} and {lifetime - margin} s of its "
            f"{lifetime} s lifetime (margin {margin} s, fuzz {fuzz_percent} %); cgwd rekeys "
            f"first, at least {slack} s before that window"
        )
    else:
        rekey_max = floor
        reason = (
            f"{what}: AWS may rekey as early as {max(aws_earliest, 0)} s (margin {margin} s, "
            f"fuzz {fuzz_percent} %); cgwd rekeys at half the lifetime and relies on "
            "collision handling (RFC 7296 §2.8.1) when AWS goes first"
        )
    rekey_min = max(rekey_max - lifetime // REKEY_JITTER_FRACTION, 1)
    return RekeyPlan(lifetime, margin, fuzz_percent, aws_earliest, rekey_min, rekey_max, reason)


# --- the plan ------------------------------------------------------------------------------


class PlanError(ConfigError):
    """A connection cannot be planned; ``key`` is the cgwd.toml key path at fault."""

    def __init__(self, key: KeyPath, message: str) -> None:
        super().__init__(message, element=_render_key(key))
        self.key = key


def _render_key(key: KeyPath) -> str:
    out = ""
    for part in key:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else part)
    return out


@dataclass(frozen=True)
class Route:
    """A route to ``network`` over one tunnel interface."""

    network: IPv4Network
    metric: int
    multipath: bool  # ecmp: one multipath route over both tunnels instead of two routes


@dataclass(frozen=True)
class DpdPlan:
    interval: int  # probe after this many seconds without traffic from AWS
    retries: int  # dead after this many unanswered probes
    reason: str

    @property
    def dead_after(self) -> int:
        """Seconds of silence after which the peer is dead (AWS's "DPD timeout")."""
        return self.interval * self.retries


@dataclass(frozen=True)
class TunnelPlan:
    """Everything cgwd needs to run one tunnel. ``psk`` is a `Secret`."""

    connection: str
    index: int  # 1 or 2, in the AWS file's order
    interface: str
    local_inside: IPv4Interface  # the /30 address on our interface (network + 2)
    remote_inside: IPv4Address  # AWS's inside address (network + 1), the routes' next hop
    local_address: IPv4Address | None  # IKE/ESP source; None: the route to the endpoint picks
    identity: IPv4Address | None  # our IKE ID: the customer gateway outside IP AWS knows
    remote_address: IPv4Address  # the AWS endpoint
    psk: Secret
    ike_version: IkeVersion
    ike_version_reason: str
    proposals: ProposalSet
    mtu: int  # before the first CHILD_SA: worst case of the offered suites
    mss: int
    mss_ipv6: int
    mtu_reason: str
    mtu_override: int | None  # cgwd.toml's mtu: kept whatever is negotiated
    mss_override: int | None  # cgwd.toml's mss
    nat_traversal: Literal["auto", "force"]
    routes: tuple[Route, ...]
    phase1: RekeyPlan
    phase2: RekeyPlan
    dpd: DpdPlan
    replay_window: int
    dataplane: Dataplane
    bgp: BgpSettings | None

    def mtu_mss_for(self, suite: str | _NamedSuite, natt: bool) -> MtuMss:
        """MTU/MSS once ``suite`` is negotiated, with or without NAT-T; cgwd.toml's `mtu`
        and `mss` win.

        Raises:
            ProposalError: an unknown suite name.
        """
        mtu = self.mtu_override or mtu_mss(suite, natt).mtu
        mss = self.mss_override or mtu - TCP_IPV4_HEADERS
        return MtuMss(mtu, mss, mss - (TCP_IPV6_HEADERS - TCP_IPV4_HEADERS))


@dataclass(frozen=True)
class ConnectionPlan:
    name: str
    config: ConnectionConfig
    aws: AwsVpnConnection
    tunnels: tuple[TunnelPlan, TunnelPlan]
    warnings: tuple[str, ...]


def _tunnel_psk(
    conn: ConnectionConfig, tunnel: AwsTunnel, warnings: list[str]
) -> tuple[Secret, str]:
    if conn.pre_shared_keys is not None:
        psk = conn.pre_shared_keys[tunnel.index - 1]
        if tunnel.pre_shared_key is not None and tunnel.pre_shared_key != psk:
            warnings.append(
                f"tunnel {tunnel.index}: pre_shared_keys differs from the AWS file's key; "
                "using cgwd.toml's"
            )
        return psk, "cgwd.toml"
    if tunnel.pre_shared_key is None:
        raise PlanError(
            ("aws_config",),
            f"tunnel {tunnel.index} has no pre-shared key in the AWS file (kept in Secrets "
            "Manager?): set pre_shared_keys = [...] in this [[connection]]",
        )
    return tunnel.pre_shared_key, "AWS file"


def _ike_version(conn: ConnectionConfig, tunnel: AwsTunnel) -> tuple[IkeVersion, str]:
    if conn.ike_version is not None:
        version: IkeVersion = "ikev1" if conn.ike_version == 1 else "ikev2"
        if tunnel.ike_versions_allowed and version not in tunnel.ike_versions_allowed:
            raise PlanError(
                ("ike_version",),
                f"tunnel {tunnel.index} allows only "
                f"{', '.join(tunnel.ike_versions_allowed)} (TunnelOptions.IkeVersions)",
            )
        return version, "cgwd.toml ike_version"
    if tunnel.ike_version is not None:
        return tunnel.ike_version, "the AWS file"
    if tunnel.ike_versions_allowed:
        version = "ikev2" if "ikev2" in tunnel.ike_versions_allowed else "ikev1"
        return version, "the file's TunnelOptions.IkeVersions"
    return "ikev2", "default: the file does not say, and AWS recommends IKEv2"


def _pick(config: int | None, file: int | None, default: int, label: str) -> tuple[int, str]:
    if config is not None:
        return config, f"{label} from cgwd.toml"
    if file is not None:
        return file, f"{label} from the AWS file"
    return default, f"{label} AWS default"


def _routes(conn: ConnectionConfig, index: int) -> tuple[Route, ...]:
    preferred = {"prefer-1": 1, "prefer-2": 2}.get(conn.tunnel_preference)
    ecmp = preferred is None
    metric = conn.route_metric if ecmp or preferred == index else conn.route_metric + 1
    return tuple(Route(net, metric, ecmp) for net in conn.routes)


def _mtu(conn: ConnectionConfig, proposals: ProposalSet) -> tuple[MtuMss, str]:
    # Before negotiation: the worst case of what may be negotiated, NAT-T included (with
    # nat_traversal = "auto" NAT may yet be detected).
    suites = proposals.esp_suites()
    worst = min((mtu_mss(s, True) for s in suites), key=lambda m: m.mtu)
    mtu = conn.mtu if conn.mtu is not None else worst.mtu
    mss = conn.mss if conn.mss is not None else mtu - TCP_IPV4_HEADERS
    if conn.mtu is None:
        reason = (
            f"MTU {worst.mtu} until the first CHILD_SA: the worst case of the {len(suites)} "
            "offered ESP suites with NAT-T; then set from the negotiated suite and NAT-T "
            "(AWS's MTU and MSS table)"
        )
    else:
        reason = "MTU fixed by cgwd.toml"
        if conn.mtu > worst.mtu:
            reason += (
                f"; {conn.mtu} exceeds what some offered suites carry unfragmented "
                f"({worst.mtu}): large packets will be fragmented after encryption"
            )
    if conn.mss is not None:
        reason += "; MSS fixed by cgwd.toml"
    return MtuMss(mtu, mss, mss - (TCP_IPV6_HEADERS - TCP_IPV4_HEADERS)), reason


def plan_connection(
    conn: ConnectionConfig,
    aws: AwsVpnConnection,
    daemon: DaemonConfig,
) -> ConnectionPlan:
    """The plan of both tunnels of ``conn``, whose AWS download is ``aws``.

    Raises:
        PlanError: the combination cannot work (a missing PSK or inside address, routes that
            overlap the inside ranges, an IKE version the tunnel forbids, lifetimes out of
            order, nothing left to propose, ...).
    """
    warnings: list[str] = list(aws.warnings)
    if conn.connection_id is not None and aws.vpn_connection_id != conn.connection_id:
        raise PlanError(
            ("connection_id",),
            f"the AWS file describes {aws.vpn_connection_id or 'a connection without id'}, "
            f"not {conn.connection_id}",
        )
    # Routes inside 169.254.0.0/16 are refused by the model; a supernet of an inside /30
    # (a default route) is harmless, since the /30 stays on-link (longest prefix wins).
    for route in conn.routes:
        for tunnel in aws.tunnels:
            if tunnel.vpn_gateway_outside_ip in route:
                warnings.append(
                    f"route {route} covers AWS endpoint {tunnel.vpn_gateway_outside_ip}: "
                    "keep a more specific route (or a lower metric) to it via your internet "
                    "gateway, or IKE and ESP would loop into the tunnel"
                )
    if aws.routing == "bgp" and conn.routes:
        warnings.append(
            "BGP connection: the static routes are installed too; usually FRR or BIRD "
            "learns the routes over the tunnels"
        )
    if aws.routing == "static" and not conn.routes:
        warnings.append("static routing but no routes: nothing will be sent over the tunnels")
    if conn.tunnel_preference == "ecmp" and aws.transit_gateway_id is None:
        warnings.append(
            "ecmp: outbound flows are spread over both tunnels; AWS returns traffic on a "
            "tunnel of its choosing (AWS ECMP needs a transit gateway with BGP)"
        )
    tunnels = tuple(
        _plan_tunnel(conn, aws, tunnel, daemon=daemon, interface=interface, warnings=warnings)
        for tunnel, interface in zip(aws.tunnels, conn.interface_names(), strict=True)
    )
    assert len(tunnels) == 2
    return ConnectionPlan(conn.name, conn, aws, (tunnels[0], tunnels[1]), tuple(warnings))


def _plan_tunnel(
    conn: ConnectionConfig,
    aws: AwsVpnConnection,
    tunnel: AwsTunnel,
    *,
    daemon: DaemonConfig,
    interface: str,
    warnings: list[str],
) -> TunnelPlan:
    where = f"tunnel {tunnel.index}"
    if tunnel.inside_cidr is None or tunnel.customer_gateway_inside_ip is None:
        raise PlanError(
            ("aws_config",),
            f"{where}: the AWS file has no inside addresses ({aws.format} does not carry "
            "them): download the Generic or XML configuration instead",
        )
    remote_inside = tunnel.vpn_gateway_inside_ip
    if remote_inside is None:
        # The /30's first host is AWS's (aws-behaviour §1).
        remote_inside = tunnel.inside_cidr.network_address + 1
    local_inside = IPv4Interface(
        f"{tunnel.customer_gateway_inside_ip}/{tunnel.inside_cidr.prefixlen}"
    )
    psk, _psk_source = _tunnel_psk(conn, tunnel, warnings)
    version, version_reason = _ike_version(conn, tunnel)
    try:
        proposals = proposals_for(tunnel, version, mode=conn.proposals, fmt=aws.format)
    except ProposalError as exc:
        raise PlanError(("proposals",), f"{where}: {exc}") from None
    warnings.extend(f"{where}: {w}" for w in proposals.warnings)

    p1, p1_why = _pick(
        conn.phase1_lifetime, tunnel.phase1.lifetime_seconds, AWS_DEFAULT_PHASE1_LIFETIME, "phase 1"
    )
    p2, p2_why = _pick(
        conn.phase2_lifetime, tunnel.phase2.lifetime_seconds, AWS_DEFAULT_PHASE2_LIFETIME, "phase 2"
    )
    if p2 >= p1:
        key = "phase2_lifetime" if conn.phase2_lifetime is not None else "phase1_lifetime"
        raise PlanError(
            (key,),
            f"{where}: phase 2 lifetime {p2} s must be less than phase 1 lifetime {p1} s "
            f"({p2_why}, {p1_why})",
        )
    for config_value, file_value, label in (
        (conn.phase1_lifetime, tunnel.phase1.lifetime_seconds, "phase1_lifetime"),
        (conn.phase2_lifetime, tunnel.phase2.lifetime_seconds, "phase2_lifetime"),
    ):
        if config_value is not None and file_value is not None and config_value != file_value:
            must = " (IKEv1 proposes it: it must match AWS's)" if version == "ikev1" else ""
            warnings.append(
                f"{where}: {label} {config_value} s differs from the AWS file's "
                f"{file_value} s{must}"
            )
    margin, margin_why = _pick(
        conn.aws_rekey_margin, tunnel.rekey_margin_seconds, AWS_DEFAULT_REKEY_MARGIN, "margin"
    )
    fuzz, _ = _pick(
        conn.aws_rekey_fuzz, tunnel.rekey_fuzz_percentage, AWS_DEFAULT_REKEY_FUZZ, "fuzz"
    )
    if margin > p2 // 2:
        raise PlanError(
            ("aws_rekey_margin",),
            f"{where}: rekey margin {margin} s ({margin_why}) is more than half the phase 2 "
            f"lifetime {p2} s",
        )
    phase1 = rekey_plan(p1, margin, fuzz, what="IKE SA")
    phase2 = rekey_plan(p2, margin, fuzz, what="CHILD SA")

    interval, interval_why = _pick(
        conn.dpd_interval, tunnel.dpd.interval_seconds, DEFAULT_DPD_INTERVAL, "interval"
    )
    retries, retries_why = _pick(
        conn.dpd_retries, tunnel.dpd.retries, DEFAULT_DPD_RETRIES, "retries"
    )
    dpd = DpdPlan(interval, retries, f"{interval_why}, {retries_why}")

    initial, mtu_reason = _mtu(conn, proposals)
    identity = tunnel.customer_gateway_outside_ip or conn.local_address
    return TunnelPlan(
        connection=conn.name,
        index=tunnel.index,
        interface=interface,
        local_inside=local_inside,
        remote_inside=remote_inside,
        local_address=conn.local_address,
        identity=identity,
        remote_address=tunnel.vpn_gateway_outside_ip,
        psk=psk,
        ike_version=version,
        ike_version_reason=version_reason,
        proposals=proposals,
        mtu=initial.mtu,
        mss=initial.mss,
        mss_ipv6=initial.mss_ipv6,
        mtu_reason=mtu_reason,
        mtu_override=conn.mtu,
        mss_override=conn.mss,
        nat_traversal=conn.nat_traversal,
        routes=_routes(conn, tunnel.index),
        phase1=phase1,
        phase2=phase2,
        dpd=dpd,
        replay_window=conn.replay_window,
        dataplane=conn.dataplane or daemon.dataplane,
        bgp=tunnel.bgp,
    )


def check_connections(plans: Sequence[ConnectionPlan]) -> None:
    """Checks across connections: no AWS endpoint or inside range is used twice.

    Raises:
        PlanError: with the key path ``("connection", index, key)``.
    """
    endpoints: dict[IPv4Address, str] = {}
    insides: dict[IPv4Network, str] = {}
    for index, plan in enumerate(plans):
        for tunnel in plan.tunnels:
            owner = endpoints.get(tunnel.remote_address)
            if owner is not None:
                raise PlanError(
                    ("connection", index, "aws_config"),
                    f"AWS endpoint {tunnel.remote_address} (tunnel {tunnel.index}) is already "
                    f"used by {owner}",
                )
            endpoints[tunnel.remote_address] = f"connection {plan.name!r}"
            network = tunnel.local_inside.network
            for other, other_owner in insides.items():
                if network.overlaps(other):
                    raise PlanError(
                        ("connection", index, "aws_config"),
                        f"inside range {network} (tunnel {tunnel.index}) overlaps {other} "
                        f"of {other_owner}",
                    )
            insides[network] = f"connection {plan.name!r}"
