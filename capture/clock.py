"""The one clock: wall time for what goes into a vCon, monotonic time for timers.

Everything that needs the time is given a :class:`Clock` (the service makes one
:class:`SystemClock`; tests give a :class:`ManualClock`), so no module reads the system
clock behind the others' backs and a test owns time the way aioquic's tests do.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import Protocol


class Clock(Protocol):
    """Where the time comes from."""

    def now(self) -> datetime:
        """The current wall-clock time, aware UTC (timestamps in vCons and events)."""
        ...

    def monotonic(self) -> float:
        """Seconds on a clock that never jumps (timers, deadlines, timeouts)."""
        ...


class SystemClock:
    """The host's clocks."""

    def now(self) -> datetime:
        return datetime.now(UTC)

    def monotonic(self) -> float:
        return time.monotonic()


class ManualClock:
    """A clock a test moves by hand; both readings advance together."""

    def __init__(self, start: datetime | None = None) -> None:
        self._wall = start or datetime(2026, 1, 1, tzinfo=UTC)
        self._mono = 1000.0

    def now(self) -> datetime:
        return self._wall

    def monotonic(self) -> float:
        return self._mono

    def advance(self, seconds: float) -> None:
        self._wall += timedelta(seconds=seconds)
        self._mono += seconds


SYSTEM = SystemClock()
"The clock used when none is injected."
