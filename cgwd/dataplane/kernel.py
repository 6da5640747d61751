"""The kernel datapath: cgwd negotiates, the kernel's XFRM does ESP.

Per tunnel, route-based (aws-behaviour §1): one tunnel interface, and 0.0.0.0/0 ``out``,
``in`` and ``fwd`` policies bound to it, so each tunnel's policies only see what is routed
into (or arrives through) its own interface and two tunnels with 0/0 selectors coexist.

- xfrm interface (``ip link add NAME type xfrm if_id N``) where the kernel has them: SAs and
  policies carry ``XFRMA_IF_ID = N``.
- Otherwise a VTI (``type vti local L remote R key N``): SAs and policies carry the mark
  ``N/0xffffffff`` which the VTI puts on the packets it handles; ``disable_policy`` on the
  VTI so decrypted packets are forwarded without a second policy check. A VTI is keyed by
  its outside endpoints, so two tunnels need different endpoint pairs (AWS's two tunnels
  always have different outside addresses).

Which kind exists is found out once, by creating a throwaway interface; when neither does,
`KernelFeatureError` names the missing kernel options.

Ownership: every if_id and mark cgwd uses is ``OWNED_BASE | n`` (n = 1..0xffff), and every
interface cgwd creates carries such a key. `KernelDataplane.cleanup_stale` removes SAs,
policies and interfaces in that range that a crashed run left behind; nothing outside it is
ever touched (no global flush).

SAs: inbound SPIs come from the kernel (XFRM_MSG_ALLOCSPI, which holds the SPI in a larval
SA until the real one replaces it with UPDSA). A new outbound SA takes over the tunnel's
traffic when it is installed: for one policy template the kernel uses the newest valid SA
and invalidates the cached bundles of the older ones. So rekeying is make-before-break:
add the new inbound SA, add the new outbound SA, remove the old ones.

Errors: netlink refusals become `DataplaneError`s that name the tunnel, the object and, for
a missing kernel feature, the kernel option (EPROTONOSUPPORT -> no ESP, ...).
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import os
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Any, Literal, TypeVar

from pyroute2 import IPRoute
from pyroute2.netlink.exceptions import NetlinkError

from cgwd.dataplane.base import (
    MAX_SPI,
    MIN_SPI,
    DataplaneError,
    IkeReceiver,
    SaExistsError,
    SaId,
    SaParams,
    TunnelExistsError,
    TunnelSpec,
    UnknownSaError,
    UnknownTunnelError,
)
from cgwd.esp.sa import DropReason, SaCounters
from cgwd.net.base import RP_FILTER_LOOSE, NetOpsError
from cgwd.net.pyroute import PyrouteNetOps
from cgwd.net.sysctl import interface_key, write_sysctl
from cgwd.net.xfrm import messages as m
from cgwd.net.xfrm.socket import XfrmError, XfrmSocket

log = logging.getLogger(__name__)

T = TypeVar("T")
InterfaceKind = Literal["xfrm", "vti"]

OWNED_BASE = 0x63670000  # "cg" in the high half: the if_ids and marks cgwd owns
OWNED_MASK = 0xFFFF0000
MAX_TUNNELS = 0xFFFF
# One fixed priority: each tunnel's policies only match packets carrying its own mark or
# if_id, so they never compete with each other or with policies outside cgwd's range.
POLICY_PRIORITY = 0x2000
PROBE_PREFIX = "cgwdprobe"


class KernelFeatureError(DataplaneError):
    """The kernel lacks something the kernel dataplane needs (the message names it)."""


def owned(value: int | None) -> bool:
    """Whether an if_id or mark value is in cgwd's range."""
    return value is not None and value & OWNED_MASK == OWNED_BASE and value != OWNED_BASE


