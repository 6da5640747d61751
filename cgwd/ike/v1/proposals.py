"""IKEv1 SA payloads: what we offer and how an offer or answer is matched (RFC 2409 App. A,
RFC 2407 §4.5).

Phase 1: one ISAKMP proposal whose transforms are complete alternatives (KEY_IKE with
encryption, key length, hash, PSK, group and the lifetime in seconds). Phase 2: one ESP
proposal, one transform per suite, all with the same PFS group (Quick Mode has a single
KE payload, RFC 2409 §5.5) and lifetime. Matching functions return None (never raise)
when nothing fits.
"""

from __future__ import annotations

from dataclasses import dataclass

from cgwd.config.proposals import IKEV1_P1_ENCR, IKEV1_P1_HASH, ProposalSet, esp_suite_name
from cgwd.esp.suites import EspSuite, suite_by_name, suite_from_ike
from cgwd.ike.v1.constants import (
    KEY_IKE,
    LIFE_SECONDS,
    P1_AUTH_PSK,
    P1_ENCR_AES_CBC,
    AuthAlg,
    EncapMode,
    EspTransform,
    P1Attr,
    P2Attr,
    ProtocolId,
)
from cgwd.ike.v1.keys import Phase1Suite
from cgwd.ike.v1.payloads import Attribute, Proposal, SaPayload, Transform

# IPsec auth algorithm attribute <-> IKEv2 INTEG ids the ESP suites are keyed by
_AUTH_TO_INTEG: dict[int, int] = {
    AuthAlg.HMAC_SHA1: 2,
    AuthAlg.HMAC_SHA2_256: 12,
    AuthAlg.HMAC_SHA2_384: 13,
    AuthAlg.HMAC_SHA2_512: 14,
}
_INTEG_TO_AUTH: dict[int, int] = {v: k for k, v in _AUTH_TO_INTEG.items()}
_ENCR_TO_ESP: dict[int, int] = {12: EspTransform.ESP_AES, 20: EspTransform.ESP_AES_GCM_16}
_ESP_TO_ENCR: dict[int, int] = {v: k for k, v in _ENCR_TO_ESP.items()}


def _lifetime(attrs: tuple[Attribute, ...], type_attr: int, duration_attr: int) -> int | None:
    """The seconds lifetime of a life type/duration attribute sequence (kilobytes ignored)."""
    seconds = None
    current_type = None
    for a in attrs:
        if a.type == type_attr:
            current_type = a.value
        elif a.type == duration_attr and current_type == LIFE_SECONDS:
            seconds = a.value
    return seconds


def _others(attrs: tuple[Attribute, ...], skip: tuple[int, ...]) -> dict[int, int] | None:
    out: dict[int, int] = {}
    for a in attrs:
        if a.type in skip:
            continue
        if a.type in out:
            return None
        out[a.type] = a.value
    return out


# ----------------------------------------------------------------- phase 1


def phase1_transform(number: int, suite: Phase1Suite, lifetime: int) -> Transform:
    return Transform(
        number,
        KEY_IKE,
        (
            Attribute(P1Attr.ENCRYPTION, P1_ENCR_AES_CBC),
            Attribute(P1Attr.KEY_LENGTH, suite.key_bits),
            Attribute(P1Attr.HASH, suite.hash_id),
            Attribute(P1Attr.AUTH_METHOD, P1_AUTH_PSK),
            Attribute(P1Attr.GROUP_DESCRIPTION, suite.group),
            Attribute(P1Attr.LIFE_TYPE, LIFE_SECONDS),
            Attribute(P1Attr.LIFE_DURATION, lifetime),
        ),
    )


def phase1_offer(suites: tuple[Phase1Suite, ...], lifetime: int) -> SaPayload:
    transforms = tuple(phase1_transform(i, s, lifetime) for i, s in enumerate(suites, 1))
    return SaPayload((Proposal(1, ProtocolId.ISAKMP, b"", transforms),))


def parse_phase1_transform(t: Transform) -> tuple[Phase1Suite, int | None] | None:
    """(suite, lifetime seconds) of a KEY_IKE transform we can use, else None."""
    if t.transform_id != KEY_IKE:
        return None
    attrs = _others(t.attributes, (P1Attr.LIFE_TYPE, P1Attr.LIFE_DURATION))
    if attrs is None:
        return None
    if attrs.get(P1Attr.ENCRYPTION) != P1_ENCR_AES_CBC:
        return None
    if attrs.get(P1Attr.AUTH_METHOD) != P1_AUTH_PSK:
        return None
    if set(attrs) - {P1Attr.ENCRYPTION, P1Attr.KEY_LENGTH, P1Attr.HASH, P1Attr.AUTH_METHOD,
                     P1Attr.GROUP_DESCRIPTION}:  # fmt: skip
        return None
    try:
        suite = Phase1Suite(
            attrs.get(P1Attr.KEY_LENGTH, 0),
            attrs.get(P1Attr.HASH, 0),
            attrs.get(P1Attr.GROUP_DESCRIPTION, 0),
        )
    except ValueError:
        return None
    return suite, _lifetime(t.attributes, P1Attr.LIFE_TYPE, P1Attr.LIFE_DURATION)


def choose_phase1(
    sa: SaPayload, ours: tuple[Phase1Suite, ...]
) -> tuple[Proposal, Transform, Phase1Suite, int | None] | None:
    """Responder: the first of the peer's transforms we accept (its preference order)."""
    for p in sa.proposals:
        if p.protocol != ProtocolId.ISAKMP:
            continue
        for t in p.transforms:
            parsed = parse_phase1_transform(t)
            if parsed is not None and parsed[0] in ours:
                return p, t, parsed[0], parsed[1]
    return None


