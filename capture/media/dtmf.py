"""RFC 4733 telephone-events: parsing and turning packet trains into key presses.

A key press is sent as a train of packets sharing one RTP timestamp (the key-down time),
with a growing duration, and ends with (usually three) packets carrying the E bit. The
tracker reports each press once: at its first end packet, or when a new event starts
before the end packets of the previous one arrived (they were lost).
"""

from __future__ import annotations

from typing import NamedTuple

from capture.errors import RemoteProtocolError

DIGITS = "0123456789*#ABCD"


class TelephoneEvent(NamedTuple):
    event: int
    end: bool
    volume: int
    duration: int
    "In RTP clock ticks."


class KeyPress(NamedTuple):
    digit: str
    timestamp: int
    "RTP timestamp of key down."
    duration: int
    "In RTP clock ticks."


def parse_telephone_event(payload: bytes) -> TelephoneEvent:
    if len(payload) < 4:
        raise RemoteProtocolError("telephone-event payload shorter than 4 bytes", excerpt=payload)
    return TelephoneEvent(payload[0], bool(payload[1] & 0x80), payload[1] & 0x3F, int.from_bytes(payload[2:4], "big"))


class DtmfTracker:
    """Feed every telephone-event packet of one stream; get each key press once."""

    def __init__(self) -> None:
        self._current: tuple[int, int] | None = None
        "(timestamp, event) of the press in progress."
        self._duration = 0
        self._done: set[tuple[int, int]] = set()

    def feed(self, timestamp: int, payload: bytes) -> list[KeyPress]:
        ev = parse_telephone_event(payload)
        key = (timestamp, ev.event)
        if key in self._done:
            return []
        out: list[KeyPress] = []
        if self._current is not None and self._current != key:
            out.extend(self._finish())
        self._current = key
        self._duration = max(self._duration, ev.duration)
        if ev.end:
            out.extend(self._finish())
        return out

    def flush(self) -> list[KeyPress]:
        """The press in progress when the stream ended."""
        return self._finish() if self._current is not None else []

    def _finish(self) -> list[KeyPress]:
        assert self._current is not None
        timestamp, event = self._current
        self._done.add(self._current)
        if len(self._done) > 64:
            self._done = {self._current}
        self._current = None
        duration, self._duration = self._duration, 0
        if event >= len(DIGITS):
            return []
        return [KeyPress(DIGITS[event], timestamp, duration)]
