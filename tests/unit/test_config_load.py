"""cgwd.toml loading: values, defaults, and errors that name file, line, key and problem."""

from __future__ import annotations

import os
import string
import tomllib
from dataclasses import replace
from ipaddress import IPv4Network
from pathlib import Path

import pytest
from config_fixtures import PSK1, PSK2, FakeLoader, connection
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cgwd.config.load import (
    load_aws_file,
    load_config,
    load_configuration,
    parse_config_text,
)
from cgwd.config.model import CgwdConfig, ConnectionConfig, DaemonConfig
from cgwd.config.toml_lines import KeyLines
from cgwd.errors import ConfigError

SOURCE = Path("/etc/cgwd/cgwd.toml")
EXAMPLE = Path(__file__).parents[2] / "config" / "cgwd.toml"

MINIMAL = """\
[[connection]]
name = "vpc01"
aws_config = "vpn.txt"
"""


def parse(text: str) -> CgwdConfig:
    return parse_config_text(text, source=SOURCE)


def error_of(text: str) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        parse(text)
    return info.value


def write(path: Path, text: str, mode: int = 0o600) -> Path:
    path.write_text(text)
    path.chmod(mode)
    return path


# --- values and defaults ------------------------------------------------------------------


def test_minimal_config_takes_the_documented_defaults() -> None:
    config = parse(MINIMAL)
    assert str(config.daemon.control_socket) == "/run/cgwd/control.sock"
    assert config.daemon.dataplane == "auto"
    (conn,) = config.connections
    assert conn.name == "vpc01"
    assert conn.aws_config == Path("/etc/cgwd/vpn.txt")  # relative to the config file
    assert conn.routes == ()
    assert conn.proposals == "aws"
    assert conn.tunnel_preference == "prefer-1"
    assert conn.nat_traversal == "auto"
    assert conn.replay_window == 1024
    assert conn.ike_version is None and conn.phase1_lifetime is None
    assert conn.interface_names() == ("vpc01-t1", "vpc01-t2")
    assert config.source == SOURCE


def test_every_key_of_the_issue_is_accepted() -> None:
    config = parse(
        """\
[daemon]
control_socket = "/run/cgwd/control.sock"
dataplane = "kernel"

[[connection]]
name = "vpc01"
aws_config = "/srv/vpn-0123.txt"
routes = ["192.168.0.0/26"]
local_address = "198.51.100.23"
dataplane = "userspace"
ike_version = 2
dpd_interval = 10
dpd_retries = 3
phase1_lifetime = 28800
phase2_lifetime = 3600
proposals = "file"
"""
    )
    conn = config.connections[0]
    assert config.daemon.dataplane == "kernel"
    assert conn.aws_config == Path("/srv/vpn-0123.txt")
    assert conn.routes == (IPv4Network("192.168.0.0/26"),)
    assert str(conn.local_address) == "198.51.100.23"
    assert (conn.dataplane, conn.ike_version, conn.proposals) == ("userspace", 2, "file")
    assert (conn.dpd_interval, conn.dpd_retries) == (10, 3)
    assert (conn.phase1_lifetime, conn.phase2_lifetime) == (28800, 3600)


def test_model_is_frozen() -> None:
    config = parse(MINIMAL)
    with pytest.raises(Exception, match="frozen"):
        config.connections[0].name = "other"  # type: ignore[misc]


def test_relative_control_socket_and_aws_config_follow_the_config_file() -> None:
    config = parse_config_text(
        MINIMAL.replace('"vpn.txt"', '"../aws/vpn.txt"')
        + '[daemon]\ncontrol_socket = "run/ctl.sock"\n',
        source=Path("/etc/cgwd/sub/cgwd.toml"),
    )
    assert config.connections[0].aws_config == Path("/etc/cgwd/aws/vpn.txt")
    assert config.daemon.control_socket == Path("/etc/cgwd/sub/run/ctl.sock")


# --- errors: file, line, key path, what is wrong ---------------------------------------------


