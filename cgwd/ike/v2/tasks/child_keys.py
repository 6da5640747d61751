"""Turning a negotiated Child SA into dataplane records (RFC 7296 §2.17).

KEYMAT = prf+(SK_d, [g^ir (new) |] Ni | Nr); the initiator-to-responder keys come first.
The initiator *of the exchange that created the Child SA* sends with the first half.
This is the one place that decides which half is ours.
"""

from __future__ import annotations

from cgwd.dataplane.base import SaId, SaParams
from cgwd.esp.suites import EspSuite
from cgwd.ike.crypto import child_keymat, split_child_keymat
from cgwd.ike.v2.negotiation import Selector
from cgwd.ike.v2.sa import ChildSa, IkeSa, IkeSessionConfig
from cgwd.secret import Secret


def make_child(
    cfg: IkeSessionConfig,
    ike: IkeSa,
    *,
    child_id: int,
    suite: EspSuite,
    spi_in: int,
    spi_out: int,
    ni: bytes,
    nr: bytes,
    we_initiated: bool,
    ts_local: tuple[Selector, ...],
    ts_remote: tuple[Selector, ...],
    now: float,
    shared_secret: Secret | None = None,
    pfs_group: int | None = None,
    rekeyed_from: int | None = None,
) -> ChildSa:
    """A ChildSa with both directions' `SaParams` (keys split per direction)."""
    assert ike.sk_d is not None
    keymat = child_keymat(ike.prf_id, ike.sk_d, ni, nr, 2 * suite.keymat_bytes, shared_secret)
    i2r, r2i = split_child_keymat(keymat, suite.keymat_bytes)
    out_keys, in_keys = (i2r, r2i) if we_initiated else (r2i, i2r)
    encap = ike.udp_encap()
    in_params = SaParams(suite, in_keys, replay_window=cfg.replay_window, encap=encap)
    out_params = SaParams(suite, out_keys, replay_window=cfg.replay_window, encap=encap)
    child = ChildSa(
        child_id=child_id,
        spi_in=spi_in,
        spi_out=spi_out,
        suite=suite,
        created_at=now,
        initiated_by_us=we_initiated,
        created_by=(ni, nr),
        ts_local=ts_local,
        ts_remote=ts_remote,
        in_sa=SaId(cfg.tunnel, "in", spi_in),
        out_sa=SaId(cfg.tunnel, "out", spi_out),
        out_params=out_params,
        in_params=in_params,
        pfs_group=pfs_group,
        rekeyed_from=rekeyed_from,
        ike_spi_i=ike.spi_i,
    )
    return child
