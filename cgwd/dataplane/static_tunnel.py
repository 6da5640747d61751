"""Run one userspace tunnel with static keys: for tests, benchmarks and debugging.

    python -m cgwd.dataplane.static_tunnel --config FILE     # FILE mode 0600 (keys inside)
    python -m cgwd.dataplane.static_tunnel --config -        # config = first line of stdin

Keys never appear on the command line (visible to every user in ``ps``). The config is one
JSON object::

    {"tunnel": {"name": "cgt0", "local_inside": "169.254.10.2/30",
                "remote_inside": "169.254.10.1", "mtu": 1400,
                "local_outside": "192.0.2.1", "remote_outside": "192.0.2.2"},
     "suite": "aes128gcm16", "encap": true, "esn": false, "replay_window": 1024,
     "sas": [{"spi_in": 4096, "spi_out": 8192, "keymat_in": "<hex>", "keymat_out": "<hex>"}],
     "install": 1, "datapath": {"use_gso": true, "use_gro": true, "tun_coalesce": true}}

``encap`` is false (raw ESP), true (UDP 4500 both ends) or ``{"local_port", "remote_port"}``.
The first ``install`` SA pairs (default 1) are installed at start, inbound first. Then it
prints ``{"ready": true}`` and reads commands, one per stdin line, answering each with one
JSON line: ``install_in I``, ``install_out I``, ``remove_in I``, ``remove_out I`` (I indexes
``sas``), ``stats``, ``quit``. It also stops on SIGTERM/SIGINT or stdin EOF after ``quit``.

Exit status: 0 after a clean stop, 2 for a bad config (one line on stderr, no traceback).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import enum
import json
import logging
import os
import signal
import stat
import sys
from dataclasses import dataclass, fields
from ipaddress import IPv4Address, IPv4Interface
from typing import Any

from cgwd.dataplane.base import DataplaneError, SaId, SaParams, TunnelSpec, UdpEncap
from cgwd.dataplane.userspace import UserspaceDataplane
from cgwd.errors import CgwdError, ConfigError
from cgwd.esp.suites import suite_by_name
from cgwd.secret import Secret

# UserspaceDataplane keyword arguments a config may set (to measure each optimisation).
DATAPATH_OPTIONS = frozenset({"batch", "use_gso", "use_gro", "tun_coalesce"})


@dataclass(frozen=True)
class StaticSaPair:
    spi_in: int
    spi_out: int
    keymat_in: Secret
    keymat_out: Secret


@dataclass(frozen=True)
class StaticTunnelConfig:
    spec: TunnelSpec
    params_in: list[SaParams]
    params_out: list[SaParams]
    pairs: list[StaticSaPair]
    install: int
    datapath: dict[str, Any]


def parse_config(doc: object, source: str) -> StaticTunnelConfig:
    """Validate the JSON document; raises `ConfigError` naming the bad key."""
    if not isinstance(doc, dict):
        raise ConfigError("expected a JSON object", source=source)
    try:
        tun = doc["tunnel"]
        spec = TunnelSpec(
            name=str(tun["name"]),
            local_inside=IPv4Interface(tun["local_inside"]),
            remote_inside=IPv4Address(tun["remote_inside"]),
            mtu=int(tun.get("mtu", 1400)),
            local_outside=IPv4Address(tun["local_outside"]),
            remote_outside=IPv4Address(tun["remote_outside"]),
        )
        suite = suite_by_name(str(doc["suite"]))
        raw_encap = doc.get("encap", True)
        encap: UdpEncap | None
        if raw_encap is False:
            encap = None
        elif raw_encap is True:
            encap = UdpEncap()
        else:
            encap = UdpEncap(int(raw_encap["local_port"]), int(raw_encap["remote_port"]))
        pairs = [
            StaticSaPair(
                int(p["spi_in"]),
                int(p["spi_out"]),
                Secret(bytes.fromhex(p["keymat_in"])),
                Secret(bytes.fromhex(p["keymat_out"])),
            )
            for p in doc["sas"]
        ]
        common: dict[str, Any] = {
            "esn": bool(doc.get("esn", False)),
            "replay_window": int(doc.get("replay_window", 1024)),
            "encap": encap,
        }
        params_in = [SaParams(suite, p.keymat_in, **common) for p in pairs]
        params_out = [SaParams(suite, p.keymat_out, **common) for p in pairs]
        install = int(doc.get("install", 1))
        datapath = dict(doc.get("datapath", {}))
        unknown = set(datapath) - DATAPATH_OPTIONS
        if unknown:
            raise ConfigError(f"unknown datapath options {sorted(unknown)}", source=source)
    except KeyError as exc:
        raise ConfigError(f"missing key {exc}", source=source) from None
    except (TypeError, ValueError, DataplaneError) as exc:
        # ValueError texts from bytes.fromhex never contain the key material itself.
        raise ConfigError(str(exc), source=source) from None
    if not 0 <= install <= len(pairs):
        raise ConfigError(f"install {install} outside 0..{len(pairs)}", source=source)
    return StaticTunnelConfig(spec, params_in, params_out, pairs, install, datapath)


def read_config_file(path: str) -> str:
    """The config text; refuses files others can read (they hold keys)."""
    if path == "-":
        return sys.stdin.readline()
    try:
        st = os.stat(path)
        if st.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
            raise ConfigError(
                "holds keys: must not be accessible to group/others (chmod 600)", source=path
            )
        with open(path, encoding="utf-8") as f:
            return f.read()
    except OSError as exc:
        raise ConfigError(exc.strerror or str(exc), source=path) from None


def counters_json(counters: object) -> dict[str, Any]:
    """Any counters dataclass as JSON-ready data (enum keys by name), without the fields
    marked internal."""
    out: dict[str, Any] = {}
    for f in fields(counters):  # type: ignore[arg-type]
        if f.metadata.get("internal"):
            continue
        value = getattr(counters, f.name)
        if isinstance(value, dict):
            value = {
                (k.name.lower() if isinstance(k, enum.Enum) else str(k)): v
                for k, v in value.items()
            }
        out[f.name] = value
    return out


class StaticTunnel:
    """The running tunnel: a `UserspaceDataplane` with one tunnel and the config's SAs."""

    def __init__(self, config: StaticTunnelConfig, dataplane: UserspaceDataplane) -> None:
        self.config = config
        self.dp = dataplane
        self.installed: set[SaId] = set()

    def sa_id(self, direction: str, index: int) -> SaId:
        pair = self.config.pairs[index]
        if direction == "in":
            return SaId(self.config.spec.name, "in", pair.spi_in)
        return SaId(self.config.spec.name, "out", pair.spi_out)

    async def install(self, direction: str, index: int) -> None:
        sa = self.sa_id(direction, index)
        params = (self.config.params_in if direction == "in" else self.config.params_out)[index]
        await self.dp.add_sa(sa, params)
        self.installed.add(sa)

    async def remove(self, direction: str, index: int) -> None:
        sa = self.sa_id(direction, index)
        await self.dp.remove_sa(sa)
        self.installed.discard(sa)

    def stats(self) -> dict[str, Any]:
        name = self.config.spec.name
        return {
            "sas": {str(sa): counters_json(self.dp.sa_counters(sa)) for sa in self.installed},
            "tunnel": counters_json(self.dp.tunnel_counters(name)),
            "current_out": str(self.dp.current_outbound(name)),
        }

    async def command(self, line: str) -> dict[str, Any]:
        words = line.split()
        if not words:
            return {"ok": True}
        verb = words[0]
        try:
            if verb == "stats":
                return {"ok": True, **self.stats()}
            if verb in ("install_in", "install_out", "remove_in", "remove_out"):
                if len(words) != 2 or not words[1].isdigit():
                    return {"ok": False, "error": f"usage: {verb} INDEX"}
                index = int(words[1])
                if index >= len(self.config.pairs):
                    return {"ok": False, "error": f"no SA pair {index}"}
                action, direction = verb.split("_")
                if action == "install":
                    await self.install(direction, index)
                else:
                    await self.remove(direction, index)
                return {"ok": True}
        except CgwdError as exc:
            return {"ok": False, "error": str(exc)}
        return {"ok": False, "error": f"unknown command {verb!r}"}


