"""Run one IKEv1 tunnel from an AWS configuration download.

    python -m cgwd.ike.v1.run_tunnel --aws-config FILE --tunnel 1 --local-address 192.0.2.117 ...

The same command line as `cgwd.ike.run_tunnel` (IKEv2), ``--dataplane`` included (userspace
by default); the session is an `cgwd.ike.v1.session.Ikev1Session`, driven by the same
`cgwd.ike.host.IkeHost`.
Lifetimes are proposed as given (``--ike-lifetime``/``--child-lifetime``, default AWS's
28800 s / 3600 s). Exit status: 0 after a signal, 2 for a configuration error, 1 otherwise.
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
from dataclasses import replace
from pathlib import Path
from typing import Any

from cgwd.config.aws import AwsTunnel
from cgwd.config.importers import load_aws_config
from cgwd.config.proposals import ProposalError, proposals_for
from cgwd.dataplane.select import create_dataplane
from cgwd.errors import CgwdError, ConfigError
from cgwd.ike.clock import MonotonicClock
from cgwd.ike.events import Event
from cgwd.ike.host import IkeHost
from cgwd.ike.retransmit import ReconnectBackoff, RetransmitPolicy
from cgwd.ike.rng import SystemRng
from cgwd.ike.run_tunnel import parse_args, tunnel_spec
from cgwd.ike.v1.proposals import from_config
from cgwd.ike.v1.sa import Ikev1SessionConfig
from cgwd.ike.v1.session import Ikev1Session

log = logging.getLogger("cgwd.run_tunnel")


def session_config(tunnel: AwsTunnel, args: argparse.Namespace, fmt: Any) -> Ikev1SessionConfig:
    """The IKEv1 session policy for ``tunnel`` with the command line's overrides."""
    if tunnel.pre_shared_key is None:
        raise ConfigError(f"tunnel {tunnel.index}: the file has no pre-shared key")
    try:
        ps = proposals_for(tunnel, "ikev1", mode=args.proposals, fmt=fmt)
        p1, esp, groups = from_config(ps)
    except (ProposalError, ValueError) as exc:
        raise ConfigError(str(exc)) from None
    cfg = Ikev1SessionConfig(
        tunnel=args.interface,
        local_address=args.local_address,
        remote_address=tunnel.vpn_gateway_outside_ip,
        psk=tunnel.pre_shared_key,
        phase1_suites=p1,
        esp_suites=esp,
        pfs_groups=groups,
        local_id=args.identity or tunnel.customer_gateway_outside_ip or args.local_address,
        force_encap=args.force_encap,
    )
    overrides: dict[str, Any] = {}
    for name in ("child_rekey_time", "ike_rekey_time", "dpd_delay", "rekey_jitter"):
        value = getattr(args, name)
        if value is not None:
            overrides[name] = value
    for name in ("child_lifetime", "ike_lifetime"):
        value = getattr(args, name)
        if value is not None:
            overrides[name] = int(value)
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
    return replace(cfg, **overrides)


def _write_status(path: Path | None, session: Ikev1Session, now: float, host: IkeHost) -> None:
    if path is None:
        return
    status = session.status(now)
    status["host_counters"] = dataclasses.asdict(host.counters)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(status, indent=1, sort_keys=True))
    os.replace(tmp, path)


async def run(args: argparse.Namespace) -> int:
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
    session = Ikev1Session(cfg, SystemRng(), lambda: dataplane.allocate_spi(spec.name), clock.now())

    def flush() -> None:
        pending.clear()
        _write_status(args.status_file, session, clock.now(), host)

    def on_event(_session: Any, _event: Event) -> None:
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
            "tunnel %s: %s -> %s (IKEv1, %s)",
            spec.name,
            args.local_address,
            tunnel.vpn_gateway_outside_ip,
            "waiting for the peer" if args.passive else "initiating",
        )
        if not args.passive:
            host.initiate(session)
        else:
            session.wanted = True
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


def main(argv: list[str] | None = None) -> int:
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
