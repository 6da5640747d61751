"""Run one IKEv2 tunnel from an AWS configuration download.

    python -m cgwd.ike.run_tunnel --aws-config FILE --tunnel 1 --local-address 192.0.2.117 \\
        [--identity IP] [--route 10.99.0.0/16] [--status-file PATH] [--passive] \\
        [--dataplane auto|kernel|userspace] ...

The interop tests and the daemon's early users run this: it opens the tunnel's interface
(a TUN device with the userspace dataplane, the default; an xfrm interface or VTI with the
kernel's; ``auto`` picks as the daemon does), with inside addresses from the file, binds
IKE on the local address, initiates
(unless ``--passive``: AWS's "start" startup action makes AWS initiate) and keeps the
tunnel up until SIGTERM/SIGINT, when it deletes its SAs. With ``--status-file`` it keeps
`IkeSession.status()` there as JSON (replaced atomically twice a second and after every
event). Exit status: 0 after a signal, 2 for a configuration error, 1 otherwise.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import json
import logging
import os
import signal
import subprocess
import sys
from collections.abc import Callable, Coroutine
from dataclasses import replace
from ipaddress import IPv4Address, IPv4Interface, IPv4Network
from pathlib import Path
from typing import Any

from cgwd.config.aws import AwsTunnel
from cgwd.config.importers import load_aws_config
from cgwd.config.proposals import ProposalError, proposals_for
from cgwd.dataplane.base import TunnelSpec
from cgwd.dataplane.select import create_dataplane
from cgwd.errors import CgwdError, ConfigError
from cgwd.ike.clock import MonotonicClock
from cgwd.ike.constants import ProtocolId
from cgwd.ike.events import Event
from cgwd.ike.host import IkeHost, Session
from cgwd.ike.retransmit import ReconnectBackoff, RetransmitPolicy
from cgwd.ike.rng import SystemRng
from cgwd.ike.v2.sa import IkeSessionConfig
from cgwd.ike.v2.session import IkeSession
from cgwd.ike.v2.wire import proposals_from_config

log = logging.getLogger("cgwd.run_tunnel")

DEFAULT_MTU = 1400  # below the worst-case ESP-in-UDP overhead on a 1500-byte path


def session_config(tunnel: AwsTunnel, args: argparse.Namespace, fmt: Any) -> IkeSessionConfig:
    """The session policy for ``tunnel`` with the command line's overrides."""
    if tunnel.pre_shared_key is None:
        raise ConfigError(f"tunnel {tunnel.index}: the file has no pre-shared key")
    try:
        ps = proposals_for(tunnel, "ikev2", mode=args.proposals, fmt=fmt)
    except ProposalError as exc:
        raise ConfigError(str(exc)) from None
    identity = args.identity or tunnel.customer_gateway_outside_ip or args.local_address
    cfg = IkeSessionConfig(
        tunnel=args.interface,
        local_address=args.local_address,
        remote_address=tunnel.vpn_gateway_outside_ip,
        psk=tunnel.pre_shared_key,
        ike_proposals=proposals_from_config(ps.ike, ProtocolId.IKE),
        esp_proposals=proposals_from_config(ps.esp, ProtocolId.ESP),
        local_id=identity,
        force_encap=args.force_encap,
        auto_initiate=True,
    )
    return replace(cfg, **timing_overrides(cfg, args))


