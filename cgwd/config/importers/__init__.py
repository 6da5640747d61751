"""Import the files AWS gives you for a Site-to-Site VPN connection.

`parse_aws_config` recognises the format (reference §1: CLI JSON, CustomerGatewayConfiguration
XML, Cisco IOS, strongSwan, Openswan, generic text, tried in that order), parses it with the
module for that format and returns a validated `AwsVpnConnection`. Whatever the input, the
only exception that escapes is `cgwd.errors.ConfigError`; its message names the format,
the tunnel, the field and the value (never a pre-shared key), with the line number, XML
element path or JSON path.

The rules are also exported for the runtime config loader, which re-validates values a
user overrides: `validate_psk`, `validate_lifetimes`, `validate_inside_cidr`,
`validate_tunnel` and `validate_connection`.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from cgwd.config.aws import AwsVpnConnection, FormatName
from cgwd.config.importers import (
    cisco_ios,
    cli_json,
    customer_gateway_xml,
    generic,
    openswan,
    strongswan,
)
from cgwd.config.importers.text import decode
from cgwd.config.importers.validate import (
    validate_connection,
    validate_inside_cidr,
    validate_lifetimes,
    validate_psk,
    validate_tunnel,
)
from cgwd.errors import ConfigError

__all__ = [
    "MAX_FILE_BYTES",
    "detect_format",
    "load_aws_config",
    "parse_aws_config",
    "validate_connection",
    "validate_inside_cidr",
    "validate_lifetimes",
    "validate_psk",
    "validate_tunnel",
]

# AWS downloads are 5-40 KiB; anything this large is not one.
MAX_FILE_BYTES = 1 << 20

_TEXT_PARSERS: dict[FormatName, Callable[..., AwsVpnConnection]] = {
    "aws-generic-text": generic.parse,
    "aws-customer-gateway-xml": customer_gateway_xml.parse,
    "aws-cisco-ios": cisco_ios.parse,
    "aws-strongswan": strongswan.parse,
    "aws-openswan": openswan.parse,
}


def _has_line(text: str, words: list[str]) -> bool:
    return any(line.split() == words for line in text.splitlines())


def _detect(text: str, source: str) -> FormatName:
    start = text.lstrip()
    if start.startswith("{") and ('"VpnConnections"' in text or '"VpnConnection"' in text):
        return "aws-cli-json"
    if start.startswith(("<?xml", "<vpn_connection")):
        return "aws-customer-gateway-xml"
    if "! Amazon Web Services" in text and ("crypto isakmp" in text or "crypto ikev2" in text):
        return "aws-cisco-ios"
    if _has_line(text, ["conn", "Tunnel1"]):
        # Openswan's conn block may also say keyexchange=ike; only it has phase2alg=.
        if "phase2alg=" in text:
            return "aws-openswan"
        if "keyexchange=" in text:
            return "aws-strongswan"
    if "IPSec Tunnel #1" in text and "- Pre-Shared Key" in text:
        return "aws-generic-text"
    raise ConfigError(
        "not an AWS VPN configuration download: expected the generic text, the "
        "CustomerGatewayConfiguration XML, describe-vpn-connections JSON, or the Cisco IOS, "
        "strongSwan or Openswan sample",
        source=source,
    )


def detect_format(text: str | bytes) -> FormatName:
    """Which AWS download ``text`` is. Raises ConfigError when it is none of them."""
    return _detect(decode(text, source="<input>"), "<input>")


def parse_aws_config(
    text: str | bytes, *, source: str = "<input>", connection_id: str | None = None
) -> AwsVpnConnection:
    """The validated connection described by ``text`` (any supported format).

    ``connection_id`` picks one connection out of a describe-vpn-connections JSON listing
    several; for every other format it must match the file's VPN connection id.
    Raises ConfigError only.
    """
    decoded = decode(text, source=source)
    fmt = _detect(decoded, source)
    if fmt == "aws-cli-json":
        return cli_json.parse(decoded, source=source, connection_id=connection_id)
    conn = _TEXT_PARSERS[fmt](decoded, source=source)
    if connection_id is not None and conn.vpn_connection_id != connection_id:
        raise ConfigError(
            f"{fmt}: the file describes {conn.vpn_connection_id or 'a connection without id'}, "
            f"not {connection_id}",
            source=source,
        )
    return conn


def load_aws_config(path: Path | str, *, connection_id: str | None = None) -> AwsVpnConnection:
    """`parse_aws_config` of the file at ``path``. Raises ConfigError only."""
    path = Path(path)
    try:
        with path.open("rb") as file:
            data = file.read(MAX_FILE_BYTES + 1)
    except OSError as exc:
        raise ConfigError(
            f"cannot read the AWS configuration: {exc.strerror}", source=path
        ) from None
    if len(data) > MAX_FILE_BYTES:
        raise ConfigError(
            f"larger than {MAX_FILE_BYTES} bytes: not an AWS VPN configuration download",
            source=path,
        )
    return parse_aws_config(data, source=str(path), connection_id=connection_id)