def explain(exc: XfrmError | OSError, what: str, *, adding: bool = False) -> DataplaneError:
    """A `DataplaneError` for a netlink refusal, naming the kernel feature where one is
    missing. ``adding``: the request created something (an SA), where ENOENT means the
    kernel could not find a crypto transform rather than a missing object."""
    code = exc.errno or 0
    text = str(getattr(exc, "kernel_message", "") or getattr(exc, "strerror", "") or "")
    if code == errno.EPROTONOSUPPORT:
        return KernelFeatureError(f"{what}: the kernel has no ESP (CONFIG_INET_ESP, module esp4)")
    if (code == errno.ENOSYS and "algorithm" in text.lower()) or (adding and code == errno.ENOENT):
        return KernelFeatureError(
            f"{what}: {text or os.strerror(code)} (the kernel crypto API lacks a transform: "
            "CONFIG_CRYPTO_GCM, CONFIG_CRYPTO_CBC, CONFIG_CRYPTO_AUTHENC and, for ESN with "
            "CBC+HMAC, authencesn; modules aes, gcm, cbc, hmac, sha1/sha256/sha512)"
        )
    if code == errno.EEXIST:
        return SaExistsError(f"{what}: already exists in the kernel")
    if code in (errno.ENOENT, errno.ESRCH):
        return UnknownSaError(f"{what}: not found in the kernel")
    detail = text or (exc.strerror if isinstance(exc, OSError) else "") or str(exc)
    return DataplaneError(f"{what}: {detail}")


@dataclass
class _Tunnel:
    spec: TunnelSpec
    key: int  # if_id (xfrm interface) or mark/VTI key
    kind: InterfaceKind
    sas: dict[SaId, SaParams] = field(default_factory=dict)
    outbound_order: list[SaId] = field(default_factory=list)  # last = current
    reserved_spis: set[int] = field(default_factory=set)  # larval SAs from ALLOCSPI

    @property
    def mark(self) -> m.Mark | None:
        return m.Mark(self.key) if self.kind == "vti" else None

    @property
    def if_id(self) -> int | None:
        return self.key if self.kind == "xfrm" else None


def _link_kind_and_key(link: Any) -> tuple[str | None, int | None]:
    """(kind, if_id/ikey) of an rtnetlink link message, for xfrm and vti links."""
    info = link.get_attr("IFLA_LINKINFO")
    if info is None:
        return None, None
    kind = info.get_attr("IFLA_INFO_KIND")
    data = info.get_attr("IFLA_INFO_DATA")
    if data is None:
        return kind, None
    if kind == "xfrm":
        return kind, data.get_attr("IFLA_XFRM_IF_ID")
    if kind == "vti":
        key = data.get_attr("IFLA_VTI_IKEY")
        return kind, None if key is None else int(key)
    return kind, None


