"""`make demo`: cgwd as the router of a small LAN, with strongSwan playing AWS.

    sudo make demo            (or: sudo .venv/bin/python -m cgwd.demo)

Builds the emulated AWS side (`cgwd.lab`, network namespaces only) from the sample AWS
download in ``config/aws/``, runs ``cgwd run`` in the customer gateway's namespace, shows
``cgwd status``, pings a VPC host from a LAN host through the tunnels, cuts tunnel 1's
outside path and shows traffic continuing over tunnel 2, restores it, and removes
everything again, also on Ctrl-C or failure. Needs root, iproute2, nftables and strongSwan
(``make deps`` installs them). Exit status 0 when every step worked.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from types import FrameType
from typing import Any

from cgwd.config.importers import load_aws_config
from cgwd.lab.aws_side import AwsLab, LabOptions
from cgwd.lab.strongswan import CHARON_BINARY

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO / "config" / "aws" / "aws-generic-static-ikev1.txt"
DPD_INTERVAL, DPD_RETRIES = 2, 3  # short timers so the demo is quick (AWS: 10 s x 3)


class DemoError(Exception):
    """A step failed; the message says which."""


def say(text: str = "") -> None:
    print(text, flush=True)


def step(text: str) -> None:
    say(f"\n==> {text}")


def wait_for(check: Callable[[], bool], timeout: float, what: str) -> float:
    """Seconds until ``check()`` held. Raises DemoError after ``timeout``."""
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if check():
            return time.monotonic() - start
        time.sleep(0.25)
    raise DemoError(f"timed out after {timeout:g} s waiting for {what}")


def preflight() -> None:
    if os.geteuid() != 0:
        raise DemoError("the demo needs root (network namespaces): run it with sudo")
    missing = [tool for tool in ("ip", "nft", "ping", "swanctl") if shutil.which(tool) is None]
    if not CHARON_BINARY.exists():
        missing.append(str(CHARON_BINARY))
    if missing:
        raise DemoError(f"missing {', '.join(missing)}: run `make deps` (or `make demo`)")


class Cgwd:
    """`cgwd run` in the lab's customer gateway namespace, and `cgwd status` for it."""

    def __init__(self, lab: AwsLab, config: Path, socket_path: Path, log: Path) -> None:
        self.socket = socket_path
        self.log_path = log
        self._log = log.open("w")
        self.proc = lab.ns["cgw"].popen(
            sys.executable, "-m", "cgwd", "run", "--config", str(config),
            stdout=self._log, stderr=subprocess.STDOUT, cwd=str(REPO),
        )  # fmt: skip

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "cgwd", *args, "--socket", str(self.socket)],
            capture_output=True, text=True, timeout=15, check=False, cwd=str(REPO),
        )  # fmt: skip

    def tunnels(self) -> dict[int, dict[str, Any]]:
        if self.proc.poll() is not None:
            raise DemoError(f"cgwd exited with status {self.proc.returncode}")
        out = self.cli("status", "--json")
        if out.returncode != 0:
            return {}
        doc = json.loads(out.stdout)
        return {t["index"]: t for c in doc["connections"] for t in c["tunnels"]}

    def print_status(self) -> None:
        out = self.cli("status")
        say("$ cgwd status")
        say(out.stdout.rstrip() or out.stderr.rstrip())

    def tail(self, lines: int = 25) -> str:
        text = self.log_path.read_text(errors="replace").splitlines()
        return "\n".join(text[-lines:])

    def stop(self) -> int | None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self._log.close()
        return self.proc.returncode


def ping(lab: AwsLab, count: int = 4) -> str:
    proc = lab.run(
        "lan", "ping", "-n", "-c", str(count), "-i", "0.3", "-W", "1", str(lab.vpc_host_ip),
        check=False, timeout=count * 2 + 10,
    )  # fmt: skip
    summary = [line for line in proc.stdout.splitlines() if "transmitted" in line]
    return summary[0] if summary else proc.stdout.strip()


