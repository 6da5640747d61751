"""TUN devices for the userspace datapath: open, address, bring up, remove.

The packet file descriptor comes from ``/dev/net/tun`` with ``TUNSETIFF`` (pyroute2 can
create TUN links but hands back no packet fd); addressing, MTU and link state go through
pyroute2's netlink. Each device is point-to-point, carries bare IP packets
(``IFF_NO_PI``) and may be multi-queue (one fd per queue, each opened with the same name).

Errors: `TunError` (a `DataplaneError`) naming the device and the OS reason.
"""

from __future__ import annotations

import errno
import fcntl
import os
import struct
from ipaddress import IPv4Address, IPv4Interface

from pyroute2 import IPRoute

from cgwd.dataplane.base import IFNAMSIZ, DataplaneError

TUN_PATH = "/dev/net/tun"
# <linux/if_tun.h>
TUNSETIFF = 0x400454CA
IFF_TUN = 0x0001
IFF_NO_PI = 0x1000
IFF_MULTI_QUEUE = 0x0100
IFF_VNET_HDR = 0x4000  # every packet is preceded by a struct virtio_net_hdr (10 octets)
_IFREQ = struct.Struct("16sH22x")  # struct ifreq: ifr_name[IFNAMSIZ], ifr_flags, union padding
# Packets the kernel queues for our reader. TUN has no backpressure (its transmit orphans
# each packet, so TCP Small Queues never hold a sender back): a full ring drops, and TCP
# takes the drops for congestion. At full speed the default of 500 dropped about 3 % of a
# bulk flow's segments (bench/README.md); 1000, the Ethernet default, mostly avoids that
# while queueing at most about 10 ms at 100k packets/s.
TUN_TX_QUEUE_LEN = 1000


class TunError(DataplaneError):
    """The TUN device could not be created or configured."""


def open_tun(name: str, *, multi_queue: bool = False, vnet_hdr: bool = False) -> int:
    """Open (creating if needed) TUN device ``name`` and return a non-blocking packet fd.

    With ``multi_queue`` every call attaches one more queue to the same device; each fd is
    then one queue, and the kernel spreads flows across them. With ``vnet_hdr`` every read
    and write starts with a ``struct virtio_net_hdr``, which lets writes carry GSO packets.

    Raises:
        TunError: bad name, no /dev/net/tun, or the kernel refused (e.g. name taken by a
            device of another type, or multi-queue mismatch).
    """
    if not name or len(name) > IFNAMSIZ:
        raise TunError(f"invalid TUN device name {name!r}")
    flags = IFF_TUN | IFF_NO_PI
    flags |= (IFF_MULTI_QUEUE if multi_queue else 0) | (IFF_VNET_HDR if vnet_hdr else 0)
    try:
        fd = os.open(TUN_PATH, os.O_RDWR | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as exc:
        raise TunError(f"cannot open {TUN_PATH}: {exc.strerror}") from None
    try:
        fcntl.ioctl(fd, TUNSETIFF, _IFREQ.pack(name.encode(), flags))
    except OSError as exc:
        os.close(fd)
        raise TunError(f"TUNSETIFF {name}: {exc.strerror}") from None
    return fd


def configure_tun(
    name: str, local_inside: IPv4Interface, remote_inside: IPv4Address, mtu: int
) -> int:
    """Give ``name`` its point-to-point address (``local peer remote/len``), MTU, transmit
    queue length (`TUN_TX_QUEUE_LEN`), and up.

    Idempotent for the address (an existing identical address is kept). Returns the
    interface index.

    Raises:
        TunError: the device does not exist or netlink refused.
    """
    try:
        with IPRoute() as ipr:
            links = ipr.link_lookup(ifname=name)
            if not links:
                raise TunError(f"TUN device {name} does not exist")
            index = int(links[0])
            ipr.link("set", index=index, mtu=mtu, txqlen=TUN_TX_QUEUE_LEN)
            try:
                ipr.addr(
                    "add",
                    index=index,
                    local=str(local_inside.ip),
                    address=str(remote_inside),
                    prefixlen=local_inside.network.prefixlen,
                )
            except OSError as exc:  # pyroute2's NetlinkError is an OSError
                if exc.errno != errno.EEXIST:
                    raise
            ipr.link("set", index=index, state="up")
            return index
    except TunError:
        raise
    except OSError as exc:
        raise TunError(f"configuring {name}: {exc}") from None


def remove_link(name: str) -> None:
    """Delete interface ``name`` if it still exists (closing all fds also removes a TUN)."""
    try:
        with IPRoute() as ipr:
            links = ipr.link_lookup(ifname=name)
            if links:
                ipr.link("del", index=links[0])
    except OSError as exc:
        if exc.errno not in (errno.ENODEV, errno.ENOENT):
            raise TunError(f"removing {name}: {exc}") from None