@pytest.mark.parametrize(
    ("text", "line", "element", "words"),
    [
        (
            MINIMAL + "dpd_intervall = 5\n",
            4,
            "connection[0].dpd_intervall",
            "did you mean dpd_interval",
        ),
        ("[deamon]\n" + MINIMAL, 1, "deamon", "did you mean daemon"),
        ('[daemon]\ncolour = "blue"\n' + MINIMAL, 2, "daemon.colour", "unknown key"),
        (
            MINIMAL + MINIMAL.replace("vpc01", "vpc02") + "bogus = 1\n",
            7,
            "connection[1].bogus",
            "unknown key",
        ),
        (
            MINIMAL + 'routes = ["10.0.0.1/8"]\n',
            4,
            "connection[0].routes[0]",
            "did you mean 10.0.0.0/8",
        ),
        (
            MINIMAL + 'routes = [\n  "10.0.0.0/8",\n  "banana",\n]\n',
            4,
            "connection[0].routes[1]",
            "not an IPv4 CIDR",
        ),
        (MINIMAL + 'routes = ["127.0.0.0/8"]\n', 4, "connection[0].routes", "loopback"),
        (MINIMAL + 'routes = ["169.254.0.0/16"]\n', 4, "connection[0].routes", "link-local"),
        (
            MINIMAL + 'routes = ["10.0.0.0/8", "10.0.0.0/8"]\n',
            4,
            "connection[0].routes",
            "listed twice",
        ),
        (MINIMAL + 'routes = ["10.0.0.0"]\n', 4, "connection[0].routes[0]", "prefix length"),
        (MINIMAL.replace('"vpc01"', '"averylongname"'), 2, "connection[0].name", "at most 12"),
        (MINIMAL.replace('"vpc01"', '"VPC_01"'), 2, "connection[0].name", "lowercase"),
        (MINIMAL.replace('"vpc01"', '"vpc-"'), 2, "connection[0].name", "lowercase"),
        (MINIMAL.replace('"vpc01"', "1"), 2, "connection[0].name", "must be a string"),
        (MINIMAL + "ike_version = 3\n", 4, "connection[0].ike_version", "must be 1 or 2"),
        (MINIMAL + "ike_version = true\n", 4, "connection[0].ike_version", "integer"),
        (MINIMAL + 'ike_version = "2"\n', 4, "connection[0].ike_version", "integer"),
        (MINIMAL + "dpd_interval = true\n", 4, "connection[0].dpd_interval", "integer"),
        (MINIMAL + "phase1_lifetime = 899\n", 4, "connection[0].phase1_lifetime", ">= 900"),
        (MINIMAL + "phase1_lifetime = 28801\n", 4, "connection[0].phase1_lifetime", "<= 28800"),
        (MINIMAL + "phase2_lifetime = 3601\n", 4, "connection[0].phase2_lifetime", "<= 3600"),
        (
            MINIMAL + "phase1_lifetime = 1800\nphase2_lifetime = 1800\n",
            5,
            "connection[0].phase2_lifetime",
            "less than phase1_lifetime",
        ),
        (
            MINIMAL + "phase2_lifetime = 1000\naws_rekey_margin = 600\n",
            5,
            "connection[0].aws_rekey_margin",
            "half of phase2_lifetime",
        ),
        (MINIMAL + "mtu = 1400\nmss = 1380\n", 5, "connection[0].mss", "does not fit"),
        (MINIMAL + 'proposals = "all"\n', 4, "connection[0].proposals", "'aws' or 'file'"),
        (MINIMAL + 'tunnel_preference = "1"\n', 4, "connection[0].tunnel_preference", "prefer-1"),
        (
            '[daemon]\ndataplane = "dpdk"\n' + MINIMAL,
            2,
            "daemon.dataplane",
            "'auto', 'kernel' or 'userspace'",
        ),
        (
            MINIMAL + 'local_address = "198.51.100.300"\n',
            4,
            "connection[0].local_address",
            "not an IPv4 address",
        ),
        (
            MINIMAL + 'connection_id = "vpc-1234"\n',
            4,
            "connection[0].connection_id",
            "not a VPN connection id",
        ),
        (
            MINIMAL + 'interfaces = ["aws a", "b"]\n',
            4,
            "connection[0].interfaces",
            "interface name",
        ),
        (MINIMAL + 'interfaces = ["a"]\n', 4, "connection[0].interfaces", "list of 2 values"),
        ('[[connection]]\naws_config = "x"\n', 1, "connection[0].name", "required key is missing"),
        ("[daemon]\n", None, "connection", "required key is missing"),
        ("connection = []\n", 1, "connection", "at least one [[connection]]"),
        ("connection = 5\n", 1, "connection", "list"),
        ('source = "/x"\n' + MINIMAL, 1, "source", "unknown key"),
        (
            MINIMAL.replace("[[connection]]", "[[connections]]"),
            1,
            "connections",
            "did you mean connection?",
        ),
        (MINIMAL.replace('"vpn.txt"', '""'), 3, "connection[0].aws_config", "file name"),
        (MINIMAL.replace('"vpn.txt"', "[]"), 3, "connection[0].aws_config", "string"),
        (
            MINIMAL + MINIMAL.replace('"vpn.txt"', '"other.txt"'),
            5,
            "connection[1].name",
            "already the name of connection 1",
        ),
        (
            MINIMAL + MINIMAL.replace("vpc01", "vpc02"),
            6,
            "connection[1].aws_config",
            "already uses",
        ),
        (
            MINIMAL
            + 'routes = ["10.0.0.0/8"]\n'
            + MINIMAL.replace("vpc01", "vpc02").replace("vpn.txt", "b.txt")
            + 'routes = ["10.0.0.0/8"]\n',
            8,
            "connection[1].routes",
            "already routed by connection 'vpc01'",
        ),
        (
            MINIMAL
            + MINIMAL.replace("vpc01", "vpc02").replace("vpn.txt", "b.txt")
            + 'interfaces = ["vpc01-t2", "x"]\n',
            7,
            "connection[1].interfaces",
            "already used by connection 'vpc01'",
        ),
        (
            MINIMAL + 'pre_shared_keys = ["short", "' + PSK2 + '"]\n',
            4,
            "connection[0].pre_shared_keys[0]",
            "8-64",
        ),
        (
            MINIMAL + 'pre_shared_keys = ["0' + PSK2[1:] + '", "' + PSK2 + '"]\n',
            4,
            "connection[0].pre_shared_keys[0]",
            "start with 0",
        ),
    ],
)
def test_error_names_line_key_and_problem(
    text: str, line: int | None, element: str, words: str
) -> None:
    error = error_of(text)
    assert error.source == str(SOURCE)
    assert error.line == line, error.render()
    assert error.element == element, error.render()
    assert words in error.message, error.render()
    assert error.exit_code == 2
    rendered = error.render()
    assert "\n" not in rendered
    assert rendered.startswith(f"{SOURCE}:{line}: " if line else f"{SOURCE}: ")


