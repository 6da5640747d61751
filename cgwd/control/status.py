"""The status document: one schema for the daemon (producer), the CLI and tests (consumers).

The daemon builds a `StatusDocument` and returns ``doc.model_dump(mode="json")`` from the
``status`` control method; ``cgwd status --json`` prints that JSON unchanged and ``cgwd
status`` renders it with `cgwd.control.render.render_status_text` after validating it here.

No secret can be represented: every model forbids unknown members, and no field has a type
that could hold key material (SPIs and suite names are public: they travel in clear in IKE
and ESP headers). A `cgwd.secret.Secret` given for a string field fails validation.

Shape (members beyond issue 7's minimum are optional, so older daemons still validate)::

    {"daemon": {...} | null,
     "connections": [{"name": "vpc01", "tunnel_preference": "prefer-1", "routes": [...],
       "tunnels": [{"index": 1, "interface": "vpc01-t1", "state": "up", "active": true,
         "last_error": null, "vpn_gateway_outside_ip": "...", "dataplane": "userspace",
         "ike": {...} | null, "child_sas": [{...}]}]}]}
"""

from __future__ import annotations

import json
from ipaddress import IPv4Address, IPv4Interface, IPv4Network
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt, StrictStr, model_validator

TunnelState = Literal["up", "connecting", "down"]
"""``up``: a CHILD_SA carries traffic; ``connecting``: negotiating (or waiting to retry);
``down``: administratively stopped (``cgwd terminate``) or not started."""

IkeState = Literal["negotiating", "established", "rekeying", "deleting", "down"]
"""The words AWS's tunnel logs use for Phase 1/2 (aws-behaviour §11), lower-cased."""

Dataplane = Literal["userspace", "kernel", "fake"]

Spi = Annotated[StrictStr, Field(pattern=r"^[0-9a-f]{8}$|^[0-9a-f]{16}$")]
"""An SPI in lower-case hex: 8 digits for ESP (RFC 4303 §2.1), 16 for IKE (RFC 7296 §3.1)."""

Seconds = Annotated[int, Field(ge=0)]
Count = Annotated[int, Field(ge=0)]
DropReasonName = Annotated[StrictStr, Field(pattern=r"^[a-z_]{1,40}$")]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


class IkeSaStatus(_Model):
    version: Literal[1, 2]
    state: IkeState
    local_spi: Spi
    remote_spi: Spi
    encryption: StrictStr  # e.g. "aes128gcm16", "aes256" (strongSwan-style names)
    integrity: StrictStr | None = None  # None for AEAD suites
    prf: StrictStr  # e.g. "prfsha256"
    dh_group: StrictInt  # IANA Transform Type 4 id, e.g. 19, 14
    established_seconds: Seconds | None = None
    rekey_in_seconds: Seconds | None = None
    local_port: StrictInt | None = None  # 500, or 4500 after NAT-T floated
    remote_port: StrictInt | None = None
    nat_detected: StrictBool | None = None


class ChildSaStatus(_Model):
    spi_in: Spi
    spi_out: Spi
    encryption: StrictStr
    integrity: StrictStr | None = None
    bytes_in: Count = 0
    bytes_out: Count = 0
    packets_in: Count = 0
    packets_out: Count = 0
    drops_in: Count | None = None  # packets refused (ICV, replay, ...)
    # drops_in by reason, named as `cgwd.esp.sa.DropReason` values ("auth_failed", ...)
    drops_in_by_reason: dict[DropReasonName, Count] | None = None
    # Seconds since the SA last carried a packet (inbound: an authentic one); None when
    # it has carried none, or the dataplane cannot tell (Linux 6.1's XFRM).
    last_in_seconds: Seconds | None = None
    last_out_seconds: Seconds | None = None
    established_seconds: Seconds | None = None
    rekey_in_seconds: Seconds | None = None
    udp_encap: StrictBool | None = None  # ESP in UDP 4500 (NAT-T)


class TunnelStatus(_Model):
    index: Annotated[int, Field(ge=1, le=2)]
    interface: StrictStr
    state: TunnelState
    active: StrictBool  # this tunnel carries the connection's routes right now
    last_error: StrictStr | None = None
    vpn_gateway_outside_ip: IPv4Address
    customer_gateway_outside_ip: IPv4Address | None = None
    inside_address: IPv4Interface | None = None  # ours, e.g. 169.254.141.38/30
    dataplane: Dataplane
    mtu: StrictInt | None = None
    mss: StrictInt | None = None
    ike: IkeSaStatus | None = None
    child_sas: list[ChildSaStatus] = Field(default_factory=list)


class ConnectionStatus(_Model):
    name: StrictStr
    tunnels: list[TunnelStatus]
    routes: list[IPv4Network] = Field(default_factory=list)  # static routes; empty for BGP
    tunnel_preference: Literal["prefer-1", "prefer-2", "ecmp"] | None = None

    @model_validator(mode="after")
    def _distinct_tunnels(self) -> ConnectionStatus:
        indexes = [t.index for t in self.tunnels]
        if len(set(indexes)) != len(indexes):
            raise ValueError(f"connection {self.name}: tunnel index repeated")
        return self


class DaemonStatus(_Model):
    version: StrictStr
    pid: StrictInt
    uptime_seconds: Seconds
    config_file: StrictStr | None = None
    ip_forwarding: StrictBool | None = None  # net.ipv4.ip_forward
    dataplane_reason: StrictStr | None = None  # why auto picked what it picked


class StatusDocument(_Model):
    connections: list[ConnectionStatus]
    daemon: DaemonStatus | None = None


def parse_status(doc: Any) -> StatusDocument:
    """Validate a status document as received over JSON (a parsed value or its text).

    Validation is strict as for JSON: ``"12"`` is not a count and ``"yes"`` not a boolean;
    addresses and networks are strings.

    Raises:
        pydantic.ValidationError: it does not have the shape above.
        ValueError: ``doc`` is not JSON data at all.
    """
    if not isinstance(doc, str | bytes):
        try:
            doc = json.dumps(doc)
        except TypeError as exc:
            raise ValueError(f"status document is not JSON data: {exc}") from None
    return StatusDocument.model_validate_json(doc, strict=True)


def tunnels_up(doc: StatusDocument) -> tuple[int, int]:
    """(tunnels up, tunnels configured)."""
    tunnels = [t for c in doc.connections for t in c.tunnels]
    return sum(t.state == "up" for t in tunnels), len(tunnels)


def summary_line(doc: StatusDocument) -> str:
    """One line for systemd's STATUS= (and logs): ``2/2 tunnels up`` or the down ones."""
    up, total = tunnels_up(doc)
    line = f"{up}/{total} tunnels up"
    down = [
        f"{c.name} tunnel {t.index}" for c in doc.connections for t in c.tunnels if t.state != "up"
    ]
    if down and len(down) <= 4:
        line += " (not up: " + ", ".join(down) + ")"
    return line
