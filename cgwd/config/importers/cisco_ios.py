"""The Cisco IOS download, "ISR Series Routers, IOS 12.4+" (reference §5).

Each tunnel follows an ``! IPSec Tunnel #N`` banner and repeats the global commands. The
block is read as IOS reads it: a command at column 0 and the indented sub-commands below
it, ``!`` lines being comments (so the commented ``! ip route … Tunnel1 track 100`` is
never configuration). Values are taken from the commands below, by keyword, never by
column; ``crypto isakmp`` means IKEv1 and ``crypto ikev2`` IKEv2.

IOS carries no MTU and no DPD retry count: those stay None.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from cgwd.config.aws import AwsVpnConnection, FormatName, Routing
from cgwd.config.importers import assemble as a
from cgwd.config.importers.header import read_ids
from cgwd.config.importers.text import Line, clean_lines

FORMAT: FormatName = "aws-cisco-ios"
FOOTER = "Additional Notes and Questions"

REQUIRED = (
    a.PSK,
    a.P1_ENCRYPTION,
    a.P1_INTEGRITY,
    a.P1_DH,
    a.P1_LIFETIME,
    a.P2_ENCRYPTION,
    a.P2_INTEGRITY,
    a.P2_DH,
    a.P2_LIFETIME,
    a.CGW_OUTSIDE,
    a.AWS_OUTSIDE,
    a.CGW_INSIDE,
    a.AWS_INSIDE,
    a.MSS,
)
ESP_CIPHERS = ("esp-aes", "esp-gcm")
# Sub-commands of "crypto isakmp policy" (IKEv1) and "crypto ikev2 proposal" (IKEv2).
IKE_POLICY = {
    "encryption": a.P1_ENCRYPTION,
    "hash": a.P1_INTEGRITY,
    "integrity": a.P1_INTEGRITY,
    "group": a.P1_DH,
    "lifetime": a.P1_LIFETIME,
    "authentication": a.AUTH_METHOD,
}


@dataclass
class Command:
    """A configuration line and the sub-commands indented below it."""

    words: list[str]
    line: Line
    children: list[Command] = field(default_factory=list)

    def starts(self, *words: str) -> bool:
        return self.words[: len(words)] == list(words)


def _comment(text: str) -> str | None:
    """The text of a ``!`` comment line, else None."""
    stripped = text.strip()
    return stripped[1:].strip() if stripped.startswith("!") else None


def _commands(lines: Iterable[Line]) -> list[Command]:
    commands: list[Command] = []
    for line in lines:
        if _comment(line.text) is not None or line.text.strip() == "exit":
            continue
        command = Command(line.text.split(), line)
        if line.text.startswith(" ") and commands:
            commands[-1].children.append(command)  # deeper levels flattened: not needed
        else:
            commands.append(command)
    return commands


def _banner(line: Line) -> int | None:
    text = _comment(line.text)
    words = [] if text is None else text.split()
    if len(words) == 3 and words[:2] == ["IPSec", "Tunnel"] and words[2].startswith("#"):
        number = words[2][1:]
        if number.isascii() and number.isdigit():
            return int(number)
    return None


class _TunnelReader:
    """Files the values of one tunnel's commands in its draft."""

    def __init__(self, draft: a.TunnelDraft) -> None:
        self.draft = draft
        self.routing: Routing = "static"

    def put(self, key: str, value: str, command: Command, where: str) -> None:
        self.draft.put(key, value, a.Origin(f"'{where}'", command.line.number))

    def word(self, command: Command, index: int) -> str:
        """The index-th word of ``command`` (a ConfigError naming the command if absent)."""
        if index >= len(command.words):
            # Only the keyword is shown: later words may be a pre-shared key.
            where = command.words[0]
            raise self.draft.error(
                f"'{where}': incomplete command", a.Origin(where, command.line.number)
            )
        return command.words[index]

    def read(self, commands: list[Command]) -> None:
        for command in commands:
            self.command(command)

    def command(self, c: Command) -> None:
        if c.starts("crypto", "isakmp", "policy"):
            self.put(a.IKE_VERSION, "ikev1", c, "crypto isakmp")
            self.ike_policy(c, "crypto isakmp policy")
        elif c.starts("crypto", "ikev2", "proposal"):
            self.put(a.IKE_VERSION, "ikev2", c, "crypto ikev2")
            self.ike_policy(c, "crypto ikev2 proposal")
        elif c.starts("crypto", "keyring") or c.starts("crypto", "ikev2", "keyring"):
            self.keyring(c)
        elif c.starts("crypto", "isakmp", "profile") or c.starts("crypto", "ikev2", "profile"):
            self.ike_profile(c)
        elif c.starts("crypto", "ipsec", "transform-set"):
            self.transform_set(c)
        elif c.starts("crypto", "ipsec", "profile"):
            self.ipsec_profile(c)
        elif c.starts("crypto", "ipsec", "df-bit"):
            df = self.word(c, 3)
            self.put(a.CLEAR_DF, "true" if df == "clear" else "false", c, "crypto ipsec df-bit")
        elif c.starts("crypto", "ipsec", "fragmentation"):
            before = self.word(c, 3) == "before-encryption"
            self.put(a.FRAGMENT_BEFORE, str(before).lower(), c, "crypto ipsec fragmentation")
        elif c.starts("crypto", "isakmp", "keepalive"):
            self.put(a.DPD_INTERVAL, self.word(c, 3), c, "crypto isakmp keepalive")
        elif c.starts("crypto", "ipsec", "security-association", "replay", "window-size"):
            self.put(a.REPLAY_WINDOW, self.word(c, 5), c, "replay window-size")
        elif c.starts("interface") and self.word(c, 1).startswith("Tunnel"):
            self.interface(c)
        elif c.starts("ip", "sla") and len(c.words) == 3:
            self.sla(c)
        elif c.starts("router", "bgp"):
            self.bgp(c)

    def ike_policy(self, parent: Command, where: str) -> None:
        for c in parent.children:
            key = IKE_POLICY.get(c.words[0])
            if key is not None:
                self.put(key, " ".join(c.words[1:]), c, f"{where}: {c.words[0]}")

    def keyring(self, parent: Command) -> None:
        for c in parent.children:
            if c.starts("pre-shared-key", "address"):  # IKEv1: address AWS key PSK
                self.put(a.AWS_OUTSIDE, self.word(c, 2), c, "pre-shared-key address")
                if self.word(c, 3) != "key":
                    raise self.draft.error(
                        "'pre-shared-key address': expected 'key' after the address",
                        a.Origin("pre-shared-key", c.line.number),
                    )
                self.put(a.PSK, self.word(c, 4), c, "pre-shared-key")
            elif c.starts("pre-shared-key"):  # IKEv2: pre-shared-key [local|remote] PSK
                self.put(a.PSK, c.words[-1], c, "pre-shared-key")
            elif c.starts("address"):
                self.put(a.AWS_OUTSIDE, self.word(c, 1), c, "keyring peer address")
            elif c.starts("local-address"):
                self.put(a.CGW_OUTSIDE, self.word(c, 1), c, "keyring local-address")

    def ike_profile(self, parent: Command) -> None:
        for c in parent.children:
            if c.starts("match", "identity", "address"):  # IKEv1 profile
                self.put(a.AWS_OUTSIDE, self.word(c, 3), c, "match identity address")
            elif c.starts("match", "identity", "remote", "address"):  # IKEv2 profile
                self.put(a.AWS_OUTSIDE, self.word(c, 4), c, "match identity remote address")
            elif c.starts("local-address") or c.starts("identity", "local", "address"):
                self.put(a.CGW_OUTSIDE, c.words[-1], c, "profile local address")
            elif c.starts("lifetime"):
                self.put(a.P1_LIFETIME, self.word(c, 1), c, "crypto ikev2 profile: lifetime")
            elif c.starts("dpd"):
                self.put(a.DPD_INTERVAL, self.word(c, 1), c, "crypto ikev2 profile: dpd")

    def transform_set(self, c: Command) -> None:
        words = c.words[4:]  # after "crypto ipsec transform-set NAME"
        for i, word in enumerate(words):
            if word in ESP_CIPHERS:
                size = words[i + 1] if i + 1 < len(words) and words[i + 1].isdigit() else "128"
                self.put(a.P2_ENCRYPTION, f"{word} {size}", c, "transform-set cipher")
            elif word.startswith("esp-") and word.endswith("-hmac"):
                self.put(a.P2_INTEGRITY, word, c, "transform-set hmac")
        for child in c.children:
            if child.starts("mode"):
                self.put(a.P2_MODE, self.word(child, 1), child, "transform-set: mode")

    def ipsec_profile(self, parent: Command) -> None:
        for c in parent.children:
            if c.starts("set", "pfs"):
                self.put(a.P2_DH, self.word(c, 2), c, "set pfs")
            elif c.starts("set", "security-association", "lifetime", "seconds"):
                self.put(a.P2_LIFETIME, self.word(c, 4), c, "set security-association lifetime")

    def interface(self, parent: Command) -> None:
        for c in parent.children:
            if c.starts("ip", "address"):
                address = " ".join(c.words[2:4])
                self.put(a.CGW_INSIDE, address, c, "ip address")
            elif c.starts("tunnel", "source"):
                self.put(a.CGW_OUTSIDE, self.word(c, 2), c, "tunnel source")
            elif c.starts("tunnel", "destination"):
                self.put(a.AWS_OUTSIDE, self.word(c, 2), c, "tunnel destination")
            elif c.starts("ip", "tcp", "adjust-mss"):
                self.put(a.MSS, self.word(c, 3), c, "ip tcp adjust-mss")
            elif c.starts("ip", "mtu"):
                self.put(a.MTU, self.word(c, 2), c, "ip mtu")

    def sla(self, parent: Command) -> None:
        for c in parent.children:
            if c.starts("icmp-echo"):
                # The SLA probes the AWS inside address, the static route's next hop.
                self.put(a.AWS_INSIDE, self.word(c, 1), c, "icmp-echo")
                self.put(a.NEXT_HOP, self.word(c, 1), c, "icmp-echo")

    def bgp(self, parent: Command) -> None:
        self.routing = "bgp"
        self.put(a.BGP_CGW_ASN, self.word(parent, 2), parent, "router bgp")
        for c in parent.children:
            if c.starts("neighbor") and len(c.words) > 2:
                if c.words[2] == "remote-as":
                    self.put(a.BGP_NEIGHBOR, c.words[1], c, "neighbor")
                    self.put(a.AWS_INSIDE, c.words[1], c, "neighbor")
                    self.put(a.BGP_AWS_ASN, self.word(c, 3), c, "neighbor remote-as")
                elif c.words[2] == "timers":
                    self.put(a.BGP_HOLD, self.word(c, 4), c, "neighbor timers")


