"""The TCP MSS clamp with x_tables (``iptables-legacy``), for kernels whose nftables lacks
the ``inet`` family.

Some kernels have the x_tables TCPMSS target but an nf_tables without ``inet``/``ip``/``ip6``
(Debian's user-mode Linux kernel is one, see `cgwd.net.nft`). There the clamp goes into a
chain cgwd owns alone, ``CGWD-MSS`` in the ``mangle`` table, jumped to from ``FORWARD``,
once for IPv4 (``iptables-legacy``) and once for IPv6 (``ip6tables-legacy``). The
``-legacy`` binaries matter: plain ``iptables`` on Debian is the nft backend and fails on
such a kernel exactly as ``nft`` does.

Each family is rewritten with one ``*-legacy-restore --noflush`` document: the chain
declaration ``:CGWD-MSS`` creates the chain or flushes it, the rules follow, and the jump
from ``FORWARD`` is added only when the current ruleset (``*-legacy-save``) has none, so
applying is idempotent. x_tables replaces a whole table in one call, so every reader sees
the old rules or the new ones. Nothing else in the table is touched.

The rules mirror the nftables ones: per tunnel interface, into and out of it, a SYN without
RST whose MSS is above the clamp gets the clamp::

    -A CGWD-MSS -o vpc01-t1 -p tcp -m tcp --tcp-flags SYN,RST SYN
        -m tcpmss --mss 1399:65535 -m comment --comment "cgwd: ..." -j TCPMSS --set-mss 1398

Removal (shutdown, and crash cleanup at start-up) deletes the jumps and the chain, and
nothing when the chain is not there. Whether it could be there is first read from
``/proc/net/ip{,6}_tables_names``: without a legacy ``mangle`` table there is nothing of
cgwd's, and no iptables binary runs (which would load x_tables modules on a host that
never used them).
"""

from __future__ import annotations

import logging
import re
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from cgwd.net.base import MssClamp, NetOpsError

CHAIN = "CGWD-MSS"
TABLE = "mangle"
HOOK_CHAIN = "FORWARD"  # as the nftables chain: forwarded traffic only (see cgwd.net.nft)
MAX_MSS_OPTION = 65535
XTABLES_TIMEOUT = 10.0  # seconds; a restore takes milliseconds unless the lock is held
LOCK_WAIT = 5  # seconds iptables waits for the xtables lock (-w)
JUMP_COMMENT = "cgwd: TCP MSS clamp"
PROC_NET = Path("/proc/net")  # this namespace's; a named one's is read with `cat` in it

_log = logging.getLogger(__name__)

# What iptables-restore's own tokenizer takes unquoted in a comment (no quotes, no spaces
# beyond the ones we put there): interface names are checked against it.
_SAFE_NAME = re.compile(r"^[A-Za-z0-9_.@+-]+$")


class XtablesMissing(NetOpsError):
    """An iptables-legacy tool is not installed."""


@dataclass(frozen=True)
class XtFamily:
    """One address family's tools and the file listing its loaded tables."""

    name: str  # "ipv4" / "ipv6", as in the rule comments
    save: str
    restore: str
    tables_names: str  # /proc/net/..._tables_names: the x_tables tables that exist


IPV4 = XtFamily("ipv4", "iptables-legacy-save", "iptables-legacy-restore", "ip_tables_names")
IPV6 = XtFamily("ipv6", "ip6tables-legacy-save", "ip6tables-legacy-restore", "ip6_tables_names")
FAMILIES = (IPV4, IPV6)


def _mss_rules(family: XtFamily, clamps: Sequence[MssClamp]) -> list[str]:
    seen: set[str] = set()
    rules: list[str] = []
    for clamp in clamps:
        name = clamp.interface
        if name in seen:
            raise NetOpsError(f"two MSS clamps for interface {name}")
        if not _SAFE_NAME.match(name):
            raise NetOpsError(f"interface name {name!r} cannot be written in an iptables rule")
        seen.add(name)
        mss = clamp.mss_ipv4 if family is IPV4 else clamp.mss_ipv6
        for option, where in (("-o", "into"), ("-i", "out of")):
            rules.append(
                f"-A {CHAIN} {option} {name} -p tcp -m tcp --tcp-flags SYN,RST SYN "
                f"-m tcpmss --mss {mss + 1}:{MAX_MSS_OPTION} "
                f'-m comment --comment "cgwd: {family.name} SYNs {where} {name}: '
                f'MSS at most {mss}" -j TCPMSS --set-mss {mss}'
            )
    return rules


def jump_rules(saved: str) -> list[str]:
    """The ``-A FORWARD ... -j CGWD-MSS`` lines of a ``*-save`` dump of the mangle table."""
    return [
        line
        for line in saved.splitlines()
        if line.startswith(f"-A {HOOK_CHAIN} ") and line.split()[-2:] == ["-j", CHAIN]
    ]


def chain_exists(saved: str) -> bool:
    """Whether a ``*-save`` dump of the mangle table declares ``CGWD-MSS``."""
    return any(line.startswith(f":{CHAIN} ") for line in saved.splitlines())


