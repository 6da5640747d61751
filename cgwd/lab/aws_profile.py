"""How an AWS VPN endpoint behaves, written as strongSwan configuration.

`endpoint_swanctl_conf` turns one `AwsTunnel` (plus the lab's `EndpointPolicy`) into the
swanctl.conf of the charon that plays that tunnel's AWS endpoint:

- proposals: AWS's supported set (``shared/reference/aws-behaviour.md`` section 6), listed
  lowest first because AWS picks the lowest acceptable value whatever the customer
  gateway's order (strongSwan as responder prefers its own configured order);
- selectors 0.0.0.0/0 <=> 0.0.0.0/0, one CHILD_SA per tunnel (``unique = replace``);
- DPD as AWS does it (probe after ``dpd_delay`` s of silence, action clear/restart/none);
- lifetimes and rekey timing from the tunnel options (rekey at a random point in the
  margin window, as AWS does);
- replay window 1024 (AWS's default; strongSwan's is 32).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from ipaddress import IPv4Address
from pathlib import Path
from typing import Literal

from cgwd.config.aws import (
    ENCRYPTION_ALGORITHMS,
    INTEGRITY_ALGORITHMS,
    PHASE1_DH_GROUPS,
    PHASE2_DH_GROUPS,
    AwsTunnel,
    AwsVpnConnection,
    PhaseSettings,
)
from cgwd.errors import ConfigError
from cgwd.lab.strongswan import swanctl_section
from cgwd.secret import Secret

# AWS tunnel-option names -> strongSwan proposal keywords.
ENCRYPTION_KEYWORDS = {
    "AES128": "aes128",
    "AES256": "aes256",
    "AES128-GCM-16": "aes128gcm16",
    "AES256-GCM-16": "aes256gcm16",
}
INTEGRITY_KEYWORDS = {
    "SHA1": "sha1",
    "SHA2-256": "sha256",
    "SHA2-384": "sha384",
    "SHA2-512": "sha512",
}
PRF_KEYWORDS = {
    "SHA1": "prfsha1",
    "SHA2-256": "prfsha256",
    "SHA2-384": "prfsha384",
    "SHA2-512": "prfsha512",
}
# RFC 3526 (MODP 14-18), RFC 2409 (2, 5), RFC 5903 (ECP 19-21), RFC 5114 (22-24).
DH_KEYWORDS = {
    2: "modp1024",
    5: "modp1536",
    14: "modp2048",
    15: "modp3072",
    16: "modp4096",
    17: "modp6144",
    18: "modp8192",
    19: "ecp256",
    20: "ecp384",
    21: "ecp521",
    22: "modp1024s160",
    23: "modp2048s224",
    24: "modp2048s256",
}
AEAD = ("AES128-GCM-16", "AES256-GCM-16")

IkeVersionChoice = Literal["ikev1", "ikev2", "any"]
DpdAction = Literal["clear", "restart", "none"]
StartupAction = Literal["add", "start"]


@dataclass(frozen=True)
class AlgorithmSet:
    """The AWS-side algorithm lists of one phase (AWS names, AWS's order: lowest first)."""

    encryption: tuple[str, ...]
    integrity: tuple[str, ...]
    dh_groups: tuple[int, ...]


def aws_default_set(phase: int) -> AlgorithmSet:
    """What an AWS endpoint accepts when the tunnel options are left at their defaults."""
    groups = PHASE1_DH_GROUPS if phase == 1 else PHASE2_DH_GROUPS
    return AlgorithmSet(ENCRYPTION_ALGORITHMS, INTEGRITY_ALGORITHMS, groups)


def allowed_set(
    connection: AwsVpnConnection, phase_settings: PhaseSettings, phase: int
) -> AlgorithmSet:
    """The algorithm set an AWS endpoint for this tunnel accepts.

    Only the CLI JSON's ``TunnelOptions`` lists what the tunnel is restricted to. The text
    and XML downloads print AWS's *minimum* defaults (AES128/SHA1/group 2) whatever the
    tunnel accepts, so for them the full default set is used.
    """
    full = aws_default_set(phase)
    if connection.format != "aws-cli-json":
        return full
    encryption = _ordered(phase_settings.encryption_allowed, full.encryption)
    integrity = _ordered(phase_settings.integrity_allowed, full.integrity)
    groups = tuple(sorted(g for g in phase_settings.dh_groups_allowed if g in full.dh_groups))
    return AlgorithmSet(
        encryption or full.encryption, integrity or full.integrity, groups or full.dh_groups
    )


def _ordered(allowed: Sequence[str], order: Sequence[str]) -> tuple[str, ...]:
    wanted = {a.upper() for a in allowed}
    return tuple(name for name in order if name in wanted)


def ike_proposals(algs: AlgorithmSet, version: IkeVersionChoice) -> list[str]:
    """strongSwan IKE proposals, AWS's lowest first: one per encryption x integrity (or PRF).

    strongSwan as responder takes its first configured proposal that matches any received
    one, and within it the first of its own algorithms the peer offers. One proposal per
    (encryption, integrity) pair therefore makes it pick the lowest encryption, then the
    lowest integrity, whatever the peer's order, as AWS does; the DH group is the lowest
    one in the first received proposal that matches. AEAD proposals come after CBC ones
    (AWS lists AES128, AES256, AES128-GCM-16, AES256-GCM-16) and are left out for an
    IKEv1-only endpoint (IKEv1 phase 1 has no GCM).
    """
    groups = "-".join(DH_KEYWORDS[g] for g in algs.dh_groups)
    proposals = []
    for encryption in algs.encryption:
        enc = ENCRYPTION_KEYWORDS[encryption]
        if encryption in AEAD:
            if version == "ikev1":
                continue
            proposals += [f"{enc}-{PRF_KEYWORDS[i]}-{groups}" for i in algs.integrity]
        else:
            proposals += [f"{enc}-{INTEGRITY_KEYWORDS[i]}-{groups}" for i in algs.integrity]
    return proposals


def esp_proposals(algs: AlgorithmSet) -> list[str]:
    """strongSwan ESP proposals, lowest first (as `ike_proposals`), with AWS's PFS groups."""
    groups = "-".join(DH_KEYWORDS[g] for g in algs.dh_groups)
    proposals = []
    for encryption in algs.encryption:
        enc = ENCRYPTION_KEYWORDS[encryption]
        if encryption in AEAD:
            proposals.append(f"{enc}-{groups}")
        else:
            proposals += [f"{enc}-{INTEGRITY_KEYWORDS[i]}-{groups}" for i in algs.integrity]
    return proposals


@dataclass(frozen=True)
class EndpointPolicy:
    """Everything about one AWS endpoint that is not in the download (or overrides it).

    ``None`` means "from the file, else AWS's default".
    """

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
    ike_proposals: str | None = None  # strongSwan proposal string(s), comma-separated
    esp_proposals: str | None = None
    remote_id: str | None = None  # default: the customer gateway's outside IP
    psk: Secret | None = None  # default: the file's


AWS_DEFAULT_PHASE1_LIFETIME = 28800
AWS_DEFAULT_PHASE2_LIFETIME = 3600
AWS_DEFAULT_REKEY_MARGIN = 270
AWS_DEFAULT_REKEY_FUZZ = 100
AWS_DEFAULT_DPD_DELAY = 10
AWS_DEFAULT_DPD_TIMEOUT = 30
AWS_DEFAULT_REPLAY_WINDOW = 1024


def resolve_version(tunnel: AwsTunnel, policy: EndpointPolicy) -> IkeVersionChoice:
    """The IKE versions the endpoint answers. AWS allows both unless restricted."""
    if policy.ike_version is not None:
        return policy.ike_version
    allowed = set(tunnel.ike_versions_allowed)
    if allowed == {"ikev1"} or (not allowed and tunnel.ike_version == "ikev1"):
        # A download generated for IKEv1 still comes from a tunnel that (by default)
        # allows both; answering both is what AWS does.
        return "any"
    if allowed == {"ikev2"}:
        return "ikev2"
    return "any"


def connection_name(index: int) -> str:
    return f"tunnel{index}"


def endpoint_swanctl_conf(
    connection: AwsVpnConnection,
    tunnel: AwsTunnel,
    policy: EndpointPolicy,
    *,
    customer_gateway_ip: IPv4Address,
    updown: Path | None,
) -> str:
    """swanctl.conf of the charon playing ``tunnel``'s AWS endpoint. Raises ConfigError."""
    name = connection_name(tunnel.index)
    version = resolve_version(tunnel, policy)
    startup = policy.startup_action or tunnel.startup_action or "add"
    if startup == "start" and version == "ikev1":
        raise ConfigError(f"tunnel {tunnel.index}: startup action 'start' needs IKEv2 (as on AWS)")
    psk = policy.psk or tunnel.pre_shared_key
    if psk is None:
        raise ConfigError(
            f"tunnel {tunnel.index}: the AWS file has no pre-shared key and none was given"
        )

    p1 = allowed_set(connection, tunnel.phase1, 1)
    p2 = allowed_set(connection, tunnel.phase2, 2)
    ike = policy.ike_proposals or ",".join(ike_proposals(p1, version))
    esp = policy.esp_proposals or ",".join(esp_proposals(p2))

    life1 = policy.phase1_lifetime or tunnel.phase1.lifetime_seconds or AWS_DEFAULT_PHASE1_LIFETIME
    life2 = policy.phase2_lifetime or tunnel.phase2.lifetime_seconds or AWS_DEFAULT_PHASE2_LIFETIME
    margin = policy.rekey_margin or tunnel.rekey_margin_seconds or AWS_DEFAULT_REKEY_MARGIN
    fuzz = _first(
        policy.rekey_fuzz_percentage, tunnel.rekey_fuzz_percentage, AWS_DEFAULT_REKEY_FUZZ
    )
    # AWS rekeys at a random point of [lifetime - margin*(1+fuzz), lifetime - margin]; so
    # does strongSwan with rekey_time = lifetime - margin and rand_time = margin*fuzz.
    rand = margin * fuzz // 100
    for what, life in (("phase 1", life1), ("phase 2", life2)):
        if life - margin - rand <= 0:
            raise ConfigError(
                f"tunnel {tunnel.index}: {what} lifetime {life} s leaves no time before the "
                f"rekey margin ({margin} s, fuzz {fuzz} %)"
            )
    dpd_delay = policy.dpd_delay or tunnel.dpd.interval_seconds or AWS_DEFAULT_DPD_DELAY
    dpd_timeout = (
        policy.dpd_timeout
        or tunnel.dpd.timeout_seconds
        or (
            tunnel.dpd.interval_seconds * tunnel.dpd.retries
            if tunnel.dpd.interval_seconds and tunnel.dpd.retries
            else None
        )
        or AWS_DEFAULT_DPD_TIMEOUT
    )
    dpd_action = policy.dpd_action or tunnel.dpd.action or "clear"
    replay = policy.replay_window or tunnel.replay_window_size or AWS_DEFAULT_REPLAY_WINDOW
    aws_ip = str(tunnel.vpn_gateway_outside_ip)
    remote_id = policy.remote_id or str(tunnel.customer_gateway_outside_ip or customer_gateway_ip)

    child: dict[str, object] = {
        "local_ts": "0.0.0.0/0",
        "remote_ts": "0.0.0.0/0",
        "mode": "tunnel",
        "esp_proposals": esp,
        "dpd_action": {"clear": "clear", "restart": "restart", "none": "none"}[dpd_action],
        "start_action": "start" if startup == "start" else "none",
        "close_action": "none",
        "replay_window": replay,
        "life_time": f"{life2}s",
        "rekey_time": f"{life2 - margin}s",
        "rand_time": f"{rand}s",
        "updown": str(updown) if updown else None,
    }
    conn: dict[str, object] = {
        "version": {"ikev1": 1, "ikev2": 2, "any": 0}[version],
        "local_addrs": aws_ip,
        "remote_addrs": str(customer_gateway_ip),
        "proposals": ike,
        "dpd_delay": f"{dpd_delay}s",
        "dpd_timeout": f"{dpd_timeout}s",  # IKEv1 only; IKEv2 uses the retransmit schedule
        "rekey_time": f"{life1 - margin}s",
        "over_time": f"{margin}s",
        "rand_time": f"{rand}s",
        "reauth_time": "0",
        "unique": "replace",
        "mobike": False,
        "aggressive": False,
        "local": {"auth": "psk", "id": aws_ip},
        "remote": {"auth": "psk", "id": remote_id},
        "children": {name: child},
    }
    secret = {"id-1": aws_ip, "id-2": remote_id, "secret": psk}
    return "\n".join(
        [
            "# generated by cgwd.lab: the AWS endpoint of one tunnel",
            "connections {",
            swanctl_section(name, conn, 1),
            "}",
            "secrets {",
            swanctl_section(f"ike-{name}", secret, 1),
            "}",
            "",
        ]
    )


def _first(*values: int | None) -> int:
    for v in values:
        if v is not None:
            return v
    raise AssertionError("no default given")
