"""UDP encapsulation of ESP (RFC 3948): telling ESP, IKE and keepalives apart on port 4500.

On a NAT-T socket three things arrive in UDP payloads (RFC 3948 2.2, 2.3, 4):
- a NAT-keepalive: exactly one octet 0xFF, to be ignored;
- an IKE message behind the 4-octet non-ESP marker (zeros where an SPI would be; SPI 0 is
  reserved, RFC 4303 2.1);
- an ESP packet, starting with its non-zero SPI.
Nothing here knows about ports or sockets; the dataplane owns those.
"""

from __future__ import annotations

import enum

NON_ESP_MARKER = b"\x00\x00\x00\x00"  # RFC 3948 2.2
KEEPALIVE = b"\xff"  # RFC 3948 2.3
ESP_HEADER_BYTES = 8  # SPI + sequence number (RFC 4303 2)


class UdpPayloadKind(enum.Enum):
    KEEPALIVE = "keepalive"
    IKE = "ike"
    ESP = "esp"
    MALFORMED = "malformed"  # too short to be any of the above


def classify(datagram: bytes | bytearray | memoryview) -> tuple[UdpPayloadKind, memoryview]:
    """Classify one UDP payload received on a NAT-T port.

    Returns (kind, payload): for IKE the message after the marker, for ESP the whole
    datagram (SPI first), for a keepalive or a malformed datagram an empty view. Never
    raises; ``payload`` is a view into ``datagram`` (no copy).
    """
    view = memoryview(datagram)
    size = len(view)
    if size == 1 and view[0] == 0xFF:
        return UdpPayloadKind.KEEPALIVE, view[:0]
    if size >= 4 and view[:4] == NON_ESP_MARKER:
        return UdpPayloadKind.IKE, view[4:]
    if size >= ESP_HEADER_BYTES:
        return UdpPayloadKind.ESP, view
    return UdpPayloadKind.MALFORMED, view[:0]


def ike_to_udp(ike_message: bytes) -> bytes:
    """An IKE message as sent on a NAT-T port: behind the non-ESP marker (RFC 3948 2.2)."""
    return NON_ESP_MARKER + ike_message
