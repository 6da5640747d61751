"""The cgwd daemon: one asyncio process running every tunnel of a configuration.

Start-up, in order: load and validate the configuration (a `ConfigError` stops it, exit 2);
register the PSKs with the log redaction filter; choose the dataplane (auto/kernel/
userspace, with the reason); remove a crashed run's routes and nftables table; bind the IKE
sockets (ports 500 and 4500 on each local address in use); per tunnel: open its interface
(inside address and peer, MTU, MSS clamp, loose rp_filter), create its IKE session and
initiate; serve the control socket; tell systemd ``READY=1``. The engines keep each tunnel
up (DPD, re-initiation with capped jittered backoff); the daemon follows their events to
adjust MTU/MSS and a static connection's routes (a tunnel carries routes only while it has
a Child SA).

SIGHUP (and ``cgwd reload``) applies a new configuration as a diff (`cgwd.daemon.reload`).
SIGTERM/SIGINT: DELETE to the peers, then SAs, routes, nftables rules and interfaces go.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import time
from collections.abc import Callable, Coroutine
from ipaddress import IPv4Address
from pathlib import Path
from typing import Any, cast

from cgwd.config.load import LoadedConfiguration, load_configuration
from cgwd.config.tunnel_plan import ConnectionPlan, TunnelPlan
from cgwd.control.server import ControlServer
from cgwd.control.status import StatusDocument, summary_line
from cgwd.daemon import log_fields
from cgwd.daemon.addresses import source_address_for
from cgwd.daemon.logging import register_secret
from cgwd.daemon.notify import Notifier, watchdog_loop, watchdog_timeout
from cgwd.daemon.sessions import ikev1_config, ikev2_config
from cgwd.daemon.status import build_status
from cgwd.daemon.supervisor import ConnectionRuntime, DrivenSession, TunnelSupervisor
from cgwd.dataplane.base import Dataplane, DataplaneError, TunnelSpec
from cgwd.errors import CgwdError, ConfigError
from cgwd.ike.clock import MonotonicClock
from cgwd.ike.events import Event
from cgwd.ike.host import IKE_PORT, NAT_T_PORT, IkeHost
from cgwd.ike.rng import SystemRng
from cgwd.ike.v1.session import Ikev1Session
from cgwd.ike.v2.session import IkeSession
from cgwd.net.base import NetOps, NetOpsError
from cgwd.net.host import HostNetwork

log = logging.getLogger("cgwd.daemon")

SHUTDOWN_BUDGET = 5.0  # seconds from SIGTERM to nothing left behind (issue 7)
DELETE_GRACE = 1.0  # of which waiting for the peers' DELETE responses
STATUS_INTERVAL = 1.0  # how often STATUS= and the routes are re-checked
ACTIONS_WAIT = 2.0  # routes wait this long at most for queued SA installs/removals

NetOpsFactory = Callable[[], NetOps]
DataplaneFactory = Callable[[str], Dataplane]


def default_netops() -> NetOps:
    from cgwd.net.pyroute import PyrouteNetOps  # noqa: PLC0415 - pyroute2 only when running

    return PyrouteNetOps()


def default_dataplane(kind: str) -> Dataplane:
    if kind == "kernel":
        from cgwd.dataplane.kernel import KernelDataplane  # noqa: PLC0415

        return KernelDataplane()
    from cgwd.dataplane.userspace import UserspaceDataplane  # noqa: PLC0415

    return UserspaceDataplane()


def requested_dataplane(loaded: LoadedConfiguration) -> str:
    """The one dataplane setting every tunnel asks for.

    Raises:
        ConfigError: connections ask for different ones (one process runs one dataplane).
    """
    wanted = {t.dataplane for c in loaded.connections for t in c.tunnels}
    if len(wanted) > 1:
        raise ConfigError(
            f"connections ask for different dataplanes ({', '.join(sorted(wanted))}); one "
            "cgwd runs one: set [daemon] dataplane and drop the per-connection ones",
            source=loaded.config.source,
        )
    return wanted.pop() if wanted else loaded.config.daemon.dataplane


class Daemon:
    """Runs a configuration until stopped. See the module docstring.

    Args:
        config_path: cgwd.toml.
        netops: creates the host network operations (tests may pass another).
        dataplane_factory: creates the dataplane of a kind ("kernel"/"userspace").
        notifier: systemd notifications (default: from ``$NOTIFY_SOCKET``).
        ike_ports: the IKE and NAT-T ports (500, 4500; tests may use others).
    """

    def __init__(
        self,
        config_path: Path,
        *,
        netops: NetOpsFactory = default_netops,
        dataplane_factory: DataplaneFactory = default_dataplane,
        notifier: Notifier | None = None,
        ike_ports: tuple[int, int] = (IKE_PORT, NAT_T_PORT),
    ) -> None:
        self.config_path = config_path
        self._netops_factory = netops
        self._dataplane_factory = dataplane_factory
        self.notifier = notifier or Notifier.from_environment()
        self.ike_ports = ike_ports
        self.clock = MonotonicClock()
        self.rng = SystemRng()
        self.started_at = self.clock.now()
        self.loaded: LoadedConfiguration | None = None
        self.dataplane: Dataplane | None = None
        self.dataplane_requested = "auto"
        self.dataplane_reason: str | None = None
        self.net: HostNetwork | None = None
        self.ip_forwarding: bool | None = None
        self.control: ControlServer | None = None
        self.hosts: dict[IPv4Address, IkeHost] = {}
        self.connections: dict[str, ConnectionRuntime] = {}
        self._tunnels: dict[str, tuple[TunnelSupervisor, IkeHost]] = {}  # interface -> ...
        self._interfaces: set[str] = set()  # every tunnel interface this process ran
        self._log_fields = log_fields.install(lambda: self._interfaces)
        self._applied_up: dict[str, list[bool]] = {}
        self._refreshing: set[str] = set()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._stop = asyncio.Event()
        self._reload_lock = asyncio.Lock()
        self._status_line = ""

    # -- lifecycle --------------------------------------------------------------------------

    async def run(self) -> int:
        """Start, serve until SIGTERM/SIGINT, shut down. Returns the exit status.

        Raises:
            ConfigError: the configuration is invalid (nothing was changed on the host).
            CgwdError: start-up failed (what was set up is removed again).
        """
        loop = asyncio.get_running_loop()
        # An invalid configuration stops us before anything on the host is touched.
        loaded = await asyncio.to_thread(self._load)
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self._stop.set)
        loop.add_signal_handler(signal.SIGHUP, self._on_sighup)
        try:
            # SIGTERM during start-up stops it half-way; shutdown removes what was done.
            starting = asyncio.ensure_future(self.start(loaded))
            stopping = asyncio.ensure_future(self._stop.wait())
            await asyncio.wait({starting, stopping}, return_when=asyncio.FIRST_COMPLETED)
            if starting.done():
                starting.result()  # start-up errors propagate (after shutdown, below)
                await stopping
            else:
                starting.cancel()
                await asyncio.gather(starting, return_exceptions=True)
            stopping.cancel()
            log.info("stopping: deleting the SAs and removing cgwd's routes and interfaces")
        finally:
            for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
                loop.remove_signal_handler(sig)
            await self.shutdown()
        return 0

    def stop(self) -> None:
        self._stop.set()

    async def start(self, loaded: LoadedConfiguration | None = None) -> None:
        """Everything up to READY=1 (see the module docstring).

        Raises:
            ConfigError, CgwdError: as `run`; the caller then calls `shutdown`.
        """
        if loaded is None:
            loaded = await asyncio.to_thread(self._load)
        self.dataplane_requested = requested_dataplane(loaded)
        from cgwd.dataplane.select import choose_dataplane  # noqa: PLC0415 - probes the kernel

        kind, self.dataplane_reason = await asyncio.to_thread(
            choose_dataplane,
            cast(Any, self.dataplane_requested),
        )
        log.info("dataplane: %s (%s)", kind, self.dataplane_reason)
        self.dataplane = self._dataplane_factory(kind)
        # The control socket first: it refuses to start while another cgwd serves it, before
        # anything below could touch that cgwd's routes, rules or SAs.
        socket_path = Path(loaded.config.daemon.control_socket)
        with contextlib.suppress(OSError):
            socket_path.parent.mkdir(mode=0o755, parents=True, exist_ok=True)
        control = ControlServer(socket_path)
        self._register_handlers(control)
        await control.start()
        self.control = control  # only now: closing it removes the socket file
        starter = getattr(self.dataplane, "start", None)
        if starter is not None:
            await starter()
        try:
            self.net = HostNetwork(self._netops_factory())
            report, forwarding = self.net.start()
        except NetOpsError as exc:
            raise CgwdError(f"cannot manage the host network: {exc}") from None
        if not report.empty:
            log.info("removed what a previous run left behind: %s", report.describe())
        self.ip_forwarding = forwarding.ipv4
        if not forwarding.ipv4:
            log.warning(
                "IP forwarding is off (net.ipv4.ip_forward = 0): hosts behind this router "
                "cannot reach the VPC; enable it with sysctl -w net.ipv4.ip_forward=1"
            )
        async with self._reload_lock:  # a reload waits until every tunnel is started
            self.loaded = loaded
            for plan in loaded.connections:
                await self.start_connection(plan)
        self._spawn(self._status_loop())
        timeout = watchdog_timeout()
        if timeout is not None:
            self._spawn(watchdog_loop(self.notifier, timeout))
        line = self.refresh_status_line()
        self.notifier.ready(line)
        log.info(
            "ready: %d connection(s), %d tunnel(s), control socket %s",
            len(self.connections),
            len(self._tunnels),
            socket_path,
        )

    def _load(self) -> LoadedConfiguration:
        loaded = load_configuration(self.config_path)
        for conn in loaded.connections:
            for tunnel in conn.tunnels:
                register_secret(tunnel.psk)
        for warning in loaded.warnings:
            log.warning("configuration: %s", warning)
        return loaded

    async def shutdown(self) -> None:
        """DELETE to the peers, then SAs, routes, nftables rules and interfaces; bounded by
        `SHUTDOWN_BUDGET`. Never raises."""
        self.notifier.stopping()
        deadline = time.monotonic() + SHUTDOWN_BUDGET
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        if self.control is not None:
            await self.control.close()
        if self.hosts:
            closing = [h.close(delete=True, grace=DELETE_GRACE) for h in self.hosts.values()]
            try:
                async with asyncio.timeout(max(deadline - time.monotonic() - 1.5, 0.5)):
                    await asyncio.gather(*closing, return_exceptions=True)
            except TimeoutError:
                log.warning("stopping: the IKE sessions did not finish in time")
        self.hosts.clear()
        if self.net is not None:
            try:
                await asyncio.to_thread(self.net.shutdown)
            except NetOpsError as exc:
                log.error("stopping: removing routes and the MSS clamp failed: %s", exc)
            self.net = None
        if self.dataplane is not None:
            try:
                async with asyncio.timeout(max(deadline - time.monotonic(), 0.5)):
                    await self.dataplane.close()
            except TimeoutError:
                log.error("stopping: the dataplane did not close in time")
            self.dataplane = None
        self._tunnels.clear()
        self.connections.clear()
        self.notifier.close()
        log.info("stopped")
        log_fields.uninstall(self._log_fields)

    def _spawn(self, coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)
        return task

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            exc = task.exception()
            log.error("internal task failed: %s: %s", type(exc).__name__, exc)

    # -- tunnels ----------------------------------------------------------------------------

    async def _host_for(self, local: IPv4Address) -> IkeHost:
        host = self.hosts.get(local)
        if host is not None:
            return host
        assert self.dataplane is not None
        host = IkeHost(
            self.dataplane, self.clock, local, on_event=self._on_event, ports=self.ike_ports
        )
        try:
            await host.start()
        except OSError as exc:
            raise CgwdError(
                f"cannot bind IKE on {local} ports {self.ike_ports[0]}/{self.ike_ports[1]}: "
                f"{exc.strerror or exc}"
            ) from None
        self.hosts[local] = host
        # Each host registered itself as the dataplane's IKE receiver; dispatch by address.
        self.dataplane.set_ike_receiver(self._ike_from_dataplane)
        return host

    def _ike_from_dataplane(
        self, data: bytes, remote: tuple[str, int], local: tuple[str, int]
    ) -> None:
        host = self.hosts.get(IPv4Address(local[0]))
        if host is not None:
            host.datagram_received(data, remote, local)

    def _session(self, plan: TunnelPlan, local: IPv4Address) -> DrivenSession:
        assert self.dataplane is not None
        dataplane, name = self.dataplane, plan.interface
        ports = {"ike_port": self.ike_ports[0], "nat_t_port": self.ike_ports[1]}
        ports["remote_port"] = self.ike_ports[0]
        now = self.clock.now()
        if plan.ike_version == "ikev1":
            return Ikev1Session(
                ikev1_config(plan, local, **ports),
                self.rng,
                lambda: dataplane.allocate_spi(name),
                now,
            )
        return IkeSession(
            ikev2_config(plan, local, **ports), self.rng, lambda: dataplane.allocate_spi(name), now
        )

    async def start_tunnel(self, plan: TunnelPlan) -> TunnelSupervisor:
        """Open the tunnel's interface, configure it and start its IKE session.

        Raises:
            CgwdError: no route to the endpoint, the interface or sockets cannot be set up.
        """
        assert self.dataplane is not None and self.net is not None
        self._interfaces.add(plan.interface)
        local = plan.local_address or source_address_for(plan.remote_address)
        host = await self._host_for(local)
        spec = TunnelSpec(
            plan.interface, plan.local_inside, plan.remote_inside, plan.mtu, local,
            plan.remote_address,
        )  # fmt: skip
        await self.dataplane.open_tunnel(spec)
        try:
            sup = TunnelSupervisor(plan, self._session(plan, local))
            self.net.configure_tunnel(sup.interface())
        except BaseException:
            with contextlib.suppress(CgwdError):
                self.net.release_tunnel(plan.interface)
                await self.dataplane.close_tunnel(plan.interface)
            raise
        session = sup.session
        self._tunnels[plan.interface] = (sup, host)
        sup.log.info(
            "starting: %s -> %s, IKE%s, inside %s, MTU %d, MSS %d",
            local,
            plan.remote_address,
            "v1" if plan.ike_version == "ikev1" else "v2",
            plan.local_inside,
            plan.mtu,
            plan.mss,
        )
        host.add_session(cast(IkeSession, session))
        host.initiate(cast(IkeSession, session))
        return sup

    async def stop_tunnel(self, sup: TunnelSupervisor) -> None:
        """DELETE the tunnel's SAs, withdraw its routes and clamp, remove its interface."""
        entry = self._tunnels.pop(sup.name, None)
        if entry is None:
            return
        host = entry[1]
        sup.wanted = False
        await host.remove_session(cast(IkeSession, sup.session), delete=True)
        assert self.net is not None and self.dataplane is not None
        try:
            self.net.release_tunnel(sup.name)
        except NetOpsError as exc:
            sup.log.error("releasing the interface's routes and clamp failed: %s", exc)
        with contextlib.suppress(DataplaneError):
            await self.dataplane.close_tunnel(sup.name)
        sup.log.info("stopped and removed")

    async def start_connection(self, plan: ConnectionPlan) -> ConnectionRuntime:
        """Start both tunnels of ``plan``; if one fails, the other is stopped again.

        Raises:
            CgwdError: as `start_tunnel`.
        """
        tunnels: list[TunnelSupervisor] = []
        try:
            for tunnel in plan.tunnels:
                tunnels.append(await self.start_tunnel(tunnel))
        except BaseException:
            for sup in tunnels:
                await self.stop_tunnel(sup)
            raise
        runtime = ConnectionRuntime(plan, tunnels)
        self.connections[plan.name] = runtime
        self._applied_up[plan.name] = [False, False]
        return runtime

    async def stop_connection(self, name: str) -> None:
        runtime = self.connections.pop(name, None)
        if runtime is None:
            return
        for sup in runtime.tunnels:
            await self.stop_tunnel(sup)
        self._applied_up.pop(name, None)
        if self.net is not None:
            try:
                self.net.set_routes(name, [])
            except NetOpsError as exc:
                log.error("%s: removing routes failed: %s", name, exc)

    def hosts_of(self, sup: TunnelSupervisor) -> IkeHost:
        """The IKE host serving ``sup``'s session.

        Raises:
            CgwdError: the tunnel was removed meanwhile.
        """
        entry = self._tunnels.get(sup.name)
        if entry is None:
            raise CgwdError(f"tunnel {sup.name} is not running")
        return entry[1]

    # -- events and routes ------------------------------------------------------------------

    def _on_event(self, session: IkeSession, event: Event) -> None:
        entry = self._tunnels.get(session.config.tunnel)
        if entry is None or entry[0].session is not session:
            return
        sup = entry[0]
        settings_changed, updown = sup.on_event(event)
        if settings_changed and self.net is not None:
            iface = sup.interface()
            try:
                self.net.configure_tunnel(iface)
                sup.log.info(
                    "negotiated %s%s: MTU %d, MSS %d",
                    sup.suite.name if sup.suite else "?",
                    " with NAT-T" if sup.natt else "",
                    iface.mtu,
                    iface.mss,
                )
            except NetOpsError as exc:
                sup.log.error("setting MTU/MSS failed: %s", exc)
        if updown:
            self.schedule_route_refresh(sup.plan.connection)

    def schedule_route_refresh(self, name: str) -> None:
        """Recompute a connection's routes once the dataplane has applied the queued SA
        changes (routes never point into a tunnel before its SA is installed)."""
        if name in self._refreshing:
            return
        self._refreshing.add(name)
        self._spawn(self._refresh_routes(name))

    async def _refresh_routes(self, name: str) -> None:
        try:
            async with asyncio.timeout(ACTIONS_WAIT):
                for host in list(self.hosts.values()):
                    await host.drain_actions()
        except TimeoutError:  # a stuck dataplane must not freeze the routes too
            log.warning("%s: SA changes still pending after %g s", name, ACTIONS_WAIT)
        finally:
            self._refreshing.discard(name)
        self.apply_routes(name)

    def apply_routes(self, name: str) -> None:
        runtime = self.connections.get(name)
        if runtime is None or self.net is None:
            return
        for sup in runtime.tunnels:
            sup.note_transition()
        up = runtime.up()
        try:
            changes = self.net.set_routes(name, runtime.routes())
        except NetOpsError as exc:
            log.error("%s: routes: %s", name, exc)
            return
        self._applied_up[name] = up
        if not changes.empty:
            active = sorted(runtime.active())
            carriers = ", ".join(runtime.tunnel(i).name for i in active) or "none"
            log.info(
                "%s: routes %s now via %s (%d installed, %d withdrawn)",
                name,
                ", ".join(str(r) for r in runtime.plan.config.routes),
                carriers,
                len(changes.install),
                len(changes.remove),
            )
        self.refresh_status_line()

    async def _status_loop(self) -> None:
        """STATUS= for systemd, and a safety net for routes: a tunnel whose state changed
        without an event we acted on (e.g. an SA expired) gets its routes recomputed."""
        while True:
            await asyncio.sleep(STATUS_INTERVAL)
            for name, runtime in list(self.connections.items()):
                if runtime.up() != self._applied_up.get(name) and name not in self._refreshing:
                    self.apply_routes(name)
            self.refresh_status_line()

    # -- status -----------------------------------------------------------------------------

    def status_document(self) -> StatusDocument:
        assert self.dataplane is not None
        return build_status(
            self.connections.values(),
            self.dataplane,
            self.clock.now(),
            started=self.started_at,
            config_file=str(self.config_path),
            ip_forwarding=self.ip_forwarding,
            dataplane_reason=self.dataplane_reason,
        )

    def refresh_status_line(self) -> str:
        if self.dataplane is None:
            return self._status_line
        line = summary_line(self.status_document())
        if line != self._status_line:
            self._status_line = line
            self.notifier.status(line)
            log.info("status: %s", line)
        return line

    # -- reload -----------------------------------------------------------------------------

    def _on_sighup(self) -> None:
        if self.loaded is None:
            log.warning("SIGHUP during start-up ignored: reload once cgwd is ready")
            return
        log.info("SIGHUP: reloading %s", self.config_path)
        self._spawn(self._reload_logged())

    async def _reload_logged(self) -> None:
        with contextlib.suppress(CgwdError):  # already logged by reload()
            await self.reload()

    async def reload(self) -> str:
        """Re-read and apply the configuration as a diff; returns what changed.

        Raises:
            CgwdError: the new configuration is invalid (the running one stays).
        """
        from cgwd.daemon.reload import apply_reload  # noqa: PLC0415 - keeps app.py short

        async with self._reload_lock:
            self.notifier.reloading()
            try:
                return await apply_reload(self)
            finally:
                self.notifier.ready(self.refresh_status_line())

    # -- control ----------------------------------------------------------------------------

    def _register_handlers(self, server: ControlServer) -> None:
        from cgwd.daemon.control import register_handlers  # noqa: PLC0415

        register_handlers(self, server)
