"""Sans-I/O ESP (RFC 4303, tunnel mode): suites, SAs, anti-replay window, NAT-T helpers."""

from cgwd.esp.natt import KEEPALIVE, NON_ESP_MARKER, UdpPayloadKind, classify
from cgwd.esp.replay import ReplayWindow
from cgwd.esp.sa import DropReason, InboundSa, OutboundSa, SaCounters, peek_spi
from cgwd.esp.suites import ALL_SUITES, EspSuite, suite_by_name, suite_from_ike

__all__ = [
    "ALL_SUITES",
    "KEEPALIVE",
    "NON_ESP_MARKER",
    "DropReason",
    "EspSuite",
    "InboundSa",
    "OutboundSa",
    "ReplayWindow",
    "SaCounters",
    "UdpPayloadKind",
    "classify",
    "peek_spi",
    "suite_by_name",
    "suite_from_ike",
]
