"""RTP timestamp -> sample position of one stream, robust to what real senders do.

Positions count RTP clock ticks from the stream's first packet. Timestamps are unwrapped
(32-bit), so gaps (loss, DTX, silence suppression) keep their true length. What a
timestamp cannot be trusted for is re-anchored on the wall clock: a new SSRC (a re-INVITE
to another media server, a restarted sender) or a jump that disagrees with the time that
really passed by more than ``max_drift_s`` (a sender that paused during hold without
advancing its clock, or one that leapt ahead).
"""

from __future__ import annotations

_WRAP = 1 << 32
_HALF = 1 << 31


class RtpClock:
    """Maps (ssrc, timestamp, arrival time) to a position in ticks of ``clock_rate``."""

    def __init__(self, clock_rate: int, *, max_drift_s: float = 1.0) -> None:
        self.clock_rate = clock_rate
        self.max_drift = int(max_drift_s * clock_rate)
        self._ssrc: int | None = None
        self._last_ts = 0
        self._last_pos = 0
        self._last_wall = 0.0
        self.reanchors = 0
        "How often the timestamp was overruled by the wall clock."

    def position(self, ssrc: int, timestamp: int, now: float) -> int:
        """Position of a packet's first sample; ``now`` is its arrival (monotonic seconds)."""
        if self._ssrc is None:
            self._ssrc, self._last_ts, self._last_wall = ssrc, timestamp, now
            return 0
        delta = (timestamp - self._last_ts + _HALF) % _WRAP - _HALF
        expected = round((now - self._last_wall) * self.clock_rate)
        if ssrc != self._ssrc or abs(delta - expected) > self.max_drift:
            self.reanchors += 1
            self._ssrc = ssrc
            delta = max(expected, 0)
        position = self._last_pos + delta
        if delta >= 0:
            self._last_ts, self._last_pos, self._last_wall = timestamp, position, now
        return position
