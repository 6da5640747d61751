"""A scripted IKEv2 initiator built only from cgwd's codec and crypto (not the session).

Run inside a network namespace by tests/netns/test_ike_crypto_strongswan.py against a
charon responder: IKE_SA_INIT, IKE_AUTH (PSK), a Child SA rekey (with or without PFS), an
IKE SA rekey, an INFORMATIONAL on the new IKE SA, then DELETEs. Every response must
decrypt with the keys we derived and the responder's AUTH must verify, otherwise this
exits non-zero. Prints the derived keys as JSON (test keys only) for comparison with
charon's own log of its keys.

usage: ike_crypto_driver.py LOCAL_IP REMOTE_IP PSK ENCR BITS INTEG PRF DH CHILD_ENCR
       CHILD_BITS CHILD_INTEG PFS(0|1) [REKEY_ENCR REKEY_BITS REKEY_INTEG REKEY_PRF REKEY_DH]
       (numbers are IANA ids; INTEG 0 = AEAD; the optional suite is used for the IKE rekey)
"""

from __future__ import annotations

import json
import socket
import sys
from ipaddress import IPv4Address

from cgwd.ike.constants import (
    AuthMethod,
    ExchangeType,
    NotifyType,
    ProtocolId,
    TransformType,
)
from cgwd.ike.crypto import (
    IkeKeys,
    IkeSuite,
    SkCipher,
    auth_signed_octets,
    child_keymat,
    derive_ike_keys,
    derive_rekeyed_ike_keys,
    dh_group,
    psk_auth,
    skeyseed,
)
from cgwd.ike.crypto.cipher import encr_algorithm
from cgwd.ike.crypto.integ import integ_algorithm
from cgwd.ike.rng import SystemRng
from cgwd.ike.v2.message import Message, decode_message, encode_message
from cgwd.ike.v2.notify_data import nat_detection_hash
from cgwd.ike.v2.payloads import (
    AuthPayload,
    DeletePayload,
    IdiPayload,
    IdrPayload,
    KePayload,
    NoncePayload,
    NotifyPayload,
    Payload,
    Proposal,
    SaPayload,
    TrafficSelector,
    Transform,
    TsiPayload,
    TsrPayload,
)
from cgwd.secret import Secret

T = TransformType
RNG = SystemRng()


class Peer:
    """UDP to the responder: port 500 for IKE_SA_INIT, then 4500 with the non-ESP marker
    (RFC 3948 §2.2), as after a NAT was detected."""

    def __init__(self, local: str, remote: str) -> None:
        self.local, self.remote = local, remote
        self.sock = self._open(500)
        self.marker = b""

    def _open(self, port: int) -> socket.socket:
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.bind((self.local, port))
        sock.connect((self.remote, port))
        sock.settimeout(5.0)
        return sock

    def float_to_4500(self) -> None:
        self.sock.close()
        self.sock = self._open(4500)
        self.marker = b"\0\0\0\0"

    def exchange(
        self, wire: bytes, spi_i: int, message_id: int, sk: SkCipher | None
    ) -> tuple[bytes, Message]:
        for _ in range(3):
            self.sock.send(self.marker + wire)
            try:
                while True:
                    data = self.sock.recv(65535)
                    if not data.startswith(self.marker):
                        continue
                    data = data[len(self.marker) :]
                    msg = decode_message(data, sk)
                    if msg.response and msg.spi_i == spi_i and msg.message_id == message_id:
                        return data, msg
            except TimeoutError:
                continue
        raise SystemExit(f"no response to message {message_id}")


def ike_proposal(suite: IkeSuite, spi: bytes = b"") -> Proposal:
    transforms = [Transform.of(T.ENCR, suite.encr_id, suite.encr_key_bits)]
    if suite.integ_id is not None:
        transforms.append(Transform.of(T.INTEG, suite.integ_id))
    transforms += [Transform.of(T.PRF, suite.prf_id), Transform.of(T.DH, suite.dh_group)]
    return Proposal(1, ProtocolId.IKE, spi, tuple(transforms))


def esp_proposal(encr: int, bits: int, integ: int, dh: int | None, spi: bytes) -> Proposal:
    transforms = [Transform.of(T.ENCR, encr, bits)]
    if integ:
        transforms.append(Transform.of(T.INTEG, integ))
    if dh is not None:
        transforms.append(Transform.of(T.DH, dh))
    transforms.append(Transform.of(T.ESN, 0))
    return Proposal(1, ProtocolId.ESP, spi, tuple(transforms))


def keys_json(keys: IkeKeys) -> dict[str, str]:
    return {
        name: getattr(keys, name).reveal().hex()
        for name in ("sk_d", "sk_ai", "sk_ar", "sk_ei", "sk_er", "sk_pi", "sk_pr")
    }


