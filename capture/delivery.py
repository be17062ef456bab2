"""Delivery: one loop per sink takes vCons from the spool and hands them over.

Theory of operation: the spool is the only queue. Each sink's loop lists what that sink
has not acknowledged yet, oldest first, and delivers it; a transient failure (the sink is
down, slow, overloaded) waits with capped exponential backoff and jitter, then starts over
from the oldest; a permanent refusal moves the vCon to the sink's dead letters with the
whole reason. A vCon leaves the spool once every sink acknowledged it. A loop sleeps until
:meth:`Delivery.wake` says something new was spooled.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Callable

from capture.clock import SYSTEM, Clock
from capture.errors import DeliveryError, PermanentDeliveryError
from capture.logs import call_scope
from capture.metrics import Metrics
from capture.sinks import Sink
from capture.spool import Spool

log = logging.getLogger(__name__)

FIRST_BACKOFF_S = 0.5


class Delivery:
    """Per-sink delivery loops over one spool."""

    def __init__(
        self,
        spool: Spool,
        sinks: list[Sink],
        *,
        metrics: Metrics,
        retry_max_s: float = 60.0,
        clock: Clock = SYSTEM,
        jitter: Callable[[], float] = random.random,
    ) -> None:
        self.spool = spool
        self.sinks = sinks
        self.retry_max_s = retry_max_s
        self._metrics = metrics
        self._clock = clock
        self._jitter = jitter
        self._wake: dict[str, asyncio.Event] = {}
        self._tasks: list[asyncio.Task[None]] = []

    def start(self) -> None:
        """Start one loop per sink (the spool's leftovers from an earlier run go first)."""
        for sink in self.sinks:
            self._wake[sink.name] = asyncio.Event()
            self._tasks.append(asyncio.create_task(self._loop(sink), name=f"deliver-{sink.name}"))

    def wake(self) -> None:
        """Something new is in the spool."""
        for event in self._wake.values():
            event.set()

    async def retry_dead_letter(self, sink: str, vcon_uuid: str) -> bool:
        """Deliver a dead-lettered vCon to its sink again (the operator fixed the cause); False if there is none."""
        names = [s.name for s in self.sinks]
        if sink not in names:
            return False
        requeued = await asyncio.to_thread(self.spool.requeue, sink, vcon_uuid, names)
        if requeued:
            log.info("delivery.dead_letter_retried", extra={"sink": sink, "vcon_uuid": vcon_uuid})
            self.wake()
        return requeued

    async def wait_empty(self, deadline: float) -> bool:
        """Wait until every sink has everything (True) or the monotonic ``deadline`` passes (False)."""
        while self.spool.depth():
            if self._clock.monotonic() >= deadline:
                return False
            await asyncio.sleep(0.05)
        return True

    async def aclose(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for sink in self.sinks:
            await sink.aclose()

    async def _loop(self, sink: Sink) -> None:
        wake = self._wake[sink.name]
        backoff = FIRST_BACKOFF_S
        while True:
            wake.clear()
            pending = [u for u in self.spool.pending() if not self.spool.acknowledged(u, sink.name)]
            if not pending:
                await wake.wait()
                continue
            for vcon_uuid in pending:
                with call_scope(vcon_uuid):
                    try:
                        delivered = await self._deliver_one(sink, vcon_uuid)
                    except DeliveryError as exc:
                        delay = backoff * (0.5 + self._jitter())
                        log.warning(
                            "delivery.retry",
                            extra={"sink": sink.name, "retry_in_s": round(delay, 1), "reason": exc.reason},
                        )
                        backoff = min(backoff * 2, self.retry_max_s)
                        await asyncio.sleep(delay)
                        break
                    if delivered:
                        backoff = FIRST_BACKOFF_S
                    await asyncio.to_thread(self.spool.release_if_done, vcon_uuid, [s.name for s in self.sinks])

    async def _deliver_one(self, sink: Sink, vcon_uuid: str) -> bool:
        """Deliver or dead-letter one vCon; False if it was already gone. Transient errors propagate."""
        path = self.spool.path(vcon_uuid)
        if not path.exists():
            return False
        try:
            await sink.deliver(vcon_uuid, path)
        except PermanentDeliveryError as exc:
            log.error("delivery.dead_lettered", extra={"sink": sink.name, "reason": exc.reason})
            await asyncio.to_thread(self.spool.dead_letter, vcon_uuid, sink.name, exc.reason)
            self._metrics.vcons_dead.labels(sink.name).inc()
            return True
        await asyncio.to_thread(self.spool.acknowledge, vcon_uuid, sink.name)
        self._metrics.vcons_delivered.labels(sink.name).inc()
        log.info("delivery.delivered", extra={"sink": sink.name})
        return True
