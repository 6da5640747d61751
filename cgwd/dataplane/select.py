"""`dataplane = "auto"`: use the kernel's ESP when it can carry the tunnels, else userspace.

The kernel dataplane needs ESP (CONFIG_INET_ESP with the AES-GCM/CBC+HMAC crypto) and a
route-based tunnel interface (xfrm interfaces or VTIs). Both are probed for real in a
throwaway network namespace that a short-lived thread unshares (so nothing is left behind
and the host's own XFRM state is never touched): an ESP SA is added there, and an xfrm
interface, else a VTI, is created. Module files are not consulted: a module may exist and
still fail to load (or be built in), and only the kernel knows.

Where no namespace may be made (the shipped systemd unit has ``RestrictNamespaces=yes`` and
no CAP_SYS_ADMIN), the same probe runs in the daemon's own namespace, touching only what
cgwd owns: the test SA carries cgwd's mark and a random SPI, has no policy (so no packet can
ever use it), and is deleted at once, like the throwaway interface.

`choose_dataplane` is what the daemon, `cgwd check` and `cgwd status` call; it returns the
kind and a one-line reason for the admin.
"""

from __future__ import annotations

import ctypes
import logging
import os
import secrets
import threading
from dataclasses import dataclass
from functools import partial
from ipaddress import IPv4Address
from typing import Literal

from cgwd.dataplane.base import Dataplane
from cgwd.esp.suites import suite_by_name
from cgwd.secret import Secret

log = logging.getLogger(__name__)

CLONE_NEWNET = 0x40000000  # <linux/sched.h>
PROBE_TIMEOUT = 10.0

Requested = Literal["auto", "kernel", "userspace"]
USERSPACE_CONFIGURED = "configured (cgwd's own ESP over TUN: a fallback, slower than the kernel)"


@dataclass(frozen=True)
class KernelCapabilities:
    """What the probe found. ``esp_problem``/``interface_problem`` are '' when fine."""

    esp_problem: str
    interface_kind: str | None  # "xfrm" | "vti" | None
    interface_problem: str

    @property
    def usable(self) -> bool:
        return not self.esp_problem and self.interface_kind is not None


def _probe_in_current_thread(*, shared_namespace: bool = False) -> KernelCapabilities:
    """Probe in this thread's namespace; ``shared_namespace``: it is the host's, so the
    test SA is marked as cgwd's and takes a random SPI (never a state someone else has)."""
    from cgwd.dataplane.kernel import (  # noqa: PLC0415 - only when probing
        OWNED_BASE,
        KernelFeatureError,
        detect_interface_kind,
        explain,
    )
    from cgwd.net.xfrm import messages as m  # noqa: PLC0415
    from cgwd.net.xfrm.socket import XfrmError, XfrmSocket  # noqa: PLC0415

    esp_problem = ""
    try:
        with XfrmSocket() as sock:
            for name in ("aes128gcm16", "aes128-sha1"):
                suite = suite_by_name(name)
                spec = m.SaSpec(
                    IPv4Address("192.0.2.1"),
                    IPv4Address("192.0.2.2"),
                    0x100 if not shared_namespace else 0x10000000 + secrets.randbelow(1 << 27),
                    suite,
                    Secret(bytes(suite.keymat_bytes)),
                    replay_window=1024,
                    mark=m.Mark(OWNED_BASE + 0xFFFF) if shared_namespace else None,
                )
                try:
                    sock.request(partial(m.encode_newsa, spec), f"ESP SA ({name})")
                except XfrmError as exc:
                    esp_problem = str(explain(exc, f"a test ESP SA ({name})"))
                    break
                sock.request(
                    partial(m.encode_delsa, spec.src, spec.dst, spec.spi, mark=spec.mark),
                    "removing the test SA",
                )
    except XfrmError as exc:
        esp_problem = str(exc)
    kind: str | None = None
    interface_problem = ""
    try:
        kind = detect_interface_kind()
    except KernelFeatureError as exc:
        interface_problem = str(exc)
    return KernelCapabilities(esp_problem, kind, interface_problem)


def probe_kernel() -> KernelCapabilities:
    """Probe the running kernel (see the module docstring). Never raises."""
    box: list[KernelCapabilities] = []

    def run() -> None:
        libc = ctypes.CDLL(None, use_errno=True)
        in_own_namespace = libc.unshare(CLONE_NEWNET) == 0
        if not in_own_namespace:
            # EPERM under systemd's RestrictNamespaces / without CAP_SYS_ADMIN: probe here.
            log.debug("kernel probe in the daemon's namespace: %s", os.strerror(ctypes.get_errno()))
        try:
            box.append(_probe_in_current_thread(shared_namespace=not in_own_namespace))
        except Exception as exc:  # a probe must never take the caller down
            problem = f"probing the kernel failed: {type(exc).__name__}: {exc}"
            box.append(KernelCapabilities(problem, None, problem))

    thread = threading.Thread(target=run, name="cgwd-kernel-probe", daemon=True)
    thread.start()
    thread.join(PROBE_TIMEOUT)
    if not box:
        problem = "probing the kernel did not finish"
        return KernelCapabilities(problem, None, problem)
    return box[0]


def choose_dataplane(
    requested: Requested, capabilities: KernelCapabilities | None = None
) -> tuple[str, str]:
    """(kind, reason): which dataplane to run for ``requested`` and why.

    ``capabilities`` defaults to a fresh `probe_kernel()` (only probed when it matters).
    ``kind`` is "kernel" or "userspace". A configured "kernel" is kept even when the
    kernel cannot do it (the daemon then fails with the reason); "userspace" is kept as is.
    """
    if requested == "userspace":
        return "userspace", USERSPACE_CONFIGURED
    caps = capabilities if capabilities is not None else probe_kernel()
    if requested == "kernel":
        if caps.usable:
            return "kernel", f"configured; the kernel has ESP and {caps.interface_kind} interfaces"
        return "kernel", f"configured, but it will fail: {_problems(caps)}"
    if caps.usable:
        return "kernel", f"auto: the kernel has ESP and {caps.interface_kind} interfaces"
    return "userspace", f"auto: {_problems(caps)}"


def create_dataplane(
    requested: Requested, capabilities: KernelCapabilities | None = None
) -> tuple[Dataplane, str]:
    """A new dataplane of the kind `choose_dataplane` picks, and the reason (for the log).

    Nothing is opened yet: the kernel dataplane probes and cleans up on its first use.
    """
    kind, reason = choose_dataplane(requested, capabilities)
    if kind == "kernel":
        from cgwd.dataplane.kernel import KernelDataplane  # noqa: PLC0415 - only when used

        return KernelDataplane(), reason
    from cgwd.dataplane.userspace import UserspaceDataplane  # noqa: PLC0415

    return UserspaceDataplane(), reason


def _problems(caps: KernelCapabilities) -> str:
    parts = [p for p in (caps.esp_problem, caps.interface_problem) if p]
    return "; ".join(dict.fromkeys(parts)) or "unknown"