def timing_overrides(cfg: Any, args: argparse.Namespace) -> dict[str, Any]:
    """The command line's timing options as `dataclasses.replace` arguments for a session
    config of either IKE version (both have these fields)."""
    overrides: dict[str, Any] = {}
    for name in ("child_rekey_time", "ike_rekey_time", "dpd_delay", "rekey_jitter"):
        value = getattr(args, name)
        if value is not None:
            overrides[name] = value
    for name in ("child_lifetime", "ike_lifetime"):
        value = getattr(args, name)
        if value is not None:
            overrides[name] = type(getattr(cfg, name))(value)  # IKEv1 counts whole seconds
    for prefix in ("dpd_retransmit", "retransmit"):
        interval = getattr(args, f"{prefix}_interval")
        tries = getattr(args, f"{prefix}_tries")
        if interval is not None or tries is not None:
            base: RetransmitPolicy = getattr(cfg, prefix)
            overrides[prefix] = RetransmitPolicy(
                initial=interval if interval is not None else base.initial,
                factor=1.0 if interval is not None else base.factor,
                max_interval=interval if interval is not None else base.max_interval,
                tries=tries if tries is not None else base.tries,
            )
    if args.reconnect_cap is not None:
        overrides["reconnect"] = ReconnectBackoff(cap=args.reconnect_cap)
    return overrides


def tunnel_spec(tunnel: AwsTunnel, args: argparse.Namespace) -> TunnelSpec:
    cgw, aws = tunnel.customer_gateway_inside_ip, tunnel.vpn_gateway_inside_ip
    if cgw is None or aws is None:
        raise ConfigError(f"tunnel {tunnel.index}: the file has no inside addresses")
    prefix = tunnel.inside_cidr.prefixlen if tunnel.inside_cidr is not None else 30
    return TunnelSpec(
        name=args.interface,
        local_inside=IPv4Interface(f"{cgw}/{prefix}"),
        remote_inside=aws,
        mtu=args.mtu,
        local_outside=args.local_address,
        remote_outside=tunnel.vpn_gateway_outside_ip,
    )


def _write_status(path: Path | None, session: Session, now: float, host: IkeHost) -> None:
    if path is None:
        return
    status = session.status(now)
    status["host_counters"] = dataclasses.asdict(host.counters)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(status, indent=1, sort_keys=True))
    os.replace(tmp, path)


# (the tunnel's session config, the SPI allocator, now) -> a session of that IKE version
SessionFactory = Callable[[Any, Callable[[], int], float], Session]


async def run_tunnel(
    args: argparse.Namespace,
    *,
    version: str,
    session_config: Callable[[AwsTunnel, argparse.Namespace, Any], Any],
    new_session: SessionFactory,
    on_passive: Callable[[Session], None] | None = None,
) -> int:
    """Run one tunnel of either IKE version until SIGTERM/SIGINT (see the module docstring).

    ``on_passive``: what a session needs instead of `IkeHost.initiate` with ``--passive``.
    """
    conn = load_aws_config(args.aws_config)
    tunnel = next((t for t in conn.tunnels if t.index == args.tunnel), None)
    if tunnel is None:
        raise ConfigError(f"the file has no tunnel {args.tunnel}")
    cfg = session_config(tunnel, args, conn.format)
    spec = tunnel_spec(tunnel, args)
    clock = MonotonicClock()
    # The kernel probe of "auto" blocks for a moment: off the event loop.
    dataplane, reason = await asyncio.to_thread(create_dataplane, args.dataplane)
    log.info("dataplane: %s (%s)", dataplane.kind, reason)
    try:
        await dataplane.open_tunnel(spec)
    except BaseException:
        await dataplane.close()
        raise
    for route in args.route:
        subprocess.run(
            ["ip", "route", "replace", str(route), "dev", spec.name], check=True, timeout=10
        )
    loop = asyncio.get_running_loop()
    pending: list[asyncio.TimerHandle] = []
    session = new_session(cfg, lambda: dataplane.allocate_spi(spec.name), clock.now())

    def flush() -> None:
        pending.clear()
        _write_status(args.status_file, session, clock.now(), host)

    def on_event(_session: Session, _event: Event) -> None:
        # Debounced: a status write must not delay the dataplane work of a rekey.
        if not pending:
            pending.append(loop.call_later(0.05, flush))

    host = IkeHost(dataplane, clock, args.local_address, on_event=on_event)
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        await host.start()
        host.add_session(session)
        log.info(
            "tunnel %s: %s -> %s (%s, %s)",
            spec.name,
            args.local_address,
            tunnel.vpn_gateway_outside_ip,
            version,
            "waiting for the peer" if args.passive else "initiating",
        )
        if not args.passive:
            host.initiate(session)
        elif on_passive is not None:
            on_passive(session)
        while not stop.is_set():
            _write_status(args.status_file, session, clock.now(), host)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 0.5)
        log.info("tunnel %s: stopping", spec.name)
    finally:
        await host.close(delete=True, grace=0.5)
        _write_status(args.status_file, session, clock.now(), host)
        await dataplane.close()
    return 0


