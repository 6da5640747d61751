"""`cgwd import` and `cgwd check` as users run them: a subprocess, exit codes, one-line errors."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from ipaddress import IPv4Address
from pathlib import Path

import pytest
from config_fixtures import FakeLoader, connection

from cgwd.commands.check import (
    host_notes,
    is_local_address,
)
from cgwd.config.load import load_configuration
from cgwd.dataplane.select import KernelCapabilities, choose_dataplane

REPO = Path(__file__).parents[2]
SAMPLES = REPO / "config" / "aws"
GENERIC = "aws-generic-static-ikev1.txt"
XML = "aws-describe-vpn-connections-static.xml"
PSKS = {
    GENERIC: ("sVbYmmbuv_1I4wJ2RvidkZboWOfs.8FW", "jNXXhCxPi5P_QefxceYSOlbTG.p8bYsE"),
    XML: ("so8YWGtQV.E_tNEaXSXiuNPvU0ASD036", "fUhROC_FADOtJ.oKX1JXOTtzxV5R7g8b"),
}


def cgwd(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "cgwd", *map(str, args)],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=60,
        check=False,
    )


def private_copy(tmp: Path, name: str, mode: int = 0o600) -> Path:
    target = tmp / name
    shutil.copyfile(SAMPLES / name, target)
    target.chmod(mode)
    return target


def assert_one_line_error(result: subprocess.CompletedProcess[str], *words: str) -> str:
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    for word in words:
        assert word in lines[0], lines[0]
    return lines[0]


@pytest.fixture(scope="module")
def samples(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("aws")
    for name in (GENERIC, XML):
        private_copy(tmp, name)
    return tmp


# --- cgwd import ---------------------------------------------------------------------------


def test_import_summary(samples: Path) -> None:
    result = cgwd("import", samples / GENERIC)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    for text in (
        "vpn-027ce4abbdce5c106",
        "vgw-0bab21a9566185382",
        "cgw-0e20ca18c550b4fc3",
        "203.0.113.66",
        "169.254.27.182",
        "*** (32 characters)",
    ):
        assert text in out
    assert PSKS[GENERIC][0] not in out and PSKS[GENERIC][1] not in out


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        (
            GENERIC,
            {
                "format": "aws-generic-text",
                "vpn_connection_id": "vpn-027ce4abbdce5c106",
                "routing": "static",
                "outside": ["203.0.113.66", "203.0.113.189"],
                "inside": ["169.254.141.36/30", "169.254.27.180/30"],
                "ike_version": "ikev1",
                "mtu": 1436,
            },
        ),
        (
            XML,
            {
                "format": "aws-customer-gateway-xml",
                "vpn_connection_id": "vpn-0f5b2f2f59f927ac6",
                "routing": "static",
                "outside": ["198.51.100.205", "198.51.100.38"],  # file order, not sorted
                "inside": ["169.254.212.84/30", "169.254.57.240/30"],
                "ike_version": None,  # the XML does not say
                "mtu": None,
            },
        ),
    ],
)
def test_import_json(samples: Path, name: str, expected: dict[str, object]) -> None:
    result = cgwd("import", samples / name, "--json")
    assert result.returncode == 0, result.stderr
    doc = json.loads(result.stdout)
    assert doc["format"] == expected["format"]
    assert doc["vpn_connection_id"] == expected["vpn_connection_id"]
    assert doc["routing"] == expected["routing"]
    tunnels = doc["tunnels"]
    assert [t["index"] for t in tunnels] == [1, 2]
    assert [t["vpn_gateway_outside_ip"] for t in tunnels] == expected["outside"]
    assert [t["inside_cidr"] for t in tunnels] == expected["inside"]
    assert {t["pre_shared_key"] for t in tunnels} == {"***"}
    assert {t["ike_version"] for t in tunnels} == {expected["ike_version"]}
    assert {t["tunnel_mtu"] for t in tunnels} == {expected["mtu"]}
    assert tunnels[0]["phase1"]["encryption"] == "AES128"
    assert tunnels[0]["phase2"]["pfs_dh_group"] == 2
    assert tunnels[0]["dpd"] == tunnels[0]["dpd"] | {"interval_seconds": 10, "retries": 3}
    for psk in PSKS[name]:
        assert psk not in result.stdout


def test_import_show_secrets(samples: Path) -> None:
    result = cgwd("import", samples / GENERIC, "--json", "--show-secrets")
    doc = json.loads(result.stdout)
    assert [t["pre_shared_key"] for t in doc["tunnels"]] == list(PSKS[GENERIC])


def test_import_refuses_a_readable_download(tmp_path: Path) -> None:
    path = private_copy(tmp_path, GENERIC, 0o644)
    line = assert_one_line_error(cgwd("import", path), str(path), f"chmod 600 {path}")
    assert PSKS[GENERIC][0] not in line


@pytest.mark.parametrize(
    ("content", "words"),
    [
        ("hello, this is not AWS\n", ["not an AWS VPN configuration"]),
        (None, ["cannot read"]),
    ],
)
def test_import_bad_files(tmp_path: Path, content: str | None, words: list[str]) -> None:
    path = tmp_path / "vpn.txt"
    if content is not None:
        path.write_text(content)
        path.chmod(0o600)
    assert_one_line_error(cgwd("import", path), str(path), *words)


def test_import_truncated_download_names_the_file(tmp_path: Path) -> None:
    text = (SAMPLES / GENERIC).read_text()
    path = tmp_path / "cut.txt"
    path.write_text(text[: text.index("IPSec Tunnel #2") + 400])
    path.chmod(0o600)
    line = assert_one_line_error(cgwd("import", path), str(path))
    for psk in PSKS[GENERIC]:
        assert psk not in line


# --- cgwd check ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The example configuration installed as an admin would: downloads chmod 600."""
    root = tmp_path_factory.mktemp("etc")
    (root / "aws").mkdir()
    private_copy(root / "aws", GENERIC)
    private_copy(root, XML)
    text = (REPO / "config" / "cgwd.toml").read_text()
    text += f'\n[[connection]]\nname = "vpc02"\naws_config = "{XML}"\nroutes = ["10.98.0.0/16"]\n'
    (root / "cgwd.toml").write_text(text)
    return root / "cgwd.toml"


