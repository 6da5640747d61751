"""The Openswan download (reference §6): a policy-based ``conn TunnelN`` per tunnel.

Openswan writes proposals as ``aes128-sha1;modp1024`` (``ike=`` for phase 1,
``phase2alg=`` for phase 2) and the secrets line as ``CGW AWS: PSK "key"``. The file has
no inside addresses, MTU, MSS, DF or fragmentation setting and does not state the IKE
version (an ``ikev2=`` line, if a user added one, is honoured): those stay None. It
states no routing either; the connection is taken as static, with a warning.
"""

from __future__ import annotations

from cgwd.config.aws import AwsVpnConnection, FormatName
from cgwd.config.importers import assemble as a
from cgwd.config.importers import ipsec_conf
from cgwd.config.importers.header import read_ids
from cgwd.config.importers.text import clean_lines

FORMAT: FormatName = "aws-openswan"

SETTINGS = {
    "leftid": a.CGW_OUTSIDE,
    "right": a.AWS_OUTSIDE,
    "ikelifetime": a.P1_LIFETIME,
    "keylife": a.P2_LIFETIME,
    "salifetime": a.P2_LIFETIME,
    "dpddelay": a.DPD_INTERVAL,
    "dpdtimeout": a.DPD_TIMEOUT,
    "dpdaction": a.DPD_ACTION,
    "authby": a.AUTH_METHOD,
    "type": a.P2_MODE,
}
# Openswan's ikev2= policy: only these two settle the version.
IKEV2_POLICY = {"never": "ikev1", "no": "ikev1", "insist": "ikev2"}

REQUIRED = (
    a.PSK,
    a.CGW_OUTSIDE,
    a.AWS_OUTSIDE,
    a.P1_ENCRYPTION,
    a.P1_INTEGRITY,
    a.P1_LIFETIME,
    a.P2_ENCRYPTION,
    a.P2_LIFETIME,
)


def _tunnel(reporter: a.Reporter, section: ipsec_conf.Section) -> a.TunnelDraft:
    name = f"Tunnel{section.number}"
    draft = a.TunnelDraft(
        reporter, section.number, a.Origin(f"IPSEC Tunnel #{section.number}", section.banner.number)
    )
    for setting in ipsec_conf.conn_settings(section.lines, name):
        if setting.commented:
            continue
        origin = a.Origin(f"'{setting.key}='", setting.line.number)
        if setting.key in SETTINGS:
            draft.put(SETTINGS[setting.key], setting.value, origin)
        elif setting.key == "ikev2" and setting.value.lower() in IKEV2_POLICY:
            draft.put(a.IKE_VERSION, IKEV2_POLICY[setting.value.lower()], origin)
        elif setting.key == "ike":
            keys = (a.P1_ENCRYPTION, a.P1_INTEGRITY, a.P1_DH)
            ipsec_conf.put_proposals(draft, setting, keys, separators="-;")
        elif setting.key == "phase2alg":
            keys = (a.P2_ENCRYPTION, a.P2_INTEGRITY, a.P2_DH)
            ipsec_conf.put_proposals(draft, setting, keys, separators="-;")
    secret = ipsec_conf.secrets_line(draft, section.lines)
    if secret is not None:
        ipsec_conf.put_secret(draft, secret)
    return draft


def parse(text: str, *, source: str) -> AwsVpnConnection:
    """The connection in an Openswan download. Raises ConfigError only."""
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
        warnings=[
            "the Openswan download is policy-based and does not state the routing: "
            "assuming static, with no inside addresses"
        ],
    )
