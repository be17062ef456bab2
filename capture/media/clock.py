"""RTP timestamp -> sample position of one stream, robust to what real senders do.

Positions count RTP clock ticks from the stream's first packet. Timestamps are unwrapped
(32-bit), so gaps (loss, DTX, silence suppression) keep their true length. What a
timestamp cannot be trusted for is re-anchored on the wall clock: a new SSRC (a re-INVITE
to another media server, a restarted sender) or a jump that disagrees with the time that
really passed by more than ``max_drift_s`` (a sender that paused during hold without
advancing its clock, or one that leapt ahead).

A packet that arrives much *later* than its timestamp says is ambiguous: either the
sender paused without advancing its clock (the wall clock is right: re-anchor), or the
packets were held up on the way and now come in a burst (a sender, or this process,
stalled for a second under load: the timestamps are right). :meth:`RtpClock.place` tells
them apart by the packets that follow: a burst catches up (timestamps advance at least
twice as fast as arrivals), a paused sender resumes at its normal pace. Until that is
clear (a few packets, at most ``settle_s`` of arrivals) the packets are held back.
"""

from __future__ import annotations

from typing import Generic, TypeVar

T = TypeVar("T")

_WRAP = 1 << 32
_HALF = 1 << 31


def _unwrap(delta: int) -> int:
    return (delta + _HALF) % _WRAP - _HALF


class RtpClock(Generic[T]):
    """Maps (ssrc, timestamp, arrival time) to a position in ticks of ``clock_rate``."""

    def __init__(self, clock_rate: int, *, max_drift_s: float = 1.0, settle_s: float = 0.2,
                 anchor: float | None = None) -> None:  # fmt: skip
        self.clock_rate = clock_rate
        self._anchor = anchor
        "Arrival time of position 0 when the stream already has a timeline (a codec change): it goes on from there."
        self.max_drift = int(max_drift_s * clock_rate)
        self.settle = int(settle_s * clock_rate)
        self._ssrc: int | None = None
        self._last_ts = 0
        self._last_pos = 0
        self._last_wall = 0.0
        self._held: list[tuple[int, int, float, T]] = []
        "Packets that arrived late, held until it is clear whether they came in a burst."
        self._late = 0
        "How much later than its timestamp the first held packet arrived (ticks)."
        self.reanchors = 0
        "How often the timestamp was overruled by the wall clock."
        self.bursts = 0
        "Late packets that turned out to be a burst catching up (their timestamps kept)."

    def position(self, ssrc: int, timestamp: int, now: float, *, trust: bool = False) -> int:
        """Position of a packet's first sample; ``now`` is its arrival (monotonic seconds).
        ``trust``: keep a timestamp that is behind the arrival (a packet held up on the way;
        same SSRC, never one that goes back or leaps ahead)."""
        if self._ssrc is None:
            start = max(round((now - self._anchor) * self.clock_rate), 0) if self._anchor is not None else 0
            self._ssrc, self._last_ts, self._last_wall, self._last_pos = ssrc, timestamp, now, start
            return start
        delta = _unwrap(timestamp - self._last_ts)
        expected = round((now - self._last_wall) * self.clock_rate)
        off = delta - expected
        if ssrc != self._ssrc or off > self.max_drift or (off < -self.max_drift and not (trust and delta >= 0)):
            self.reanchors += 1
            self._ssrc = ssrc
            delta = max(expected, 0)
        position = self._last_pos + delta
        if delta >= 0:
            self._last_ts, self._last_pos, self._last_wall = timestamp, position, now
        return position

    def peek(self, timestamp: int) -> int:
        """Position of ``timestamp`` on the current timeline, changing nothing (a telephone-event's
        key-down time, behind the audio by as long as the key is held)."""
        return self._last_pos + _unwrap(timestamp - self._last_ts)

    def place(self, ssrc: int, timestamp: int, now: float, item: T) -> list[tuple[int, T]]:
        """Like :meth:`position`, for a stream of packets: the (position, item) pairs that can be
        placed now, in order. A packet far later than its timestamp is held with the ones after
        it until they show a burst (timestamps kept) or a sender that paused (re-anchored)."""
        if self._held:
            if ssrc != self._held[0][0]:
                return self.flush() + self.place(ssrc, timestamp, now, item)
            self._held.append((ssrc, timestamp, now, item))
            return self._settle(final=False)
        if self._ssrc == ssrc:
            late = round((now - self._last_wall) * self.clock_rate) - _unwrap(timestamp - self._last_ts)
            if late > self.max_drift:
                self._held.append((ssrc, timestamp, now, item))
                self._late = late
                return []
        return [(self.position(ssrc, timestamp, now), item)]

    def flush(self) -> list[tuple[int, T]]:
        """Place whatever is held (end of the stream, or another sender)."""
        return self._settle(final=True) if self._held else []

    def _settle(self, *, final: bool) -> list[tuple[int, T]]:
        held = self._held
        first, last = held[0], held[-1]
        ts_advance = _unwrap(last[1] - first[1])
        wall_advance = round((last[2] - first[2]) * self.clock_rate)
        caught_up = ts_advance - wall_advance
        if final:
            burst = len(held) > 1 and ts_advance > 0 and ts_advance >= 2 * wall_advance
        else:
            burst = caught_up >= min(self._late // 2, self.clock_rate // 4)
            if not burst and wall_advance < self.settle:
                return []  # not clear yet
        self.bursts += burst
        self._held = []
        return [(self.position(s, ts, at, trust=burst), item) for s, ts, at, item in held]
