"""The TCP MSS clamp as one nftables JSON document, applied atomically with ``nft -j -f -``.

cgwd owns exactly one table, ``inet cgwd``. The document rebuilds it in a single
transaction: *add* the table (a no-op when it exists), *delete* it (so it is gone whatever
it held), then add it again with its chain and rules. nft commits the whole document or
nothing, so applying is idempotent and there is never a moment without the clamp.
(nft 1.0.8 has ``destroy``; Debian 12 ships 1.0.6, hence add-then-delete.)

A kernel built without the ``inet`` family (CONFIG_NF_TABLES_INET, compiled into the
nf_tables module, not a module of its own) answers EOPNOTSUPP to any ``inet`` table.
Debian's user-mode Linux kernel is one: it has only the ``bridge`` family, no ``ip`` or
``ip6`` either. `Nft.apply` then probes which families exist (``nft -c``, once, cached) and
raises an error naming the missing kernel options instead of nft's bare "Operation not
supported"; `cgwd.net.pyroute` then falls back to x_tables (`cgwd.net.xtables`), and only
if that fails too is the error reported, with both reasons. Removing the table first
checks that it exists, so shutdown and crash cleanup succeed on such a kernel (no cgwd
table can exist there).

The chain hooks ``forward`` at priority ``mangle`` (-150), before any filter chain, so the
clamp holds whatever the admin's own firewall does with the packet later. For every tunnel
interface there are four rules (into/out of the tunnel x IPv4/IPv6) of the form::

    oifname "vpc01-t1" meta nfproto ipv4 tcp flags & (syn | rst) == syn
        tcp option maxseg size > 1398 counter tcp option maxseg size set 1398

SYN and SYN-ACK both match, so the MSS is clamped in both directions of the handshake;
smaller MSS values are left alone. Traffic the router itself originates or terminates
(e.g. BGP over the inside addresses) does not need a rule: the kernel derives its own MSS
from the tunnel MTU.
"""

from __future__ import annotations

import json
import logging
import subprocess
from collections.abc import Mapping, Sequence
from typing import Any

from cgwd.net.base import NFT_FAMILY, NFT_MSS_CHAIN, NFT_TABLE, MssClamp, NetOpsError

NFT_TIMEOUT = 10.0  # seconds; nft finishes in milliseconds unless the kernel is wedged
NFT_PRIORITY_MANGLE = -150  # NF_IP_PRI_MANGLE, the "mangle" keyword in nft

JsonDoc = dict[str, list[dict[str, Any]]]

_log = logging.getLogger(__name__)

# The kernel options behind the nftables families cgwd could use (net/netfilter/Kconfig);
# all are bool options compiled into nf_tables.ko, so there is no module to load for them.
FAMILY_KERNEL_OPTIONS = {
    "inet": "CONFIG_NF_TABLES_INET",
    "ip": "CONFIG_NF_TABLES_IPV4",
    "ip6": "CONFIG_NF_TABLES_IPV6",
}
_EOPNOTSUPP = "Operation not supported"  # strerror(EOPNOTSUPP): the family is not built in

_TABLE = {"family": NFT_FAMILY, "name": NFT_TABLE}
_METAINFO = {"metainfo": {"json_schema_version": 1}}


def _mss_rule(direction: str, interface: str, nfproto: str, mss: int) -> dict[str, Any]:
    maxseg = {"tcp option": {"name": "maxseg", "field": "size"}}
    syn_without_rst = {
        "op": "==",
        "left": {"&": [{"payload": {"protocol": "tcp", "field": "flags"}}, ["syn", "rst"]]},
        "right": "syn",
    }
    where = "into" if direction == "oifname" else "out of"
    return {
        "rule": {
            "family": NFT_FAMILY,
            "table": NFT_TABLE,
            "chain": NFT_MSS_CHAIN,
            "comment": f"cgwd: {nfproto} SYNs {where} {interface}: MSS at most {mss}",
            "expr": [
                {"match": {"op": "==", "left": {"meta": {"key": direction}}, "right": interface}},
                {"match": {"op": "==", "left": {"meta": {"key": "nfproto"}}, "right": nfproto}},
                {"match": syn_without_rst},
                {"match": {"op": ">", "left": maxseg, "right": mss}},
                {"counter": None},
                {"mangle": {"key": maxseg, "value": mss}},
            ],
        }
    }


def mss_clamp_document(clamps: Sequence[MssClamp]) -> JsonDoc:
    """The document that makes table ``inet cgwd`` hold exactly ``clamps``.

    Raises:
        NetOpsError: two clamps name the same interface.
    """
    seen: set[str] = set()
    commands: list[dict[str, Any]] = [
        _METAINFO,
        {"add": {"table": dict(_TABLE)}},
        {"delete": {"table": dict(_TABLE)}},
        {"add": {"table": dict(_TABLE)}},
        {
            "add": {
                "chain": {
                    "family": NFT_FAMILY,
                    "table": NFT_TABLE,
                    "name": NFT_MSS_CHAIN,
                    "type": "filter",
                    "hook": "forward",
                    "prio": NFT_PRIORITY_MANGLE,
                    "policy": "accept",
                }
            }
        },
    ]
    for clamp in clamps:
        if clamp.interface in seen:
            raise NetOpsError(f"two MSS clamps for interface {clamp.interface}")
        seen.add(clamp.interface)
        for direction in ("oifname", "iifname"):
            commands.append({"add": _mss_rule(direction, clamp.interface, "ipv4", clamp.mss_ipv4)})
            commands.append({"add": _mss_rule(direction, clamp.interface, "ipv6", clamp.mss_ipv6)})
    return {"nftables": commands}


