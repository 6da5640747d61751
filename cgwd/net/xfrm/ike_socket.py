"""Socket options the IKE host sets on its UDP sockets when the kernel does ESP.

- `enable_espinudp`: UDP_ENCAP_ESPINUDP on the port-4500 socket, so the kernel takes the
  ESP packets arriving there (SPI != 0) and hands only IKE (non-ESP marker, RFC 3948 §2.2)
  to the socket. Without it, kernel ESP-in-UDP SAs receive nothing.
- `bypass_ipsec`: per-socket IPsec policies (IP_XFRM_POLICY) allowing everything in
  and out, as strongSwan's kernel_netlink_ipsec.c does for its IKE sockets: socket
  policies take precedence over the SPD, so IKE is never caught by a tunnel's 0/0 policies
  (nor by a plain one an admin may have), even while no SA exists.

`prepare_ike_socket` does what the IKE host needs with the kernel dataplane. (With the
userspace dataplane leave the sockets alone: its own sockets take the ESP.) All raise only
`XfrmError` naming the option and the socket.
"""

from __future__ import annotations

import socket

from cgwd.net.xfrm.messages import UDP_ENCAP_ESPINUDP, userpolicy_info_bytes
from cgwd.net.xfrm.socket import XfrmError

SOL_UDP = 17
UDP_ENCAP = 100  # <linux/udp.h>
IP_XFRM_POLICY = 17  # <linux/in.h>
IPV6_XFRM_POLICY = 35  # <linux/in6.h>


def enable_espinudp(sock: socket.socket) -> None:
    """Make the kernel decapsulate ESP-in-UDP arriving on ``sock`` (RFC 3948)."""
    try:
        sock.setsockopt(SOL_UDP, UDP_ENCAP, UDP_ENCAP_ESPINUDP)
    except OSError as exc:
        raise XfrmError(
            f"cannot set UDP_ENCAP_ESPINUDP on {_describe(sock)}: {exc.strerror}", exc.errno or 0
        ) from None


def bypass_ipsec(sock: socket.socket) -> None:
    """Install allow-all inbound and outbound socket policies on ``sock``."""
    if sock.family == socket.AF_INET:
        level, option = socket.IPPROTO_IP, IP_XFRM_POLICY
    elif sock.family == socket.AF_INET6:
        level, option = socket.IPPROTO_IPV6, IPV6_XFRM_POLICY
    else:
        raise XfrmError(f"IPsec bypass needs an IP socket, not {_describe(sock)}")
    for direction in ("out", "in"):
        try:
            sock.setsockopt(level, option, userpolicy_info_bytes(direction, int(sock.family)))
        except OSError as exc:
            raise XfrmError(
                f"cannot set the {direction}bound IPsec bypass policy on {_describe(sock)}: "
                f"{exc.strerror} (the kernel needs CONFIG_XFRM_USER, module xfrm_user)",
                exc.errno or 0,
            ) from None


def prepare_ike_socket(sock: socket.socket, *, nat_t: bool) -> None:
    """Bypass IPsec on an IKE socket; on the NAT-T (port 4500) one also hand ESP-in-UDP to
    the kernel."""
    bypass_ipsec(sock)
    if nat_t:
        enable_espinudp(sock)


def _describe(sock: socket.socket) -> str:
    try:
        host, port = sock.getsockname()[:2]
        return f"socket {host}:{port}"
    except OSError:
        return "an unbound socket"
