"""The proposals cgwd offers AWS: what AWS supports, strongest first (aws-behaviour.md §6).

Downloads always print AWS's minimum algorithms (AES128/SHA1/DH2, GovCloud DH14), even when
the tunnel options were customised, and AWS refuses anything outside its tunnel's lists. So
by default cgwd proposes every suite AWS supports, strongest first: AES-GCM before CBC,
AES-256 before AES-128, SHA2-512 down to SHA1, ECP 21-19 and MODP 18-14 before 24-22, 5 and
2. AWS takes the lowest value it accepts whatever our order; our order only matters when
AWS initiates and we choose.

Suites are named with AWS's tunnel-option vocabulary (``AES256-GCM-16``, ``SHA2-384``, DH
group numbers); the helpers map them to IANA transform ids (RFC 7296 §3.3.2, RFC 2409
Appendix A, RFC 2407 §4.5) and to strongSwan proposal strings.

IKEv2 (RFC 7296 §3.3): AEAD and CBC suites go in separate proposals, since an AEAD
proposal carries no integrity transform (RFC 5282 §8). IKEv1 phase 1 has no GCM and one
transform per combination, so its default list is short enough for Main Mode message 1 to
stay unfragmented.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from itertools import product
from typing import Literal, TypeVar

from cgwd.config.aws import (
    AwsTunnel,
    FormatName,
    IkeVersion,
    PhaseSettings,
)

# Strongest first (aws-behaviour.md §6).
ENCRYPTION_ORDER = ("AES256-GCM-16", "AES128-GCM-16", "AES256", "AES128")
INTEGRITY_ORDER = ("SHA2-512", "SHA2-384", "SHA2-256", "SHA1")
# ECP 21-19 and MODP 18-14 first, then the MODP groups with small subgroups (22-24, RFC 5114,
# "SHOULD NOT" in RFC 8247 §2.4), then 1536 and 1024-bit MODP.
PHASE1_DH_ORDER = (21, 20, 19, 18, 17, 16, 15, 14, 24, 23, 22, 2)
PHASE2_DH_ORDER = (21, 20, 19, 18, 17, 16, 15, 14, 24, 23, 22, 5, 2)
AEAD_ENCRYPTION = frozenset({"AES128-GCM-16", "AES256-GCM-16"})

# IKEv1 phase 1 default: every CBC cipher with SHA2-256/SHA1 at DH 21, 20, 19, 14 and 2, plus
# AES256 with SHA2-512/384 at DH 21, 20, 14. It covers AWS's minimum (AES128/SHA1/DH2), the
# GovCloud minimum (DH14 with SHA2) and the usual customisations, in 26 transforms of 36
# bytes each: Main Mode message 1 stays near 1.1 kB.
IKEV1_DEFAULT_PHASE1: tuple[tuple[str, str, int], ...] = tuple(
    sorted(
        {
            *product(("AES256", "AES128"), ("SHA2-256", "SHA1"), (21, 20, 19, 14, 2)),
            *product(("AES256",), ("SHA2-512", "SHA2-384"), (21, 20, 14)),
        },
        key=lambda t: (
            ENCRYPTION_ORDER.index(t[0]),
            INTEGRITY_ORDER.index(t[1]),
            PHASE1_DH_ORDER.index(t[2]),
        ),
    )
)
# Restricted IKEv1 lists are the full product of what is allowed, capped so that Main Mode
# message 1 stays below ~1.3 kB (36-byte transforms).
IKEV1_MAX_TRANSFORMS = 32

# AWS's minimum defaults, which is what downloads print when the options are not
# customised (aws-behaviour.md §6; GovCloud: SHA2-256 and DH14).
_DOWNLOAD_DEFAULTS = {"AES128", "SHA1", "SHA2-256", 2, 14}

# --- IANA numbers -------------------------------------------------------------------------
# IKEv2 Transform Type 1 (ENCR), RFC 7296 §3.3.2: AES-CBC 12 (RFC 3602), AES-GCM 16-octet ICV
# 20 (RFC 4106 / RFC 5282); the key length goes in attribute 14 (bits).
IKEV2_ENCR: dict[str, tuple[int, int]] = {
    "AES128": (12, 128),
    "AES256": (12, 256),
    "AES128-GCM-16": (20, 128),
    "AES256-GCM-16": (20, 256),
}
# Transform Type 3 (INTEG), RFC 7296 §3.3.2 / RFC 4868: HMAC-SHA1-96 2, HMAC-SHA2-256-128 12,
# HMAC-SHA2-384-192 13, HMAC-SHA2-512-256 14.
IKEV2_INTEG = {"SHA1": 2, "SHA2-256": 12, "SHA2-384": 13, "SHA2-512": 14}
# Transform Type 2 (PRF), RFC 7296 §3.3.2 / RFC 4868: HMAC-SHA1 2, HMAC-SHA2-256/384/512 5/6/7.
IKEV2_PRF = {"SHA1": 2, "SHA2-256": 5, "SHA2-384": 6, "SHA2-512": 7}
# IKEv1 phase 1 attribute values, RFC 2409 Appendix A: Encryption AES-CBC 7 (RFC 3602),
# Hash SHA 2, SHA2-256/384/512 4/5/6 (IANA "IPSEC Hash Algorithm" registry, RFC 4868 §3).
IKEV1_P1_ENCR = {"AES128": (7, 128), "AES256": (7, 256)}
IKEV1_P1_HASH = {"SHA1": 2, "SHA2-256": 4, "SHA2-384": 5, "SHA2-512": 6}
# IKEv1 ESP transform ids, RFC 2407 §4.4.4: ESP_AES 12, ESP_AES_GCM_16 20 (RFC 4106 §8);
# authentication algorithm attribute, RFC 2407 §4.5 / RFC 4868 §2.1: HMAC-SHA 2,
# HMAC-SHA2-256/384/512 5/6/7.
IKEV1_ESP_TRANSFORM = {
    "AES128": (12, 128),
    "AES256": (12, 256),
    "AES128-GCM-16": (20, 128),
    "AES256-GCM-16": (20, 256),
}
IKEV1_ESP_AUTH = {"SHA1": 2, "SHA2-256": 5, "SHA2-384": 6, "SHA2-512": 7}

# --- strongSwan names ---------------------------------------------------------------------
STRONGSWAN_ENCR = {
    "AES128": "aes128",
    "AES256": "aes256",
    "AES128-GCM-16": "aes128gcm16",
    "AES256-GCM-16": "aes256gcm16",
}
STRONGSWAN_INTEG = {
    "SHA1": "sha1",
    "SHA2-256": "sha256",
    "SHA2-384": "sha384",
    "SHA2-512": "sha512",
}
STRONGSWAN_DH = {
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

Phase = Literal["phase1", "phase2"]


class ProposalError(ValueError):
    """The requested proposals cannot be built (e.g. the file states nothing to offer)."""


_T = TypeVar("_T")


def _ordered(values: Iterable[_T], order: Sequence[_T]) -> tuple[_T, ...]:
    wanted = set(values)
    return tuple(v for v in order if v in wanted)


@dataclass(frozen=True)
class Ikev2Proposal:
    """One IKE SA proposal (RFC 7296 §3.3): alternatives for each transform type."""

    encryption: tuple[str, ...]
    integrity: tuple[str, ...]  # empty for AEAD proposals (RFC 5282 §8)
    prf: tuple[str, ...]  # AWS integrity names: the PRF is HMAC with that hash
    dh_groups: tuple[int, ...]

    def strongswan(self) -> str:
        """E.g. ``aes256gcm16-aes128gcm16-prfsha384-ecp384``."""
        return "-".join(
            [STRONGSWAN_ENCR[e] for e in self.encryption]
            + [STRONGSWAN_INTEG[i] for i in self.integrity]
            + ["prf" + STRONGSWAN_INTEG[p] for p in self.prf]
            + [STRONGSWAN_DH[g] for g in self.dh_groups]
        )

    def iana_transforms(self) -> tuple[tuple[int, int, int | None], ...]:
        """``(transform type, transform id, key bits or None)`` in proposal order."""
        out: list[tuple[int, int, int | None]] = []
        out += [(1, *IKEV2_ENCR[e]) for e in self.encryption]
        out += [(2, IKEV2_PRF[p], None) for p in self.prf]
        out += [(3, IKEV2_INTEG[i], None) for i in self.integrity]
        out += [(4, g, None) for g in self.dh_groups]
        return tuple(out)


@dataclass(frozen=True)
class EspProposal:
    """One ESP proposal: ciphers, integrity (none for AEAD), PFS groups, no ESN."""

    encryption: tuple[str, ...]
    integrity: tuple[str, ...]
    dh_groups: tuple[int, ...]  # PFS groups: used on CHILD_SA rekeys (RFC 7296 §1.3.1)

    def strongswan(self) -> str:
        """E.g. ``aes256-aes128-sha256-sha1-modp2048``."""
        return "-".join(
            [STRONGSWAN_ENCR[e] for e in self.encryption]
            + [STRONGSWAN_INTEG[i] for i in self.integrity]
            + [STRONGSWAN_DH[g] for g in self.dh_groups]
        )

    def iana_transforms(self) -> tuple[tuple[int, int, int | None], ...]:
        """IKEv2 ``(type, id, key bits)``; ESN transform (type 5) 0 = no ESN."""
        out: list[tuple[int, int, int | None]] = []
        out += [(1, *IKEV2_ENCR[e]) for e in self.encryption]
        out += [(3, IKEV2_INTEG[i], None) for i in self.integrity]
        out += [(4, g, None) for g in self.dh_groups]
        out.append((5, 0, None))
        return tuple(out)

    def suites(self) -> tuple[tuple[str, str | None], ...]:
        """Every (encryption, integrity) pair this proposal may negotiate."""
        if not self.integrity:
            return tuple((e, None) for e in self.encryption)
        return tuple(product(self.encryption, self.integrity))


@dataclass(frozen=True)
class Ikev1Transform:
    """One IKEv1 phase 1 transform (RFC 2409 Appendix A): a full combination."""

    encryption: str
    integrity: str
    dh_group: int

    def strongswan(self) -> str:
        """E.g. ``aes256-sha256-modp2048``."""
        return "-".join(
            (
                STRONGSWAN_ENCR[self.encryption],
                STRONGSWAN_INTEG[self.integrity],
                STRONGSWAN_DH[self.dh_group],
            )
        )

    def iana_attributes(self) -> tuple[tuple[int, int], ...]:
        """(attribute class, value): encryption 1, hash 2, auth 3 (PSK = 1), group 4, key
        length 14 (RFC 2409 Appendix A). Lifetime attributes are added by the caller."""
        encr, bits = IKEV1_P1_ENCR[self.encryption]
        return (
            (1, encr),
            (14, bits),
            (2, IKEV1_P1_HASH[self.integrity]),
            (3, 1),
            (4, self.dh_group),
        )


@dataclass(frozen=True)
class ProposalSet:
    """What cgwd offers on one tunnel."""

    ike_version: IkeVersion
    ike: tuple[Ikev2Proposal, ...]  # IKEv2 only
    ikev1: tuple[Ikev1Transform, ...]  # IKEv1 only
    esp: tuple[EspProposal, ...]
    origin: str  # why this set: "AWS-supported set", "restricted by TunnelOptions", "file"
    warnings: tuple[str, ...] = ()

    def ike_strongswan(self) -> str:
        """The IKE proposals as a strongSwan ``proposals =`` value (comma-separated)."""
        if self.ike_version == "ikev1":
            return ",".join(t.strongswan() for t in self.ikev1)
        return ",".join(p.strongswan() for p in self.ike)

    def esp_strongswan(self, pfs_group: int | None = None) -> str:
        """The ESP proposals as a strongSwan ``esp_proposals =`` value.

        For IKEv1 these are the Quick Mode transforms of `ikev1_esp` with PFS group
        ``pfs_group`` (default: the strongest offered): strongSwan, like the IKEv1 wire
        format, uses only the first algorithm of each type of an IKEv1 proposal.
        """
        if self.ike_version == "ikev1":
            return ",".join(p.strongswan() for p in self.ikev1_esp(pfs_group))
        return ",".join(p.strongswan() for p in self.esp)

    def ikev1_esp(self, pfs_group: int | None = None) -> tuple[EspProposal, ...]:
        """IKEv1 Quick Mode offer: one transform per cipher (x integrity), all with one PFS
        group (a Quick Mode carries a single KE payload, RFC 2409 §5.5), strongest first.
        An IKEv1 transform holds one ESP transform id and one authentication algorithm
        attribute (RFC 2407 §4.5), so lists must be expanded.

        Raises:
            ProposalError: ``pfs_group`` is not one of the phase 2 groups offered.
        """
        group = pfs_group if pfs_group is not None else self.esp[0].dh_groups[0]
        if group not in self.esp[0].dh_groups:
            raise ProposalError(f"phase 2 DH group {group} is not allowed on this tunnel")
        return tuple(
            EspProposal((encryption,), () if integrity is None else (integrity,), (group,))
            for encryption, integrity in self.esp_suites()
        )

    def esp_suites(self) -> tuple[tuple[str, str | None], ...]:
        """Every (encryption, integrity) ESP pair that may be negotiated."""
        return tuple(s for p in self.esp for s in p.suites())


def _restriction(
    fmt: FormatName, allowed: tuple[str, ...] | tuple[int, ...]
) -> tuple[str | int, ...] | None:
    """AWS-side restriction stated by the file, or None when the file states none.

    Only the CLI JSON's ``TunnelOptions`` lists what the tunnel accepts; the other formats
    print the minimum defaults. The JSON falls back to the XML's single minimum value when a
    list is absent (not customised), so a single minimum value is not taken as a restriction:
    offering more than AWS accepts costs nothing, offering only the minimum would weaken it.
    """
    if fmt != "aws-cli-json" or not allowed:
        return None
    if len(allowed) == 1 and allowed[0] in _DOWNLOAD_DEFAULTS:
        return None
    return tuple(allowed)


def _file_values(
    phase: PhaseSettings, what: Literal["encryption", "integrity", "dh"], label: str
) -> tuple[str | int, ...]:
    allowed: tuple[str | int, ...]
    single: str | int | None
    if what == "encryption":
        allowed, single = phase.encryption_allowed, phase.encryption
    elif what == "integrity":
        allowed, single = phase.integrity_allowed, phase.integrity
    else:
        allowed, single = phase.dh_groups_allowed, phase.dh_group
    if allowed:
        return allowed
    if single is not None:
        return (single,)
    raise ProposalError(f'proposals = "file" but the AWS file states no {label}')


def _select(  # noqa: PLR0917
    phase: PhaseSettings,
    what: Literal["encryption", "integrity", "dh"],
    label: str,
    order: Sequence[str] | Sequence[int],
    mode: Literal["aws", "file"],
    fmt: FormatName,
) -> tuple[tuple[str | int, ...], bool]:
    """The values to offer, strongest first, and whether the file restricted them."""
    if mode == "file":
        values = _file_values(phase, what, label)
        restricted = True
    else:
        if what == "encryption":
            raw: tuple[str, ...] | tuple[int, ...] = phase.encryption_allowed
        elif what == "integrity":
            raw = phase.integrity_allowed
        else:
            raw = phase.dh_groups_allowed
        limit = _restriction(fmt, raw)
        values = tuple(order) if limit is None else limit
        restricted = limit is not None
    unknown = [v for v in values if v not in order]
    if unknown:
        raise ProposalError(f"{label} {unknown[0]} is not one AWS supports")
    return _ordered(values, tuple(order)), restricted


def proposals_for(
    tunnel: AwsTunnel,
    ike_version: IkeVersion,
    *,
    mode: Literal["aws", "file"] = "aws",
    fmt: FormatName = "aws-generic-text",
) -> ProposalSet:
    """The proposals to offer on ``tunnel``.

    Raises:
        ProposalError: ``mode="file"`` and the file lacks a value, a value is not one AWS
            supports, or a restriction leaves nothing to offer (e.g. IKEv1 with only GCM).
    """
    p1, p2 = tunnel.phase1, tunnel.phase2
    enc1, r1 = _select(p1, "encryption", "phase 1 encryption", ENCRYPTION_ORDER, mode, fmt)
    int1, r2 = _select(p1, "integrity", "phase 1 integrity", INTEGRITY_ORDER, mode, fmt)
    dh1, r3 = _select(p1, "dh", "phase 1 DH group", PHASE1_DH_ORDER, mode, fmt)
    enc2, r4 = _select(p2, "encryption", "phase 2 encryption", ENCRYPTION_ORDER, mode, fmt)
    int2, r5 = _select(p2, "integrity", "phase 2 integrity", INTEGRITY_ORDER, mode, fmt)
    dh2, r6 = _select(p2, "dh", "phase 2 DH group", PHASE2_DH_ORDER, mode, fmt)
    restricted = any((r1, r2, r3, r4, r5, r6))
    if mode == "file":
        origin = "only what the AWS file states"
    elif restricted:
        origin = "AWS-supported set, restricted by the file's TunnelOptions"
    else:
        origin = "every suite AWS supports, strongest first"
    s_enc1 = tuple(str(v) for v in enc1)
    s_int1 = tuple(str(v) for v in int1)
    i_dh1 = tuple(int(v) for v in dh1)
    esp = _split_aead(
        tuple(str(v) for v in enc2), tuple(str(v) for v in int2), tuple(int(v) for v in dh2)
    )
    if not esp:
        raise ProposalError("no phase 2 suite is left to offer")
    warnings: list[str] = []
    if ike_version == "ikev2":
        ike: list[Ikev2Proposal] = []
        aead = tuple(e for e in s_enc1 if e in AEAD_ENCRYPTION)
        cbc = tuple(e for e in s_enc1 if e not in AEAD_ENCRYPTION)
        if aead:
            ike.append(Ikev2Proposal(aead, (), s_int1, i_dh1))
        if cbc:
            ike.append(Ikev2Proposal(cbc, s_int1, s_int1, i_dh1))
        if not ike or not s_int1:
            raise ProposalError("no phase 1 suite is left to offer")
        return ProposalSet("ikev2", tuple(ike), (), esp, origin)
    cbc1 = tuple(e for e in s_enc1 if e not in AEAD_ENCRYPTION)
    if not cbc1:
        raise ProposalError("IKEv1 phase 1 has no AES-GCM, and no other cipher is allowed")
    if not restricted and mode == "aws":
        transforms = tuple(Ikev1Transform(*t) for t in IKEV1_DEFAULT_PHASE1)
    else:
        combos = [Ikev1Transform(e, i, int(g)) for e, i, g in product(cbc1, s_int1, i_dh1)]
        if len(combos) > IKEV1_MAX_TRANSFORMS:
            warnings.append(
                f"IKEv1 phase 1: {len(combos)} combinations allowed, offering the strongest "
                f"{IKEV1_MAX_TRANSFORMS} so that Main Mode message 1 is not fragmented"
            )
            combos = combos[:IKEV1_MAX_TRANSFORMS]
        transforms = tuple(combos)
    return ProposalSet("ikev1", (), transforms, esp, origin, tuple(warnings))


def quick_mode_pfs_group(proposals: ProposalSet, phase1_group: int | None) -> int:
    """The one PFS group of an IKEv1 Quick Mode offer.

    Quick Mode carries a single KE payload, so every transform must use one group (RFC 2409
    §5.5). The group phase 1 negotiated is known to satisfy AWS when phase 2 allows it too;
    otherwise the strongest phase 2 group offered.
    """
    offered = proposals.esp[0].dh_groups
    if phase1_group is not None and phase1_group in offered:
        return phase1_group
    return offered[0]


def _split_aead(
    encryption: tuple[str, ...], integrity: tuple[str, ...], dh_groups: tuple[int, ...]
) -> tuple[EspProposal, ...]:
    out = []
    aead = tuple(e for e in encryption if e in AEAD_ENCRYPTION)
    cbc = tuple(e for e in encryption if e not in AEAD_ENCRYPTION)
    if aead:
        out.append(EspProposal(aead, (), dh_groups))
    if cbc and integrity:
        out.append(EspProposal(cbc, integrity, dh_groups))
    return tuple(out)


def esp_suite_name(encryption: str, integrity: str | None) -> str:
    """strongSwan-style ESP suite name (as `cgwd.esp.suites`): ``aes128gcm16``,
    ``aes256-sha256``."""
    if encryption in AEAD_ENCRYPTION:
        return STRONGSWAN_ENCR[encryption]
    if integrity is None:
        raise ProposalError(f"{encryption} needs an integrity algorithm")
    return f"{STRONGSWAN_ENCR[encryption]}-{STRONGSWAN_INTEG[integrity]}"


def parse_esp_suite_name(name: str) -> tuple[str, str | None]:
    """The inverse of `esp_suite_name`: ``aes256-sha512`` -> ``("AES256", "SHA2-512")``.

    Raises:
        ProposalError: not a suite AWS supports.
    """
    by_encr = {v: k for k, v in STRONGSWAN_ENCR.items()}
    by_integ = {v: k for k, v in STRONGSWAN_INTEG.items()}
    encr, _, integ = name.lower().partition("-")
    if encr not in by_encr:
        raise ProposalError(f"unknown ESP suite {name!r}")
    aws_encr = by_encr[encr]
    if aws_encr in AEAD_ENCRYPTION:
        if integ:
            raise ProposalError(f"unknown ESP suite {name!r}: AES-GCM takes no integrity")
        return aws_encr, None
    if integ not in by_integ:
        raise ProposalError(f"unknown ESP suite {name!r}")
    return aws_encr, by_integ[integ]