def test_several_problems_report_the_first_by_line_and_count_the_rest() -> None:
    error = error_of(MINIMAL + "dpd_retries = 0\nbogus = 1\n")
    assert error.line == 4 and "(and 1 more problem)" in error.message


def test_toml_syntax_error_names_its_line() -> None:
    error = error_of(MINIMAL + "routes = [\n")
    assert error.line is not None and error.line >= 4
    assert error.message.startswith("TOML syntax:")
    error = error_of('[[connection]]\nname = "a"\nname = "b"\n')
    assert error.line == 3


def test_psk_never_appears_in_errors() -> None:
    bad = "sVbYmmbuv_1I4wJ2RvidkZ-oWOfs.8FW"  # '-' is not allowed
    error = error_of(MINIMAL + f'pre_shared_keys = ["{bad}", "{PSK2}"]\n')
    assert bad not in error.render() and "character 23" in error.message
    config = parse(MINIMAL + f'pre_shared_keys = ["{PSK1}", "{PSK2}"]\n')
    assert PSK1 not in repr(config) and PSK2 not in str(config.model_dump())


# --- permissions ---------------------------------------------------------------------------


def test_config_holding_psks_must_not_be_readable_by_others(tmp_path: Path) -> None:
    text = MINIMAL + f'pre_shared_keys = ["{PSK1}", "{PSK2}"]\n'
    path = write(tmp_path / "cgwd.toml", text, 0o644)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert f"chmod 600 {path}" in info.value.message
    assert "group and others" in info.value.message
    path.chmod(0o640)
    with pytest.raises(ConfigError, match="readable by its group"):
        load_config(path)
    path.chmod(0o600)
    assert load_config(path).connections[0].pre_shared_keys is not None
    # Without keys the configuration may be world-readable.
    assert load_config(write(tmp_path / "plain.toml", MINIMAL, 0o644)).connections


