"""Capture ESP packets exchanged by two strongSwan charons, with the keys that protect them.

Two namespaces, one charon (kernel-libipsec, so ESP-in-UDP on port 4500) in each, IKEv2
with a PSK, one CHILD_SA with 0/0 and ::/0 selectors and the ESP suite under test. The
initiator pings the responder over IPv4 and IPv6 inside the tunnel while tcpdump records
the outside link. charon logs the CHILD_SA keys at level 4 of its ``chd`` subsystem
("encryption initiator key", ...: RFC 7296 2.17 order), the SPIs come from
``swanctl --list-sas``. The result is what cgwd's inbound SAs must accept. Then cgwd
encrypts two echo requests with the initiator's outbound SA and sends them to the
responder's charon; its echo replies (captured too) prove strongSwan accepted them.

Used live by tests/netns/test_esp_strongswan.py, and to (re)generate the stored vectors:

    cd /work/main && sudo .venv/bin/python tests/netns/esp_strongswan_capture.py \
        > tests/vectors/esp/strongswan_libipsec.json
"""

from __future__ import annotations

import json
import os
import re
import select
import signal
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from cgwd.esp import DropReason, InboundSa, OutboundSa, suite_by_name
from cgwd.lab.netns import Netns, Topology
from cgwd.lab.strongswan import DEFAULT_LOG_LEVELS, Charon, CharonSettings, swanctl_section
from cgwd.secret import Secret

OUTSIDE = ("192.0.2.1", "192.0.2.2")  # initiator, responder
INSIDE4 = ("10.99.0.1", "10.99.0.2")
INSIDE6 = ("fd00:99::1", "fd00:99::2")
PING_PATTERN = "c5a7"  # ping -p: the payload repeats these octets
PING_SIZES = (8, 56, 1000)
KEY_LINE = re.compile(r"(encryption|integrity) (initiator|responder) key => (\d+) bytes")
HEX_LINE = re.compile(r"\]\s+(?:<[^>]*>\s+)?\s*\d+: ((?:[0-9A-F]{2} ){1,16})")


def _swanctl_conf(me: int, suite: str, esn: bool) -> str:
    local, remote = OUTSIDE[me], OUTSIDE[1 - me]
    conn = {
        "version": 2,
        "local_addrs": local,
        "remote_addrs": remote,
        "proposals": "aes128-sha256-modp2048",
        "encap": "yes",
        "local": {"auth": "psk", "id": local},
        "remote": {"auth": "psk", "id": remote},
        "children": {
            "cap": {
                "local_ts": "0.0.0.0/0,::/0",
                "remote_ts": "0.0.0.0/0,::/0",
                "esp_proposals": f"{suite}-{'esn' if esn else 'noesn'}",
                "start_action": "none",
            }
        },
    }
    secrets = {"ike-cap": {"id-1": local, "id-2": remote, "secret": Secret("esp capture psk")}}
    return (
        swanctl_section("connections", {"cap": conn})
        + "\n"
        + swanctl_section("secrets", secrets)
        + "\n"
    )


def _keys_from_log(lines: list[str]) -> dict[str, bytes]:
    """{"encryption initiator": b"...", ...} from charon's level-4 CHD key dumps."""
    keys: dict[str, bytes] = {}
    current: str | None = None
    size = 0
    collected = bytearray()
    for line in lines:
        match = KEY_LINE.search(line)
        if match:
            current = f"{match.group(1)} {match.group(2)}"
            size = int(match.group(3))
            collected = bytearray()
            continue
        if current is None:
            continue
        hex_match = HEX_LINE.search(line)
        if not hex_match:
            current = None
            continue
        collected += bytes.fromhex(hex_match.group(1))
        if len(collected) >= size:
            keys[current] = bytes(collected[:size])  # the last CHILD_SA's keys win
            current = None
    return keys


