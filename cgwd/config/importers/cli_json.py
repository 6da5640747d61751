"""``aws ec2 describe-vpn-connections`` JSON (reference §4).

The document embeds the CustomerGatewayConfiguration XML as a string; that XML gives the
addresses and the PSK but always prints AWS's default algorithms. ``Options.TunnelOptions``
is the only accurate source for what a tunnel was customised to, so its values win; a
disagreement is recorded in ``warnings``. Tunnels are matched by AWS outside address,
never by position; the inside CIDR and PSK given in both places must agree.

``create-vpn-connection`` and ``modify-vpn-tunnel-options`` print ``{"VpnConnection": …}``
instead of a list: accepted too.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import Any

from cgwd.config.aws import AwsVpnConnection, FormatName, Routing
from cgwd.config.importers import assemble as a
from cgwd.config.importers import customer_gateway_xml
from cgwd.config.importers import normalise as norm
from cgwd.config.importers.header import id_problem
from cgwd.errors import ConfigError

FORMAT: FormatName = "aws-cli-json"

# TunnelOptions key -> (draft key, is a list of {"Value": …}).
OPTIONS = {
    "IkeVersions": (a.IKE_VERSION, True),
    "Phase1EncryptionAlgorithms": (a.P1_ENCRYPTION, True),
    "Phase1IntegrityAlgorithms": (a.P1_INTEGRITY, True),
    "Phase1DHGroupNumbers": (a.P1_DH, True),
    "Phase1LifetimeSeconds": (a.P1_LIFETIME, False),
    "Phase2EncryptionAlgorithms": (a.P2_ENCRYPTION, True),
    "Phase2IntegrityAlgorithms": (a.P2_INTEGRITY, True),
    "Phase2DHGroupNumbers": (a.P2_DH, True),
    "Phase2LifetimeSeconds": (a.P2_LIFETIME, False),
    "RekeyMarginTimeSeconds": (a.REKEY_MARGIN, False),
    "RekeyFuzzPercentage": (a.REKEY_FUZZ, False),
    "ReplayWindowSize": (a.REPLAY_WINDOW, False),
    "DpdTimeoutSeconds": (a.DPD_TIMEOUT, False),
    "DpdTimeoutAction": (a.DPD_ACTION, False),
    "StartupAction": (a.STARTUP_ACTION, False),
}
# Values the XML prints too (as defaults), compared to report customisations.
COMPARED: dict[str, Callable[[str], object]] = {
    a.P1_ENCRYPTION: norm.encryption,
    a.P1_INTEGRITY: norm.integrity,
    a.P1_DH: norm.dh_group,
    a.P1_LIFETIME: norm.lifetime_seconds,
    a.P2_ENCRYPTION: norm.encryption,
    a.P2_INTEGRITY: norm.integrity,
    a.P2_DH: norm.dh_group,
    a.P2_LIFETIME: norm.lifetime_seconds,
}


class _Json:
    """Typed access to the decoded document; every shape error names its JSON path."""

    def __init__(self, reporter: a.Reporter) -> None:
        self.reporter = reporter

    def fail(self, path: str, message: str, tunnel: int | None = None) -> ConfigError:
        element = None if path == "$" else path  # the whole document: no path to show
        return self.reporter.error(message, origin=a.Origin(path, element=element), tunnel=tunnel)

    def object(self, value: Any, path: str) -> dict[str, Any]:
        if not isinstance(value, dict):
            raise self.fail(path, f"expected a JSON object, found {_kind(value)}")
        return value

    def array(self, value: Any, path: str) -> list[Any]:
        if not isinstance(value, list):
            raise self.fail(path, f"expected a JSON list, found {_kind(value)}")
        return value

    def string(self, parent: dict[str, Any], key: str, path: str) -> str | None:
        value = parent.get(key)
        if value is None:
            return None
        if not isinstance(value, str):
            raise self.fail(f"{path}.{key}", f"expected a string, found {_kind(value)}")
        return value

    def scalar(self, value: Any, path: str) -> str:
        """A string or whole number as text (lifetimes are numbers, algorithms strings)."""
        if isinstance(value, str) or (isinstance(value, int) and not isinstance(value, bool)):
            return str(value)
        raise self.fail(path, f"expected a string or a whole number, found {_kind(value)}")

    def values(self, value: Any, path: str) -> list[str]:
        """``[{"Value": …}, …]`` as texts."""
        items = self.array(value, path)
        texts = []
        for i, item in enumerate(items):
            entry = self.object(item, f"{path}[{i}]")
            if "Value" not in entry:
                raise self.fail(f"{path}[{i}]", 'expected {"Value": …}')
            texts.append(self.scalar(entry["Value"], f"{path}[{i}].Value"))
        return texts


def _kind(value: Any) -> str:
    names = {dict: "an object", list: "a list", str: "a string", bool: "true/false"}
    if value is None:
        return "null"
    return names.get(type(value), "a number")


def _load(text: str, reporter: a.Reporter) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise reporter.error(
            f"not valid JSON ({exc.msg}, column {exc.colno})", origin=a.Origin("JSON", exc.lineno)
        ) from None
    except RecursionError:
        raise reporter.error("JSON nested too deeply") from None


def _collect_secrets(doc: Any, reporter: a.Reporter) -> None:
    """Register every ``PreSharedKey`` string, so no error can quote one (iterative: the
    document may be nested as deep as the JSON decoder allows)."""
    stack = [doc]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            psk = node.get("PreSharedKey")
            if isinstance(psk, str) and psk.strip():
                reporter.secrets.add(psk)
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)


def _some(ids: Sequence[str | None], shown: int = 5) -> str:
    """The first few connection ids, for a message."""
    listed = ", ".join(i or "?" for i in ids[:shown])
    return listed + (f" and {len(ids) - shown} more" if len(ids) > shown else "")


def _pick(doc: Any, j: _Json, connection_id: str | None) -> tuple[dict[str, Any], str]:
    """The chosen connection object and its JSON path."""
    root = j.object(doc, "$")
    if "VpnConnections" in root:
        items = j.array(root["VpnConnections"], "$.VpnConnections")
        candidates = [
            (j.object(item, f"$.VpnConnections[{i}]"), f"$.VpnConnections[{i}]")
            for i, item in enumerate(items)
        ]
    elif "VpnConnection" in root:
        candidates = [(j.object(root["VpnConnection"], "$.VpnConnection"), "$.VpnConnection")]
    else:
        raise j.fail("$", "no VpnConnections or VpnConnection key")
    ids = [j.string(c, "VpnConnectionId", path) for c, path in candidates]
    if connection_id is not None:
        chosen = [c for c, id_ in zip(candidates, ids, strict=True) if id_ == connection_id]
        if not chosen:
            listed = _some(ids) or "none"
            raise j.fail("$", f"no connection {connection_id} in the file (it has: {listed})")
        return chosen[0]
    if len(candidates) != 1:
        listed = _some(ids)
        raise j.fail(
            "$",
            f"the file lists {len(candidates)} VPN connections ({listed or 'none'}): "
            "choose one by its connection id",
        )
    return candidates[0]


def _same_values(draft: a.TunnelDraft, key: str, texts: Sequence[str]) -> bool | None:
    """Whether the XML's value for ``key`` means the same as ``texts`` (None: cannot tell)."""
    convert = COMPARED[key]
    try:
        ours = {convert(t) for t in draft.raw[key].values}
        theirs = {convert(t) for t in texts}
    except ValueError:
        return None
    return ours == theirs