def test_aws_file_holding_psks_must_not_be_readable_by_others(tmp_path: Path) -> None:
    path = write(tmp_path / "vpn.txt", "x", 0o604)
    loader = FakeLoader({"vpn.txt": connection()})
    with pytest.raises(ConfigError) as info:
        load_aws_file(path, loader=loader)
    assert info.value.source == str(path)
    assert f"chmod 600 {path}" in info.value.message and "others" in info.value.message
    path.chmod(0o400)
    assert load_aws_file(path, loader=loader).vpn_connection_id == "vpn-027ce4abbdce5c106"
    # A download without keys (Secrets Manager) has nothing to protect.
    path.chmod(0o644)
    keyless = FakeLoader({"vpn.txt": connection(psk=None)})
    assert load_aws_file(path, loader=keyless).tunnels[0].pre_shared_key is None


def test_unreadable_and_non_text_files_are_config_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "missing.toml")
    with pytest.raises(ConfigError, match="not a regular file"):
        load_config(tmp_path)
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    with pytest.raises(ConfigError, match="not a regular file"):
        load_config(fifo)
    with pytest.raises(ConfigError, match="not a regular file"):
        load_aws_file(fifo, loader=FakeLoader({}))
    binary = tmp_path / "bin.toml"
    binary.write_bytes(b"[daemon]\n\n# \xff\xfe\n")
    with pytest.raises(ConfigError) as info:
        load_config(binary)
    assert info.value.line == 3 and "UTF-8" in info.value.message


# --- the whole configuration, with AWS files -----------------------------------------------


def _setup(tmp_path: Path, text: str, files: dict[str, object]) -> tuple[Path, FakeLoader]:
    for name in files:
        write(tmp_path / name, "placeholder")
    return write(tmp_path / "cgwd.toml", text), FakeLoader(files)  # type: ignore[arg-type]


def test_configuration_plans_every_connection(tmp_path: Path) -> None:
    text = MINIMAL + 'routes = ["10.0.0.0/16"]\n'
    path, loader = _setup(tmp_path, text, {"vpn.txt": connection()})
    loaded = load_configuration(path, aws_loader=loader)
    assert loader.calls == [(tmp_path / "vpn.txt", None)]
    (plan,) = loaded.connections
    assert [t.interface for t in plan.tunnels] == ["vpc01-t1", "vpc01-t2"]


def test_route_in_the_inside_ranges_points_at_routes(tmp_path: Path) -> None:
    text = MINIMAL + 'dpd_retries = 3\nroutes = ["10.0.0.0/8", "169.254.141.36/30"]\n'
    path, loader = _setup(tmp_path, text, {"vpn.txt": connection()})
    with pytest.raises(ConfigError) as info:
        load_configuration(path, aws_loader=loader)
    assert (info.value.line, info.value.element) == (5, "connection[0].routes")
    assert "link-local" in info.value.message


def test_two_connections_on_one_aws_endpoint_are_refused(tmp_path: Path) -> None:
    text = MINIMAL + MINIMAL.replace("vpc01", "vpc02").replace("vpn.txt", "copy.txt")
    same = connection()
    other_inside = connection(insides=("169.254.10.0/30", "169.254.11.0/30"))
    path, loader = _setup(tmp_path, text, {"vpn.txt": same, "copy.txt": other_inside})
    with pytest.raises(ConfigError) as info:
        load_configuration(path, aws_loader=loader)
    assert (info.value.line, info.value.element) == (6, "connection[1].aws_config")
    assert "203.0.113.66" in info.value.message and "'vpc01'" in info.value.message


