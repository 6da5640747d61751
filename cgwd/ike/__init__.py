"""Sans-I/O IKE: codecs, crypto and (in `v1`/`v2`) the exchanges.

Nothing under this package opens sockets, reads a clock or draws randomness on its own:
the host passes ``now`` and an `cgwd.ike.rng.Rng`. The only exceptions are the two
host-side implementations `cgwd.ike.rng.SystemRng` and `cgwd.ike.clock.MonotonicClock`.
"""
