"""The free-space floor: below it the service takes no new calls until space returns.

Every ``check_s`` the guard reads the free space under the directories the service writes
(``state_dir`` with its recordings, journals and spool; ``out``; ``media_dir``). Below
``min_free_bytes`` on any of them the service is *low*: ``Capture.accepting`` turns False
(SIP INVITEs and WHIP POSTs get 503, ``/readyz`` answers 503) while calls in progress go on
recording (what the disk refuses waits in memory, see :mod:`capture.recording`). Once space
is back above the floor it accepts again by itself. A disk has no event for "space freed",
so this is the one periodic check in the service; it costs a ``statvfs`` per directory.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Sequence
from pathlib import Path

from capture.metrics import Metrics

log = logging.getLogger(__name__)

CHECK_S = 1.0


class DiskGuard:
    def __init__(self, paths: Sequence[Path], min_free_bytes: int, metrics: Metrics, check_s: float = CHECK_S) -> None:
        self.paths = list(dict.fromkeys(paths))
        self.min_free_bytes = min_free_bytes
        self.check_s = check_s
        self._metrics = metrics
        self.low = False
        self._task: asyncio.Task[None] | None = None

    def free_bytes(self, path: Path) -> int:
        st = os.statvfs(path)
        return st.f_bavail * st.f_frsize

    def check(self) -> bool:
        """Read free space now; True if any directory is below the floor."""
        lowest: tuple[int, Path] | None = None
        for path in self.paths:
            try:
                free = self.free_bytes(path)
            except OSError:
                continue
            self._metrics.disk_free.labels(str(path)).set(free)
            if lowest is None or free < lowest[0]:
                lowest = (free, path)
        low = lowest is not None and lowest[0] < self.min_free_bytes
        if low != self.low:
            assert lowest is not None
            fields = {
                "path": str(lowest[1]),
                "free_mb": round(lowest[0] / 1e6, 1),
                "floor_mb": self.min_free_bytes / 1e6,
            }
            if low:
                log.error("disk.low_refusing_calls", extra=fields)
            else:
                log.warning("disk.space_back_accepting_calls", extra=fields)
        self.low = low
        self._metrics.disk_low.set(1 if low else 0)
        return low

    def start(self) -> None:
        self.check()
        self._task = asyncio.create_task(self._watch(), name="disk-guard")

    async def _watch(self) -> None:
        while True:
            await asyncio.sleep(self.check_s)
            self.check()

    async def aclose(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
