"""Following the peer's address and port (RFC 7296 §2.23) once the IKE SA is authenticated.

- The peer floated to the NAT-T port: we continue there (and encapsulate ESP).
- The peer's source port changed (its NAT rebound, or ours did and the peer is the one that
  moves): IKE follows at once, and every Child SA whose ESP-in-UDP still goes to the old
  port is rekeyed. The successors carry the new port and the rekey switches over without
  a gap (make before break); the dataplane cannot change an installed SA's ports in place,
  and an outbound SA re-added with the same SPI would restart its sequence numbers.

Only a *fresh* authenticated message moves the port: a new request or the answer to our
outstanding one. A replayed old message (answered from the response cache) must not let
whoever replays it redirect the tunnel.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from cgwd.ike.v2.states import ChildState, IkeState

if TYPE_CHECKING:
    from cgwd.ike.v2.sa import IkeSa
    from cgwd.ike.v2.tasks.base import SessionOps


def track_peer_address(
    session: SessionOps,
    sa: IkeSa,
    src: tuple[str, int],
    dst: tuple[str, int],
    now: float,
    *,
    fresh: bool,
) -> None:
    """Update ``sa`` from an authenticated message that came from ``src`` to ``dst``; make
    the affected Child SAs' rekeys due at ``now``. Raises nothing."""
    if dst[1] == session.config.nat_t_port and not sa.nat_t:
        sa.nat_t = True  # the peer floated to NAT-T (strongSwan's libipsec always does)
        sa.local_port = dst[1]
    if not fresh or src[1] == sa.remote_port:
        return
    if not (sa.nat_local or sa.nat_remote or sa.nat_t):
        return  # without NAT-T, ports are fixed (§2.23 applies to NAT traversal only)
    old_port, sa.remote_port = sa.remote_port, src[1]
    if sa.state not in (IkeState.ESTABLISHED, IkeState.REKEYING):
        return
    session.log(
        "nat_mapping_changed",
        f"peer's port changed from {old_port} to {src[1]}: rekeying its Child SAs",
    )
    for child in session.children.values():
        encap = child.out_params.encap
        if (
            child.ike_spi_i == sa.spi_i
            and child.state == ChildState.INSTALLED
            and encap is not None
            and encap.remote_port != sa.remote_port
        ):
            child.rekey_at = now