class KernelDataplane:
    """`Dataplane` over the kernel's XFRM (see the module docstring).

    Works in the network namespace of the thread that first uses it (its sockets are
    opened there). Args:
        interface_kind: force "xfrm" or "vti" instead of detecting.
        clock: monotonic clock, to express the kernel's last-use time as ``last_used``.
    """

    kind = "kernel"
    needs_ike_socket_bypass = True  # see Dataplane.needs_ike_socket_bypass

    def __init__(
        self,
        *,
        interface_kind: InterfaceKind | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._forced_kind = interface_kind
        self._interface_kind: InterfaceKind | None = None
        self._tunnels: dict[str, _Tunnel] = {}
        self._spi_owner: dict[int, str] = {}
        self._xfrm: XfrmSocket | None = None
        self._netops: PyrouteNetOps | None = None
        self._clock = clock
        self._ike_receiver: IkeReceiver | None = None
        self._started = False

    # -- start-up -------------------------------------------------------------------

    async def start(self) -> list[str]:
        """Detect the interface kind and remove stale cgwd state; idempotent.

        Returns descriptions of what was cleaned up.

        Raises:
            KernelFeatureError: no XFRM netlink, or neither xfrm interfaces nor VTIs.
        """
        if self._started:
            return []
        try:
            self._xfrm = XfrmSocket()
        except XfrmError as exc:
            raise KernelFeatureError(str(exc)) from None
        self._interface_kind = self._forced_kind or await asyncio.to_thread(detect_interface_kind)
        try:
            self._netops = PyrouteNetOps()
        except NetOpsError as exc:
            raise DataplaneError(str(exc)) from None
        cleaned = await self.cleanup_stale()
        self._started = True
        for line in cleaned:
            log.info("removed leftover from an earlier run: %s", line)
        return cleaned

    @property
    def interface_kind(self) -> InterfaceKind | None:
        """ "xfrm" or "vti" once started."""
        return self._interface_kind

    def _sock(self) -> XfrmSocket:
        if self._xfrm is None:
            raise DataplaneError("the kernel dataplane is closed")
        return self._xfrm

    async def cleanup_stale(self) -> list[str]:
        """Remove SAs, policies and tunnel interfaces in cgwd's if_id/mark range that no
        tunnel of this object owns."""
        sock = self._sock()
        mine = {t.key for t in self._tunnels.values()}
        removed: list[str] = []

        def is_stale(mark: m.Mark | None, if_id: int | None) -> bool:
            keys = {k for k in (if_id, mark.value if mark else None) if owned(k)}
            return bool(keys) and not keys & mine

        try:
            for msg in sock.request(lambda s: m.encode_dump(m.XFRM_MSG_GETSA, s), "listing SAs"):
                sa = m.decode_sa(msg)
                if is_stale(sa.mark, sa.if_id):
                    with contextlib.suppress(XfrmError):
                        sock.request(
                            partial(m.encode_delsa, sa.src, sa.dst, sa.spi, mark=sa.mark),
                            "removing a stale SA",
                        )
                    removed.append(f"SA {sa.src}->{sa.dst} spi 0x{sa.spi:08x}")
            for msg in sock.request(
                lambda s: m.encode_dump(m.XFRM_MSG_GETPOLICY, s), "listing policies"
            ):
                pol = m.decode_policy(msg)
                if is_stale(pol.mark, pol.if_id):
                    with contextlib.suppress(XfrmError):
                        sock.request(
                            partial(
                                m.encode_delpolicy,
                                pol.selector,
                                pol.direction,
                                mark=pol.mark,
                                if_id=pol.if_id,
                            ),
                            "removing a stale policy",
                        )
                    removed.append(f"policy {pol.direction} {pol.selector.dst}")
        except (XfrmError, m.XfrmDecodeError) as exc:
            raise DataplaneError(f"cleaning up stale XFRM state: {exc}") from None
        names = {t.spec.name for t in self._tunnels.values()}
        removed += await asyncio.to_thread(_remove_stale_links, names)
        return removed

    # -- Dataplane: tunnels ---------------------------------------------------------

    async def open_tunnel(self, spec: TunnelSpec) -> None:
        if spec.name in self._tunnels:
            raise TunnelExistsError(f"tunnel {spec.name} is already open")
        await self.start()
        assert self._interface_kind is not None and self._netops is not None
        kind = self._interface_kind
        if kind == "vti":
            for other in self._tunnels.values():
                if (other.spec.local_outside, other.spec.remote_outside) == (
                    spec.local_outside,
                    spec.remote_outside,
                ):
                    raise DataplaneError(
                        f"tunnel {spec.name}: tunnel {other.spec.name} already uses "
                        f"{spec.local_outside} -> {spec.remote_outside}; a VTI needs its own "
                        "pair of outside addresses (xfrm interfaces do not)"
                    )
        used = {t.key for t in self._tunnels.values()}
        free = (OWNED_BASE | n for n in range(1, MAX_TUNNELS + 1) if OWNED_BASE | n not in used)
        key = next(free, None)
        if key is None:
            raise DataplaneError(f"tunnel {spec.name}: {MAX_TUNNELS} tunnels are open already")
        t = _Tunnel(spec, key, kind)
        await asyncio.to_thread(_create_link, spec, kind, key)
        self._tunnels[spec.name] = t
        try:
            await asyncio.to_thread(self._configure_link, t)
            self._install_policies(t)
        except BaseException:
            await self._teardown(t)
            del self._tunnels[spec.name]
            raise
        log.info(
            "tunnel %s: %s interface %s peer %s, %s 0x%08x",
            spec.name,
            kind,
            spec.local_inside,
            spec.remote_inside,
            "if_id" if kind == "xfrm" else "key/mark",
            key,
        )

    def _configure_link(self, t: _Tunnel) -> None:
        netops = self._netops
        assert netops is not None
        name = t.spec.name
        with contextlib.suppress(OSError, NetOpsError):
            write_sysctl(("net", "ipv6", "conf", name, "disable_ipv6"), "1")
        try:
            if t.kind == "vti":
                # Decrypted packets arriving on the VTI are forwarded without a fwd policy
                # check of their own (the VTI already matched them to the SA).
                write_sysctl(interface_key(name, "disable_policy"), "1")
            netops.set_mtu(name, t.spec.mtu)
            netops.set_address(name, t.spec.local_inside, t.spec.remote_inside)
            netops.set_rp_filter(name, RP_FILTER_LOOSE)
            netops.set_link_up(name, True)
        except NetOpsError as exc:
            raise DataplaneError(f"tunnel {name}: {exc}") from None

    def _policies(self, t: _Tunnel) -> list[m.PolicySpec]:
        local, remote = t.spec.local_outside, t.spec.remote_outside
        out_tmpl = m.PolicyTemplate(local, remote, reqid=t.key)
        in_tmpl = m.PolicyTemplate(remote, local, reqid=t.key)
        return [
            m.PolicySpec(
                m.Selector.any4(),
                direction,
                priority=POLICY_PRIORITY,
                template=out_tmpl if direction == "out" else in_tmpl,
                mark=t.mark,
                if_id=t.if_id,
            )
            for direction in ("out", "in", "fwd")
        ]

    def _install_policies(self, t: _Tunnel) -> None:
        for pol in self._policies(t):
            what = f"tunnel {t.spec.name}: installing the 0/0 {pol.direction} policy"
            try:
                self._sock().request(partial(m.encode_newpolicy, pol, update=True), what)
            except XfrmError as exc:
                raise explain(exc, what) from None

    async def _teardown(self, t: _Tunnel) -> list[DataplaneError]:
        """Remove everything of ``t`` from the kernel; collect errors instead of stopping."""
        errors: list[DataplaneError] = []
        for sa in list(t.sas):
            try:
                self._delete_sa(t, sa)
            except UnknownSaError:
                pass  # already gone from the kernel
            except DataplaneError as exc:
                errors.append(exc)
        for spi in list(t.reserved_spis):
            with contextlib.suppress(DataplaneError):
                self._delete_sa(t, SaId(t.spec.name, "in", spi))
        for pol in self._policies(t):
            what = f"tunnel {t.spec.name}: removing the {pol.direction} policy"
            try:
                self._sock().request(
                    partial(
                        m.encode_delpolicy,
                        pol.selector,
                        pol.direction,
                        mark=pol.mark,
                        if_id=pol.if_id,
                    ),
                    what,
                )
            except XfrmError as exc:
                if exc.errno not in (errno.ENOENT, errno.ESRCH):
                    errors.append(explain(exc, what))
        try:
            await asyncio.to_thread(_delete_link, t.spec.name)
        except DataplaneError as exc:
            errors.append(exc)
        return errors

    async def close_tunnel(self, name: str) -> None:
        t = self._tunnel(name)
        errors = await self._teardown(t)
        del self._tunnels[name]
        for spi in [s for s, owner in self._spi_owner.items() if owner == name]:
            del self._spi_owner[spi]
        log.info("tunnel %s: closed", name)
        if errors:
            raise errors[0]

    async def close(self) -> None:
        for name in list(self._tunnels):
            with contextlib.suppress(Exception):
                await self.close_tunnel(name)
        self._tunnels.clear()
        if self._netops is not None:
            self._netops.close()
            self._netops = None
        if self._xfrm is not None:
            self._xfrm.close()
            self._xfrm = None
        self._started = False

    # -- Dataplane: SAs -------------------------------------------------------------

    def allocate_spi(self, tunnel: str) -> int:
        t = self._tunnel(tunnel)
        what = f"tunnel {tunnel}: allocating an inbound SPI"
        for _ in range(16):
            try:
                answer = self._sock().request(
                    lambda s: m.encode_allocspi(
                        t.spec.remote_outside,
                        t.spec.local_outside,
                        s,
                        spi_min=MIN_SPI,
                        spi_max=MAX_SPI,
                        reqid=t.key,
                        mark=t.mark,
                        if_id=t.if_id,
                    ),
                    what,
                )
                spi = m.decode_sa(answer[0]).spi if answer else 0
            except (XfrmError, m.XfrmDecodeError) as exc:
                if isinstance(exc, XfrmError):
                    raise explain(exc, what) from None
                raise DataplaneError(f"{what}: {exc}") from None
            if spi < MIN_SPI:
                raise DataplaneError(f"{what}: the kernel returned SPI {spi}")
            if spi in self._spi_owner:
                # Unique for this mark in the kernel, but another tunnel (another mark)
                # holds it: ESP demultiplexes on the SPI, so pick again.
                with contextlib.suppress(XfrmError):
                    self._sock().request(
                        partial(
                            m.encode_delsa,
                            t.spec.remote_outside,
                            t.spec.local_outside,
                            spi,
                            mark=t.mark,
                        ),
                        what,
                    )
                continue
            self._spi_owner[spi] = tunnel
            t.reserved_spis.add(spi)
            return spi
        raise DataplaneError(f"{what}: no free SPI after 16 attempts")

    def release_spi(self, tunnel: str, spi: int) -> None:
        t = self._tunnel(tunnel)
        if spi not in t.reserved_spis:
            return
        t.reserved_spis.discard(spi)
        self._spi_owner.pop(spi, None)
        # The larval SA of ALLOCSPI; it may have expired already (30 s), which is fine.
        with contextlib.suppress(DataplaneError):
            self._delete_sa(t, SaId(tunnel, "in", spi))

    def _sa_spec(self, t: _Tunnel, sa: SaId, params: SaParams) -> m.SaSpec:
        inbound = sa.direction == "in"
        local, remote = t.spec.local_outside, t.spec.remote_outside
        encap = None
        if params.encap is not None:
            ports = (params.encap.local_port, params.encap.remote_port)
            sport, dport = (ports[1], ports[0]) if inbound else ports
            encap = m.UdpEncapsulation(sport, dport)
        return m.SaSpec(
            src=remote if inbound else local,
            dst=local if inbound else remote,
            spi=sa.spi,
            suite=params.suite,
            keymat=params.keymat,
            reqid=t.key,
            # The window only matters inbound; outbound SAs still need the ESN replay
            # state when ESN is on (the kernel keeps the high sequence bits there).
            replay_window=params.replay_window if inbound else (32 if params.esn else 0),
            esn=params.esn,
            encap=encap,
            mark=t.mark,
            if_id=t.if_id,
        )

    async def add_sa(self, sa: SaId, params: SaParams) -> None:
        t = self._tunnel(sa.tunnel)
        if sa in t.sas:
            raise SaExistsError(f"SA {sa} is already installed")
        if sa.direction == "in":
            owner = self._spi_owner.get(sa.spi)
            if owner is not None and owner != sa.tunnel:
                raise SaExistsError(f"inbound SPI 0x{sa.spi:08x} is in use by tunnel {owner}")
        try:
            spec = self._sa_spec(t, sa, params)
        except ValueError as exc:
            raise DataplaneError(f"SA {sa}: {exc}") from None
        what = f"installing SA {sa} ({params.suite.name})"
        larval = sa.direction == "in" and sa.spi in t.reserved_spis
        try:
            if larval:
                try:
                    self._sock().request(lambda s: m.encode_newsa(spec, s, update=True), what)
                except XfrmError as exc:
                    if exc.errno != errno.ESRCH:  # ESRCH: the larval SA expired (30 s)
                        raise
                    self._sock().request(lambda s: m.encode_newsa(spec, s), what)
            else:
                self._sock().request(lambda s: m.encode_newsa(spec, s), what)
        except XfrmError as exc:
            raise explain(exc, what, adding=True) from None
        t.sas[sa] = params
        if sa.direction == "in":
            self._spi_owner[sa.spi] = sa.tunnel
            t.reserved_spis.discard(sa.spi)
        else:
            t.outbound_order.append(sa)
        log.info("SA %s installed in the kernel (%s)", sa, params.suite.name)

    def _delete_sa(self, t: _Tunnel, sa: SaId) -> None:
        inbound = sa.direction == "in"
        local, remote = t.spec.local_outside, t.spec.remote_outside
        src, dst = (remote, local) if inbound else (local, remote)
        what = f"removing SA {sa}"
        try:
            self._sock().request(lambda s: m.encode_delsa(src, dst, sa.spi, s, mark=t.mark), what)
        except XfrmError as exc:
            raise explain(exc, what) from None

    async def remove_sa(self, sa: SaId) -> None:
        t = self._tunnel(sa.tunnel)
        if sa not in t.sas:
            raise UnknownSaError(f"no SA {sa}")
        try:
            self._delete_sa(t, sa)
        except UnknownSaError:
            # The kernel dropped it already (a hard lifetime, or someone's `ip xfrm`):
            # the caller's intent is met.
            log.info("SA %s was already gone from the kernel", sa)
        finally:
            # Gone from the kernel (or already gone, e.g. a hard expiry): forget it.
            del t.sas[sa]
            if sa.direction == "out":
                t.outbound_order.remove(sa)
            else:
                self._spi_owner.pop(sa.spi, None)
        log.info("SA %s removed from the kernel", sa)

    def sa_info(self, sa: SaId) -> m.SaInfo:
        """The kernel's view of an installed SA (algorithms, counters, lifetimes)."""
        t = self._tunnel(sa.tunnel)
        if sa not in t.sas:
            raise UnknownSaError(f"no SA {sa}")
        local, remote = t.spec.local_outside, t.spec.remote_outside
        src, dst = (remote, local) if sa.direction == "in" else (local, remote)
        what = f"reading SA {sa}"
        try:
            answer = self._sock().request(
                lambda s: m.encode_getsa(src, dst, sa.spi, s, mark=t.mark), what
            )
            if not answer:
                raise UnknownSaError(f"{what}: no answer")
            return m.decode_sa(answer[0])
        except XfrmError as exc:
            raise explain(exc, what) from None
        except m.XfrmDecodeError as exc:
            raise DataplaneError(f"{what}: {exc}") from None

    def sa_counters(self, sa: SaId) -> SaCounters:
        info = self.sa_info(sa)
        drops: dict[DropReason, int] = {}
        if info.replay_drops:
            drops[DropReason.REPLAY] = info.replay_drops
        if info.integrity_failures:
            drops[DropReason.AUTH_FAILED] = info.integrity_failures
        last_used = None
        # XFRMA_LASTUSED, not curlft.use_time (the first packet's time). Older kernels
        # (Debian 12's 6.1 among them) do not set it for ESP: the last use is then
        # unknown (None), and the IKE host probes the peer's liveness on its DPD timer
        # whatever the traffic, as on an idle tunnel.
        if info.last_used:
            # The kernel keeps wall-clock seconds; express them on our monotonic clock.
            last_used = self._clock() - max(0.0, time.time() - info.last_used)
        return SaCounters(packets=info.packets, bytes=info.bytes, drops=drops, last_used=last_used)

    def current_outbound(self, tunnel: str) -> SaId | None:
        order = self._tunnel(tunnel).outbound_order
        return order[-1] if order else None

    def set_ike_receiver(self, callback: IkeReceiver | None) -> None:
        # The kernel hands IKE on port 4500 to the IKE host's own socket (UDP_ENCAP is
        # set there, see cgwd.net.xfrm.ike_socket): no dataplane socket ever sees IKE.
        self._ike_receiver = callback

    @property
    def tunnel_names(self) -> list[str]:
        """The open tunnels."""
        return list(self._tunnels)

    def tunnel_key(self, tunnel: str) -> int:
        """The tunnel's if_id (xfrm interface) or mark (VTI)."""
        return self._tunnel(tunnel).key

    def _tunnel(self, name: str) -> _Tunnel:
        try:
            return self._tunnels[name]
        except KeyError:
            raise UnknownTunnelError(f"no tunnel {name}") from None


# -- links (blocking; run in a worker thread: pyroute2's sync API runs its own loop) ------


def _error_code_text(exc: OSError | NetlinkError) -> tuple[int, str]:
    if isinstance(exc, NetlinkError):
        code = int(exc.code)
        text = str(exc.args[1]) if len(exc.args) > 1 and exc.args[1] else os.strerror(code)
        return code, text
    return exc.errno or 0, exc.strerror or str(exc)


def _ipr_call(what: str, func: Callable[[IPRoute], T]) -> T:
    try:
        with IPRoute() as ipr:
            return func(ipr)
    except DataplaneError:
        raise
    except (OSError, NetlinkError) as exc:
        code, text = _error_code_text(exc)
        if code == errno.EOPNOTSUPP:
            raise KernelFeatureError(f"{what}: {text}") from None
        if code == errno.EEXIST:
            raise DataplaneError(f"{what}: an interface of that name already exists") from None
        raise DataplaneError(f"{what}: {text}") from None


def _link_request(
    spec_name: str, kind: InterfaceKind, key: int, spec: TunnelSpec | None
) -> dict[str, Any]:
    if kind == "xfrm":
        return {"ifname": spec_name, "kind": "xfrm", "xfrm_if_id": key}
    assert spec is not None
    return {
        "ifname": spec_name,
        "kind": "vti",
        "vti_local": str(spec.local_outside),
        "vti_remote": str(spec.remote_outside),
        "vti_ikey": key,
        "vti_okey": key,
    }


def _create_link(spec: TunnelSpec, kind: InterfaceKind, key: int) -> None:
    _ipr_call(
        f"tunnel {spec.name}: creating the {kind} interface",
        lambda ipr: ipr.link("add", **_link_request(spec.name, kind, key, spec)),
    )


def _delete_link(name: str) -> None:
    def delete(ipr: IPRoute) -> None:
        found = ipr.link_lookup(ifname=name)
        if found:
            ipr.link("del", index=found[0])

    _ipr_call(f"tunnel {name}: removing its interface", delete)


def _remove_stale_links(keep: set[str]) -> list[str]:
    def sweep(ipr: IPRoute) -> list[str]:
        removed = []
        for link in ipr.link("dump"):
            name = link.get_attr("IFLA_IFNAME")
            kind, key = _link_kind_and_key(link)
            stale_probe = kind in ("xfrm", "vti") and str(name).startswith(PROBE_PREFIX)
            if name in keep or not (owned(key) or stale_probe):
                continue
            with contextlib.suppress(OSError, NetlinkError):
                ipr.link("del", index=link["index"])
                removed.append(f"{kind} interface {name}")
        return removed

    return _ipr_call("removing stale tunnel interfaces", sweep)


def detect_interface_kind() -> InterfaceKind:
    """ "xfrm" if the kernel can create xfrm interfaces, else "vti" if it can create VTIs.

    Creates and removes a throwaway interface of each kind (in the caller's namespace).

    Raises:
        KernelFeatureError: neither exists.
    """
    name = f"{PROBE_PREFIX}{secrets.token_hex(2)}"
    failures = []
    for kind, request in (
        ("xfrm", {"kind": "xfrm", "xfrm_if_id": OWNED_BASE}),
        (
            "vti",
            {
                "kind": "vti",
                "vti_local": "127.0.0.1",
                "vti_remote": "127.255.255.254",
                "vti_ikey": OWNED_BASE,
                "vti_okey": OWNED_BASE,
            },
        ),
    ):
        try:
            with IPRoute() as ipr:
                ipr.link("add", ifname=name, **request)
                found = ipr.link_lookup(ifname=name)
                if found:
                    ipr.link("del", index=found[0])
            return kind  # type: ignore[return-value]
        except (OSError, NetlinkError) as exc:
            failures.append(f"{kind}: {_error_code_text(exc)[1]}")
    raise KernelFeatureError(
        "the kernel can create neither xfrm interfaces (CONFIG_XFRM_INTERFACE, module "
        "xfrm_interface) nor VTIs (CONFIG_NET_IPVTI, module ip_vti): " + "; ".join(failures)
    )