def main(argv: list[str]) -> None:
    local, remote, psk_text = argv[1], argv[2], argv[3]
    encr, bits, integ, prf_id, dh, c_encr, c_bits, c_integ, pfs = (int(a) for a in argv[4:13])
    suite = IkeSuite(encr, bits, integ or None, prf_id, dh)
    r_encr, r_bits, r_integ, r_prf, r_dh = (
        (int(a) for a in argv[13:18]) if len(argv) >= 18 else (encr, bits, integ, prf_id, dh)
    )
    new_suite = IkeSuite(r_encr, r_bits, r_integ or None, r_prf, r_dh)
    c_keymat_len = encr_algorithm(c_encr, c_bits).key_bytes + (
        integ_algorithm(c_integ).key_bytes if c_integ else 0
    )
    psk = Secret(psk_text)
    peer = Peer(local, remote)
    group = dh_group(dh)
    spi_i = int.from_bytes(RNG.bytes(8), "big")
    ts = (TrafficSelector.any_ipv4(),)
    result: dict[str, object] = {}
    inputs: dict[str, str] = {}  # public inputs of the key schedules, as on the wire
    result["inputs"] = inputs

    # IKE_SA_INIT { SA, KEi, Ni } -->   <-- { SA, KEr, Nr }
    ni = RNG.bytes(32)
    priv = group.generate(RNG)
    init = Message(
        ExchangeType.IKE_SA_INIT,
        0,
        spi_i,
        0,
        initiator=True,
        response=False,
        payloads=[
            SaPayload((ike_proposal(suite),)),
            KePayload(dh, priv.public_bytes()),
            NoncePayload(ni),
            # NAT_DETECTION_SOURCE_IP hashed with a port we do not use: charon sees a NAT
            # in front of us and UDP-encapsulates ESP, the only mode kernel-libipsec has.
            NotifyPayload(
                NotifyType.NAT_DETECTION_SOURCE_IP, nat_detection_hash(spi_i, 0, local, 1)
            ),
            NotifyPayload(
                NotifyType.NAT_DETECTION_DESTINATION_IP, nat_detection_hash(spi_i, 0, remote, 500)
            ),
        ],
    )
    init_wire = encode_message(init, None, RNG)
    init_resp_wire, resp = peer.exchange(init_wire, spi_i, 0, None)
    ke, nonce = resp.get(KePayload), resp.get(NoncePayload)
    if ke is None or nonce is None:
        raise SystemExit(f"IKE_SA_INIT failed: {resp.notifies()}")
    nr, spi_r = nonce.nonce, resp.spi_r
    shared = priv.shared_secret(ke.data)
    keys = derive_ike_keys(suite, ni, nr, shared, spi_i, spi_r)
    peer.float_to_4500()
    out_sk, in_sk = keys.sk_ciphers(suite, initiator=True)
    result["skeyseed"] = skeyseed(prf_id, ni, nr, shared).reveal().hex()
    inputs.update(ni=ni.hex(), nr=nr.hex(), spi_i=f"{spi_i:016x}", spi_r=f"{spi_r:016x}")
    result["ike"] = keys_json(keys)

    # IKE_AUTH { IDi, N(INITIAL_CONTACT), AUTH, SA, TSi, TSr } -->
    idi = IdiPayload.ipv4(IPv4Address(local))
    octets = auth_signed_octets(prf_id, init_wire, nr, keys.sk_pi, idi.body)
    child_spi = RNG.bytes(4)
    auth = Message(
        ExchangeType.IKE_AUTH,
        1,
        spi_i,
        spi_r,
        initiator=True,
        response=False,
        payloads=[
            idi,
            NotifyPayload(NotifyType.INITIAL_CONTACT),
            AuthPayload(AuthMethod.SHARED_KEY_MIC, psk_auth(prf_id, psk, octets)),
            SaPayload((esp_proposal(c_encr, c_bits, c_integ, None, child_spi),)),
            TsiPayload(ts),
            TsrPayload(ts),
        ],
    )
    auth_resp_wire, resp = peer.exchange(encode_message(auth, out_sk, RNG), spi_i, 1, in_sk)
    inputs["ike_auth_response"] = auth_resp_wire.hex()  # charon's SK-protected message
    idr, their_auth = resp.get(IdrPayload), resp.get(AuthPayload)
    if not resp.encrypted or idr is None or their_auth is None:
        raise SystemExit(f"IKE_AUTH failed: {resp.notifies()}")
    # <ResponderSignedOctets> = RealMessage2 | NonceIData | prf(SK_pr, IDr')
    expected = psk_auth(
        prf_id, psk, auth_signed_octets(prf_id, init_resp_wire, ni, keys.sk_pr, idr.body)
    )
    if their_auth.data != expected:
        raise SystemExit("responder AUTH does not verify")
    result["child_auth"] = child_keymat(prf_id, keys.sk_d, ni, nr, 2 * c_keymat_len).reveal().hex()
    their_child = resp.get(SaPayload)
    assert their_child is not None
    old_their_spi = their_child.proposals[0].spi

    # CREATE_CHILD_SA { N(REKEY_SA), SA, Ni, [KEi,] TSi, TSr } -->
    ni2 = RNG.bytes(32)
    new_child_spi = RNG.bytes(4)
    payloads: list[Payload] = [
        NotifyPayload(NotifyType.REKEY_SA, b"", ProtocolId.ESP, child_spi),
        SaPayload((esp_proposal(c_encr, c_bits, c_integ, dh if pfs else None, new_child_spi),)),
        NoncePayload(ni2),
    ]
    priv2 = group.generate(RNG)
    if pfs:
        payloads.append(KePayload(dh, priv2.public_bytes()))
    payloads += [TsiPayload(ts), TsrPayload(ts)]
    rekey = Message(
        ExchangeType.CREATE_CHILD_SA,
        2,
        spi_i,
        spi_r,
        initiator=True,
        response=False,
        payloads=payloads,
    )
    _, resp = peer.exchange(encode_message(rekey, out_sk, RNG), spi_i, 2, in_sk)
    nonce = resp.get(NoncePayload)
    if nonce is None:
        raise SystemExit(f"child rekey failed: {resp.notifies()}")
    shared2 = None
    if pfs:
        ke = resp.get(KePayload)
        assert ke is not None
        shared2 = priv2.shared_secret(ke.data)
    inputs.update(child_ni=ni2.hex(), child_nr=nonce.nonce.hex())
    result["child_rekey"] = (
        child_keymat(prf_id, keys.sk_d, ni2, nonce.nonce, 2 * c_keymat_len, shared2).reveal().hex()
    )
    # INFORMATIONAL { D(old child) } -->
    delete = Message(
        ExchangeType.INFORMATIONAL,
        3,
        spi_i,
        spi_r,
        initiator=True,
        response=False,
        payloads=[DeletePayload(ProtocolId.ESP, (child_spi,))],
    )
    _, resp = peer.exchange(encode_message(delete, out_sk, RNG), spi_i, 3, in_sk)
    del old_their_spi

    # CREATE_CHILD_SA { SA(IKE, new SPIi), Ni, KEi } -->   <-- { SA(new SPIr), Nr, KEr }
    ni3 = RNG.bytes(32)
    new_spi_i = RNG.bytes(8)
    priv3 = dh_group(new_suite.dh_group).generate(RNG)
    rekey_ike = Message(
        ExchangeType.CREATE_CHILD_SA,
        4,
        spi_i,
        spi_r,
        initiator=True,
        response=False,
        payloads=[
            SaPayload((ike_proposal(new_suite, new_spi_i),)),
            NoncePayload(ni3),
            KePayload(new_suite.dh_group, priv3.public_bytes()),
        ],
    )
    _, resp = peer.exchange(encode_message(rekey_ike, out_sk, RNG), spi_i, 4, in_sk)
    sa, nonce, ke = resp.get(SaPayload), resp.get(NoncePayload), resp.get(KePayload)
    if sa is None or nonce is None or ke is None:
        raise SystemExit(f"IKE rekey failed: {resp.notifies()}")
    new_spi_r = sa.proposals[0].spi
    # RFC 7296 §2.18: SKEYSEED with the OLD IKE SA's PRF, the rest with the new suite.
    new_keys = derive_rekeyed_ike_keys(
        new_suite,
        keys.sk_d,
        priv3.shared_secret(ke.data),
        ni3,
        nonce.nonce,
        new_spi_i,
        new_spi_r,
        old_prf_id=prf_id,
    )
    result["ike_rekeyed"] = keys_json(new_keys)
    inputs.update(
        rekey_ni=ni3.hex(),
        rekey_nr=nonce.nonce.hex(),
        rekey_spi_i=new_spi_i.hex(),
        rekey_spi_r=new_spi_r.hex(),
    )
    new_out, new_in = new_keys.sk_ciphers(new_suite, initiator=True)
    n_spi_i = int.from_bytes(new_spi_i, "big")
    # On the new IKE SA: an empty INFORMATIONAL (liveness check) must round-trip.
    ping = Message(
        ExchangeType.INFORMATIONAL,
        0,
        n_spi_i,
        int.from_bytes(new_spi_r, "big"),
        initiator=True,
        response=False,
    )
    _, resp = peer.exchange(encode_message(ping, new_out, RNG), n_spi_i, 0, new_in)
    assert resp.encrypted and resp.payloads == []
    # Delete the old IKE SA, then the new one.
    bye_old = Message(
        ExchangeType.INFORMATIONAL,
        5,
        spi_i,
        spi_r,
        initiator=True,
        response=False,
        payloads=[DeletePayload(ProtocolId.IKE)],
    )
    peer.exchange(encode_message(bye_old, out_sk, RNG), spi_i, 5, in_sk)
    bye = Message(
        ExchangeType.INFORMATIONAL,
        1,
        n_spi_i,
        int.from_bytes(new_spi_r, "big"),
        initiator=True,
        response=False,
        payloads=[DeletePayload(ProtocolId.IKE)],
    )
    peer.exchange(encode_message(bye, new_out, RNG), n_spi_i, 1, new_in)
    print(json.dumps(result))


if __name__ == "__main__":
    main(sys.argv)