def phase1_answer(
    sa: SaPayload, offered: tuple[Phase1Suite, ...]
) -> tuple[Phase1Suite, int | None] | None:
    """Initiator: the responder's answer must be one proposal with one offered transform."""
    if len(sa.proposals) != 1 or len(sa.proposals[0].transforms) != 1:
        return None
    if sa.proposals[0].protocol != ProtocolId.ISAKMP:
        return None
    parsed = parse_phase1_transform(sa.proposals[0].transforms[0])
    if parsed is None or parsed[0] not in offered:
        return None
    return parsed


# ----------------------------------------------------------------- phase 2


@dataclass(frozen=True)
class Phase2Choice:
    suite: EspSuite
    lifetime: int | None
    group: int | None
    encap: int
    transform: Transform
    proposal: Proposal


def esp_transform(
    number: int, suite: EspSuite, lifetime: int, group: int | None, encap: int
) -> Transform:
    encr_id, bits, integ = suite.ike_transform
    attrs = [Attribute(P2Attr.LIFE_TYPE, LIFE_SECONDS), Attribute(P2Attr.LIFE_DURATION, lifetime)]
    if group:
        attrs.append(Attribute(P2Attr.GROUP_DESCRIPTION, group))
    attrs.append(Attribute(P2Attr.ENCAPSULATION_MODE, encap))
    if integ is not None:
        attrs.append(Attribute(P2Attr.AUTH_ALGORITHM, _INTEG_TO_AUTH[integ]))
    if bits is not None:
        attrs.append(Attribute(P2Attr.KEY_LENGTH, bits))
    return Transform(number, _ENCR_TO_ESP[encr_id], tuple(attrs))


def phase2_offer(
    suites: tuple[EspSuite, ...], spi: int, lifetime: int, group: int | None, encap: int
) -> SaPayload:
    transforms = tuple(esp_transform(i, s, lifetime, group, encap) for i, s in enumerate(suites, 1))
    return SaPayload((Proposal(1, ProtocolId.ESP, spi.to_bytes(4, "big"), transforms),))


def parse_esp_transform(t: Transform) -> tuple[EspSuite, int | None, int | None, int] | None:
    """(suite, lifetime, PFS group, encapsulation mode) of an ESP transform, else None."""
    encr = _ESP_TO_ENCR.get(t.transform_id)
    if encr is None:
        return None
    attrs = _others(t.attributes, (P2Attr.LIFE_TYPE, P2Attr.LIFE_DURATION))
    if attrs is None:
        return None
    if set(attrs) - {P2Attr.GROUP_DESCRIPTION, P2Attr.ENCAPSULATION_MODE, P2Attr.AUTH_ALGORITHM,
                     P2Attr.KEY_LENGTH}:  # fmt: skip
        return None
    auth = attrs.get(P2Attr.AUTH_ALGORITHM)
    integ = None if auth is None else _AUTH_TO_INTEG.get(auth)
    if auth is not None and integ is None:
        return None
    try:
        suite = suite_from_ike(encr, attrs.get(P2Attr.KEY_LENGTH), integ)
    except ValueError:
        return None
    encap = attrs.get(P2Attr.ENCAPSULATION_MODE, EncapMode.TUNNEL)
    lifetime = _lifetime(t.attributes, P2Attr.LIFE_TYPE, P2Attr.LIFE_DURATION)
    return suite, lifetime, attrs.get(P2Attr.GROUP_DESCRIPTION), encap


def choose_phase2(
    sa: SaPayload,
    suites: tuple[EspSuite, ...],
    groups: tuple[int, ...],
    encaps: frozenset[int],
) -> Phase2Choice | None:
    """Responder: the peer's first ESP transform with a suite, PFS group and encapsulation
    mode we accept. Proposals for other protocols (AH, IPComp) are skipped."""
    for p in sa.proposals:
        if p.protocol != ProtocolId.ESP or len(p.spi) != 4:
            continue
        for t in p.transforms:
            parsed = parse_esp_transform(t)
            if parsed is None:
                continue
            suite, lifetime, group, encap = parsed
            if suite in suites and (group is None or group in groups) and encap in encaps:
                return Phase2Choice(suite, lifetime, group, encap, t, p)
    return None


def phase2_answer(
    sa: SaPayload, suites: tuple[EspSuite, ...], group: int | None, encap: int
) -> Phase2Choice | None:
    """Initiator: the answer must be one ESP proposal with one transform we offered."""
    if len(sa.proposals) != 1 or len(sa.proposals[0].transforms) != 1:
        return None
    p = sa.proposals[0]
    if p.protocol != ProtocolId.ESP or len(p.spi) != 4:
        return None
    parsed = parse_esp_transform(p.transforms[0])
    if parsed is None:
        return None
    suite, lifetime, g, e = parsed
    if suite not in suites or g != group or e != encap:
        return None
    return Phase2Choice(suite, lifetime, g, e, p.transforms[0], p)


def from_config(
    ps: ProposalSet,
) -> tuple[tuple[Phase1Suite, ...], tuple[EspSuite, ...], tuple[int, ...]]:
    """(phase 1 suites, ESP suites, PFS groups) of a `cgwd.config.proposals` IKEv1 set.

    Raises ``ValueError`` when the set is not an IKEv1 one or names something unsupported.
    """
    if ps.ike_version != "ikev1":
        raise ValueError("not an IKEv1 proposal set")
    p1 = tuple(
        Phase1Suite(IKEV1_P1_ENCR[t.encryption][1], IKEV1_P1_HASH[t.integrity], t.dh_group)
        for t in ps.ikev1
    )
    esp = tuple(suite_by_name(esp_suite_name(e, i)) for e, i in ps.esp_suites())
    groups = ps.esp[0].dh_groups if ps.esp else ()
    return p1, esp, tuple(groups)