@contextmanager
def terminate_as_interrupt() -> Iterator[None]:
    """SIGTERM (e.g. from a CI timeout) cleans up like Ctrl-C."""

    def handler(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def run_demo(work: Path) -> None:
    step("Reading the AWS download (the sample in config/aws/)")
    aws_file = work / SAMPLE.name
    aws_file.write_bytes(SAMPLE.read_bytes())
    os.chmod(aws_file, 0o600)  # it holds the pre-shared keys: cgwd insists
    connection = load_aws_config(aws_file)
    for t in connection.tunnels:
        say(
            f"    tunnel {t.index}: AWS endpoint {t.vpn_gateway_outside_ip}, inside "
            f"{t.customer_gateway_inside_ip} <-> {t.vpn_gateway_inside_ip}, "
            f"{(t.ike_version or 'ikev2').replace('ike', 'IKE')}"
        )

    step("Building the emulated AWS side: two strongSwan endpoints, a VPC, a LAN (namespaces)")
    with AwsLab(connection, LabOptions.for_tests()) as lab:
        say(f"    LAN host {lab.lan_host_ip} -> cgw (cgwd, {lab.cgw_local_ip}) -> internet")
        say(f"    -> AWS endpoints {lab.aws_outside_ip(1)}, {lab.aws_outside_ip(2)}")
        say(f"    -> VPC {lab.options.vpc_cidr}, host {lab.vpc_host_ip}")
        socket_path = work / "control.sock"
        config = work / "cgwd.toml"
        config.write_text(
            f"""[daemon]
control_socket = "{socket_path}"
dataplane = "userspace"   # works on every kernel; "auto" picks the kernel's ESP when present

[[connection]]
name = "vpc01"
aws_config = "{aws_file}"
routes = ["{lab.options.vpc_cidr}"]
tunnel_preference = "prefer-1"
dpd_interval = {DPD_INTERVAL}     # the demo's short timers; AWS's are 10 s x 3
dpd_retries = {DPD_RETRIES}
"""
        )
        step("Starting cgwd in the customer gateway's namespace")
        say(f"    $ cgwd run --config {config}")
        cgwd = Cgwd(lab, config, socket_path, work / "cgwd.log")
        try:
            took = wait_for(
                lambda: (
                    all(t["state"] == "up" for t in cgwd.tunnels().values())
                    and len(cgwd.tunnels()) == 2
                ),
                30,
                "both tunnels up",
            )
            say(f"    both tunnels up after {took:.1f} s")
            cgwd.print_status()

            step("Pinging the VPC host from the LAN host, through the tunnels")
            # The endpoints' return paths follow their Child SAs a moment later.
            wait_for(lambda: "0% packet loss" in ping(lab, 1), 20, "the VPC host to answer")
            say(f"    {ping(lab)}")

            step("Cutting tunnel 1's outside path (all packets to/from its AWS endpoint dropped)")
            lab.cut(1)
            took = wait_for(
                lambda: (
                    cgwd.tunnels().get(2, {}).get("active") is True
                    and cgwd.tunnels().get(1, {}).get("state") != "up"
                ),
                30,
                "tunnel 2 to carry the traffic",
            )
            say(
                f"    cgwd's dead peer detection noticed after {took:.1f} s and moved the "
                "routes to tunnel 2"
            )
            # AWS picks the return tunnel itself: until its own DPD gives up on tunnel 1, some
            # replies still go there.
            took = wait_for(lambda: not lab.return_path_up(1), 30, "AWS to drop tunnel 1")
            say(f"    AWS's endpoint 1 gave up on the tunnel {took:.1f} s later (its own DPD)")
            wait_for(lambda: "0% packet loss" in ping(lab, 1), 20, "the VPC over tunnel 2")
            say(f"    {ping(lab)}")
            cgwd.print_status()

            step("Restoring tunnel 1")
            lab.restore(1)
            took = wait_for(
                lambda: cgwd.tunnels().get(1, {}).get("active") is True, 60, "tunnel 1 back"
            )
            say(f"    tunnel 1 re-negotiated and carries the traffic again after {took:.1f} s")
            wait_for(lambda: "0% packet loss" in ping(lab, 1), 20, "the VPC over tunnel 1")
            say(f"    {ping(lab)}")
        except BaseException:
            say("\n--- the last lines of cgwd's log:")
            say(cgwd.tail())
            raise
        finally:
            step("Stopping cgwd (it deletes its SAs, routes, clamp rules and interfaces)")
            code = cgwd.stop()
            say(f"    cgwd exited with status {code}")
        left = leftovers(lab)
        if left:
            raise DemoError(f"cgwd left {', '.join(left)} behind in the cgw namespace")
        say("    no tunnel interface, cgwd route or nftables table is left in cgw")
        step("Removing the lab")
        prefix = lab.topology.prefix
    names = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=False)
    stale = [line.split()[0] for line in names.stdout.splitlines() if line.startswith(prefix)]
    if stale:
        raise DemoError(f"namespaces left behind: {', '.join(stale)}")


def leftovers(lab: AwsLab) -> list[str]:
    """What cgwd could have left in the customer gateway's namespace."""
    found = []
    links = lab.run("cgw", "ip", "-o", "link", "show", check=False).stdout
    found += [f"interface {n}" for n in ("vpc01-t1", "vpc01-t2") if f" {n}:" in links]
    if lab.run("cgw", "ip", "route", "show", "proto", "157", check=False).stdout.strip():
        found.append("routes (proto 157)")
    if lab.run("cgw", "nft", "list", "table", "inet", "cgwd", check=False).returncode == 0:
        found.append("the nftables table inet cgwd")
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m cgwd.demo", description=__doc__)
    parser.parse_args(argv)
    try:
        preflight()
    except DemoError as exc:
        print(f"demo: {exc}", file=sys.stderr)
        return 1
    work = Path(tempfile.mkdtemp(prefix="cgwd-demo-"))
    started = time.monotonic()
    try:
        with terminate_as_interrupt():
            run_demo(work)
    except KeyboardInterrupt:
        print("\ndemo: interrupted; everything was removed", file=sys.stderr)
        return 130
    except DemoError as exc:
        print(f"\ndemo: {exc}; everything was removed", file=sys.stderr)
        return 1
    finally:
        shutil.rmtree(work, ignore_errors=True)
    say(f"\nDone in {time.monotonic() - started:.0f} s; nothing is left behind.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