def parse(text: str, *, source: str) -> AwsVpnConnection:
    """The connection in a Cisco IOS download. Raises ConfigError only."""
    reporter = a.Reporter(FORMAT, source)
    header: list[Line] = []
    blocks: list[tuple[int, Line, list[Line]]] = []
    footer: Line | None = None
    for line in clean_lines(text):
        if (_comment(line.text) or "").startswith(FOOTER):
            footer = line
            break
        number = _banner(line)
        if number is not None:
            blocks.append((number, line, []))
        elif blocks:
            blocks[-1][2].append(line)
        else:
            header.append(line)
        words = line.text.split()
        if len(words) > 1 and words[0] == "pre-shared-key":
            reporter.secrets.add(words[-1])  # known before any error can quote it
    ids = read_ids(reporter, header)
    readers = []
    for expected, (number, banner, lines) in enumerate(blocks, start=1):
        if number != expected or expected > 2:
            raise reporter.error(
                f"banner 'IPSec Tunnel #{number}' where tunnel #{expected} was expected",
                origin=a.Origin("banner", banner.number),
            )
        reader = _TunnelReader(
            a.TunnelDraft(reporter, number, a.Origin(f"IPSec Tunnel #{number}", banner.number))
        )
        reader.read(_commands(lines))
        readers.append(reader)
    if len(blocks) == 2 and footer is None:
        last = blocks[-1][2][-1] if blocks[-1][2] else blocks[-1][1]
        raise reporter.error(
            f"the file ends at line {last.number} without the '! {FOOTER}' footer "
            "(is it truncated?)",
            origin=a.Origin("end of file", last.number),
            tunnel=2,
        )
    routing: Routing = readers[0].routing if readers else "static"
    for reader in readers:
        if reader.routing != routing:
            raise reader.draft.error("one tunnel uses BGP and the other static routing")
    return a.build_connection(
        reporter,
        [r.draft for r in readers],
        routing=routing,
        required=REQUIRED,
        vpn_connection_id=ids.vpn_connection_id,
        vpn_gateway_id=ids.vpn_gateway_id,
        customer_gateway_id=ids.customer_gateway_id,
    )
