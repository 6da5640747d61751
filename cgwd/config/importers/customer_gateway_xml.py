"""The ``CustomerGatewayConfiguration`` XML (reference §3).

Parsed with defusedxml (no DTDs, entities or external references). Values are looked up
by their exact element paths below; unknown elements are ignored and the two
``<ipsec_tunnel>`` elements are kept in document order. The XML never says which IKE
version to use (``<mode>main</mode>`` proves nothing), nor the MTU: those stay None.
A missing ``<pre_shared_key>`` (key kept in Secrets Manager) gives a None PSK and a
warning, not an error.

`read` is shared with the CLI JSON importer, which embeds this XML.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from xml.etree.ElementTree import Element, ParseError

from defusedxml import DefusedXmlException
from defusedxml.ElementTree import fromstring

from cgwd.config.aws import AwsVpnConnection, FormatName, Routing
from cgwd.config.importers import assemble as a
from cgwd.config.importers import normalise as norm
from cgwd.config.importers.header import id_problem

FORMAT: FormatName = "aws-customer-gateway-xml"
CONNECTION_TYPE = "ipsec.1"

# Element path inside <ipsec_tunnel> -> draft key.
FIELDS = {
    "customer_gateway/tunnel_outside_address/ip_address": a.CGW_OUTSIDE,
    "vpn_gateway/tunnel_outside_address/ip_address": a.AWS_OUTSIDE,
    "ike/authentication_protocol": a.P1_INTEGRITY,
    "ike/encryption_protocol": a.P1_ENCRYPTION,
    "ike/lifetime": a.P1_LIFETIME,
    "ike/perfect_forward_secrecy": a.P1_DH,  # the phase 1 DH group, despite its name
    "ike/mode": a.P1_MODE,
    "ike/pre_shared_key": a.PSK,
    "ipsec/protocol": a.P2_PROTOCOL,
    "ipsec/authentication_protocol": a.P2_INTEGRITY,
    "ipsec/encryption_protocol": a.P2_ENCRYPTION,
    "ipsec/lifetime": a.P2_LIFETIME,
    "ipsec/perfect_forward_secrecy": a.P2_DH,
    "ipsec/mode": a.P2_MODE,
    "ipsec/clear_df_bit": a.CLEAR_DF,
    "ipsec/fragmentation_before_encryption": a.FRAGMENT_BEFORE,
    "ipsec/tcp_mss_adjustment": a.MSS,
    "ipsec/dead_peer_detection/interval": a.DPD_INTERVAL,
    "ipsec/dead_peer_detection/retries": a.DPD_RETRIES,
    "customer_gateway/bgp/asn": a.BGP_CGW_ASN,
    "customer_gateway/bgp/hold_time": a.BGP_HOLD,
    "vpn_gateway/bgp/asn": a.BGP_AWS_ASN,
    "vpn_gateway/bgp/hold_time": a.BGP_HOLD,
}
INSIDE = "tunnel_inside_address"
INSIDE_IPV6 = "tunnel_inside_ipv6_address"

REQUIRED = (
    a.CGW_OUTSIDE,
    a.AWS_OUTSIDE,
    a.P1_ENCRYPTION,
    a.P1_INTEGRITY,
    a.P1_DH,
    a.P1_LIFETIME,
    a.P2_ENCRYPTION,
    a.P2_INTEGRITY,
    a.P2_DH,
    a.P2_LIFETIME,
    a.DPD_INTERVAL,
    a.DPD_RETRIES,
    a.MSS,
    a.CLEAR_DF,
    a.FRAGMENT_BEFORE,
)


@dataclass
class XmlConnection:
    """What the XML says, before the tunnels are built (the JSON importer adds to it)."""

    vpn_connection_id: str | None
    vpn_gateway_id: str | None
    customer_gateway_id: str | None
    routing: Routing
    drafts: list[a.TunnelDraft]
    warnings: list[str]


def _text(parent: Element, path: str) -> str | None:
    element = parent.find(path)
    if element is None:
        return None
    return (element.text or "").strip()


def _parse_xml(text: str, reporter: a.Reporter, prefix: str) -> Element:
    try:
        root: Any = fromstring(text)
    except ParseError as exc:
        line = exc.position[0]
        raise reporter.error(
            f"not well-formed XML ({exc})",
            origin=a.Origin("XML", line=None if prefix else line, element=prefix or None),
        ) from None
    except DefusedXmlException as exc:
        raise reporter.error(
            f"XML with a DTD, entities or external references is refused ({type(exc).__name__})",
            origin=a.Origin("XML", element=prefix or None),
        ) from None
    except (ValueError, LookupError) as exc:  # e.g. an encoding expat does not know
        raise reporter.error(f"unreadable XML: {exc}", origin=a.Origin("XML")) from None
    if not isinstance(root, Element):
        raise reporter.error("unreadable XML document")
    if root.tag != "vpn_connection":
        raise reporter.error(
            f"the root element is <{root.tag[:40]}>, expected <vpn_connection>",
            origin=a.Origin("XML", element=f"{prefix}/{root.tag[:40]}"),
        )
    return root


def _draft(reporter: a.Reporter, index: int, tunnel: Element, base: str) -> a.TunnelDraft:
    draft = a.TunnelDraft(reporter, index, a.Origin(base, element=base))

    def origin(path: str) -> a.Origin:
        return a.Origin(path, element=f"{base}/{path}")

    for path, key in FIELDS.items():
        value = _text(tunnel, path)
        if value is not None:
            draft.put(key, value, origin(path))
    for side, key in (("customer_gateway", a.CGW_INSIDE), ("vpn_gateway", a.AWS_INSIDE)):
        path = f"{side}/{INSIDE}"
        address = _text(tunnel, f"{path}/ip_address")
        if address is None:
            continue
        cidr = _text(tunnel, f"{path}/network_cidr")
        mask = _text(tunnel, f"{path}/network_mask")
        if cidr and mask and not _same_prefix(address, cidr, mask):
            raise draft.error(
                f"{path}: network_mask {mask!r} and network_cidr {cidr!r} disagree",
                origin(f"{path}/network_mask"),
            )
        prefix = cidr or mask
        draft.put(key, f"{address}/{prefix}" if prefix else address, origin(f"{path}/ip_address"))
    ipv6 = {side: _ipv6_inside(tunnel, side) for side in ("customer_gateway", "vpn_gateway")}
    if ipv6["customer_gateway"] is not None:
        text, path = ipv6["customer_gateway"]
        draft.put(a.INSIDE_IPV6_CIDR, text, origin(path))
        if ipv6["vpn_gateway"] is not None and not _same_ipv6_block(text, ipv6["vpn_gateway"][0]):
            raise draft.error(
                "customer_gateway and vpn_gateway inside IPv6 addresses are in different /126s",
                origin(ipv6["vpn_gateway"][1]),
            )
    if a.CGW_INSIDE not in draft.raw and a.INSIDE_IPV6_CIDR not in draft.raw:
        raise draft.error(f"no customer_gateway/{INSIDE} or /{INSIDE_IPV6} element")
    if a.AWS_INSIDE in draft.raw:
        # The XML prints no next hop or neighbour: both are the AWS inside address.
        aws_inside = draft.raw[a.AWS_INSIDE]
        address = aws_inside.values[0].partition("/")[0]
        draft.put(a.NEXT_HOP, address, aws_inside.origin)
        draft.put(a.BGP_NEIGHBOR, address, aws_inside.origin)
    return draft


def _ipv6_inside(tunnel: Element, side: str) -> tuple[str, str] | None:
    """``ADDRESS/PREFIX`` of one side's inside IPv6 address and its element path."""
    path = f"{side}/{INSIDE_IPV6}/ip_address"
    address = _text(tunnel, path)
    if address is None:
        return None
    length = _text(tunnel, f"{side}/{INSIDE_IPV6}/prefix_length") or "126"
    return f"{address}/{length}", path


