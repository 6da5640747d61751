"""Fuzzing every importer: whatever the input, only ConfigError escapes and no error
message carries a pre-shared key (nor any 10-character piece of one)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cgwd.config.aws import AwsVpnConnection
from cgwd.config.importers import parse_aws_config
from cgwd.errors import ConfigError

DATA = Path(__file__).parents[2] / "data" / "aws"
FIXTURES = sorted(p.name for p in DATA.iterdir() if p.suffix in (".txt", ".xml", ".json"))
FUZZ = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
# Where a JSON fixture lists several connections, fuzz the first one.
CONNECTION_IDS = {"aws-cli-describe-vpn-connections.json": "vpn-0f5b2f2f59f927ac6"}


def secrets_in(text: str) -> list[str]:
    """The PSKs of a fixture, found by their surroundings in each format."""
    patterns = [
        r"Pre-Shared Key\s*:\s*(\S+)",
        r"<pre_shared_key>([^<]+)<",
        r'"PreSharedKey": "([^"]+)"',
        r"pre-shared-key address \S+ key (\S+)",
        r"pre-shared-key (\S+)\n",
        r'PSK "([^"]+)"',
    ]
    return [m for p in patterns for m in re.findall(p, text) if len(m) >= 8]


def try_parse(data: str | bytes, secrets: list[str], connection_id: str | None) -> None:
    """Parse; a result must be a connection, a failure a ConfigError without secrets."""
    try:
        result = parse_aws_config(data, connection_id=connection_id)
    except ConfigError as exc:
        message = str(exc)
        for secret in secrets:
            for start in range(len(secret) - 9):
                assert secret[start : start + 10] not in message, message
        return
    assert isinstance(result, AwsVpnConnection)
    assert len(result.tunnels) == 2


def fixture(name: str) -> tuple[str, list[str], str | None]:
    text = (DATA / name).read_text()
    secrets = secrets_in(text)
    return text, secrets, CONNECTION_IDS.get(name)


def test_secrets_are_found_in_every_fixture_with_keys() -> None:
    for name in FIXTURES:
        _, secrets, _ = fixture(name)
        if "no-psk" not in name:
            assert len(set(secrets)) >= 2, name


@given(st.text(max_size=2000))
@FUZZ
def test_arbitrary_text(text: str) -> None:
    try_parse(text, [], None)


@given(st.binary(max_size=2000))
@FUZZ
def test_arbitrary_bytes(data: bytes) -> None:
    try_parse(data, [], None)


# Prefixes that make the detector pick each format, followed by fuzz.
PREFIXES = [
    '{"VpnConnections": ',
    '{"VpnConnection": {"CustomerGatewayConfiguration": "',
    "<?xml version='1.0'?><vpn_connection>",
    "! Amazon Web Services\ncrypto isakmp policy 200\n! IPSec Tunnel #1\n",
    "conn Tunnel1\n keyexchange=ikev1\nIPSEC Tunnel #1\n",
    "conn Tunnel1\n phase2alg=aes128\nIPSEC Tunnel #1\n",
    "Your VPN Connection ID : vpn-1a2b3c4d\nIPSec Tunnel #1\n  - Pre-Shared Key : x\n",
]


@pytest.mark.parametrize("prefix", PREFIXES)
@given(st.text(alphabet=st.characters(codec="utf-8"), max_size=500))
@settings(max_examples=60, deadline=None)
def test_format_prefix_then_noise(prefix: str, tail: str) -> None:
    try_parse(prefix + tail, [], None)


@pytest.mark.parametrize("name", FIXTURES)
def test_truncation_at_every_line(name: str) -> None:
    text, secrets, connection_id = fixture(name)
    lines = text.splitlines(keepends=True)
    for end in range(len(lines)):
        try_parse("".join(lines[:end]), secrets, connection_id)


@pytest.mark.parametrize(
    "name",
    [n for n in FIXTURES if not n.startswith(("aws-strongswan", "aws-openswan"))],
)
def test_truncation_is_always_an_error(name: str) -> None:
    """Formats with a footer or a closing bracket notice any cut before their last line."""
    text, _, connection_id = fixture(name)
    lines = text.splitlines(keepends=True)
    last = max(
        i
        for i, line in enumerate(lines)
        if "Additional Notes" in line or line.strip() in ("}", "</vpn_connection>")
    )
    for end in range(last):
        with pytest.raises(ConfigError):
            parse_aws_config("".join(lines[:end]), connection_id=connection_id)


@pytest.mark.parametrize("name", FIXTURES)
@given(data=st.data())
@FUZZ
def test_random_line_deletion(name: str, data: st.DataObject) -> None:
    text, secrets, connection_id = fixture(name)
    lines = text.splitlines(keepends=True)
    doomed = data.draw(st.sets(st.integers(0, len(lines) - 1), min_size=1, max_size=4))
    kept = "".join(line for i, line in enumerate(lines) if i not in doomed)
    try_parse(kept, secrets, connection_id)


@pytest.mark.parametrize("name", FIXTURES)
@given(data=st.data())
@FUZZ
def test_byte_flips(name: str, data: st.DataObject) -> None:
    text, secrets, connection_id = fixture(name)
    raw = bytearray(text.encode())
    for _ in range(data.draw(st.integers(1, 3))):
        position = data.draw(st.integers(0, len(raw) - 1))
        raw[position] = data.draw(st.integers(0, 255))
    try_parse(bytes(raw), secrets, connection_id)


@pytest.mark.parametrize("name", FIXTURES)
@given(data=st.data())
@FUZZ
def test_value_swaps(name: str, data: st.DataObject) -> None:
    """Replace one number or address-like token with another plausible one."""
    text, secrets, connection_id = fixture(name)
    tokens = list(re.finditer(r"\d+(?:\.\d+)*(?:/\d+)?", text))
    match = data.draw(st.sampled_from(tokens))
    replacement = data.draw(
        st.sampled_from(
            [
                "0",
                "1",
                "30",
                "65535",
                "4294967296",
                "169.254.0.1",
                "169.254.5.2/30",
                "1.2.3",
                "999.1.1.1",
                "fd00::1",
                "-1",
                "",
                "28800",
                "3600",
            ]
        )
    )
    try_parse(text[: match.start()] + replacement + text[match.end() :], secrets, connection_id)


@pytest.mark.parametrize("name", [n for n in FIXTURES if "no-psk" not in n])
@given(data=st.data())
@FUZZ
def test_psk_pasted_into_another_field(name: str, data: st.DataObject) -> None:
    """A key pasted where another value belongs must not be quoted back in the error."""
    text, secrets, connection_id = fixture(name)
    psk = data.draw(st.sampled_from(secrets))
    tokens = list(re.finditer(r"[\w.:/-]+", text))
    match = data.draw(st.sampled_from(tokens))
    try_parse(text[: match.start()] + psk + text[match.end() :], [*secrets, psk], connection_id)
