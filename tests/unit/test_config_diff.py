"""Reload diffs: which connections are added, removed, restarted or updated in place."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
from config_fixtures import PSK1, PSK2, FakeLoader, connection

from cgwd.config.aws import AwsVpnConnection
from cgwd.config.diff import ConfigDiff, connections_to, diff_configurations
from cgwd.config.load import LoadedConfiguration, load_configuration
from cgwd.secret import Secret

BASE = """\
[[connection]]
name = "vpc01"
aws_config = "a.txt"
routes = ["10.1.0.0/16"]

[[connection]]
name = "vpc02"
aws_config = "b.txt"
routes = ["10.2.0.0/16"]
"""

B = connection(
    vpn_id="vpn-0123456789abcdef0",
    aws_ips=("192.0.2.1", "192.0.2.2"),
    insides=("169.254.10.0/30", "169.254.11.0/30"),
)


def load(
    tmp_path: Path, text: str, files: dict[str, AwsVpnConnection] | None = None
) -> LoadedConfiguration:
    for name in ("a.txt", "b.txt"):
        path = tmp_path / name
        path.write_text("placeholder")
        path.chmod(0o600)
    config = tmp_path / "cgwd.toml"
    config.write_text(text)
    config.chmod(0o600)
    loader = FakeLoader(files or {"a.txt": connection(), "b.txt": B})
    return load_configuration(config, aws_loader=loader)


def actions(diff: ConfigDiff) -> dict[str, str]:
    return {c.name: c.action for c in diff.connections}


def test_same_configuration_changes_nothing(tmp_path: Path) -> None:
    diff = diff_configurations(load(tmp_path, BASE), load(tmp_path, BASE))
    assert actions(diff) == {"vpc01": "keep", "vpc02": "keep"}
    assert not diff.changed and diff.summary() == "no changes"


def test_added_and_removed_connections(tmp_path: Path) -> None:
    old = load(tmp_path, BASE)
    only_first = BASE.split("\n\n", maxsplit=1)[0] + "\n"
    diff = diff_configurations(old, load(tmp_path, only_first))
    assert actions(diff) == {"vpc02": "remove", "vpc01": "keep"}
    diff = diff_configurations(load(tmp_path, only_first), old)
    assert actions(diff) == {"vpc01": "keep", "vpc02": "add"}
    assert connections_to(diff, ["add"]) == ("vpc02",)
    renamed = diff_configurations(old, load(tmp_path, BASE.replace("vpc02", "vpc03")))
    assert actions(renamed) == {"vpc02": "remove", "vpc01": "keep", "vpc03": "add"}


@pytest.mark.parametrize(
    ("edit", "change"),
    [
        ('routes = ["10.1.0.0/16"]', 'routes = ["10.1.0.0/16", "10.3.0.0/16"]'),
        ('routes = ["10.1.0.0/16"]', 'routes = ["10.1.0.0/16"]\ntunnel_preference = "prefer-2"'),
        ('routes = ["10.1.0.0/16"]', 'routes = ["10.1.0.0/16"]\nmss = 1300'),
        ('routes = ["10.1.0.0/16"]', 'routes = ["10.1.0.0/16"]\ndpd_interval = 5'),
        ('routes = ["10.1.0.0/16"]', 'routes = ["10.1.0.0/16"]\nphase2_lifetime = 1800'),
    ],
)
def test_in_place_updates(tmp_path: Path, edit: str, change: str) -> None:
    diff = diff_configurations(load(tmp_path, BASE), load(tmp_path, BASE.replace(edit, change, 1)))
    assert actions(diff) == {"vpc01": "update", "vpc02": "keep"}
    (vpc01,) = [c for c in diff.connections if c.name == "vpc01"]
    assert vpc01.restart_tunnels == ()


@pytest.mark.parametrize(
    "extra",
    [
        "ike_version = 2",  # the sample file says IKEv1
        'proposals = "file"',
        'nat_traversal = "force"',
        "replay_window = 2048",
        'dataplane = "kernel"',
        'local_address = "10.0.0.5"',
        'interfaces = ["aws0", "aws1"]',
        f'pre_shared_keys = ["{PSK2}", "{PSK1}"]',
    ],
)
def test_changes_that_need_new_sas_restart_both_tunnels(tmp_path: Path, extra: str) -> None:
    new = BASE.replace('routes = ["10.1.0.0/16"]', f'routes = ["10.1.0.0/16"]\n{extra}', 1)
    diff = diff_configurations(load(tmp_path, BASE), load(tmp_path, new))
    (vpc01,) = [c for c in diff.connections if c.name == "vpc01"]
    assert vpc01.action == "restart" and vpc01.restart_tunnels == (1, 2)
    assert actions(diff)["vpc02"] == "keep"
    for psk in (PSK1, PSK2):
        assert psk not in diff.summary()


def test_a_new_download_restarts_only_the_tunnel_that_changed(tmp_path: Path) -> None:
    a = connection()
    rotated = replace(a, tunnels=(a.tunnels[0], replace(a.tunnels[1], pre_shared_key=Secret(PSK1))))
    old = load(tmp_path, BASE)
    new = load(tmp_path, BASE, {"a.txt": rotated, "b.txt": B})
    diff = diff_configurations(old, new)
    (vpc01,) = [c for c in diff.connections if c.name == "vpc01"]
    assert (vpc01.action, vpc01.restart_tunnels) == ("restart", (2,))
    assert vpc01.changes == ("tunnel 2: pre-shared key",)
    assert (
        PSK1 not in diff.summary() and "vpc01: restart: tunnel 2: pre-shared key" in diff.summary()
    )


def test_control_socket_change_needs_a_daemon_restart(tmp_path: Path) -> None:
    new = '[daemon]\ncontrol_socket = "/run/other.sock"\n' + BASE
    diff = diff_configurations(load(tmp_path, BASE), load(tmp_path, new))
    assert diff.daemon_changes == ("control_socket",) and diff.changed
    assert "restart cgwd" in diff.summary()