def apply_document(family: XtFamily, clamps: Sequence[MssClamp], saved: str) -> str:
    """The ``restore --noflush`` input making ``CGWD-MSS`` hold exactly ``clamps``.

    ``saved`` is the current ``*-save -t mangle`` output (it says whether the jump exists).

    Raises:
        NetOpsError: two clamps name the same interface, or a name cannot be written.
    """
    lines = [f"*{TABLE}", f":{CHAIN} - [0:0]", *_mss_rules(family, clamps)]
    if not jump_rules(saved):
        lines.append(f'-I {HOOK_CHAIN} 1 -m comment --comment "{JUMP_COMMENT}" -j {CHAIN}')
    return "\n".join([*lines, "COMMIT", ""])


def remove_document(saved: str) -> str | None:
    """The ``restore --noflush`` input removing the jumps and ``CGWD-MSS``; None when the
    dump has neither (nothing of cgwd's to remove)."""
    jumps = jump_rules(saved)
    if not jumps and not chain_exists(saved):
        return None
    lines = [f"*{TABLE}", *("-D" + jump[2:] for jump in jumps)]
    if chain_exists(saved):
        lines += [f"-F {CHAIN}", f"-X {CHAIN}"]
    return "\n".join([*lines, "COMMIT", ""])


def ipv6_enabled() -> bool:
    """Whether the kernel has IPv6 (without it ip6tables cannot run, and needs no clamp)."""
    return Path("/proc/sys/net/ipv6").is_dir()


class Xtables:
    """Runs the ``*-legacy`` tools (optionally inside a named network namespace).

    Args:
        netns: a name under /run/netns; None for the namespace cgwd runs in.
        families: which address families to clamp (both by default).
        binary_dir: where the tools are looked up ("" for $PATH).
    """

    def __init__(
        self,
        netns: str | None = None,
        *,
        families: Sequence[XtFamily] = FAMILIES,
        binary_dir: str = "",
    ) -> None:
        self._prefix = ["ip", "netns", "exec", netns] if netns else []
        self._families = tuple(families)
        self._dir = binary_dir

    def _run(self, argv: Sequence[str], stdin: str | None = None) -> str:
        tool = argv[0]
        full = [*self._prefix, f"{self._dir}/{tool}" if self._dir else tool, *argv[1:]]
        try:
            proc = subprocess.run(
                full,
                input=stdin,
                capture_output=True,
                text=True,
                timeout=XTABLES_TIMEOUT,
                check=False,
            )
        except FileNotFoundError:
            raise XtablesMissing(
                f"cannot run {tool}: install iptables (Debian package iptables)"
            ) from None
        except subprocess.TimeoutExpired:
            raise NetOpsError(f"{tool} did not finish within {XTABLES_TIMEOUT:g} s") from None
        if proc.returncode != 0:
            detail = " ".join(proc.stderr.split()) or f"exit status {proc.returncode}"
            if self._prefix and detail.startswith("exec of") and "No such file" in detail:
                raise XtablesMissing(
                    f"cannot run {tool}: install iptables (Debian package iptables)"
                )
            raise NetOpsError(f"{tool} failed: {detail}")
        return proc.stdout

    def _saved(self, family: XtFamily) -> str:
        return self._run([family.save, "-t", TABLE])

    def _restore(self, family: XtFamily, document: str) -> None:
        self._run([family.restore, "--noflush", "-w", str(LOCK_WAIT)], document)

    def _has_mangle(self, family: XtFamily) -> bool:
        """Whether a legacy mangle table exists in the namespace (read, nothing loaded)."""
        if self._prefix:
            try:
                names = self._run(["cat", f"/proc/net/{family.tables_names}"])
            except NetOpsError:
                return False
        else:
            try:
                names = (PROC_NET / family.tables_names).read_text()
            except OSError:  # x_tables (or that family) is not loaded: nothing exists
                return False
        return TABLE in names.split()

    def apply(self, clamps: Sequence[MssClamp]) -> None:
        """Make ``CGWD-MSS`` hold exactly ``clamps`` in each family (one restore each).

        Raises:
            NetOpsError: a tool is missing or refused (its message included).
        """
        for family in self._families:
            if family is IPV6 and not ipv6_enabled():
                _log.debug("no IPv6 in this kernel: no ip6tables clamp")
                continue
            self._restore(family, apply_document(family, clamps, self._saved(family)))

    def remove(self) -> bool:
        """Remove the jumps and ``CGWD-MSS`` where they exist; whether anything was removed.

        Raises:
            NetOpsError: a tool is missing or refused.
        """
        removed = False
        for family in self._families:
            if not self._has_mangle(family):
                continue
            try:
                saved = self._saved(family)
            except XtablesMissing:
                # Someone else's legacy table, and no tools: cgwd (which needs them to add
                # its chain) cannot have made anything there. Never a reason to stop.
                _log.debug("a legacy mangle table exists but %s is not installed", family.save)
                continue
            document = remove_document(saved)
            if document is not None:
                self._restore(family, document)
                removed = True
        return removed

    def list_chain(self, family: XtFamily = IPV4) -> list[str]:
        """The rules of ``CGWD-MSS`` with their counters (``*-save -c``), for tests."""
        saved = self._run([family.save, "-c", "-t", TABLE])
        return [line for line in saved.splitlines() if f"-A {CHAIN} " in line]
