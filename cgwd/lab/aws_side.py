"""The AWS side of a Site-to-Site VPN, emulated in network namespaces with strongSwan.

`AwsLab` builds, from an `AwsVpnConnection`, this topology (namespace roles; every name
carries a per-run prefix)::

     lan ── cgw ──(nat)── inet ──┬── aws1 ──┐
    10.20.0.10     (wan)         │ (charon) ├── vgw ── vpc
                                 └── aws2 ──┘ (ECMP)   10.99.0.10

- ``inet``: the internet, a router holding host routes to every public address.
- ``aws1``/``aws2``: one AWS endpoint per tunnel, each with its own charon (kernel-libipsec).
  One namespace and one charon per tunnel, rather than one charon holding both outside
  addresses, because that is what AWS has (two endpoints in different AZs, replaced and
  failing independently), because each endpoint can then be restarted, killed or cut on
  its own, and because libipsec has a single ``ipsec0`` and no marks: one charon would
  route every packet for the customer's LAN into whichever 0/0 CHILD_SA it matched first.
- ``vgw``: the VPC's router. It reaches the customer's LAN prefixes by an ECMP route over
  both endpoints (AWS picks the return tunnel at random per flow) and ignores the
  next hop of an endpoint whose link is down (``ignore_routes_with_linkdown``). Each
  endpoint's charon runs an updown script that brings its link to ``vgw`` up when its
  CHILD_SA is installed and down when the last one goes, so return traffic only uses
  tunnels that are up, as on AWS, with no daemon beside charon (``cgwd lab up`` leaves the
  lab running on its own).
- ``vpc``: a host in the VPC (default 10.99.0.10/24).
- ``cgw``: the customer gateway's namespace, where cgwd (or a test's strongSwan) runs. Its
  ``wan`` holds the file's CGW outside address, or with ``nat=True`` a private address
  behind ``nat``, which translates it to the file's CGW outside address (with random source
  ports, as carrier NATs do).
- ``lan``: an optional host behind ``cgw`` (default 10.20.0.10/24, gateway 10.20.0.1).

Tests control it: stop/start/restart/kill one endpoint's charon, cut/restore one tunnel's
outside path (an nft set in ``inet``), list SAs, read logs, run commands in any namespace.
All of it is torn down by `close` (also on a failed build), or by `teardown` from the
recorded `describe()` state in another process (``cgwd lab down``).
"""

from __future__ import annotations

import contextlib
import json
import shutil
import subprocess
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, replace
from ipaddress import IPv4Address, IPv4Interface, IPv4Network
from pathlib import Path
from types import TracebackType
from typing import Any

from cgwd.config.aws import AwsTunnel, AwsVpnConnection
from cgwd.errors import CgwdError, ConfigError
from cgwd.lab import aws_profile
from cgwd.lab.aws_profile import EndpointPolicy
from cgwd.lab.lab_options import LabOptions
from cgwd.lab.netns import Netns, Topology, run_prefix
from cgwd.lab.strongswan import Charon, ChildSa, IkeSa, stop_pid, wait_until

__all__ = ["AwsLab", "AwsSide", "Endpoint", "LabOptions", "teardown"]

NFT_TABLE = "cgwd_lab"
CHILD_SA_NAME = aws_profile.connection_name  # tunnel index -> config/child name


@dataclass
class Endpoint:
    """One tunnel's AWS endpoint: its namespace, charon and addresses."""

    index: int
    tunnel: AwsTunnel
    netns: Netns
    charon: Charon
    outside_ip: IPv4Address
    inside: IPv4Interface  # AWS's inside address with the tunnel's /30
    customer_inside: IPv4Address
    vgw_link: IPv4Interface  # the endpoint's address towards vgw (vgw's next hop to it)
    vgw_next_hop: IPv4Address  # vgw's address on that link (the endpoint's way to the VPC)
    updown: Path

    @property
    def name(self) -> str:
        return CHILD_SA_NAME(self.index)


