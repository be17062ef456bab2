"""How many refused INVITEs become recorded calls: a token bucket, sans-IO.

An ordinary overflow (a busy PBX at ``max_calls``, a draining node) is worth a vCon per
refused call: who called, when, and that the recorder said 503. A flood is not: thousands
of refusals a second must not queue thousands of vCon builds. :class:`RefusalBudget` lets
``rate`` refusals a second through, in bursts of up to ten times that; the rest are only
counted.
"""

from __future__ import annotations


class RefusalBudget:
    """``take(now)`` is True for at most ``rate`` calls a second (bursts of ``10 * rate``); None: always."""

    def __init__(self, rate: float | None) -> None:
        self.rate = rate
        self.burst = max(rate * 10, 1.0) if rate is not None else 0.0
        self._tokens = self.burst
        self._at: float | None = None

    def take(self, now: float) -> bool:
        rate = self.rate
        if rate is None:
            return True
        if self._at is not None:
            self._tokens = min(self.burst, self._tokens + max(now - self._at, 0.0) * rate)
        self._at = now
        if self._tokens < 1:
            return False
        self._tokens -= 1
        return True