def _esp_from_pcap(path: Path) -> list[tuple[str, bytes]]:
    """(source address, ESP packet) for every ESP-in-UDP datagram in an Ethernet pcap."""
    data = path.read_bytes()
    magic = struct.unpack_from("<I", data)[0]
    endian = "<" if magic in (0xA1B2C3D4, 0xA1B23C4D) else ">"
    linktype = struct.unpack_from(endian + "I", data, 20)[0]
    assert linktype == 1, f"expected Ethernet captures, got link type {linktype}"
    offset = 24
    found: list[tuple[str, bytes]] = []
    while offset + 16 <= len(data):
        incl = struct.unpack_from(endian + "I", data, offset + 8)[0]
        frame = data[offset + 16 : offset + 16 + incl]
        offset += 16 + incl
        if len(frame) < 14 + 20 + 8 or frame[12:14] != b"\x08\x00":
            continue
        ip = frame[14:]
        ihl = (ip[0] & 0x0F) * 4
        total = int.from_bytes(ip[2:4], "big")
        if ip[9] != 17:
            continue
        udp = ip[ihl:total]
        payload = udp[8:]
        if len(payload) < 8 or payload[:4] == b"\x00\x00\x00\x00":
            continue  # IKE behind the non-ESP marker, or a keepalive
        source = ".".join(str(b) for b in ip[12:16])
        found.append((source, bytes(payload)))
    return found


def _wait_listening(tcpdump: subprocess.Popen[bytes], timeout: float = 10.0) -> None:
    """Block until tcpdump reports "listening on" (its capture socket is open)."""
    assert tcpdump.stderr is not None
    deadline = time.monotonic() + timeout
    seen = b""
    while b"listening on" not in seen:
        left = deadline - time.monotonic()
        if left <= 0 or not select.select([tcpdump.stderr], [], [], left)[0]:
            raise TimeoutError(f"tcpdump did not start: {seen!r}")
        chunk = os.read(tcpdump.stderr.fileno(), 4096)
        if not chunk:
            raise RuntimeError(f"tcpdump exited: {seen!r}")
        seen += chunk
    time.sleep(0.2)


INJECT_IDENT = 0xC6D0  # ICMP identifier of the echo requests cgwd encrypts
# Sends one UDP datagram from OUTSIDE[0]:4500 while charon owns that port: a raw UDP socket
# (the kernel adds the IPv4 header, we write the UDP header; checksum 0, RFC 3948 3.1.2).
_SEND_RAW_UDP = """
import socket, struct, sys
payload = bytes.fromhex(sys.argv[3])
sock = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_UDP)
sock.bind((sys.argv[1], 0))
sock.sendto(struct.pack("!HHHH", 4500, 4500, 8 + len(payload), 0) + payload, (sys.argv[2], 0))
"""


def _icmp_checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    total: int = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def echo_request_v4(source: str, destination: str, ident: int, seq: int, size: int) -> bytes:
    """An IPv4 ICMP echo request (RFC 792) with checksums, payload = the ping pattern."""
    body = (bytes.fromhex(PING_PATTERN) * size)[:size]
    icmp = struct.pack("!BBHHH", 8, 0, 0, ident, seq) + body
    icmp = icmp[:2] + _icmp_checksum(icmp).to_bytes(2, "big") + icmp[4:]
    header = struct.pack(
        "!BBHHHBBH4s4s",
        0x45,
        0,
        20 + len(icmp),
        ident,
        0x4000,
        64,
        1,
        0,
        bytes(int(x) for x in source.split(".")),
        bytes(int(x) for x in destination.split(".")),
    )
    header = header[:10] + _icmp_checksum(header).to_bytes(2, "big") + header[12:]
    return header + icmp


def _inject(
    ns: Netns, suite: str, esn: bool, spi: str | None, log: list[str]
) -> list[dict[str, str]]:
    """cgwd encrypts echo requests with the initiator's outbound SA and sends them to the
    responder's charon, whose echo replies then show up in the capture."""
    keys = _keys_from_log(log)
    keymat = keys["encryption initiator"] + keys.get("integrity initiator", b"")
    assert spi is not None
    # charon has sent a handful of packets on this SA: start well above them
    sa = OutboundSa(int(spi, 16), suite_by_name(suite), Secret(keymat), esn=esn, last_seq=500)
    sent = []
    for seq, size in enumerate((16, 1200), start=1):
        inner = echo_request_v4(INSIDE4[0], INSIDE4[1], INJECT_IDENT, seq, size)
        esp = sa.encapsulate(inner)
        assert esp is not None
        ns.run(sys.executable, "-c", _SEND_RAW_UDP, OUTSIDE[0], OUTSIDE[1], esp.hex(), timeout=10)
        sent.append({"esp": esp.hex(), "inner": inner.hex()})
        time.sleep(0.2)
    return sent


