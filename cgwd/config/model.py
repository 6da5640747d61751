"""The runtime configuration (`cgwd.toml`): frozen, validated, documented.

`cgwd.config.load` turns the TOML file into a `CgwdConfig`; nothing else builds one from
user input. The attribute docstrings below are the options reference: `docs/configuration.md`
follows them, and a unit test checks that every field is documented there.

The model checks everything that can be checked without reading the AWS downloads (types,
ranges, names, duplicates, routes). What needs the AWS file (endpoint and inside-range
clashes, lifetimes against the file, the IKE versions the tunnel allows) is checked when
the plan is built (`cgwd.config.tunnel_plan`).

Cross-field checks raise `KeyedValueError`, which carries the key path of the offending key
relative to the model, so the loader can point at its line.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path
from typing import Annotated, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    Strict,
    field_validator,
    model_validator,
)

from cgwd.config.importers.validate import psk_problem  # AWS's PSK rule, in one place
from cgwd.secret import Secret

# AWS tunnel-option ranges (aws-behaviour.md §4, EC2 API VpnTunnelOptionsSpecification).
PHASE1_LIFETIME_RANGE = (900, 28_800)
PHASE2_LIFETIME_RANGE = (900, 3_600)
REKEY_MARGIN_MIN = 60  # up to half of the phase 2 lifetime
REKEY_FUZZ_RANGE = (0, 100)
AWS_DEFAULT_PHASE1_LIFETIME = 28_800
AWS_DEFAULT_PHASE2_LIFETIME = 3_600
AWS_DEFAULT_REKEY_MARGIN = 270
AWS_DEFAULT_REKEY_FUZZ = 100
DEFAULT_DPD_INTERVAL = 10  # aws-behaviour.md §3: AWS probes after 10 s of silence
DEFAULT_DPD_RETRIES = 3  # ... and declares the peer dead after three misses
DEFAULT_REPLAY_WINDOW = 1024  # aws-behaviour.md §5 (AWS default; strongSwan's 32 is too small)

IFNAMSIZ = 16  # linux/if.h, including the terminating NUL: names are at most 15 characters
# Connection names become interface names "<name>-t1" / "<name>-t2".
INTERFACE_SUFFIX_LEN = len("-t1")
CONNECTION_NAME_MAX = IFNAMSIZ - 1 - INTERFACE_SUFFIX_LEN
_CONNECTION_NAME = re.compile(r"^[a-z0-9](?:[a-z0-9-]*[a-z0-9])?$")
# What `ip link` accepts (net/core/dev.c dev_valid_name), narrowed to a portable set.
_INTERFACE_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,14}$")

Dataplane = Literal["auto", "kernel", "userspace"]
KeyPath = tuple[str | int, ...]


class KeyedValueError(ValueError):
    """A cross-field error that knows which key it is about (relative to the model)."""

    def __init__(self, key: KeyPath, message: str) -> None:
        super().__init__(message)
        self.key = key
        self.message = message


def interface_name(connection_name: str, tunnel_index: int) -> str:
    """The interface of tunnel 1 or 2 of a connection: ``vpc01`` -> ``vpc01-t1``."""
    return f"{connection_name}-t{tunnel_index}"


def _strict_str(value: object) -> object:
    # TOML gives us typed values; refuse numbers where text is meant (e.g. name = 1).
    if not isinstance(value, str):
        raise ValueError(f"must be a string, not {_toml_type(value)}")
    return value


def _strict_int(value: object) -> object:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"must be an integer, not {_toml_type(value)}")
    return value


def _ipv4_address(value: object) -> IPv4Address:
    if isinstance(value, IPv4Address):
        return value
    if not isinstance(value, str):
        raise ValueError(f"must be an IPv4 address in quotes, not {_toml_type(value)}")
    try:
        return IPv4Address(value)
    except ValueError:
        raise ValueError(f"{value!r} is not an IPv4 address") from None


def _ipv4_network(value: object) -> IPv4Network:
    if isinstance(value, IPv4Network):
        return value
    if not isinstance(value, str):
        raise ValueError(f"must be an IPv4 CIDR in quotes, not {_toml_type(value)}")
    if "/" not in value:
        try:
            IPv4Address(value)
        except ValueError:
            raise ValueError(f"{value!r} is not an IPv4 CIDR") from None
        raise ValueError(f"{value!r} is an address: write it with its prefix length, e.g. /24")
    try:
        return IPv4Network(value)
    except ValueError:
        pass
    try:
        loose = IPv4Network(value, strict=False)
    except ValueError:
        raise ValueError(f"{value!r} is not an IPv4 CIDR") from None
    raise ValueError(f"{value!r} has host bits set: did you mean {loose}?")


def _secret_psk(value: object) -> Secret:
    # Never echo the value: give its length or the position of the bad character.
    if isinstance(value, Secret):
        return value
    if not isinstance(value, str):
        raise ValueError(f"must be a string, not {_toml_type(value)}")
    problem = psk_problem(value)
    if problem is not None:
        raise ValueError(problem)
    return Secret(value)


def _toml_type(value: object) -> str:
    names = {
        bool: "a boolean",
        int: "an integer",
        float: "a float",
        str: "a string",
        list: "an array",
        dict: "a table",
    }
    return names.get(type(value), f"a {type(value).__name__}")


def _path(value: object) -> object:
    if isinstance(value, Path):
        return value
    _strict_str(value)
    if not value or "\x00" in str(value):
        raise ValueError("must be a file name")
    return value


StrictStr = Annotated[str, BeforeValidator(_strict_str)]
Ipv4Addr = Annotated[IPv4Address, BeforeValidator(_ipv4_address)]
Ipv4Net = Annotated[IPv4Network, BeforeValidator(_ipv4_network)]
Psk = Annotated[Secret, BeforeValidator(_secret_psk)]
Seconds = Annotated[int, Strict()]


class _Frozen(BaseModel):
    model_config = ConfigDict(
        frozen=True,
        extra="forbid",
        use_attribute_docstrings=True,
        arbitrary_types_allowed=True,
        validate_default=False,
    )


class DaemonConfig(_Frozen):
    """The ``[daemon]`` table: settings of the cgwd process itself."""

    control_socket: Annotated[Path, BeforeValidator(_path)] = Path("/run/cgwd/control.sock")
    """Unix socket of the control interface (`cgwd status`, `reload`, ...). Its directory is
    created by systemd (``RuntimeDirectory=cgwd``); a relative path is taken relative to the
    configuration file."""

    dataplane: Annotated[Dataplane, BeforeValidator(_strict_str)] = "auto"
    """Where ESP runs: ``kernel`` (XFRM with xfrm interfaces), ``userspace`` (cgwd's own
    datapath over TUN, a fallback capped well below AWS's 1.25 Gbit/s per tunnel) or ``auto``
    (kernel when it has ESP and xfrm interfaces, else userspace)."""


class ConnectionConfig(_Frozen):
    """One ``[[connection]]``: an AWS Site-to-Site VPN connection and its two tunnels."""

    name: StrictStr
    """Short name, ``[a-z0-9-]``, at most 12 characters: the tunnel interfaces are
    ``<name>-t1`` and ``<name>-t2`` and Linux allows 15 characters."""

    aws_config: Annotated[Path, BeforeValidator(_path)]
    """The file downloaded from AWS (any supported format); relative paths are relative to
    the configuration file. It holds the PSKs, so it must not be readable by group or
    others."""

    connection_id: StrictStr | None = None
    """Which VPN connection to take from an ``aws ec2 describe-vpn-connections`` JSON that
    holds several (``vpn-...``). Must match the file's id when given."""

    routes: tuple[Ipv4Net, ...] = ()
    """Networks (CIDRs) behind AWS to route over the tunnels: the VPC CIDRs for static
    routing. None may lie in 169.254.0.0/16, where the tunnels' inside /30s are (a default
    route is fine: the /30s stay on-link). Empty for BGP, where FRR or BIRD learn the
    routes."""

    tunnel_preference: Annotated[
        Literal["prefer-1", "prefer-2", "ecmp"], BeforeValidator(_strict_str)
    ] = "prefer-1"
    """Which tunnel carries outbound traffic: ``prefer-1``/``prefer-2`` install the routes
    on both tunnels with a lower metric on the preferred one (failover when its SA goes
    down); ``ecmp`` spreads flows over both (AWS returns traffic on a tunnel of its own
    choosing anyway, aws-behaviour §9)."""

    route_metric: Annotated[int, Strict(), Field(ge=0, le=4_294_967_294)] = 100
    """Metric of the routes on the preferred tunnel; the other tunnel's routes get one
    more."""

    local_address: Ipv4Addr | None = None
    """Source address for IKE and ESP. Default: the kernel's choice, the source of the route
    to each AWS endpoint. Behind NAT, give the private address; the IKE identity stays the
    customer gateway's public address from the AWS file."""

    dataplane: Annotated[Dataplane, BeforeValidator(_strict_str)] | None = None
    """Overrides ``[daemon] dataplane`` for this connection."""

    ike_version: Annotated[Literal[1, 2], BeforeValidator(_strict_int)] | None = None
    """1 or 2. Default: what the AWS file says, else 2 (AWS recommends IKEv2)."""

    dpd_interval: Annotated[int, Strict(), Field(ge=2, le=300)] | None = None
    """Seconds of silence from AWS before cgwd sends a DPD probe. Default: the AWS file's
    value, else 10 (as AWS's own DPD)."""

    dpd_retries: Annotated[int, Strict(), Field(ge=1, le=20)] | None = None
    """Unanswered probes, one per interval, before the peer is declared dead and the tunnel
    re-initiated. Default: the AWS file's value, else 3 (dead after about 30 s)."""

    phase1_lifetime: (
        Annotated[int, Strict(), Field(ge=PHASE1_LIFETIME_RANGE[0], le=PHASE1_LIFETIME_RANGE[1])]
        | None
    ) = None
    """Phase 1 (IKE SA) lifetime configured on the AWS tunnel, seconds (AWS range
    900-28800). Default: the AWS file's value, else 28800. cgwd rekeys before AWS would."""

    phase2_lifetime: (
        Annotated[int, Strict(), Field(ge=PHASE2_LIFETIME_RANGE[0], le=PHASE2_LIFETIME_RANGE[1])]
        | None
    ) = None
    """Phase 2 (IPsec SA) lifetime configured on the AWS tunnel, seconds (AWS range
    900-3600, less than phase 1). Default: the AWS file's value, else 3600."""

    aws_rekey_margin: (
        Annotated[int, Strict(), Field(ge=REKEY_MARGIN_MIN, le=PHASE2_LIFETIME_RANGE[1] // 2)]
        | None
    ) = None
    """The AWS tunnel's rekey margin (``RekeyMarginTimeSeconds``, 60 s to half the phase 2
    lifetime) when you changed it and the file does not say. Default: the file, else 270."""

    aws_rekey_fuzz: (
        Annotated[int, Strict(), Field(ge=REKEY_FUZZ_RANGE[0], le=REKEY_FUZZ_RANGE[1])] | None
    ) = None
    """The AWS tunnel's rekey fuzz in percent (``RekeyFuzzPercentage``) when you changed it
    and the file does not say. Default: the file, else 100."""

    proposals: Annotated[Literal["aws", "file"], BeforeValidator(_strict_str)] = "aws"
    """``aws``: offer every suite AWS supports, strongest first (downloads always print
    AWS's minimum algorithms, even for customised tunnels). ``file``: offer only what the
    AWS file states."""

    nat_traversal: Annotated[Literal["auto", "force"], BeforeValidator(_strict_str)] = "auto"
    """``auto``: UDP-encapsulate ESP when NAT is detected (RFC 7296 §2.23, RFC 3947);
    ``force``: always (needed for Accelerated VPN)."""

    mtu: Annotated[int, Strict(), Field(ge=576, le=1500)] | None = None
    """Tunnel interface MTU. Default: derived from the negotiated suite and NAT-T
    (aws-behaviour §8), at most 1446."""

    mss: Annotated[int, Strict(), Field(ge=536, le=1460)] | None = None
    """TCP MSS clamp for IPv4 (IPv6 gets 20 less). Default: the MTU minus 40."""

    replay_window: Annotated[int, Strict(), Field(ge=64, le=4096)] = DEFAULT_REPLAY_WINDOW
    """Anti-replay window of inbound SAs, packets (AWS uses 1024; RFC 4303 §3.4.3)."""

    interfaces: tuple[StrictStr, StrictStr] | None = None
    """Explicit names for the two tunnel interfaces, instead of ``<name>-t1``/``-t2``."""

    pre_shared_keys: tuple[Psk, Psk] | None = None
    """PSKs of tunnels 1 and 2 when the AWS file has none (kept in Secrets Manager). A
    configuration holding keys must not be readable by group or others."""

    @field_validator("name")
    @classmethod
    def _check_name(cls, value: str) -> str:
        if len(value) > CONNECTION_NAME_MAX:
            raise ValueError(
                f"{value!r} is {len(value)} characters; at most {CONNECTION_NAME_MAX} fit, "
                f"because the interfaces are named {value}-t1 and Linux allows "
                f"{IFNAMSIZ - 1} characters"
            )
        if not _CONNECTION_NAME.match(value):
            raise ValueError(
                f"{value!r}: use lowercase letters, digits and '-' (not first or last)"
            )
        return value

    @field_validator("connection_id")
    @classmethod
    def _check_connection_id(cls, value: str | None) -> str | None:
        if value is not None and not re.fullmatch(r"vpn-[0-9a-f]{8,17}", value):
            raise ValueError(f"{value!r} is not a VPN connection id (vpn-...)")
        return value

    @field_validator("interfaces")
    @classmethod
    def _check_interfaces(cls, value: tuple[str, str] | None) -> tuple[str, str] | None:
        if value is None:
            return None
        for name in value:
            if not _INTERFACE_NAME.match(name):
                raise ValueError(
                    f"{name!r} is not a usable interface name (1-15 characters of "
                    "letters, digits, '_', '.', '-')"
                )
        if value[0] == value[1]:
            raise ValueError(f"both tunnels cannot use the interface {value[0]!r}")
        return value

    @field_validator("routes")
    @classmethod
    def _check_routes(cls, value: tuple[IPv4Network, ...]) -> tuple[IPv4Network, ...]:
        return _check_route_list(value)

    @model_validator(mode="after")
    def _cross_checks(self) -> ConnectionConfig:
        if (
            self.phase1_lifetime is not None
            and self.phase2_lifetime is not None
            and self.phase2_lifetime >= self.phase1_lifetime
        ):
            raise KeyedValueError(
                ("phase2_lifetime",),
                f"{self.phase2_lifetime} s must be less than phase1_lifetime "
                f"({self.phase1_lifetime} s): AWS requires it",
            )
        if self.aws_rekey_margin is not None and self.phase2_lifetime is not None:
            limit = self.phase2_lifetime // 2
            if self.aws_rekey_margin > limit:
                raise KeyedValueError(
                    ("aws_rekey_margin",),
                    f"{self.aws_rekey_margin} s is more than half of phase2_lifetime "
                    f"({limit} s); AWS does not allow it",
                )
        if self.mss is not None and self.mtu is not None and self.mss > self.mtu - 40:
            raise KeyedValueError(
                ("mss",), f"{self.mss} does not fit in the MTU {self.mtu} (at most {self.mtu - 40})"
            )
        return self

    def interface_names(self) -> tuple[str, str]:
        """The two tunnel interfaces, derived from the name unless ``interfaces`` is set."""
        if self.interfaces is not None:
            return self.interfaces
        return (interface_name(self.name, 1), interface_name(self.name, 2))


def _check_route_list(routes: Sequence[IPv4Network]) -> tuple[IPv4Network, ...]:
    seen: set[IPv4Network] = set()
    for route in routes:
        if route in seen:
            raise ValueError(f"{route} is listed twice")
        seen.add(route)
        for bad, why in _UNROUTABLE:
            # Supernets (0.0.0.0/0, 128.0.0.0/1) are fine: more specific routes win.
            if route.subnet_of(bad):
                raise ValueError(f"{route} is inside {bad} ({why}): it cannot be routed to AWS")
    return tuple(routes)


# Ranges no route to AWS can lie in. 0.0.0.0/0 is allowed (a default route over the VPN).
_UNROUTABLE = (
    (IPv4Network("169.254.0.0/16"), "link-local, where the tunnels' inside /30s are"),
    (IPv4Network("127.0.0.0/8"), "loopback"),
    (IPv4Network("224.0.0.0/4"), "multicast"),
    (IPv4Network("240.0.0.0/4"), "reserved"),
    (IPv4Network("0.0.0.0/8"), "this network"),
)


class CgwdConfig(_Frozen):
    """The whole configuration file."""

    daemon: DaemonConfig = DaemonConfig()
    """The ``[daemon]`` table."""

    connections: tuple[ConnectionConfig, ...] = Field(alias="connection", min_length=1)
    """The ``[[connection]]`` tables, one per AWS VPN connection (at least one)."""

    source: Path | None = Field(default=None, exclude=True)
    """The file this was loaded from (set by the loader, not a key of the file)."""

    @model_validator(mode="after")
    def _cross_checks(self) -> CgwdConfig:
        names: dict[str, int] = {}
        interfaces: dict[str, tuple[int, str]] = {}
        downloads: dict[tuple[Path, str | None], int] = {}
        routes: dict[IPv4Network, int] = {}
        for index, conn in enumerate(self.connections):
            if conn.name in names:
                raise KeyedValueError(
                    ("connection", index, "name"),
                    f"{conn.name!r} is already the name of connection {names[conn.name] + 1}",
                )
            names[conn.name] = index
            for ifname in conn.interface_names():
                if ifname in interfaces:
                    _, other_name = interfaces[ifname]
                    raise KeyedValueError(
                        ("connection", index, "interfaces" if conn.interfaces else "name"),
                        f"interface {ifname!r} is already used by connection {other_name!r}",
                    )
                interfaces[ifname] = (index, conn.name)
            download = (conn.aws_config, conn.connection_id)
            if download in downloads:
                raise KeyedValueError(
                    ("connection", index, "aws_config"),
                    f"connection {self.connections[downloads[download]].name!r} already uses "
                    f"{conn.aws_config}"
                    + (f" ({conn.connection_id})" if conn.connection_id else ""),
                )
            downloads[download] = index
            for route in conn.routes:
                if route in routes:
                    raise KeyedValueError(
                        ("connection", index, "routes"),
                        f"{route} is already routed by connection "
                        f"{self.connections[routes[route]].name!r}",
                    )
                routes[route] = index
        return self