def test_inside_ranges_shared_between_connections_are_refused(tmp_path: Path) -> None:
    text = MINIMAL + MINIMAL.replace("vpc01", "vpc02").replace("vpn.txt", "b.txt")
    other = connection(aws_ips=("203.0.113.1", "203.0.113.2"))
    path, loader = _setup(tmp_path, text, {"vpn.txt": connection(), "b.txt": other})
    with pytest.raises(ConfigError, match="overlaps"):
        load_configuration(path, aws_loader=loader)


def test_connection_id_must_match_the_file(tmp_path: Path) -> None:
    text = MINIMAL + 'connection_id = "vpn-0123456789abcdef0"\n'
    path, loader = _setup(tmp_path, text, {"vpn.txt": connection()})
    with pytest.raises(ConfigError) as info:
        load_configuration(path, aws_loader=loader)
    assert (info.value.line, info.value.element) == (4, "connection[0].connection_id")
    assert loader.calls[0][1] == "vpn-0123456789abcdef0"


def test_missing_psk_asks_for_pre_shared_keys(tmp_path: Path) -> None:
    path, loader = _setup(tmp_path, MINIMAL, {"vpn.txt": connection(psk=None)})
    with pytest.raises(ConfigError, match="pre_shared_keys"):
        load_configuration(path, aws_loader=loader)
    text = MINIMAL + f'pre_shared_keys = ["{PSK1}", "{PSK2}"]\n'
    path, loader = _setup(tmp_path, text, {"vpn.txt": connection(psk=None)})
    loaded = load_configuration(path, aws_loader=loader)
    assert loaded.connections[0].tunnels[1].psk.reveal() == PSK2.encode()


def test_lifetimes_out_of_order_with_the_file_point_at_the_key(tmp_path: Path) -> None:
    aws = connection()
    short_p1 = replace(
        aws,
        tunnels=tuple(
            replace(t, phase1=replace(t.phase1, lifetime_seconds=1200)) for t in aws.tunnels
        ),  # type: ignore[arg-type]
    )
    path, loader = _setup(tmp_path, MINIMAL + "phase2_lifetime = 1800\n", {"vpn.txt": short_p1})
    with pytest.raises(ConfigError) as info:
        load_configuration(path, aws_loader=loader)
    assert (info.value.line, info.value.element) == (4, "connection[0].phase2_lifetime")


# --- line scanner --------------------------------------------------------------------------


def test_key_lines_follow_tables_arrays_and_multiline_values() -> None:
    text = """\
# comment with x = 1
title = "a = b [not a table]"
desc = '''
fake = 1
[fake]
'''
[daemon]
"quoted.key" = 1
dotted.inner = 2
[[connection]]
name = "a"
routes = [
  "10.0.0.0/8", # ]
]
after = 3
[connection.sub]
k = 4
[[connection]]
name = "b"
"""
    lines = KeyLines(text)
    assert lines.exact(("title",)) == 2
    assert lines.exact(("fake",)) is None
    assert lines.exact(("daemon",)) == 7
    assert lines.exact(("daemon", "quoted.key")) == 8
    assert lines.exact(("daemon", "dotted", "inner")) == 9
    assert lines.exact(("connection", 0)) == 10
    assert lines.exact(("connection", 0, "routes")) == 12
    assert lines.exact(("connection", 0, "after")) == 15
    assert lines.exact(("connection", 0, "sub", "k")) == 17
    assert lines.exact(("connection", 1, "name")) == 19
    assert lines.line_of(("connection", 1, "routes", 3)) == 18


# --- fuzzing -------------------------------------------------------------------------------

TOML_ALPHABET = string.ascii_letters + string.digits + " \t\n[]{}\"'=.,#_-/:"


def _only_config_errors(text: str) -> None:
    try:
        parse(text)
    except ConfigError as exc:
        rendered = exc.render()
        assert "\n" not in rendered.strip() or "TOML syntax" in rendered
        assert PSK1 not in rendered and PSK2 not in rendered


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.text(alphabet=TOML_ALPHABET, max_size=200))
def test_fuzz_arbitrary_text_gives_only_config_errors(text: str) -> None:
    _only_config_errors(text)


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=120))
def test_fuzz_arbitrary_unicode_gives_only_config_errors(text: str) -> None:
    _only_config_errors(text)


