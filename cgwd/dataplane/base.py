"""The seam between the IKE layer / daemon and whatever moves ESP packets.

A `Dataplane` owns one route-based tunnel interface per `TunnelSpec` (a TUN device for the
userspace implementation, a VTI/xfrm interface for the kernel one) and the ESP SAs of each
tunnel. Callers name things with identity records (`SaId`) and pass settings as parameter
records (`SaParams`), like strongSwan's kernel interface; the implementations share one
conformance suite (tests/conformance/).

Semantics every implementation keeps:

- Inbound SAs of a tunnel coexist: a new one is accepted while the old one still decrypts
  (make-before-break rekeying); the caller removes the old one once it is done with it.
- Exactly one outbound SA per tunnel is *current*. `add_sa` of an outbound SA makes it the
  current one atomically, so no packet is lost or sent with a half-installed SA; the previous
  one stays installed (unused) until `remove_sa`. Removing the current outbound SA makes the
  most recently added remaining outbound SA current (or none: traffic is then dropped and
  counted as ``no_sa`` on the tunnel).
- Inner addresses are not filtered: AWS negotiates 0.0.0.0/0 selectors and the tunnel is
  route-based, so whatever is routed into the interface goes out through the current SA and
  whatever an inbound SA decrypts comes out of the interface.

Errors: every method raises only `DataplaneError` subclasses for caller mistakes (unknown
tunnel or SA, duplicates) or OS refusals, with messages that never contain key material.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Interface
from typing import Literal, Protocol

from cgwd.errors import CgwdError
from cgwd.esp.sa import SaCounters
from cgwd.esp.suites import EspSuite
from cgwd.secret import Secret

IFNAMSIZ = 15  # usable characters of a Linux interface name (IFNAMSIZ - 1)
MIN_SPI = 256  # RFC 4303 §2.1: SPIs 1-255 are reserved by IANA, 0 is local-only
MAX_SPI = 0xFFFFFFFF
NAT_T_PORT = 4500  # RFC 3948 §1.1
SPI_RESERVATION_TTL = 600.0
"""Seconds an allocated inbound SPI stays reserved if no SA is installed with it (the
exchange that asked for it failed); IKE installs its SAs within seconds."""

Direction = Literal["in", "out"]

IkeReceiver = Callable[[bytes, tuple[str, int], tuple[str, int]], None]
"""``callback(datagram, (remote_ip, remote_port), (local_ip, local_port))``.

Called (on the event loop thread) for every IKE datagram that reaches a dataplane-owned UDP
socket. ``datagram`` is the UDP payload exactly as received, *including* the four-byte
non-ESP marker (RFC 3948 §2.2), so the IKE host treats it like a datagram from its own
port-4500 socket. NAT keepalives and ESP never reach the callback.
"""


class DataplaneError(CgwdError):
    """A dataplane operation failed; the message names the tunnel/SA, never a key."""


class UnknownTunnelError(DataplaneError):
    """The named tunnel is not open on this dataplane."""


class TunnelExistsError(DataplaneError):
    """`open_tunnel` for a name that is already open."""


class UnknownSaError(DataplaneError):
    """No SA with this identity is installed."""


class SaExistsError(DataplaneError):
    """An SA with this identity (tunnel, direction, SPI) is already installed."""


@dataclass(frozen=True)
class TunnelSpec:
    """One route-based tunnel: its interface and the outside endpoints of its ESP traffic."""

    name: str
    """Interface name (at most 15 characters), chosen by the daemon."""
    local_inside: IPv4Interface
    """Our inside address with its prefix, e.g. ``169.254.141.38/30``."""
    remote_inside: IPv4Address
    """The peer's inside address, e.g. ``169.254.141.37`` (AWS's end of the /30)."""
    mtu: int
    """MTU of the tunnel interface (inner packets)."""
    local_outside: IPv4Address
    """Our IKE/ESP source address."""
    remote_outside: IPv4Address
    """The peer's (AWS's) outside address."""

    def __post_init__(self) -> None:
        if not self.name or len(self.name) > IFNAMSIZ or "/" in self.name or " " in self.name:
            raise DataplaneError(f"invalid interface name {self.name!r} (1-{IFNAMSIZ} characters)")
        if not 576 <= self.mtu <= 9000:
            raise DataplaneError(f"tunnel {self.name}: MTU {self.mtu} outside 576..9000")


@dataclass(frozen=True)
class UdpEncap:
    """ESP-in-UDP (RFC 3948) ports; both are 4500 unless a NAT rewrote the peer's."""

    local_port: int = NAT_T_PORT
    remote_port: int = NAT_T_PORT


