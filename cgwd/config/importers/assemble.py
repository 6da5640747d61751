"""From the raw strings a format parser found to a validated `AwsVpnConnection`.

Every format parser does the same small job: find each value's text and say where it was
(`Origin`), filing it in a `TunnelDraft` under the model field it feeds (`PSK`,
`PHASE1_LIFETIME`, ...). Everything after that is shared and lives here: normalising the
text into AWS vocabulary, deriving the inside CIDR, building the frozen model, applying
AWS's rules (`validate`) and turning the first broken one into a `ConfigError` that names
the format, the tunnel, the field as the file spells it, the value (unless secret) and the
line, XML element or JSON path.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Sequence
from dataclasses import dataclass, replace
from ipaddress import IPv4Interface, IPv4Network
from typing import TypeVar

from cgwd.config.aws import (
    AwsTunnel,
    AwsVpnConnection,
    BgpSettings,
    DeadPeerDetection,
    FormatName,
    PhaseSettings,
    Routing,
)
from cgwd.config.importers import normalise as norm
from cgwd.config.importers.validate import Problem, connection_problems, connection_warnings
from cgwd.errors import ConfigError
from cgwd.secret import REDACTED, Secret

T = TypeVar("T")

# Draft keys: the model field each raw value feeds (dotted for nested dataclasses), plus a
# few values that are only checked (authentication method, negotiation modes, protocol).
CGW_OUTSIDE = "customer_gateway_outside_ip"
AWS_OUTSIDE = "vpn_gateway_outside_ip"
CGW_INSIDE = "customer_gateway_inside_ip"  # ADDRESS/PREFIX, ADDRESS NETMASK or ADDRESS
AWS_INSIDE = "vpn_gateway_inside_ip"
INSIDE_CIDR = "inside_cidr"
INSIDE_IPV6_CIDR = "inside_ipv6_cidr"
PSK = "pre_shared_key"
AUTH_METHOD = "authentication_method"
IKE_VERSION = "ike_version"  # several values: the allowed versions, first is the one shown
P1_ENCRYPTION = "phase1.encryption"
P1_INTEGRITY = "phase1.integrity"
P1_DH = "phase1.dh_group"
P1_LIFETIME = "phase1.lifetime_seconds"
P1_MODE = "phase1.mode"
P2_PROTOCOL = "phase2.protocol"
P2_ENCRYPTION = "phase2.encryption"
P2_INTEGRITY = "phase2.integrity"
P2_DH = "phase2.dh_group"
P2_LIFETIME = "phase2.lifetime_seconds"
P2_MODE = "phase2.mode"
DPD_INTERVAL = "dpd.interval_seconds"
DPD_RETRIES = "dpd.retries"
DPD_TIMEOUT = "dpd.timeout_seconds"
DPD_ACTION = "dpd.action"
MSS = "tcp_mss_adjustment"
MTU = "tunnel_mtu"
CLEAR_DF = "clear_df_bit"
FRAGMENT_BEFORE = "fragmentation_before_encryption"
NEXT_HOP = "static_route_next_hop"
BGP_CGW_ASN = "bgp.customer_gateway_asn"
BGP_AWS_ASN = "bgp.neighbor_asn"
BGP_NEIGHBOR = "bgp.neighbor_ip"
BGP_HOLD = "bgp.hold_time_seconds"
REKEY_MARGIN = "rekey_margin_seconds"
REKEY_FUZZ = "rekey_fuzz_percentage"
REPLAY_WINDOW = "replay_window_size"
STARTUP_ACTION = "startup_action"

DESCRIPTIONS = {
    CGW_OUTSIDE: "customer gateway outside IP",
    AWS_OUTSIDE: "AWS outside IP",
    CGW_INSIDE: "customer gateway inside IP",
    AWS_INSIDE: "AWS inside IP",
    PSK: "pre-shared key",
    P1_ENCRYPTION: "phase 1 encryption algorithm",
    P1_INTEGRITY: "phase 1 integrity algorithm",
    P1_DH: "phase 1 Diffie-Hellman group",
    P1_LIFETIME: "phase 1 lifetime",
    P2_ENCRYPTION: "phase 2 encryption algorithm",
    P2_INTEGRITY: "phase 2 integrity algorithm",
    P2_DH: "phase 2 PFS group",
    P2_LIFETIME: "phase 2 lifetime",
    DPD_INTERVAL: "DPD interval",
    DPD_RETRIES: "DPD retries",
    MSS: "TCP MSS adjustment",
    CLEAR_DF: "clear DF bit setting",
    FRAGMENT_BEFORE: "fragmentation setting",
    NEXT_HOP: "static route next hop",
    BGP_CGW_ASN: "customer gateway BGP ASN",
    BGP_AWS_ASN: "AWS BGP ASN",
    BGP_NEIGHBOR: "BGP neighbour IP",
}
SECRET_KEYS = frozenset({PSK})


@dataclass(frozen=True)
class Origin:
    """Where a value was read: the field as the file names it, and its line or path."""

    label: str  # "#1 Lifetime", "ike/lifetime", "TunnelOptions[0].Phase1LifetimeSeconds"
    line: int | None = None  # text formats
    element: str | None = None  # XML element path or JSON path


@dataclass(frozen=True)
class Raw:
    """A value as the file wrote it (several for lists of allowed values)."""

    values: tuple[str, ...]
    origin: Origin


class _Scrubber:
    """The pre-shared keys seen in a file, to be scrubbed from any message."""

    MIN_LENGTH = 6  # shorter values would only garble messages (and reveal next to nothing)

    def __init__(self) -> None:
        self._secrets: set[str] = set()

    def add(self, value: str) -> None:
        if len(value.strip()) >= self.MIN_LENGTH:
            self._secrets.add(value.strip())

    def update(self, values: Iterable[str]) -> None:
        for value in values:
            self.add(value)

    def scrub(self, message: str) -> str:
        for secret in sorted(self._secrets, key=len, reverse=True):
            message = message.replace(secret, REDACTED)
        return message


class Reporter:
    """Makes the importer's ConfigErrors: ``FORMAT: tunnel N: LABEL: what is wrong``.

    Messages never quote a value filed as a PSK, but a key pasted into the wrong field
    would be quoted as that field's value: every PSK seen so far is also scrubbed from
    every message, as a second line of defence.
    """

    def __init__(self, fmt: FormatName, source: str) -> None:
        self.format = fmt
        self.source = source
        self.secrets = _Scrubber()

    def error(
        self, message: str, *, origin: Origin | None = None, tunnel: int | None = None
    ) -> ConfigError:
        where = f"{self.format}: " if tunnel is None else f"{self.format}: tunnel {tunnel}: "
        return ConfigError(
            where + self.secrets.scrub(message),
            source=self.source,
            line=None if origin is None else origin.line,
            element=None if origin is None else origin.element,
        )


class TunnelDraft:
    """The raw values found for one tunnel, keyed by the model field they feed."""

    def __init__(self, reporter: Reporter, index: int, origin: Origin) -> None:
        self.reporter = reporter
        self.index = index
        self.origin = origin  # the tunnel's heading: where "missing field" errors point
        self.raw: dict[str, Raw] = {}

    def put(self, key: str, value: str | Sequence[str], origin: Origin) -> None:
        """File ``value`` under ``key``; the same key twice must carry the same value."""
        values = (value,) if isinstance(value, str) else tuple(value)
        if key in SECRET_KEYS:
            self.reporter.secrets.update(values)
        old = self.raw.get(key)
        if old is not None and old.values != values:
            where = f"line {old.origin.line}" if old.origin.line else old.origin.label
            raise self.error(f"{origin.label}: contradicts the value given at {where}", origin)
        self.raw[key] = Raw(values, origin)

    def error(self, message: str, origin: Origin | None = None) -> ConfigError:
        return self.reporter.error(message, origin=origin or self.origin, tunnel=self.index)

    def origin_of(self, key: str) -> Origin:
        """Where the value behind model field ``key`` came from (the tunnel if unknown)."""
        fallbacks = {INSIDE_CIDR: (INSIDE_CIDR, CGW_INSIDE, AWS_INSIDE)}
        for candidate in fallbacks.get(key, (key,)):
            if candidate in self.raw:
                return self.raw[candidate].origin
        return self.origin

    def require(self, keys: Collection[str]) -> None:
        """ConfigError for the first of ``keys`` the parser did not find."""
        for key in keys:
            if key not in self.raw:
                what = DESCRIPTIONS.get(key, key)
                raise self.error(f"no {what} found (is the file truncated or edited?)")
            if not any(v.strip() for v in self.raw[key].values):
                raise self.error(f"{self.raw[key].origin.label}: empty value", self.raw[key].origin)

    def many(self, key: str, convert: Callable[[str], T]) -> tuple[T, ...]:
        """Every value filed under ``key``, converted, duplicates dropped, in file order."""
        raw = self.raw.get(key)
        if raw is None or not any(text.strip() for text in raw.values):
            return ()  # an empty value is an absent one (require() refuses it if needed)
        result: list[T] = []
        for text in raw.values:
            try:
                value = convert(text)
            except ValueError as exc:
                shown = "" if key in SECRET_KEYS else f" {text.strip()!r}"
                raise self.error(f"{raw.origin.label}{shown}: {exc}", raw.origin) from None
            if value not in result:
                result.append(value)
        return tuple(result)

    def one(self, key: str, convert: Callable[[str], T]) -> T | None:
        """The value filed under ``key``, converted, or None when the file lacks it."""
        values = self.many(key, convert)
        if len(values) > 1:
            raise self.error(
                f"{self.raw[key].origin.label}: expected one value", self.raw[key].origin
            )
        return values[0] if values else None


def _inside(
    draft: TunnelDraft,
) -> tuple[IPv4Interface | None, IPv4Interface | None, IPv4Network | None]:
    """Both inside addresses and the inside network, which may be spelt on either address
    (``/30`` or a netmask) or given on its own; wherever it is given it must agree."""
    cgw = draft.one(CGW_INSIDE, norm.ipv4_interface)
    aws = draft.one(AWS_INSIDE, norm.ipv4_interface)
    cidr = draft.one(INSIDE_CIDR, norm.ipv4_network)
    networks = [
        (iface.network, key)
        for iface, key in ((cgw, CGW_INSIDE), (aws, AWS_INSIDE))
        if iface is not None and iface.network.prefixlen < 32
    ]
    if cidr is not None:
        networks.insert(0, (cidr, INSIDE_CIDR))
    if networks:
        first, first_key = networks[0]
        for network, key in networks[1:]:
            if network != first:
                origin = draft.origin_of(key)
                raise draft.error(
                    f"{origin.label}: inside network {network} disagrees with {first} "
                    f"({draft.origin_of(first_key).label})",
                    origin,
                )
        return cgw, aws, first
    return cgw, aws, None


def _phase(draft: TunnelDraft, number: int) -> PhaseSettings:
    prefix = f"phase{number}"
    encryption = draft.many(f"{prefix}.encryption", norm.encryption)
    integrity = draft.many(f"{prefix}.integrity", norm.integrity)
    groups = draft.many(f"{prefix}.dh_group", norm.dh_group)
    return PhaseSettings(
        encryption=encryption[0] if encryption else None,
        integrity=integrity[0] if integrity else None,
        dh_group=groups[0] if groups else None,
        lifetime_seconds=draft.one(f"{prefix}.lifetime_seconds", norm.lifetime_seconds),
        encryption_allowed=encryption,
        integrity_allowed=integrity,
        dh_groups_allowed=groups,
    )


def _bgp(draft: TunnelDraft) -> BgpSettings:
    cgw_asn = draft.one(BGP_CGW_ASN, norm.integer)
    aws_asn = draft.one(BGP_AWS_ASN, norm.integer)
    neighbor = draft.one(BGP_NEIGHBOR, norm.ipv4)
    if cgw_asn is None or aws_asn is None or neighbor is None:
        draft.require((BGP_CGW_ASN, BGP_AWS_ASN, BGP_NEIGHBOR))
        raise AssertionError("unreachable: require() raised")
    return BgpSettings(
        customer_gateway_asn=cgw_asn,
        neighbor_asn=aws_asn,
        neighbor_ip=neighbor,
        hold_time_seconds=draft.one(BGP_HOLD, norm.lifetime_seconds),
    )


def build_tunnel(draft: TunnelDraft, routing: Routing, required: Collection[str]) -> AwsTunnel:
    """The model of one tunnel. Raises ConfigError (located) for missing or malformed values.

    ``required`` lists the keys this format always carries: their absence means the file
    was truncated or edited. Cross-field rules are checked by `build_connection`.
    """
    draft.require(required)
    for key, accepted in _CHECKED_ONLY.items():
        draft.one(key, accepted)
    aws_outside = draft.one(AWS_OUTSIDE, norm.ipv4)
    if aws_outside is None:
        draft.require((AWS_OUTSIDE,))
        raise AssertionError("unreachable: require() raised")
    cgw_inside, aws_inside, inside_cidr = _inside(draft)
    ipv6 = draft.one(INSIDE_IPV6_CIDR, norm.inside_ipv6_network)
    versions = draft.many(IKE_VERSION, norm.ike_version)
    return AwsTunnel(
        index=draft.index,
        customer_gateway_outside_ip=draft.one(CGW_OUTSIDE, norm.ipv4),
        vpn_gateway_outside_ip=aws_outside,
        customer_gateway_inside_ip=None if cgw_inside is None else cgw_inside.ip,
        vpn_gateway_inside_ip=None if aws_inside is None else aws_inside.ip,
        inside_cidr=inside_cidr,
        pre_shared_key=draft.one(PSK, Secret),
        ike_version=versions[0] if versions else None,
        ike_versions_allowed=versions,
        phase1=_phase(draft, 1),
        phase2=_phase(draft, 2),
        dpd=DeadPeerDetection(
            interval_seconds=draft.one(DPD_INTERVAL, norm.lifetime_seconds),
            retries=draft.one(DPD_RETRIES, norm.integer),
            timeout_seconds=draft.one(DPD_TIMEOUT, norm.lifetime_seconds),
            action=draft.one(DPD_ACTION, norm.dpd_action),
        ),
        tcp_mss_adjustment=draft.one(MSS, norm.bytes_count),
        tunnel_mtu=draft.one(MTU, norm.bytes_count),
        clear_df_bit=draft.one(CLEAR_DF, norm.flag),
        fragmentation_before_encryption=draft.one(
            FRAGMENT_BEFORE, norm.fragmentation_before_encryption
        ),
        static_route_next_hop=draft.one(NEXT_HOP, norm.ipv4) if routing == "static" else None,
        bgp=_bgp(draft) if routing == "bgp" else None,
        inside_ipv6_cidr=ipv6,
        rekey_margin_seconds=draft.one(REKEY_MARGIN, norm.lifetime_seconds),
        rekey_fuzz_percentage=draft.one(REKEY_FUZZ, norm.integer),
        replay_window_size=draft.one(REPLAY_WINDOW, norm.integer),
        startup_action=draft.one(STARTUP_ACTION, norm.startup_action),
    )


# Values that carry nothing for the model but must say what cgwd implements.
_CHECKED_ONLY: dict[str, Callable[[str], str]] = {
    AUTH_METHOD: norm.expect("pre-shared key", "pre-share", "psk", "secret"),
    P1_MODE: norm.expect("main"),
    P2_PROTOCOL: norm.expect("esp"),
    P2_MODE: norm.expect("tunnel"),
}


def build_connection(
    reporter: Reporter,
    drafts: Sequence[TunnelDraft],
    *,
    routing: Routing,
    required: Collection[str],
    vpn_connection_id: str | None,
    vpn_gateway_id: str | None,
    customer_gateway_id: str | None,
    transit_gateway_id: str | None = None,
    warnings: Sequence[str] = (),
) -> AwsVpnConnection:
    """The validated model of the whole file (exactly two tunnels, in file order).

    Raises ConfigError for the first problem, located at the value it concerns.
    """
    if len(drafts) != 2:
        origin = drafts[2].origin if len(drafts) > 2 else None
        raise reporter.error(
            f"found {len(drafts)} tunnel(s), an AWS VPN connection has exactly two "
            "(is the file truncated?)",
            origin=origin,
        )
    first, second = (build_tunnel(d, routing, required) for d in drafts)
    conn = AwsVpnConnection(
        format=reporter.format,
        vpn_connection_id=vpn_connection_id,
        vpn_gateway_id=vpn_gateway_id,
        customer_gateway_id=customer_gateway_id,
        transit_gateway_id=transit_gateway_id,
        routing=routing,
        tunnels=(first, second),
    )
    for problem in connection_problems(conn):
        raise _located(reporter, drafts, problem)
    return replace(conn, warnings=(*warnings, *connection_warnings(conn)))


def _located(reporter: Reporter, drafts: Sequence[TunnelDraft], problem: Problem) -> ConfigError:
    if problem.tunnel is None:
        return reporter.error(problem.message)
    draft = drafts[problem.tunnel - 1]
    origin = draft.origin_of(problem.field)
    return draft.error(f"{origin.label}: {problem.message}", origin)
