"""The strongSwan download, "Ubuntu 16.04, Strongswan 5.5.1+" (reference §6).

Per tunnel: a ``conn TunnelN`` block (``left`` = customer gateway, ``right`` = AWS;
``ike=``/``esp=`` proposals carry algorithms and DH/PFS groups), the ``ipsec.secrets``
line, and shell commands (``ip addr add CGW/30 remote AWS/30 dev TunnelN``, ``ip link set
TunnelN up mtu 1419``). The inside addresses also appear in the shipped ``#leftupdown``
line; where both are present they must agree. Only commands naming this tunnel's device
are read, so the ``aws-updown.sh`` script and placeholders (``<VPC CIDR>``, ``169.254.x``)
are never taken for values.

The file states no routing (taken as static, with a warning), no BGP, no DF or
fragmentation setting, and clamps MSS to the path MTU rather than to a number: those
stay None.
"""

from __future__ import annotations

from cgwd.config.aws import AwsVpnConnection, FormatName
from cgwd.config.importers import assemble as a
from cgwd.config.importers import ipsec_conf
from cgwd.config.importers.header import read_ids
from cgwd.config.importers.text import Line, clean_lines

FORMAT: FormatName = "aws-strongswan"

SETTINGS = {
    "leftid": a.CGW_OUTSIDE,
    "right": a.AWS_OUTSIDE,
    "ikelifetime": a.P1_LIFETIME,
    "lifetime": a.P2_LIFETIME,
    "keylife": a.P2_LIFETIME,
    "dpddelay": a.DPD_INTERVAL,
    "dpdtimeout": a.DPD_TIMEOUT,
    "dpdaction": a.DPD_ACTION,
    "leftauth": a.AUTH_METHOD,
    "rightauth": a.AUTH_METHOD,
    "authby": a.AUTH_METHOD,
    "type": a.P2_MODE,
}
KEY_EXCHANGE = {"ikev1": ("ikev1",), "ikev2": ("ikev2",), "ike": ("ikev2", "ikev1")}
SHELL_PREFIXES = ("sudo", "pre-up", "up", "post-up")

REQUIRED = (
    a.PSK,
    a.CGW_OUTSIDE,
    a.AWS_OUTSIDE,
    a.IKE_VERSION,
    a.P1_ENCRYPTION,
    a.P1_INTEGRITY,
    a.P1_DH,
    a.P1_LIFETIME,
    a.P2_ENCRYPTION,
    a.P2_LIFETIME,
    a.CGW_INSIDE,
    a.AWS_INSIDE,
)


def _shell_words(text: str) -> list[str]:
    """The words of a shell command line without ``sudo`` / ifupdown ``pre-up`` prefixes."""
    words = text.split()
    while words and words[0] in SHELL_PREFIXES:
        words = words[1:]
    return words


def _after(words: list[str], keyword: str) -> str | None:
    if keyword in words:
        index = words.index(keyword) + 1
        return words[index] if index < len(words) else ""
    return None


def _read_commands(draft: a.TunnelDraft, lines: list[Line], name: str) -> None:
    """Inside addresses and MTU from the ``ip`` commands that name device ``name``."""
    for line in lines:
        words = _shell_words(line.text)
        if words[:3] == ["ip", "addr", "add"] and _after(words, "dev") == name:
            origin = a.Origin(f"'ip addr add … dev {name}'", line.number)
            draft.put(a.CGW_INSIDE, words[3], origin)
            if (remote := _after(words, "remote")) is not None:
                draft.put(a.AWS_INSIDE, remote, origin)
        elif words[:4] == ["ip", "link", "set", name] and (mtu := _after(words, "mtu")):
            draft.put(a.MTU, mtu, a.Origin(f"'ip link set {name} … mtu'", line.number))


def _read_updown(draft: a.TunnelDraft, setting: ipsec_conf.Setting) -> None:
    """``leftupdown="/etc/ipsec.d/aws-updown.sh -ln Tunnel1 -ll CGW/30 -lr AWS/30 …"``."""
    words = setting.value.strip('"').split()
    origin = a.Origin(f"'{setting.key}='", setting.line.number)
    for flag, key in (("-ll", a.CGW_INSIDE), ("-lr", a.AWS_INSIDE)):
        if (value := _after(words, flag)) is not None:
            draft.put(key, value, origin)


def _tunnel(reporter: a.Reporter, section: ipsec_conf.Section) -> a.TunnelDraft:
    name = f"Tunnel{section.number}"
    draft = a.TunnelDraft(
        reporter, section.number, a.Origin(f"IPSEC Tunnel #{section.number}", section.banner.number)
    )
    for setting in ipsec_conf.conn_settings(section.lines, name):
        origin = a.Origin(f"'{setting.key}='", setting.line.number)
        if setting.key == "leftupdown":
            _read_updown(draft, setting)
        elif setting.commented:
            continue
        elif setting.key in SETTINGS:
            draft.put(SETTINGS[setting.key], setting.value, origin)
        elif setting.key == "keyexchange":
            versions = KEY_EXCHANGE.get(setting.value.lower(), (setting.value,))
            draft.put(a.IKE_VERSION, versions, origin)
        elif setting.key == "ike":
            ipsec_conf.put_proposals(draft, setting, (a.P1_ENCRYPTION, a.P1_INTEGRITY, a.P1_DH))
        elif setting.key == "esp":
            ipsec_conf.put_proposals(draft, setting, (a.P2_ENCRYPTION, a.P2_INTEGRITY, a.P2_DH))
    secret = ipsec_conf.secrets_line(draft, section.lines)
    if secret is not None:
        ipsec_conf.put_secret(draft, secret)
    _read_commands(draft, section.lines, name)
    if a.AWS_INSIDE in draft.raw:
        aws_inside = draft.raw[a.AWS_INSIDE]
        draft.put(a.NEXT_HOP, aws_inside.values[0].partition("/")[0], aws_inside.origin)
    return draft


def parse(text: str, *, source: str) -> AwsVpnConnection:
    """The connection in a strongSwan download. Raises ConfigError only."""
    reporter = a.Reporter(FORMAT, source)
    header, sections = ipsec_conf.split_sections(reporter, clean_lines(text))
    ids = read_ids(reporter, header)
    ipsec_conf.check_numbering(reporter, sections)
    return a.build_connection(
        reporter,
        [_tunnel(reporter, section) for section in sections],
        routing="static",
        required=REQUIRED,
        vpn_connection_id=ids.vpn_connection_id,
        vpn_gateway_id=ids.vpn_gateway_id,
        customer_gateway_id=ids.customer_gateway_id,
        warnings=["the strongSwan download does not state the routing: assuming static"],
    )
