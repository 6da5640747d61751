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
import sys
from dataclasses import replace
from typing import Any

from cgwd.config.aws import AwsTunnel
from cgwd.config.proposals import ProposalError, proposals_for
from cgwd.errors import ConfigError
from cgwd.ike.rng import SystemRng
from cgwd.ike.run_tunnel import main as run_tunnel_main
from cgwd.ike.run_tunnel import run_tunnel, timing_overrides
from cgwd.ike.v1.proposals import from_config
from cgwd.ike.v1.sa import Ikev1SessionConfig
from cgwd.ike.v1.session import Ikev1Session


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
    return replace(cfg, **timing_overrides(cfg, args))


async def run(args: argparse.Namespace) -> int:
    return await run_tunnel(
        args,
        version="IKEv1",
        session_config=session_config,
        new_session=lambda cfg, spi, now: Ikev1Session(cfg, SystemRng(), spi, now),
        # Passive: answer AWS's Main Mode, and keep the tunnel wanted once it is up.
        on_passive=lambda session: setattr(session, "wanted", True),
    )


def main(argv: list[str] | None = None) -> int:
    return run_tunnel_main(argv, run)


if __name__ == "__main__":
    sys.exit(main())