async def run(args: argparse.Namespace) -> int:
    return await run_tunnel(
        args,
        version="IKEv2",
        session_config=session_config,
        new_session=lambda cfg, spi, now: IkeSession(cfg, SystemRng(), spi, now),
    )


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m cgwd.ike.run_tunnel", description=__doc__.split("\n")[0]
    )
    p.add_argument("--aws-config", type=Path, required=True, help="AWS configuration download")
    p.add_argument("--tunnel", type=int, choices=(1, 2), default=1)
    p.add_argument(
        "--local-address",
        type=IPv4Address,
        required=True,
        help="address to bind IKE/ESP to (behind a NAT: the private one)",
    )
    p.add_argument(
        "--identity",
        type=IPv4Address,
        default=None,
        help="our IKE ID (default: the file's customer gateway outside IP)",
    )
    p.add_argument("--interface", default=None, help="TUN interface name (default cgwd-t<N>)")
    p.add_argument("--mtu", type=int, default=DEFAULT_MTU)
    p.add_argument(
        "--route",
        type=IPv4Network,
        action="append",
        default=[],
        help="route this prefix into the tunnel (repeatable)",
    )
    p.add_argument("--status-file", type=Path, default=None)
    p.add_argument("--passive", action="store_true", help="do not initiate; wait for AWS")
    p.add_argument(
        "--proposals",
        choices=("aws", "file"),
        default="aws",
        help="offer AWS's whole supported set (default) or only the file's values",
    )
    p.add_argument("--force-encap", action="store_true", help="always use UDP encapsulation")
    p.add_argument(
        "--dataplane",
        choices=("auto", "kernel", "userspace"),
        default="userspace",
        help="who does ESP: our userspace datapath (default), the kernel's XFRM, or auto "
        "(the kernel's if it has ESP and tunnel interfaces)",
    )
    for name in (
        "child-rekey-time",
        "child-lifetime",
        "ike-rekey-time",
        "ike-lifetime",
        "dpd-delay",
        "rekey-jitter",
    ):
        p.add_argument(f"--{name}", type=float, default=None)
    for name in ("dpd-retransmit", "retransmit"):
        p.add_argument(
            f"--{name}-interval",
            type=float,
            default=None,
            help="fixed retransmission interval (tests)",
        )
        p.add_argument(f"--{name}-tries", type=int, default=None)
    p.add_argument(
        "--reconnect-cap",
        type=float,
        default=None,
        help="longest wait between re-initiation attempts (default 60 s)",
    )
    p.add_argument("--log-level", default="INFO")
    args = p.parse_args(argv)
    if args.interface is None:
        args.interface = f"cgwd-t{args.tunnel}"
    return args


def main(
    argv: list[str] | None = None,
    run: Callable[[argparse.Namespace], Coroutine[Any, Any, int]] = run,
) -> int:
    """The command: parse, log to stderr, run; errors as one line (2: configuration)."""
    args = parse_args(argv)
    logging.basicConfig(
        level=getattr(logging, str(args.log_level).upper(), logging.INFO),
        format="%(asctime)s %(name)s %(levelname)s %(message)s",
        stream=sys.stderr,
    )
    logging.getLogger("pyroute2").setLevel(logging.WARNING)
    try:
        return asyncio.run(run(args))
    except ConfigError as exc:
        print(f"cgwd: {exc}", file=sys.stderr)
        return 2
    except (CgwdError, OSError, subprocess.SubprocessError) as exc:
        print(f"cgwd: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