def test_check_prints_the_plan(installed: Path) -> None:
    result = cgwd("check", "--config", installed)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    for text in (
        "interface vpc01-t1",
        "interface vpc01-t2",
        "interface vpc02-t2",
        "169.254.141.38/30 <-> 169.254.141.37",
        "10.99.0.0/16 metric 100",
        "10.99.0.0/16 metric 101",
        "MTU / MSS          1406 / 1366",
        "rekey at 2820-3000 s",
        "aes256gcm16-aes128gcm16-prfsha512",  # vpc02 is IKEv2 (the XML does not say)
        "IKEv1 (26)",  # vpc01 is IKEv1: its short transform list
        "aes128-sha1-{ecp521,ecp384,ecp256,modp2048,modp1024}",
        "dataplane",
    ):
        assert text in out, text
    for psks in PSKS.values():
        for psk in psks:
            assert psk not in out and psk not in result.stderr


def test_check_json(installed: Path) -> None:
    result = cgwd("check", "--config", installed, "--json")
    assert result.returncode == 0, result.stderr
    doc = json.loads(result.stdout)
    vpc01, vpc02 = doc["connections"]
    assert [t["interface"] for t in vpc01["tunnels"]] == ["vpc01-t1", "vpc01-t2"]
    t1 = vpc01["tunnels"][0]
    assert t1["mtu"] == 1406 and t1["mss"] == 1366
    assert t1["phase2"]["rekey_seconds"] == [2820, 3000]
    assert t1["phase2"]["lifetime_seconds"] == 3600
    assert t1["replay_window"] == 1024
    assert t1["ike_version"] == "ikev1" and vpc02["tunnels"][0]["ike_version"] == "ikev2"
    assert t1["routes"] == [{"network": "10.99.0.0/16", "metric": 100, "multipath": False}]
    assert t1["dataplane"]["chosen"] in {"kernel", "userspace"}
    assert vpc02["tunnels"][0]["remote_address"] == "198.51.100.205"


def test_check_bad_config_is_one_line_with_file_and_line(tmp_path: Path, installed: Path) -> None:
    bad = tmp_path / "cgwd.toml"
    bad.write_text(installed.read_text().replace("tunnel_preference", "tunnel_preferense"))
    (tmp_path / "aws").mkdir()
    line = assert_one_line_error(
        cgwd("check", "--config", bad), f"{bad}:", "unknown key", "did you mean tunnel_preference"
    )
    assert "connection[0].tunnel_preferense" in line


def test_check_refuses_a_readable_download(tmp_path: Path) -> None:
    private_copy(tmp_path, GENERIC, 0o640)
    config = tmp_path / "cgwd.toml"
    config.write_text(f'[[connection]]\nname = "a"\naws_config = "{GENERIC}"\n')
    assert_one_line_error(
        cgwd("check", "--config", config), f"chmod 600 {tmp_path / GENERIC}", "its group"
    )


@pytest.mark.parametrize(
    "text",
    [
        "[[connection]\n",
        "",
        '[[connection]]\nname = "a"\naws_config = "missing.txt"\n',
        '[[connection]]\nname = "a"\naws_config = "x"\nroutes = ["10.0.0.0/33"]\n',
    ],
)
def test_check_bad_configs_exit_2(tmp_path: Path, text: str) -> None:
    config = tmp_path / "cgwd.toml"
    config.write_text(text)
    assert_one_line_error(cgwd("check", "--config", config), str(tmp_path))


def test_check_missing_config() -> None:
    assert_one_line_error(cgwd("check", "--config", "/nonexistent/cgwd.toml"), "cannot read")


# --- the host-facing parts of check, in process ---------------------------------------------


