"""Pure backoff schedules: IKE request retransmission and re-initiation after a loss.

No clock and no randomness inside: callers pass the attempt number and, for jitter, a
fraction drawn from their `Rng`. Both schedules are plain functions so they can be tested
and tabulated on their own.

RFC 7296 §2.1: the initiator retransmits a request until it gets the response or gives up;
the interval SHOULD grow (exponential backoff) and the responder never retransmits.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class RetransmitPolicy:
    """How often and how long a request is retransmitted.

    The n-th retransmission (n = 1, 2, ...) is sent ``initial * factor**(n-1)`` seconds after
    the previous transmission, each interval capped at ``max_interval``; once the interval
    after the ``tries``-th retransmission has passed without a response, the exchange is
    given up.
    """

    initial: float = 2.0
    factor: float = 2.0
    max_interval: float = 32.0
    tries: int = 5

    def __post_init__(self) -> None:
        if self.initial <= 0 or self.factor < 1 or self.max_interval < self.initial:
            raise ValueError("retransmit policy needs initial > 0, factor >= 1, max >= initial")
        if self.tries < 0:
            raise ValueError("retransmit tries must be >= 0")

    def interval(self, sent_count: int) -> float:
        """Seconds to wait after the ``sent_count``-th transmission (1 = the original)."""
        if sent_count < 1:
            raise ValueError("sent_count starts at 1")
        return float(min(self.initial * self.factor ** (sent_count - 1), self.max_interval))

    def gives_up_after(self, sent_count: int) -> bool:
        """True once ``sent_count`` transmissions (original + retransmits) went unanswered."""
        return sent_count > self.tries

    def total_time(self) -> float:
        """Seconds from the original transmission until the exchange is given up."""
        return sum(self.interval(n) for n in range(1, self.tries + 2))


# Exchanges in general (strongSwan's defaults are 4 s x 1.8^n, 5 tries, about 165 s); we
# are a little quicker since AWS gives up on a silent peer after about 30-40 s anyway.
DEFAULT_POLICY = RetransmitPolicy(initial=2.0, factor=2.0, max_interval=32.0, tries=5)

# Liveness checks must conclude within AWS's DPD timescale (aws-behaviour.md §3: dead after
# about 30 s): 2 + 4 + 8 + 16 = 30 s.
DPD_POLICY = RetransmitPolicy(initial=2.0, factor=2.0, max_interval=16.0, tries=3)


@dataclass(frozen=True)
class ReconnectBackoff:
    """Delay before re-initiating after a failed or lost IKE SA (aws-behaviour.md §2).

    ``delay(failures, jitter)`` grows ``base * factor**(failures-1)`` up to ``cap`` and then
    subtracts up to ``jitter_fraction`` of it, so that two tunnels (or many gateways) that
    failed together do not retry in lockstep. ``jitter`` is a number in [0, 1) drawn by the
    caller.
    """

    base: float = 1.0
    factor: float = 2.0
    cap: float = 60.0
    jitter_fraction: float = 0.25

    def delay(self, failures: int, jitter: float) -> float:
        if failures < 1:
            return 0.0
        if not 0.0 <= jitter < 1.0:
            raise ValueError("jitter must be in [0, 1)")
        raw = min(self.base * self.factor ** min(failures - 1, 64), self.cap)
        return raw * (1.0 - self.jitter_fraction * jitter)


def jitter_from_bytes(data: bytes) -> float:
    """A fraction in [0, 1) from random bytes (use 4 or more bytes from an `Rng`)."""
    if not data:
        raise ValueError("need at least one random byte")
    return int.from_bytes(data, "big") / float(1 << (8 * len(data)))
