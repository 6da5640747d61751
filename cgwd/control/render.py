"""``cgwd status`` as text: a summary table, then the SAs of each tunnel.

Example::

    CONNECTION  TUNNEL  INTERFACE  STATE       ROUTES   OUTSIDE (local -> AWS)      IKE  DATAPLANE
    vpc01       1       vpc01-t1   up          active   192.0.2.1 -> 203.0.113.10  v2   userspace
    vpc01       2       vpc01-t2   connecting  -        192.0.2.1 -> 203.0.113.20  v2   userspace

    vpc01: routes 10.99.0.0/16 over both tunnels, prefer-1
    vpc01 tunnel 1 (vpc01-t1, inside 169.254.10.2/30, MTU 1446, MSS 1406)
      IKEv2 SA  established, up 12s, rekey in 7h13m
                aes128gcm16, prfsha256, DH group 19
                SPIs 0123456789abcdef (local) fedcba9876543210 (remote)
      CHILD SA  in c1234567, out d1234567, aes128gcm16, up 12s, rekey in 48m
                in:  1.2 KiB, 10 packets, last 0s ago
                out: 2.3 KiB, 12 packets, last 1s ago

Pure function of a validated `StatusDocument`; the words match the JSON so an admin can
go from one to the other.
"""

from __future__ import annotations

from collections.abc import Sequence

from cgwd.control.status import (
    ChildSaStatus,
    ConnectionStatus,
    IkeSaStatus,
    StatusDocument,
    TunnelStatus,
    summary_line,
)

_UNITS = ("B", "KiB", "MiB", "GiB", "TiB", "PiB")


def format_bytes(count: int) -> str:
    """``999 B``, ``1.2 KiB``, ``3.4 GiB`` (binary units, one decimal)."""
    value = float(count)
    for unit in _UNITS:
        if value < 1024 or unit == _UNITS[-1]:
            return f"{count} B" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")


def format_duration(seconds: int) -> str:
    """``45s``, ``5m03s``, ``7h13m``, ``2d04h``: two units at most, as `ip`/`swanctl` do."""
    if seconds < 60:
        return f"{seconds}s"
    minutes, secs = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    if hours < 24:
        return f"{hours}h{minutes:02d}m"
    days, hours = divmod(hours, 24)
    return f"{days}d{hours:02d}h"


def _table(rows: Sequence[Sequence[str]]) -> list[str]:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return [
        "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
        for row in rows
    ]


def _routes_cell(tunnel: TunnelStatus) -> str:
    if tunnel.active:
        return "active"
    return "standby" if tunnel.state == "up" else "-"


def _summary_rows(doc: StatusDocument) -> list[list[str]]:
    rows = [
        [
            "CONNECTION",
            "TUNNEL",
            "INTERFACE",
            "STATE",
            "ROUTES",
            "OUTSIDE (local -> AWS)",
            "IKE",
            "DATAPLANE",
        ]
    ]
    for conn in doc.connections:
        for t in sorted(conn.tunnels, key=lambda t: t.index):
            local = str(t.customer_gateway_outside_ip) if t.customer_gateway_outside_ip else "?"
            rows.append(
                [
                    conn.name,
                    str(t.index),
                    t.interface,
                    t.state,
                    _routes_cell(t),
                    f"{local} -> {t.vpn_gateway_outside_ip}",
                    f"v{t.ike.version}" if t.ike else "-",
                    t.dataplane,
                ]
            )
    return rows


def _times(established: int | None, rekey_in: int | None) -> str:
    parts = []
    if established is not None:
        parts.append(f"up {format_duration(established)}")
    if rekey_in is not None:
        parts.append(f"rekey in {format_duration(rekey_in)}")
    return ", ".join(parts)