def _apply_options(
    j: _Json, draft: a.TunnelDraft, options: dict[str, Any], path: str, warnings: list[str]
) -> None:
    """Overlay one ``TunnelOptions`` entry on the XML's draft of the same tunnel."""
    for name, (key, is_list) in OPTIONS.items():
        if name not in options:
            continue  # not customised: the XML's value stands
        where = f"{path}.{name}"
        if is_list:
            texts = j.values(options[name], where)
            if not texts:
                continue
        else:
            texts = [j.scalar(options[name], where)]
        if key in draft.raw and key in COMPARED and _same_values(draft, key, texts) is False:
            warnings.append(
                f"tunnel {draft.index}: {name} is {', '.join(texts)} but the XML says "
                f"{', '.join(draft.raw[key].values)}: using TunnelOptions"
            )
        draft.raw.pop(key, None)
        draft.put(key, texts, a.Origin(name, element=where))
    cidr = j.string(options, "TunnelInsideCidr", path)
    if cidr is not None:
        # _inside() in the build refuses it unless it is the XML's inside network.
        draft.put(
            a.INSIDE_CIDR, cidr, a.Origin("TunnelInsideCidr", element=f"{path}.TunnelInsideCidr")
        )
    ipv6 = j.string(options, "TunnelInsideIpv6Cidr", path)
    if ipv6 is not None:
        _cross_check_ipv6(j, draft, ipv6, f"{path}.TunnelInsideIpv6Cidr")
    arn = j.string(options, "PreSharedKeyArn", path)
    if arn is not None:
        warnings.append(f"tunnel {draft.index}: the PSK is kept in AWS Secrets Manager ({arn})")
    psk = j.string(options, "PreSharedKey", path)
    if psk is not None:
        where = f"{path}.PreSharedKey"
        xml_psk = draft.raw.get(a.PSK)
        if xml_psk is not None and xml_psk.values != (psk,):
            raise j.fail(where, "PreSharedKey differs from the XML's pre_shared_key", draft.index)
        draft.raw.pop(a.PSK, None)
        draft.put(a.PSK, psk, a.Origin("PreSharedKey", element=where))


