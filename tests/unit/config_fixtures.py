"""Hand-built AWS imports for the configuration tests (values from the shared samples)."""

from __future__ import annotations

from dataclasses import replace
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path

from cgwd.config.aws import AwsTunnel, AwsVpnConnection, DeadPeerDetection, PhaseSettings
from cgwd.secret import Secret

PSK1 = "sVbYmmbuv_1I4wJ2RvidkZboWOfs.8FW"
PSK2 = "jNXXhCxPi5P_QefxceYSOlbTG.p8bYsE"


def phase(
    enc: str = "AES128", integ: str = "SHA1", dh: int = 2, life: int = 28800
) -> PhaseSettings:
    return PhaseSettings(enc, integ, dh, life, (enc,), (integ,), (dh,))


def tunnel(
    index: int,
    aws_ip: str,
    inside: str,
    *,
    psk: str | None = PSK1,
    ike_version: str | None = "ikev1",
) -> AwsTunnel:
    net = IPv4Network(inside)
    return AwsTunnel(
        index=index,
        customer_gateway_outside_ip=IPv4Address("198.51.100.92"),
        vpn_gateway_outside_ip=IPv4Address(aws_ip),
        customer_gateway_inside_ip=net.network_address + 2,
        vpn_gateway_inside_ip=net.network_address + 1,
        inside_cidr=net,
        pre_shared_key=None if psk is None else Secret(psk),
        ike_version=ike_version,  # type: ignore[arg-type]
        phase1=phase(),
        phase2=phase(life=3600),
        dpd=DeadPeerDetection(10, 3),
        tcp_mss_adjustment=1379,
        tunnel_mtu=1436,
        static_route_next_hop=net.network_address + 1,
    )


def connection(
    vpn_id: str = "vpn-027ce4abbdce5c106",
    aws_ips: tuple[str, str] = ("203.0.113.66", "203.0.113.189"),
    insides: tuple[str, str] = ("169.254.141.36/30", "169.254.27.180/30"),
    **tunnel_kw: object,
) -> AwsVpnConnection:
    return AwsVpnConnection(
        format="aws-generic-text",
        vpn_connection_id=vpn_id,
        vpn_gateway_id="vgw-0bab21a9566185382",
        customer_gateway_id="cgw-0e20ca18c550b4fc3",
        routing="static",
        tunnels=(
            tunnel(1, aws_ips[0], insides[0], **tunnel_kw),  # type: ignore[arg-type]
            replace(
                tunnel(2, aws_ips[1], insides[1], **tunnel_kw),  # type: ignore[arg-type]
                pre_shared_key=None if tunnel_kw.get("psk", PSK1) is None else Secret(PSK2),
            ),
        ),
    )


class FakeLoader:
    """An `AwsLoader` serving hand-built connections by file name."""

    def __init__(self, files: dict[str, AwsVpnConnection]) -> None:
        self.files = files
        self.calls: list[tuple[Path, str | None]] = []

    def __call__(self, path: Path, connection_id: str | None) -> AwsVpnConnection:
        self.calls.append((path, connection_id))
        return self.files[path.name]