def _ike_lines(ike: IkeSaStatus) -> list[str]:
    head = ", ".join(
        p for p in (ike.state, _times(ike.established_seconds, ike.rekey_in_seconds)) if p
    )
    suite = ", ".join(p for p in (ike.encryption, ike.integrity, ike.prf) if p)
    lines = [
        f"  IKEv{ike.version} SA  {head}",
        f"            {suite}, DH group {ike.dh_group}",
        f"            SPIs {ike.local_spi} (local) {ike.remote_spi} (remote)",
    ]
    if ike.remote_port is not None or ike.nat_detected:
        ports = f"UDP {ike.local_port or '?'} -> {ike.remote_port or '?'}"
        lines.append(f"            {ports}" + (", NAT detected" if ike.nat_detected else ""))
    return lines


def _child_lines(child: ChildSaStatus) -> list[str]:
    suite = ", ".join(p for p in (child.encryption, child.integrity) if p)
    head = f"in {child.spi_in}, out {child.spi_out}, {suite}"
    times = _times(child.established_seconds, child.rekey_in_seconds)
    if times:
        head += f", {times}"
    if child.udp_encap:
        head += ", UDP-encapsulated"
    inbound = f"in:  {format_bytes(child.bytes_in)}, {child.packets_in} packets"
    inbound += _last(child.last_in_seconds)
    if child.drops_in:
        inbound += f", {child.drops_in} dropped"
        if child.drops_in_by_reason:
            reasons = sorted(child.drops_in_by_reason.items(), key=lambda kv: (-kv[1], kv[0]))
            inbound += " (" + ", ".join(f"{name} {count}" for name, count in reasons) + ")"
    outbound = f"out: {format_bytes(child.bytes_out)}, {child.packets_out} packets"
    outbound += _last(child.last_out_seconds)
    return [f"  CHILD SA  {head}", f"            {inbound}", f"            {outbound}"]


def _last(seconds: int | None) -> str:
    return "" if seconds is None else f", last {format_duration(seconds)} ago"


def _connection_lines(conn: ConnectionStatus) -> list[str]:
    lines = []
    if conn.routes:
        nets = ", ".join(str(r) for r in conn.routes)
        pref = f", {conn.tunnel_preference}" if conn.tunnel_preference else ""
        lines.append(f"{conn.name}: routes {nets} over the tunnels that are up{pref}")
    else:
        lines.append(f"{conn.name}: no static routes (dynamic routing, e.g. BGP)")
    for t in sorted(conn.tunnels, key=lambda t: t.index):
        details = [t.interface]
        if t.inside_address is not None:
            details.append(f"inside {t.inside_address}")
        if t.mtu is not None:
            details.append(f"MTU {t.mtu}")
        if t.mss is not None:
            details.append(f"MSS {t.mss}")
        lines.append(f"{conn.name} tunnel {t.index} ({', '.join(details)})")
        if t.ike is not None:
            lines.extend(_ike_lines(t.ike))
        else:
            lines.append("  no IKE SA")
        for child in t.child_sas:
            lines.extend(_child_lines(child))
        if t.last_error:
            lines.append(f"  last error: {t.last_error}")
    return lines


def render_status_text(status_doc: StatusDocument) -> str:
    """The whole ``cgwd status`` output, ending with a newline."""
    doc = status_doc
    lines: list[str] = []
    if doc.daemon is not None:
        d = doc.daemon
        uptime = format_duration(d.uptime_seconds)
        lines.append(f"cgwd {d.version}, pid {d.pid}, up {uptime}: {summary_line(doc)}")
        if d.ip_forwarding is False:
            lines.append(
                "WARNING: IP forwarding is off (net.ipv4.ip_forward=0): "
                "the LAN cannot use the tunnels"
            )
        if d.dataplane_reason:
            lines.append(f"dataplane: {d.dataplane_reason}")
    else:
        lines.append(summary_line(doc))
    if not doc.connections:
        lines.append("no connections configured")
        return "\n".join(lines) + "\n"
    lines.append("")
    lines.extend(_table(_summary_rows(doc)))
    for conn in doc.connections:
        lines.append("")
        lines.extend(_connection_lines(conn))
    return "\n".join(lines) + "\n"