def remove_table_document() -> JsonDoc:
    """The document that deletes table ``inet cgwd``, succeeding when it does not exist."""
    return {
        "nftables": [
            _METAINFO,
            {"add": {"table": dict(_TABLE)}},
            {"delete": {"table": dict(_TABLE)}},
        ]
    }


def family_probe_document(family: str) -> JsonDoc:
    """A document adding table ``FAMILY cgwd``; checked with ``nft -c`` it changes nothing."""
    return {"nftables": [_METAINFO, {"add": {"table": {"family": family, "name": NFT_TABLE}}}]}


def missing_family_message(supported: Mapping[str, bool]) -> str:
    """The error for a kernel whose nftables lacks the ``inet`` family.

    ``supported`` maps family names (keys of `FAMILY_KERNEL_OPTIONS`) to whether the kernel
    accepted a table of that family.
    """
    missing = [f for f in FAMILY_KERNEL_OPTIONS if not supported.get(f, False)]
    present = [f for f in FAMILY_KERNEL_OPTIONS if supported.get(f, False)]
    options = ", ".join(f"{FAMILY_KERNEL_OPTIONS[f]} ({f})" for f in missing)
    message = (
        f"cannot install the TCP MSS clamp: this kernel's nftables has no {NFT_FAMILY} family "
        f"(not built with {options}; nf_tables answers 'Operation not supported')"
    )
    if present:
        message += f"; it has {' and '.join(present)}, which cgwd does not use yet"
    return message + (
        ". Use a kernel built with CONFIG_NF_TABLES_INET=y, as distribution kernels are, or "
        "give cgwd the x_tables fallback: a kernel with CONFIG_IP_NF_MANGLE, "
        "CONFIG_IP6_NF_MANGLE and CONFIG_NETFILTER_XT_TARGET_TCPMSS, and the iptables-legacy "
        "tools (Debian package iptables)"
    )


class Nft:
    """Runs ``nft`` (optionally inside a named network namespace, for tests and the lab).

    Args:
        netns: a name under /run/netns; None for the namespace cgwd runs in.
        binary: the nft executable.
    """

    def __init__(self, netns: str | None = None, binary: str = "nft") -> None:
        self._prefix = ["ip", "netns", "exec", netns] if netns else []
        self._binary = binary
        self._families: dict[str, bool] = {}  # probed on demand, then cached

    def run(self, args: Sequence[str], stdin: str | None = None) -> str:
        """Run ``nft ARGS`` and return its stdout.

        Raises:
            NetOpsError: nft is missing, timed out, or exited non-zero (its message included).
        """
        argv = [*self._prefix, self._binary, *args]
        try:
            proc = subprocess.run(
                argv, input=stdin, capture_output=True, text=True, timeout=NFT_TIMEOUT, check=False
            )
        except FileNotFoundError as exc:
            raise NetOpsError(
                f"cannot run {exc.filename}: install nftables (Debian package nftables)"
            ) from None
        except subprocess.TimeoutExpired:
            raise NetOpsError(f"nft did not finish within {NFT_TIMEOUT:g} s") from None
        if proc.returncode != 0:
            detail = " ".join(proc.stderr.split()) or f"exit status {proc.returncode}"
            raise NetOpsError(f"nft {' '.join(args)} failed: {detail}")
        return proc.stdout

    def apply(self, document: JsonDoc, *, check_only: bool = False) -> None:
        """Apply ``document`` in one transaction (``-c``: only check it).

        Raises:
            NetOpsError: nft failed; if because the kernel lacks the ``inet`` family, the
                message names the missing kernel options (`missing_family_message`).
        """
        try:
            self.run(
                ["-c", "-j", "-f", "-"] if check_only else ["-j", "-f", "-"], json.dumps(document)
            )
        except NetOpsError as exc:
            if _EOPNOTSUPP in str(exc) and not self.family_supported(NFT_FAMILY):
                supported = {f: self.family_supported(f) for f in FAMILY_KERNEL_OPTIONS}
                raise NetOpsError(missing_family_message(supported)) from None
            raise

    def family_supported(self, family: str) -> bool:
        """Whether the kernel accepts a table of ``family`` (``nft -c``, cached per family).

        Raises:
            NetOpsError: nft failed for another reason than an unsupported family.
        """
        if family not in self._families:
            try:
                self.run(["-c", "-j", "-f", "-"], json.dumps(family_probe_document(family)))
                self._families[family] = True
            except NetOpsError as exc:
                if _EOPNOTSUPP not in str(exc):
                    raise
                self._families[family] = False
                _log.warning(
                    "nftables family %s is not in this kernel (%s is not set)",
                    family,
                    FAMILY_KERNEL_OPTIONS.get(family, "its kernel option"),
                )
        return self._families[family]

    def remove_table(self) -> bool:
        """Delete table ``inet cgwd`` if it exists; whether it existed.

        On a kernel without the ``inet`` family nothing can exist, and nothing is run but
        the listing (which such a kernel answers with an empty list).
        """
        if not self.table_exists():
            return False
        self.apply(remove_table_document())
        return True

    def table_exists(self) -> bool:
        """Whether table ``inet cgwd`` exists."""
        listing = json.loads(self.run(["-j", "list", "tables", NFT_FAMILY]) or "{}")
        return any(
            item.get("table", {}).get("name") == NFT_TABLE for item in listing.get("nftables", [])
        )

    def list_table(self) -> JsonDoc:
        """``nft -j list table inet cgwd`` (raises NetOpsError if it does not exist)."""
        doc: JsonDoc = json.loads(self.run(["-j", "list", "table", NFT_FAMILY, NFT_TABLE]))
        return doc