def _same_ipv6_block(cgw: str, aws: str) -> bool:
    """Whether both addresses are in one /126 (unparsable: let the build say)."""
    try:
        return norm.inside_ipv6_network(cgw) == norm.inside_ipv6_network(aws)
    except ValueError:
        return True


def _same_prefix(address: str, cidr: str, mask: str) -> bool:
    """Whether ``/cidr`` and ``mask`` name the same prefix (unparsable: let the build say)."""
    try:
        by_cidr = norm.ipv4_interface(f"{address}/{cidr}")
        by_mask = norm.ipv4_interface(f"{address} {mask}")
    except ValueError:
        return True
    return by_cidr == by_mask


def read(text: str, reporter: a.Reporter, *, prefix: str = "") -> XmlConnection:
    """The ids, routing and tunnel drafts of the XML document ``text``.

    ``prefix`` is put before element paths (the JSON path of an embedded document).
    Raises ConfigError only.
    """
    root = _parse_xml(text, reporter, prefix)
    reporter.secrets.update(
        psk for element in root.iter("pre_shared_key") if (psk := (element.text or "").strip())
    )
    base = f"{prefix}/vpn_connection"
    ids: dict[str, str | None] = {}
    for name, kind, value in (
        ("vpn_connection_id", "vpn", root.get("id")),
        ("customer_gateway_id", "cgw", _text(root, "customer_gateway_id")),
        ("vpn_gateway_id", "vgw", _text(root, "vpn_gateway_id")),
    ):
        element = f"{base}/@id" if kind == "vpn" else f"{base}/{name}"
        given = (value or "").strip() or None
        if given is not None and (problem := id_problem(kind, given)):
            raise reporter.error(problem, origin=a.Origin(element, element=element))
        ids[name] = given
    connection_type = _text(root, "vpn_connection_type")
    if connection_type is not None and connection_type != CONNECTION_TYPE:
        element = f"{base}/vpn_connection_type"
        raise reporter.error(
            f"vpn_connection_type {connection_type[:40]!r}: cgwd supports {CONNECTION_TYPE} only",
            origin=a.Origin(element, element=element),
        )
    tunnels = root.findall("ipsec_tunnel")
    drafts = [
        _draft(reporter, index, tunnel, f"{base}/ipsec_tunnel[{index}]")
        for index, tunnel in enumerate(tunnels, start=1)
    ]
    attributes = _text(root, "vpn_connection_attributes") or ""
    has_bgp = any(tunnel.find("customer_gateway/bgp") is not None for tunnel in tunnels)
    warnings = []
    if "NoBGP" in attributes or not has_bgp:
        routing: Routing = "static"
        if has_bgp:
            warnings.append("the XML says NoBGPVPNConnection but has <bgp> elements: using static")
    else:
        routing = "bgp"
    return XmlConnection(
        vpn_connection_id=ids["vpn_connection_id"],
        vpn_gateway_id=ids["vpn_gateway_id"],
        customer_gateway_id=ids["customer_gateway_id"],
        routing=routing,
        drafts=drafts,
        warnings=warnings,
    )


def required(routing: Routing) -> tuple[str, ...]:
    """The draft keys every tunnel of this XML must carry for ``routing``."""
    if routing == "bgp":
        return (*REQUIRED, a.BGP_CGW_ASN, a.BGP_AWS_ASN)
    return REQUIRED


def parse(text: str, *, source: str) -> AwsVpnConnection:
    """The connection in a CustomerGatewayConfiguration XML document. Raises ConfigError only."""
    reporter = a.Reporter(FORMAT, source)
    xml = read(text, reporter)
    return a.build_connection(
        reporter,
        xml.drafts,
        routing=xml.routing,
        required=required(xml.routing),
        vpn_connection_id=xml.vpn_connection_id,
        vpn_gateway_id=xml.vpn_gateway_id,
        customer_gateway_id=xml.customer_gateway_id,
        warnings=xml.warnings,
    )