EXAMPLE_TEXT = EXAMPLE.read_text() + f'pre_shared_keys = ["{PSK1}", "{PSK2}"]\n'


@settings(max_examples=400, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.integers(min_value=0, max_value=len(EXAMPLE_TEXT)),
            st.integers(min_value=0, max_value=8),
            st.text(alphabet=TOML_ALPHABET, max_size=6),
        ),
        min_size=1,
        max_size=4,
    )
)
def test_fuzz_mutations_of_the_example_give_only_config_errors(
    edits: list[tuple[int, int, str]],
) -> None:
    text = EXAMPLE_TEXT
    for offset, delete, insert in edits:
        position = min(offset, len(text))
        text = text[:position] + insert + text[position + delete :]
    _only_config_errors(text)


def test_example_configuration_is_valid_and_plans(tmp_path: Path) -> None:
    # The shipped sample is world-readable in git; a real install would chmod 600 it.
    (tmp_path / "aws").mkdir()
    sample = EXAMPLE.parent / "aws" / "aws-generic-static-ikev1.txt"
    write(tmp_path / "aws" / sample.name, sample.read_text())
    config_path = write(tmp_path / "cgwd.toml", EXAMPLE.read_text(), 0o644)
    loaded = load_configuration(config_path)
    (plan,) = loaded.connections
    assert plan.aws.vpn_connection_id == "vpn-027ce4abbdce5c106"
    assert plan.config.aws_config == tmp_path / "aws" / sample.name
    assert [str(t.remote_address) for t in plan.tunnels] == ["203.0.113.66", "203.0.113.189"]


def test_every_key_is_documented_in_the_reference() -> None:
    reference = (Path(__file__).parents[2] / "docs" / "configuration.md").read_text()
    for model in (DaemonConfig, ConnectionConfig):
        for name, field in model.model_fields.items():
            assert f"`{name}`" in reference, f"{name} is not in docs/configuration.md"
            assert field.description, f"{model.__name__}.{name} has no attribute docstring"


# A TOML writer for the property test: tables of keys with awkward values.
KEY = st.from_regex(r"[a-z][a-z0-9_]{0,8}", fullmatch=True)
AWKWARD = st.sampled_from(
    ['"a = b"', '"[x]"', "'[[y]]'", '"#"', '"""\nk = 1\n[t]\n"""', "'''\n[[connection]]\n'''", "1"]
)


@st.composite
def documents(draw: st.DrawFn) -> tuple[str, dict[tuple[str | int, ...], int]]:
    lines: list[str] = []
    expected: dict[tuple[str | int, ...], int] = {}

    def emit_keys(prefix: tuple[str | int, ...]) -> None:
        for key in draw(st.lists(KEY, max_size=4, unique=True)):
            expected[(*prefix, key)] = len(lines) + 1
            if draw(st.booleans()):
                items = draw(st.lists(AWKWARD, max_size=3))
                lines.append(f"{key} = [  # ]")
                for item in items:
                    lines.extend(f"  {item},".splitlines())
                lines.append("]")
            else:
                lines.extend(f"{key} = {draw(AWKWARD)}  # x = 1".splitlines())

    emit_keys(())
    lines.append("[daemon]")
    expected[("daemon",)] = len(lines)
    emit_keys(("daemon",))
    for index in range(draw(st.integers(0, 3))):
        lines.append("  [[connection]]  # comment")
        expected[("connection", index)] = len(lines)
        emit_keys(("connection", index))
    return "\n".join(lines) + "\n", expected


@settings(max_examples=200, deadline=None)
@given(documents())
def test_key_lines_find_every_key(doc: tuple[str, dict[tuple[str | int, ...], int]]) -> None:
    text, expected = doc
    tomllib.loads(text)  # the generator writes valid TOML
    lines = KeyLines(text)
    for path, line in expected.items():
        assert lines.exact(path) == line, (path, text)