def _cross_check_ipv6(j: _Json, draft: a.TunnelDraft, text: str, where: str) -> None:
    xml = draft.raw.get(a.INSIDE_IPV6_CIDR)
    if xml is None:
        draft.put(a.INSIDE_IPV6_CIDR, text, a.Origin("TunnelInsideIpv6Cidr", element=where))
        return
    try:
        same = norm.inside_ipv6_network(text) == norm.inside_ipv6_network(xml.values[0])
    except ValueError:
        same = False
    if not same:
        raise j.fail(
            where,
            f"TunnelInsideIpv6Cidr {text!r} disagrees with the XML ({xml.values[0]!r})",
            draft.index,
        )


def _outside_key(text: str) -> str:
    try:
        return str(norm.ipv4(text))
    except ValueError:
        return text.strip()


def parse(text: str, *, source: str, connection_id: str | None = None) -> AwsVpnConnection:
    """The connection in describe-vpn-connections (or create-vpn-connection) JSON output.

    ``connection_id`` chooses among several connections. Raises ConfigError only.
    """
    reporter = a.Reporter(FORMAT, source)
    j = _Json(reporter)
    doc = _load(text, reporter)
    _collect_secrets(doc, reporter)
    conn, path = _pick(doc, j, connection_id)
    ids = {}
    for key, kind in (
        ("VpnConnectionId", "vpn"),
        ("CustomerGatewayId", "cgw"),
        ("VpnGatewayId", "vgw"),
        ("TransitGatewayId", "tgw"),
    ):
        value = j.string(conn, key, path) or None
        if value is not None and (problem := id_problem(kind, value)):
            raise j.fail(f"{path}.{key}", problem)
        ids[key] = value
    embedded = j.string(conn, "CustomerGatewayConfiguration", path)
    if embedded is None:
        raise j.fail(path, "no CustomerGatewayConfiguration (the connection may be deleted)")
    xml = customer_gateway_xml.read(
        embedded, reporter, prefix=f"{path}.CustomerGatewayConfiguration"
    )
    for key, from_xml in (
        ("VpnConnectionId", xml.vpn_connection_id),
        ("CustomerGatewayId", xml.customer_gateway_id),
    ):
        if ids[key] is not None and from_xml is not None and ids[key] != from_xml:
            raise j.fail(f"{path}.{key}", f"{key} {ids[key]} but the XML says {from_xml}")
    warnings = list(xml.warnings)
    options = j.object(conn.get("Options", {}), f"{path}.Options")
    routing: Routing = xml.routing
    static_only = options.get("StaticRoutesOnly")
    if static_only is not None:
        if not isinstance(static_only, bool):
            raise j.fail(f"{path}.Options.StaticRoutesOnly", "expected true or false")
        routing = "static" if static_only else "bgp"
        if routing != xml.routing:
            warnings.append(
                f"Options.StaticRoutesOnly says {routing} but the XML says {xml.routing}"
            )
    by_outside = {
        _outside_key(d.raw[a.AWS_OUTSIDE].values[0]): d
        for d in xml.drafts
        if a.AWS_OUTSIDE in d.raw
    }
    matched: set[int] = set()
    tunnel_options = j.array(options.get("TunnelOptions", []), f"{path}.Options.TunnelOptions")
    for i, item in enumerate(tunnel_options):
        where = f"{path}.Options.TunnelOptions[{i}]"
        entry = j.object(item, where)
        outside = j.string(entry, "OutsideIpAddress", where)
        if outside is None:
            raise j.fail(f"{where}", "no OutsideIpAddress: cannot tell which tunnel it describes")
        draft = by_outside.get(_outside_key(outside))
        if draft is None or draft.index in matched:
            raise j.fail(
                f"{where}.OutsideIpAddress",
                f"OutsideIpAddress {outside[:40]!r} matches no (other) tunnel of the XML",
            )
        matched.add(draft.index)
        _apply_options(j, draft, entry, where, warnings)
    return a.build_connection(
        reporter,
        xml.drafts,
        routing=routing,
        required=customer_gateway_xml.required(routing),
        vpn_connection_id=ids["VpnConnectionId"] or xml.vpn_connection_id,
        vpn_gateway_id=ids["VpnGatewayId"] if "VpnGatewayId" in conn else xml.vpn_gateway_id,
        customer_gateway_id=ids["CustomerGatewayId"] or xml.customer_gateway_id,
        transit_gateway_id=ids["TransitGatewayId"],
        warnings=warnings,
    )