def capture(suite: str, esn: bool, workdir: Path) -> dict[str, Any]:
    """Run the two charons, ping, and return the SAs (SPI, keymat) and captured packets."""
    settings = CharonSettings(
        log_levels={**DEFAULT_LOG_LEVELS, "chd": 4},
        retransmit_timeout=1.0,
        retransmit_tries=2,
    )
    charons: list[Charon] = []
    tcpdump: subprocess.Popen[bytes] | None = None
    pcap = workdir / "esp.pcap"
    with Topology() as topology:
        try:
            ends = [topology.add_netns("ssi"), topology.add_netns("ssr")]
            topology.link(ends[0], "out0", ends[1], "out0")
            for me, ns in enumerate(ends):
                ns.ip("addr", "add", f"{OUTSIDE[me]}/24", "dev", "out0")
                charon = Charon(
                    ns,
                    workdir / f"c{me}",
                    settings=settings,
                    swanctl_conf=_swanctl_conf(me, suite, esn),
                    name=f"capture{me}",
                )
                charons.append(charon)
                charon.start()
            charons[0].initiate("cap")
            child = charons[0].wait_child_up("cap")
            for me, ns in enumerate(ends):
                ns.ip("link", "set", "ipsec0", "up")
                ns.ip("addr", "add", f"{INSIDE4[me]}/24", "dev", "ipsec0")
                ns.ip("-6", "addr", "add", f"{INSIDE6[me]}/64", "dev", "ipsec0", "nodad")
            tcpdump = ends[0].popen(
                "tcpdump",
                "-i",
                "out0",
                "--immediate-mode",
                "-U",
                "-w",
                str(pcap),
                "udp port 4500",
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
            )
            _wait_listening(tcpdump)
            for size in PING_SIZES:
                ends[0].run(
                    "ping",
                    "-c",
                    "1",
                    "-W",
                    "2",
                    "-s",
                    str(size),
                    "-p",
                    PING_PATTERN,
                    INSIDE4[1],
                    timeout=10,
                )
                ends[0].run(
                    "ping",
                    "-6",
                    "-c",
                    "1",
                    "-W",
                    "2",
                    "-s",
                    str(size),
                    "-p",
                    PING_PATTERN,
                    INSIDE6[1],
                    timeout=10,
                )
            injected = _inject(ends[0], suite, esn, child.spi_out, charons[0].log_lines())
            time.sleep(0.5)
            tcpdump.send_signal(signal.SIGINT)
            tcpdump.wait(5)
            keys = _keys_from_log(charons[0].log_lines())
        finally:
            if tcpdump is not None and tcpdump.poll() is None:
                tcpdump.kill()
                tcpdump.wait(5)
            for charon in charons:
                charon.stop()
    packets = _esp_from_pcap(pcap)
    assert child.spi_in and child.spi_out, child
    integ = ("integrity initiator", "integrity responder")
    version = subprocess.run(
        ["/usr/lib/ipsec/charon", "--version"], capture_output=True, text=True, check=False
    ).stdout.strip()
    return {
        "suite": suite,
        "esn": esn,
        "strongswan": version or "strongSwan (charon --version gave nothing)",
        "encr_alg": child.encr_alg,
        "integ_alg": child.integ_alg,
        "sas": [
            {
                "direction": "initiator -> responder",
                "source": OUTSIDE[0],
                "spi": child.spi_out,
                "keymat": (keys["encryption initiator"] + keys.get(integ[0], b"")).hex(),
            },
            {
                "direction": "responder -> initiator",
                "source": OUTSIDE[1],
                "spi": child.spi_in,
                "keymat": (keys["encryption responder"] + keys.get(integ[1], b"")).hex(),
            },
        ],
        "ping_pattern": PING_PATTERN,
        "ping_sizes": list(PING_SIZES),
        "packets": [{"source": source, "esp": esp.hex()} for source, esp in packets],
        "injected": injected,
    }