@dataclass(frozen=True)
class SaId:
    """Identity of one ESP SA: the tunnel it belongs to, its direction and its SPI."""

    tunnel: str
    direction: Direction
    spi: int

    def __str__(self) -> str:
        return f"{self.tunnel}/{self.direction}/0x{self.spi:08x}"


@dataclass(frozen=True)
class SaParams:
    """Everything needed to install an SA besides its identity.

    ``keymat`` is this direction's key material as RFC 7296 §2.17 derives it: the encryption
    key (with the 4-byte salt for GCM, RFC 4106 §8.1) followed by the integrity key.
    """

    suite: EspSuite
    keymat: Secret
    esn: bool = False
    replay_window: int = 1024
    encap: UdpEncap | None = None
    """None: raw ESP (IP protocol 50); else ESP-in-UDP with these ports."""

    def __post_init__(self) -> None:
        if len(self.keymat) != self.suite.keymat_bytes:
            raise DataplaneError(
                f"suite {self.suite.name} needs {self.suite.keymat_bytes} bytes of key "
                f"material, got {len(self.keymat)}"
            )
        if not 0 <= self.replay_window <= 2048:
            raise DataplaneError(f"replay window {self.replay_window} outside 0..2048")


class Dataplane(Protocol):
    """What the IKE host and the daemon need from a datapath.

    Control methods are async (they may talk netlink or wait for worker threads); the
    packet path itself may run on threads of the implementation's choosing.
    """

    kind: str
    """``"userspace"``, ``"kernel"`` or ``"fake"``."""

    needs_ike_socket_bypass: bool
    """True if the IKE host must prepare its UDP sockets with
    `cgwd.net.xfrm.ike_socket.prepare_ike_socket`: the kernel does ESP, so IKE needs
    per-socket IPsec bypass policies (or a tunnel's 0/0 policies would catch it) and the
    port-4500 socket needs UDP_ENCAP_ESPINUDP (or ESP-in-UDP never reaches the kernel)."""

    async def open_tunnel(self, spec: TunnelSpec) -> None:
        """Create the tunnel interface, address it (/30 with peer), set its MTU, bring it up.

        Raises:
            TunnelExistsError: ``spec.name`` is already open here.
            DataplaneError: the OS refused (message says what).
        """
        ...

    async def close_tunnel(self, name: str) -> None:
        """Remove the interface and every SA of the tunnel.

        Raises:
            UnknownTunnelError: no such tunnel.
        """
        ...

    def allocate_spi(self, tunnel: str) -> int:
        """A fresh inbound SPI (>= 256) unused by any inbound SA of this dataplane.

        The SPI stays reserved for this tunnel until an inbound SA with it is added and
        removed, or the tunnel closes; one never installed is released after
        `SPI_RESERVATION_TTL` seconds, so failed exchanges do not leak reservations.

        Raises:
            UnknownTunnelError: no such tunnel.
        """
        ...

    def release_spi(self, tunnel: str, spi: int) -> None:
        """Give back an SPI from `allocate_spi` that no SA will use (the exchange failed).

        A no-op if ``spi`` is not reserved for ``tunnel`` (installed, released already, or
        expired after `SPI_RESERVATION_TTL`).

        Raises:
            UnknownTunnelError: no such tunnel.
        """
        ...

    async def add_sa(self, sa: SaId, params: SaParams) -> None:
        """Install an SA (see the module docstring for in/out semantics).

        Raises:
            UnknownTunnelError, SaExistsError, DataplaneError.
        """
        ...

    async def remove_sa(self, sa: SaId) -> None:
        """Uninstall an SA; its counters are gone afterwards.

        Raises:
            UnknownTunnelError, UnknownSaError.
        """
        ...

    def sa_counters(self, sa: SaId) -> SaCounters:
        """A snapshot of the SA's counters (inner bytes/packets, drops by reason, last use).

        Raises:
            UnknownTunnelError, UnknownSaError.
        """
        ...

    def current_outbound(self, tunnel: str) -> SaId | None:
        """The outbound SA the tunnel's traffic uses now (None: traffic is dropped).

        Raises:
            UnknownTunnelError: no such tunnel.
        """
        ...

    def set_ike_receiver(self, callback: IkeReceiver | None) -> None:
        """Where IKE datagrams arriving on dataplane-owned sockets go (see `IkeReceiver`)."""
        ...

    async def close(self) -> None:
        """Close every tunnel and stop all workers. Idempotent; never raises."""
        ...
