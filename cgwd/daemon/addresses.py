"""Which local address IKE and ESP use towards an AWS endpoint when cgwd.toml gives none."""

from __future__ import annotations

import socket
from ipaddress import IPv4Address

from cgwd.errors import CgwdError


def source_address_for(remote: IPv4Address, port: int = 500) -> IPv4Address:
    """The source address the kernel picks for ``remote`` (its route's ``src``, else the
    outgoing interface's primary address). Connecting a UDP socket sends nothing.

    Raises:
        CgwdError: no route to ``remote``.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        try:
            sock.connect((str(remote), port))
        except OSError as exc:
            raise CgwdError(
                f"no route to AWS endpoint {remote} ({exc.strerror or exc}): add one, or set "
                "local_address in cgwd.toml"
            ) from None
        return IPv4Address(sock.getsockname()[0])