class AwsLab:
    """The emulated AWS side of ``connection``; a context manager (`start` / `close`).

    ``attach_to`` adds a further VPN connection of the same customer gateway to a started
    lab: its endpoints, VPC router and VPC host get namespaces of their own, while the
    internet, ``cgw``, ``nat`` and ``lan`` are the other lab's (so one cgwd serves both,
    as with two VPN connections to two VPCs). Give it its own VPC CIDR and host. The
    attached lab is closed with the lab it is attached to, or before it.
    """

    MAX_ATTACHED = 3

    def __init__(
        self,
        connection: AwsVpnConnection,
        options: LabOptions | None = None,
        *,
        attach_to: AwsLab | None = None,
    ) -> None:
        self.connection = connection
        self.options = options or LabOptions()
        self.parent = attach_to
        self._attached: list[AwsLab] = []
        self._started = False
        self._subnets: list[IPv4Network]
        if attach_to is not None:
            if not attach_to._started or not attach_to.ns:
                raise CgwdError("attach_to: that lab is not started")
            if len(attach_to._attached) >= self.MAX_ATTACHED:
                raise CgwdError(f"at most {self.MAX_ATTACHED} labs can attach to one lab")
            self._slot = len(attach_to._attached) + 1
            self._subnets = attach_to._subnets
        else:
            self._slot = 0
            self._subnets = list(self.options.transit_network.subnets(new_prefix=24))
        self._validate()
        self.topology = Topology(prefix=self.options.prefix or run_prefix("lab"))
        self.ns: dict[str, Netns] = {}
        self.endpoints: dict[int, Endpoint] = {}
        self._owns_workdir = self.options.workdir is None
        self.workdir = self.options.workdir or Path(tempfile.mkdtemp(prefix="cgwd-lab-"))
        if attach_to is not None:
            attach_to._attached.append(self)

    # -- addresses ----------------------------------------------------------------------

    @property
    def cgw_outside_ip(self) -> IPv4Address:
        """The customer gateway's public address, as the AWS endpoints see it."""
        for t in self.connection.tunnels:
            if t.customer_gateway_outside_ip is not None:
                return t.customer_gateway_outside_ip
        raise ConfigError("the file gives no customer gateway outside IP")

    @property
    def nat(self) -> bool:
        return self.parent.nat if self.parent is not None else self.options.nat

    @property
    def cgw_local_ip(self) -> IPv4Address:
        """The address to bind IKE to inside ``cgw``: the public one, or the private one
        behind the NAT."""
        return self._addr(11, 2) if self.nat else self.cgw_outside_ip

    @property
    def cgw_wan_gateway(self) -> IPv4Address:
        return self._addr(11, 1) if self.nat else self._addr(10, 1)

    def aws_outside_ip(self, index: int) -> IPv4Address:
        return self._tunnel(index).vpn_gateway_outside_ip

    def aws_inside_ip(self, index: int) -> IPv4Interface:
        return _inside(self._tunnel(index))[0]

    def cgw_inside_ip(self, index: int) -> IPv4Interface:
        aws, cgw = _inside(self._tunnel(index))
        return IPv4Interface(f"{cgw}/{aws.network.prefixlen}")

    @property
    def vpc_host_ip(self) -> IPv4Address:
        return self.options.vpc_host.ip

    @property
    def lan_host_ip(self) -> IPv4Address | None:
        if self.parent is not None:
            return self.parent.lan_host_ip
        return self.options.lan_host.ip if self.options.lan else None

    def _addr(self, subnet: int, host: int) -> IPv4Address:
        address: IPv4Address = self._subnets[subnet].network_address + host
        return address

    def _iface(self, subnet: int, host: int) -> IPv4Interface:
        return IPv4Interface(f"{self._addr(subnet, host)}/24")

    def _inet_subnet(self, index: int) -> int:
        """Transit /24 between the internet and endpoint ``index`` (attached labs share
        the internet, so each takes its own pair)."""
        return 2 * self._slot + index

    def _inet_ifname(self, index: int) -> str:
        return f"aws{index}" if self._slot == 0 else f"aws{index}c{self._slot}"

    def _tunnel(self, index: int) -> AwsTunnel:
        for t in self.connection.tunnels:
            if t.index == index:
                return t
        raise CgwdError(f"no tunnel {index} in the connection")

    # -- validation (before anything is created) -----------------------------------------

    def _validate(self) -> None:
        o = self.options
        if not o.tunnels or any(i not in (1, 2) for i in o.tunnels):
            raise ConfigError(f"lab tunnels must be a subset of (1, 2), not {o.tunnels}")
        if o.transit_network.prefixlen > 19:
            raise ConfigError("the lab's transit network must be a /19 or larger")
        if o.vpc_host.ip not in o.vpc_cidr:
            raise ConfigError(f"VPC host {o.vpc_host.ip} is outside the VPC CIDR {o.vpc_cidr}")
        if (
            o.lan
            and o.lan_host.network
            != IPv4Interface(f"{o.lan_gateway}/{o.lan_host.network.prefixlen}").network
        ):
            raise ConfigError("the LAN host and its gateway must share a subnet")
        nets: list[tuple[str, IPv4Network]] = [
            ("transit network", o.transit_network),
            ("VPC CIDR", o.vpc_cidr),
            *((f"LAN prefix {p}", p) for p in o.lan_prefixes),
        ]
        for t in self.connection.tunnels:
            if t.index in o.tunnels:
                aws, _cgw = _inside(t)
                nets.append((f"tunnel {t.index} inside CIDR", aws.network))
        for k, (name_a, a) in enumerate(nets):
            for name_b, b in nets[k + 1 :]:
                if a.overlaps(b):
                    raise ConfigError(f"lab addresses overlap: {name_a} {a} and {name_b} {b}")
        if self.parent is not None:
            p = self.parent
            if self.cgw_outside_ip != p.cgw_outside_ip:
                raise ConfigError(
                    f"attach_to: customer gateway {self.cgw_outside_ip} differs from the "
                    f"lab's {p.cgw_outside_ip}: attached connections share the gateway"
                )
            others = [("other lab's VPC CIDR", p.options.vpc_cidr)] + [
                (f"other lab's tunnel {ep.index} inside CIDR", ep.inside.network)
                for ep in p.endpoints.values()
            ]
            others += [
                (f"another attached lab's VPC CIDR {a.options.vpc_cidr}", a.options.vpc_cidr)
                for a in p._attached
            ]
            mine = [(n, net) for n, net in nets if not n.startswith("LAN prefix")]
            for name_a, a in mine:
                for name_b, b in others:
                    if a != p.options.transit_network and a.overlaps(b):
                        raise ConfigError(f"lab addresses overlap: {name_a} {a} and {name_b} {b}")
            taken = {ep.outside_ip for lab in (p, *p._attached) for ep in lab.endpoints.values()}
            for t in self.connection.tunnels:
                if t.index in o.tunnels and t.vpn_gateway_outside_ip in taken:
                    raise ConfigError(
                        f"tunnel {t.index}: AWS outside address {t.vpn_gateway_outside_ip} "
                        "is already in the lab"
                    )
        publics = [
            self.cgw_outside_ip,
            *(t.vpn_gateway_outside_ip for t in self.connection.tunnels),
        ]
        for ip in publics:
            for name, net in nets:
                if ip in net:
                    raise ConfigError(f"outside address {ip} lies in the lab's {name} {net}")

    # -- build ----------------------------------------------------------------------------

    def __enter__(self) -> AwsLab:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def start(self) -> None:
        """Build everything and start the endpoints. On any failure, tears down and raises."""
        if self._started:
            raise CgwdError("lab already started")
        self._started = True
        try:
            if self.parent is not None:
                self._build_attached()
            else:
                self._build()
        except BaseException:
            self.close()
            raise

    def _add_namespaces(self, roles: list[str]) -> None:
        for role in roles:
            self.ns[role] = self.topology.add_netns(role)
        for role in roles:
            ns = self.ns[role]
            _sysctls(
                ns, {"net.ipv4.conf.all.rp_filter": "0", "net.ipv4.conf.default.rp_filter": "0"}
            )
            if (
                role in ("inet", "vgw", "nat")
                or role.startswith("aws")
                or (role == "cgw" and self.options.cgw_forwarding)
            ):
                _sysctls(ns, {"net.ipv4.ip_forward": "1"})

    def _build_attached(self) -> None:
        assert self.parent is not None
        self.workdir.mkdir(parents=True, exist_ok=True, mode=0o700)
        self._add_namespaces([*(f"aws{i}" for i in self.options.tunnels), "vgw", "vpc"])
        for role in ("inet", "cgw", "nat", "lan"):
            if role in self.parent.ns:
                self.ns[role] = self.parent.ns[role]
        self._build_vpc_and_endpoints()

    def _build(self) -> None:
        o = self.options
        self.workdir.mkdir(parents=True, exist_ok=True, mode=0o700)
        topo = self.topology
        roles = ["inet", *(f"aws{i}" for i in o.tunnels), "vgw", "vpc", "cgw"]
        if o.nat:
            roles.append("nat")
        if o.lan:
            roles.append("lan")
        self._add_namespaces(roles)
        inet, cgw = self.ns["inet"], self.ns["cgw"]
        # The internet and the customer side.
        if o.nat:
            nat = self.ns["nat"]
            topo.link(inet, "nat", nat, "inet")
            _addr(inet, "nat", self._iface(10, 1))
            _addr(nat, "inet", self._iface(10, 2))
            _addr(nat, "inet", IPv4Interface(f"{self.cgw_outside_ip}/32"))
            _ip(
                nat, f"route add default via {self._addr(10, 1)} dev inet src {self.cgw_outside_ip}"
            )
            _ip(inet, f"route add {self.cgw_outside_ip}/32 via {self._addr(10, 2)} dev nat")
            topo.link(nat, "cgw", cgw, "wan")
            _addr(nat, "cgw", self._iface(11, 1))
            _addr(cgw, "wan", self._iface(11, 2))
            cgw.ip("route", "add", "default", "via", str(self._addr(11, 1)), "dev", "wan")
            if o.nat_udp_timeout is not None:
                _sysctls(
                    nat,
                    {
                        "net.netfilter.nf_conntrack_udp_timeout": str(o.nat_udp_timeout),
                        "net.netfilter.nf_conntrack_udp_timeout_stream": str(o.nat_udp_timeout),
                    },
                )
            mapping = " fully-random" if o.nat_random_ports else ""
            _nft(
                nat,
                f"""table ip {NFT_TABLE} {{
    chain postrouting {{
        type nat hook postrouting priority srcnat; policy accept;
        oifname "inet" ip saddr {self._subnets[11]} snat to {self.cgw_outside_ip}{mapping}
    }}
}}
""",
            )
        else:
            topo.link(inet, "cgw", cgw, "wan")
            _addr(inet, "cgw", self._iface(10, 1))
            _addr(cgw, "wan", self._iface(10, 2))
            _addr(cgw, "wan", IPv4Interface(f"{self.cgw_outside_ip}/32"))
            _ip(cgw, f"route add default via {self._addr(10, 1)} dev wan src {self.cgw_outside_ip}")
            _ip(inet, f"route add {self.cgw_outside_ip}/32 via {self._addr(10, 2)} dev cgw")
        # Cutting a tunnel = putting its AWS outside address in this set.
        _nft(
            inet,
            f"""table ip {NFT_TABLE} {{
    set cut {{
        type ipv4_addr
    }}
    chain forward {{
        type filter hook forward priority filter; policy accept;
        ip saddr @cut drop
        ip daddr @cut drop
    }}
}}
""",
        )
        if o.lan:
            lan = self.ns["lan"]
            topo.link(cgw, "lan", lan, "cgw")
            plen = o.lan_host.network.prefixlen
            _addr(cgw, "lan", IPv4Interface(f"{o.lan_gateway}/{plen}"))
            _addr(lan, "cgw", o.lan_host)
            lan.ip("route", "add", "default", "via", str(o.lan_gateway), "dev", "cgw")

        self._build_vpc_and_endpoints()

    def _build_vpc_and_endpoints(self) -> None:
        o = self.options
        topo, vgw, vpc = self.topology, self.ns["vgw"], self.ns["vpc"]
        # The VPC.
        topo.link(vgw, "vpc", vpc, "vgw")
        vgw_vpc_ip = next(h for h in o.vpc_host.network.hosts() if h != o.vpc_host.ip)
        _addr(vgw, "vpc", IPv4Interface(f"{vgw_vpc_ip}/{o.vpc_host.network.prefixlen}"))
        _addr(vpc, "vgw", o.vpc_host)
        vpc.ip("route", "add", "default", "via", str(vgw_vpc_ip), "dev", "vgw")

        # The endpoints.
        for i in o.tunnels:
            self._build_endpoint(i)
        # vgw -> the customer side: ECMP over the endpoints whose tunnel is up.
        nexthops: list[str] = []
        for ep in self.endpoints.values():
            nexthops += ["nexthop", "via", str(ep.vgw_link.ip), "dev", f"aws{ep.index}"]
            _ip(vgw, f"route add {ep.inside.network} via {ep.vgw_link.ip} dev aws{ep.index}")
        for prefix in o.lan_prefixes:
            if len(self.endpoints) == 1:
                vgw.ip("route", "add", str(prefix), *nexthops[1:])
            else:
                vgw.ip("route", "add", str(prefix), *nexthops)
        for ep in self.endpoints.values():
            self._start_endpoint(ep)

    def _build_endpoint(self, i: int) -> None:
        o = self.options
        ns, inet, vgw = self.ns[f"aws{i}"], self.ns["inet"], self.ns["vgw"]
        tunnel = self._tunnel(i)
        outside = tunnel.vpn_gateway_outside_ip
        inet_if, k = self._inet_ifname(i), self._inet_subnet(i)
        self.topology.link(inet, inet_if, ns, "inet")
        _addr(inet, inet_if, self._iface(k, 1))
        _addr(ns, "inet", self._iface(k, 2))
        _addr(ns, "inet", IPv4Interface(f"{outside}/32"))
        _ip(ns, f"route add default via {self._addr(k, 1)} dev inet src {outside}")
        inet.ip("route", "add", f"{outside}/32", "via", str(self._addr(k, 2)), "dev", inet_if)
        self.topology.link(vgw, f"aws{i}", ns, "vgw")
        _addr(vgw, f"aws{i}", self._iface(20 + i, 1))
        _addr(ns, "vgw", self._iface(20 + i, 2))
        _sysctls(vgw, {f"net.ipv4.conf.aws{i}.ignore_routes_with_linkdown": "1"})
        # AWS forwards between the tunnel and the VPC only, never tunnel -> internet.
        _nft(
            ns,
            f"""table inet {NFT_TABLE} {{
    chain forward {{
        type filter hook forward priority filter; policy drop;
        iifname "ipsec0" oifname "vgw" accept
        iifname "vgw" oifname "ipsec0" accept
    }}
}}
""",
        )
        aws_inside, cgw_inside = _inside(tunnel)
        workdir = self.workdir / f"aws{i}"
        workdir.mkdir(parents=True, exist_ok=True, mode=0o700)
        updown = workdir / "updown.sh"
        ep = Endpoint(
            index=i,
            tunnel=tunnel,
            netns=ns,
            charon=Charon(ns, workdir, settings=o.charon_settings(), name=f"aws{i}"),
            outside_ip=outside,
            inside=aws_inside,
            customer_inside=cgw_inside,
            vgw_link=self._iface(20 + i, 2),
            vgw_next_hop=self._addr(20 + i, 1),
            updown=updown,
        )
        updown.write_text(self._updown_script(ep))
        updown.chmod(0o755)
        ep.charon.set_swanctl_conf(
            aws_profile.endpoint_swanctl_conf(
                self.connection,
                tunnel,
                o.policy(i),
                customer_gateway_ip=self.cgw_outside_ip,
                updown=updown,
            ),
            load=False,
        )
        self.endpoints[i] = ep

    def _updown_script(self, ep: Endpoint) -> str:
        ip = shutil.which("ip") or "/usr/sbin/ip"
        flock = shutil.which("flock") or "/usr/bin/flock"
        routes = "\n".join(
            f"        {ip} route replace {p} dev ipsec0" for p in self.options.lan_prefixes
        )
        state = ep.charon.workdir / "up.d"
        return f"""#!/bin/sh
# generated by cgwd.lab: AWS endpoint {ep.index}'s routing follows its CHILD_SAs.
# Installed: the VPC router may send the customer's traffic here (link to vgw up).
# Last one gone: the link goes down and vgw ignores this next hop.
STATE={state}
# One event at a time: a down racing an up (IKEv1 reauthentication, make-before-break)
# must not leave the link down while an SA is installed.
exec 9>"$STATE.lock"
{flock} 9
case "$PLUTO_VERB" in
    up-client)
        mkdir -p "$STATE"
        : > "$STATE/$PLUTO_UNIQUEID-$PLUTO_REQID"
        {ip} addr replace {ep.inside} dev ipsec0
{routes}
        {ip} link set dev vgw up
        {ip} route replace {self.options.vpc_cidr} via {ep.vgw_next_hop} dev vgw
        ;;
    down-client)
        rm -f "$STATE/$PLUTO_UNIQUEID-$PLUTO_REQID"
        if [ -z "$(ls -A "$STATE" 2>/dev/null)" ]; then
            {ip} link set dev vgw down
        fi
        ;;
esac
exit 0
"""

    def _start_endpoint(self, ep: Endpoint) -> None:
        shutil.rmtree(ep.charon.workdir / "up.d", ignore_errors=True)
        ep.netns.ip("link", "set", "dev", "vgw", "down")
        ep.charon.start(detach=self.options.detach)
        # kernel-libipsec made ipsec0 at start-up; give it AWS's inside address now so the
        # customer gateway can reach it as soon as a CHILD_SA is up (updown repeats this).
        ep.netns.ip("addr", "replace", str(ep.inside), "dev", "ipsec0")
        for prefix in self.options.lan_prefixes:
            ep.netns.ip("route", "replace", str(prefix), "dev", "ipsec0")

    # -- controls -------------------------------------------------------------------------

    def endpoint(self, index: int) -> Endpoint:
        try:
            return self.endpoints[index]
        except KeyError:
            raise CgwdError(f"the lab has no endpoint for tunnel {index}") from None

    def stop_endpoint(self, index: int) -> None:
        """Stop tunnel ``index``'s AWS endpoint gracefully (it sends DELETEs)."""
        ep = self.endpoint(index)
        ep.charon.stop()
        self._withdraw(ep)

    def kill_endpoint(self, index: int) -> None:
        """Kill the endpoint's charon: it vanishes without a DELETE."""
        ep = self.endpoint(index)
        ep.charon.kill()
        self._withdraw(ep)

    def start_endpoint(self, index: int) -> None:
        ep = self.endpoint(index)
        if not ep.charon.running:
            self._start_endpoint(ep)

    def restart_endpoint(self, index: int) -> None:
        self.stop_endpoint(index)
        self.start_endpoint(index)

    def _withdraw(self, ep: Endpoint) -> None:
        shutil.rmtree(ep.charon.workdir / "up.d", ignore_errors=True)
        ep.netns.ip("link", "set", "dev", "vgw", "down", check=False)

    def reconfigure(self, index: int, policy: EndpointPolicy | None = None, **changes: Any) -> None:
        """Give endpoint ``index`` a new policy and load it into its running charon.

        ``policy`` defaults to the lab's own (`LabOptions.policy`); ``changes`` are applied on
        top, e.g. ``reconfigure(1, ike_proposals="aes256gcm16-prfsha384-ecp384")`` restricts
        endpoint 1 to one suite and ``reconfigure(1)`` restores it. Established SAs keep
        their algorithms; new negotiations use the new settings, so one lab serves a whole
        matrix of suites. Raises ConfigError (bad policy) or CgwdError (charon refused it).
        """
        policy = replace(policy or self.options.policy(index), **changes)
        ep = self.endpoint(index)
        ep.charon.set_swanctl_conf(
            aws_profile.endpoint_swanctl_conf(
                self.connection,
                ep.tunnel,
                policy,
                customer_gateway_ip=self.cgw_outside_ip,
                updown=ep.updown,
            )
        )

    def cut(self, index: int) -> None:
        """Drop every packet between the internet and tunnel ``index``'s AWS endpoint."""
        addr = self.aws_outside_ip(index)
        self.ns["inet"].run("nft", "add", "element", "ip", NFT_TABLE, "cut", f"{{ {addr} }}")

    def restore(self, index: int) -> None:
        addr = self.aws_outside_ip(index)
        self.ns["inet"].run(
            "nft", "delete", "element", "ip", NFT_TABLE, "cut", f"{{ {addr} }}", check=False
        )

    def is_cut(self, index: int) -> bool:
        out = self.ns["inet"].run("nft", "-j", "list", "set", "ip", NFT_TABLE, "cut").stdout
        elements: list[object] = []
        for item in json.loads(out).get("nftables", []):
            if "set" in item:
                elements = item["set"].get("elem", [])
        return str(self.aws_outside_ip(index)) in [str(e) for e in elements]

    def initiate(self, index: int, *, timeout: float = 15.0) -> bool:
        """Make the AWS endpoint initiate (as with startup action ``start``)."""
        ep = self.endpoint(index)
        return ep.charon.initiate(ep.name, timeout=timeout, check=False)

    def rekey(self, index: int, *, ike: bool = False) -> None:
        """Make the endpoint rekey its CHILD_SA (or, with ``ike``, its IKE_SA) now, as AWS
        does at a random point of the rekey margin."""
        ep = self.endpoint(index)
        if ike:
            ep.charon.rekey(ike=ep.name)
        else:
            ep.charon.rekey(child=ep.name)

    def list_sas(self, index: int) -> list[IkeSa]:
        return self.endpoint(index).charon.list_sas()

    def tunnel_child(self, index: int) -> ChildSa | None:
        """The endpoint's installed CHILD_SA, or None when the tunnel is down."""
        ep = self.endpoint(index)
        return ep.charon.installed_child(ep.name)

    def wait_tunnel_up(self, index: int, timeout: float = 20.0) -> ChildSa:
        ep = self.endpoint(index)
        return ep.charon.wait_child_up(ep.name, timeout=timeout)

    def wait_tunnel_down(self, index: int, timeout: float = 30.0) -> None:
        ep = self.endpoint(index)
        ep.charon.wait_child_down(ep.name, timeout=timeout)

    def return_path_up(self, index: int) -> bool:
        """Whether vgw currently sends customer-bound traffic through this endpoint."""
        out = self.endpoint(index).netns.ip("-j", "link", "show", "dev", "vgw").stdout
        flags = json.loads(out)[0].get("flags", [])
        return "UP" in flags

    def wait_return_path(self, index: int, up: bool, timeout: float = 10.0) -> None:
        wait_until(
            lambda: self.return_path_up(index) == up,
            timeout,
            0.1,
            f"tunnel {index}'s return path {'up' if up else 'down'}",
        )

    def log(self, index: int) -> str:
        return self.endpoint(index).charon.log_text()

    def run(
        self, role: str, *cmd: str, check: bool = True, timeout: float = 30.0
    ) -> subprocess.CompletedProcess[str]:
        """Run a command in a namespace by role: inet, aws1, aws2, vgw, vpc, cgw, nat, lan."""
        try:
            ns = self.ns[role]
        except KeyError:
            raise CgwdError(f"the lab has no {role!r} namespace") from None
        return ns.run(*cmd, check=check, timeout=timeout)

    def ping(
        self,
        role: str,
        destination: IPv4Address | str,
        *,
        count: int = 2,
        source: str | None = None,
        wait: float = 1.0,
    ) -> bool:
        """Whether ``count`` pings from namespace ``role`` all get answers."""
        args = ["ping", "-n", "-q", "-c", str(count), "-i", "0.2", "-W", str(wait)]
        if source:
            args += ["-I", source]
        proc = self.run(role, *args, str(destination), check=False, timeout=count * wait + 10)
        return proc.returncode == 0 and f" {count} received" in proc.stdout

    # -- description and teardown -------------------------------------------------------

    def describe(self) -> dict[str, Any]:
        """What was built, JSON-serialisable and secret-free (``cgwd lab up`` records it)."""
        return {
            "prefix": self.topology.prefix,
            "workdir": str(self.workdir),
            "owns_workdir": self._owns_workdir,
            # Only this lab's own namespaces: `teardown` removes exactly these.
            "namespaces": {
                role: ns.name
                for role, ns in self.ns.items()
                if ns.name.startswith(self.topology.prefix + "-")
            },
            "attached_to": self.parent.topology.prefix if self.parent else None,
            "nat": self.nat,
            "cgw": {
                "namespace": self.ns["cgw"].name if "cgw" in self.ns else None,
                "outside_ip": str(self.cgw_outside_ip),
                "local_ip": str(self.cgw_local_ip),
                "wan_gateway": str(self.cgw_wan_gateway),
                "lan_gateway": str(self.options.lan_gateway) if "lan" in self.ns else None,
            },
            "vpc_host": str(self.vpc_host_ip),
            "vpc_cidr": str(self.options.vpc_cidr),
            "lan_host": str(self.lan_host_ip) if self.lan_host_ip else None,
            "lan_prefixes": [str(p) for p in self.options.lan_prefixes],
            "tunnels": [
                {
                    "index": ep.index,
                    "namespace": ep.netns.name,
                    "aws_outside_ip": str(ep.outside_ip),
                    "aws_inside_ip": str(ep.inside),
                    "cgw_inside_ip": str(ep.customer_inside),
                    "charon_pid": ep.charon.pid,
                    "vici": ep.charon.uri,
                    "log": str(ep.charon.log_path),
                }
                for ep in self.endpoints.values()
            ],
        }

    def close(self) -> None:
        """Stop the charons, remove every namespace and (if ours) the work directory.

        Never raises; safe to call twice. Labs attached to this one are closed first.
        """
        for child in list(self._attached):
            child.close()
        if self.parent is not None and self in self.parent._attached:
            self.parent._attached.remove(self)
        for ep in self.endpoints.values():
            with contextlib.suppress(Exception):
                ep.charon.stop(timeout=3.0)
        self.topology.close()
        if self._owns_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)