def _emit(obj: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


async def run_tunnel(config: StaticTunnelConfig) -> None:
    dp = UserspaceDataplane(**config.datapath)
    tunnel = StaticTunnel(config, dp)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        await dp.open_tunnel(config.spec)
        for i in range(config.install):
            await tunnel.install("in", i)
            await tunnel.install("out", i)
        _emit({"ready": True, "pid": os.getpid()})

        async def commands() -> None:
            while True:
                line = await asyncio.to_thread(sys.stdin.readline)
                if not line:
                    return  # EOF: keep running until a signal
                if line.strip() == "quit":
                    stop.set()
                    return
                _emit(await tunnel.command(line))

        reader = asyncio.create_task(commands())
        await stop.wait()
        reader.cancel()
    finally:
        await dp.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m cgwd.dataplane.static_tunnel")
    parser.add_argument("--config", required=True, help="JSON file (mode 0600) or - for stdin")
    parser.add_argument("--log-level", default="WARNING")
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(levelname)s %(message)s")
    try:
        text = read_config_file(args.config)
        try:
            doc = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ConfigError(
                f"not JSON: {exc.msg} at line {exc.lineno}", source=args.config
            ) from None
        config = parse_config(doc, args.config)
        with contextlib.suppress(KeyboardInterrupt):
            asyncio.run(run_tunnel(config))
    except CgwdError as exc:
        print(f"static_tunnel: {exc}", file=sys.stderr)
        return exc.exit_code
    return 0


if __name__ == "__main__":
    sys.exit(main())