# strongSwan's kernel-libipsec has no extended sequence numbers (it answers an ESN-only
# proposal with NO_PROPOSAL_CHOSEN), so every capture uses 32-bit numbers.
CAPTURED_SUITES = (
    ("aes128gcm16", False),
    ("aes256gcm16", False),
    ("aes128-sha1", False),
    ("aes256-sha256", False),
    ("aes128-sha384", False),
    ("aes256-sha512", False),
)


def main() -> int:
    results = []
    for suite, esn in CAPTURED_SUITES:
        with tempfile.TemporaryDirectory(prefix="cgesp", dir="/tmp") as tmp:
            results.append(capture(suite, esn, Path(tmp)))
    document = {
        "source": "captured on the project machine with tests/netns/esp_strongswan_capture.py: "
        "two strongSwan charons (kernel-libipsec, ESP-in-UDP), IKEv2 PSK, one ping per size "
        "over IPv4 and IPv6 inside the tunnel; keys from charon's chd level-4 log, SPIs from "
        "swanctl --list-sas. Throwaway keys, for tests only.",
        "captured": time.strftime("%Y-%m-%d"),
        "captures": results,
    }
    json.dump(document, sys.stdout, indent=1)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())


def verify_capture(result: dict[str, Any]) -> dict[str, int]:
    """Decapsulate every captured packet with cgwd and check what comes out: ICMP echo
    requests from the initiator, replies from the responder (IPv4 and IPv6), the pings'
    payload pattern, IPv4 and ICMP checksums, and a reply from strongSwan to each echo
    request cgwd encrypted. A second pass must see only replays. Returns counts."""
    suite = suite_by_name(result["suite"])
    sas = {
        sa["source"]: InboundSa(
            int(sa["spi"], 16), suite, Secret(bytes.fromhex(sa["keymat"])), esn=result["esn"]
        )
        for sa in result["sas"]
    }
    pattern = bytes.fromhex(result["ping_pattern"])
    counts = {"v4_request": 0, "v4_reply": 0, "v6_request": 0, "v6_reply": 0, "injected_reply": 0}
    packets = [(p["source"], bytes.fromhex(p["esp"])) for p in result["packets"]]
    assert packets, "nothing captured"
    for source, esp in packets:
        inner = sas[source].decapsulate(esp)
        assert isinstance(inner, bytes), f"{result['suite']}: packet from {source}: {inner}"
        is_request = source == OUTSIDE[0]
        if inner[0] >> 4 == 4:
            assert _icmp_checksum(inner[:20]) == 0, "IPv4 header checksum"
            assert inner[9] == 1, "ICMP"
            icmp = inner[20:]
            assert _icmp_checksum(icmp) == 0, "ICMP checksum"
            assert icmp[0] == (8 if is_request else 0)
            ident = int.from_bytes(icmp[4:6], "big")
            if ident == INJECT_IDENT:  # cgwd's own requests, and strongSwan's answers
                counts["injected_reply"] += not is_request
                continue
            family = "v4"
        else:
            assert inner[0] >> 4 == 6 and inner[6] == 58, "ICMPv6"
            icmp = inner[40:]
            assert icmp[0] == (128 if is_request else 129)
            family = "v6"
        body = icmp[8:]
        if len(body) >= 16 + len(pattern):  # ping puts a timestamp first, then the pattern
            assert pattern * 2 in body, "ping pattern"
        counts[f"{family}_{'request' if is_request else 'reply'}"] += 1
    for source, esp in packets:
        assert sas[source].decapsulate(esp) is DropReason.REPLAY
    for sa in sas.values():
        assert set(sa.counters.drops) == {DropReason.REPLAY}
    sizes = len(result["ping_sizes"])
    assert counts["v4_request"] == counts["v4_reply"] == sizes, counts
    assert counts["v6_request"] == counts["v6_reply"] == sizes, counts
    assert counts["injected_reply"] == len(result["injected"]), counts
    return counts