AwsSide = AwsLab  # the name used in contracts.md


def teardown(state: Mapping[str, Any]) -> list[str]:
    """Tear down a lab from its `AwsLab.describe` record (another process built it).

    Returns what it removed, for the user. Never raises on a partly gone lab.
    """
    done: list[str] = []
    for tunnel in state.get("tunnels", []):
        pid = tunnel.get("charon_pid")
        if isinstance(pid, int) and stop_pid(pid, timeout=3.0):
            done.append(f"stopped charon {pid} (tunnel {tunnel.get('index')})")
    names = [str(n) for n in state.get("namespaces", {}).values()]
    topo = Topology(prefix=str(state.get("prefix", "")), namespaces=[Netns(n) for n in names])
    existing = set(
        subprocess.run(
            ["ip", "netns", "list"], capture_output=True, text=True, check=False
        ).stdout.split()
    )
    done += [f"removed namespace {n}" for n in names if n in existing]
    topo.close()
    workdir = state.get("workdir")
    if workdir and state.get("owns_workdir"):
        shutil.rmtree(str(workdir), ignore_errors=True)
        done.append(f"removed {workdir}")
    return done


# -- helpers ---------------------------------------------------------------------------


def _inside(tunnel: AwsTunnel) -> tuple[IPv4Interface, IPv4Address]:
    """(AWS inside address with the /30, customer inside address) of a tunnel.

    AWS takes the first host of the /30 and the customer gateway the second
    (aws-behaviour.md section 1); the file's explicit values win when present.
    """
    cidr = tunnel.inside_cidr
    if cidr is None and tunnel.vpn_gateway_inside_ip is not None:
        cidr = IPv4Interface(f"{tunnel.vpn_gateway_inside_ip}/30").network
    if cidr is None:
        raise ConfigError(f"tunnel {tunnel.index}: the file gives no inside addresses")
    aws = tunnel.vpn_gateway_inside_ip or cidr.network_address + 1
    cgw = tunnel.customer_gateway_inside_ip or cidr.network_address + 2
    return IPv4Interface(f"{aws}/{cidr.prefixlen}"), cgw


def _ip(ns: Netns, command: str) -> None:
    """``ip`` in ``ns`` with a command line of addresses and names (no spaces inside)."""
    ns.ip(*command.split())


def _addr(ns: Netns, dev: str, address: IPv4Interface) -> None:
    ns.ip("addr", "add", str(address), "dev", dev)


def _sysctls(ns: Netns, values: Mapping[str, str]) -> None:
    ns.run("sysctl", "-q", "-w", *(f"{k}={v}" for k, v in values.items()))


def _nft(ns: Netns, ruleset: str) -> None:
    ns.run("nft", "-f", "-", input_text=ruleset)