def test_check_shows_the_dataplane_choice_from_the_kernel_probe() -> None:
    """`cgwd check` reports what `choose_dataplane` decides for the probed kernel."""
    no_esp = KernelCapabilities("the kernel has no ESP (CONFIG_INET_ESP)", None, "no VTIs")
    vti = KernelCapabilities("", "vti", "")
    assert choose_dataplane("auto", vti) == (
        "kernel",
        "auto: the kernel has ESP and vti interfaces",
    )
    kind, why = choose_dataplane("auto", no_esp)
    assert kind == "userspace" and "CONFIG_INET_ESP" in why
    assert "it will fail" in choose_dataplane("kernel", no_esp)[1]
    assert choose_dataplane("userspace", no_esp)[0] == "userspace"


def test_is_local_address() -> None:
    assert is_local_address(IPv4Address("127.0.0.1"))
    assert not is_local_address(IPv4Address("203.0.113.254"))


def test_host_notes(tmp_path: Path) -> None:
    (tmp_path / "v.txt").write_text("x")
    (tmp_path / "v.txt").chmod(0o600)
    config = tmp_path / "cgwd.toml"
    config.write_text('[[connection]]\nname = "a"\naws_config = "v.txt"\n')
    loaded = load_configuration(config, aws_loader=FakeLoader({"v.txt": connection()}))
    notes = host_notes(loaded, lambda address: False)
    assert len(notes) == 1 and "behind NAT" in notes[0] and "198.51.100.92" in notes[0]
    assert host_notes(loaded, lambda address: True) == []
    config.write_text(
        '[[connection]]\nname = "a"\naws_config = "v.txt"\nlocal_address = "10.1.2.3"\n'
    )
    loaded = load_configuration(config, aws_loader=FakeLoader({"v.txt": connection()}))
    (note,) = host_notes(loaded, lambda address: str(address) != "10.1.2.3")
    assert "local_address 10.1.2.3 is not configured" in note


def test_check_with_describe_vpn_connections_json(tmp_path: Path) -> None:
    # The importers' sample: vpn-0f5b2f2f59f927ac6's tunnel 2 has customised TunnelOptions
    # (phase 2 AES256-GCM-16 with DH 14 and 19, lifetime 1800 s); the other connection in the
    # file keeps its keys in Secrets Manager.
    sample = REPO / "tests" / "data" / "aws" / "aws-cli-describe-vpn-connections.json"
    target = tmp_path / "vpn.json"
    shutil.copyfile(sample, target)
    target.chmod(0o600)
    config = tmp_path / "cgwd.toml"
    config.write_text(
        '[[connection]]\nname = "j1"\naws_config = "vpn.json"\n'
        'connection_id = "vpn-0f5b2f2f59f927ac6"\nroutes = ["10.1.0.0/16"]\n'
    )
    result = cgwd("check", "--config", config, "--json")
    assert result.returncode == 0, result.stderr
    t1, t2 = json.loads(result.stdout)["connections"][0]["tunnels"]
    assert t2["proposals"]["esp"] == ["aes256gcm16-ecp256-modp2048"]
    assert (t2["mtu"], t2["mss"]) == (1438, 1398)  # AES-GCM with NAT-T, AWS's table
    assert t2["phase2"]["lifetime_seconds"] == 1800
    assert t2["phase2"]["rekey_seconds"] == [1110, 1200]  # 1800 - 270 * 2 - 60 = 1200
    assert t1["proposals"]["esp"][0].startswith("aes256gcm16-aes128gcm16-ecp521")
    # Without connection_id the file's two connections are ambiguous.
    config.write_text('[[connection]]\nname = "j1"\naws_config = "vpn.json"\n')
    assert_one_line_error(cgwd("check", "--config", config), str(target), "connection id")
    # The other connection has no keys in the file.
    config.write_text(
        '[[connection]]\nname = "j2"\naws_config = "vpn.json"\n'
        'connection_id = "vpn-0e1f2a3b4c5d6e7f8"\n'
    )
    assert_one_line_error(cgwd("check", "--config", config), f"{config}:3:", "pre_shared_keys")


def test_check_bgp_connection_shows_the_peering(tmp_path: Path) -> None:
    # The importers' 2021 TGW/BGP sample; the values below are typed from that file.
    sample = REPO / "tests" / "data" / "aws" / "aws-generic-2021-tgw-bgp-ikev2.txt"
    target = tmp_path / "bgp.txt"
    shutil.copyfile(sample, target)
    target.chmod(0o600)
    config = tmp_path / "cgwd.toml"
    config.write_text('[[connection]]\nname = "tgw"\naws_config = "bgp.txt"\n')
    result = cgwd("check", "--config", config, "--json")
    assert result.returncode == 0, result.stderr
    (conn,) = json.loads(result.stdout)["connections"]
    assert conn["routing"] == "bgp"
    t1 = conn["tunnels"][0]
    assert t1["routes"] == []
    assert t1["bgp"] == {
        "customer_gateway_asn": 65101,
        "neighbor_asn": 64512,
        "neighbor_ip": "169.254.88.13",
        "hold_time_seconds": 30,
    }
    assert t1["remote_inside"] == "169.254.88.13"
    text = cgwd("check", "--config", config).stdout
    assert "BGP (FRR/BIRD)" in text and "over tgw-t1" in text
