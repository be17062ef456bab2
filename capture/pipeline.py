"""The one pipeline: routes adapters' events to their calls and hands finished calls on.

Theory of operation:

1. ``CallStarted`` mints the vCon uuid and opens the call's working directory under
   ``state_dir/calls/<uuid>/``: its recordings and its journal (:mod:`capture.journal`)
   live there, so a killed process can finish the call at its next start
   (:mod:`capture.recovery`).
2. Every later event of the call is journaled and fed to its :class:`Conversation`.
3. ``CallEnded`` closes the call's recordings; the :class:`VconBuilder` builds the vCon in a
   worker process, straight into the spool; only then is the working directory removed and
   :class:`Delivery` woken: a vCon is on disk before any sink sees it.
4. A full disk loses nothing and blocks nothing: recordings and journals hold what the disk
   refuses (bounded), a finished call waits (in memory, its directory kept for recovery)
   until its audio is on disk and its vCon is spooled, retrying with backoff; below the
   free-space floor (:class:`DiskGuard`) no new call is accepted.

The pipeline implements :class:`capture.adapter.Capture`, the face adapters see.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import shutil
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from datetime import datetime
from pathlib import Path

from capture.adapter import ResumedCall
from capture.atomic import ensure_dir
from capture.calls import LiveCall
from capture.clock import SYSTEM, Clock
from capture.delivery import Delivery
from capture.diskguard import DiskGuard
from capture.errors import LocalProtocolError, TransientMediaError
from capture.events import (
    CallEnded,
    CallStarted,
    CaptureEvent,
    RecordingPaused,
    RecordingResumed,
)
from capture.finishing import Sealing, VconBuilder
from capture.journal import CallJournal
from capture.live import LiveHub
from capture.logs import call_scope
from capture.metrics import Metrics
from capture.mixdown import MediaPolicy
from capture.recording import StreamRecording
from capture.sinks import Sink
from capture.spool import Spool
from capture.vcon.assemble import Conversation
from capture.vcon.profile import Profile
from capture.vcon.uuid8 import uuid8_for

log = logging.getLogger(__name__)

BUILD_WORKERS = 2
"Worker processes building vCons from finished calls."
RETRY_MAX_S = 5.0
"Longest wait between two tries at spooling a finished call while the disk refuses."
RECENT_UUIDS = 10_000
"How many call ids :meth:`Pipeline.vcon_uuid` still answers for after their call ended."


class Pipeline:
    """Implements :class:`capture.adapter.Capture` for the adapters."""

    def __init__(
        self,
        *,
        state_dir: Path,
        domain: str,
        media: MediaPolicy,
        spool: Spool,
        sinks: list[Sink],
        retry_max_s: float = 60.0,
        clock: Clock = SYSTEM,
        metrics: Metrics | None = None,
        sealing: Sealing | None = None,
        build_workers: int = BUILD_WORKERS,
        finished_dirs: tuple[Path, ...] = (),
        profile: Profile | None = None,
        min_free_bytes: int = 0,
    ) -> None:
        self.calls_dir = ensure_dir(state_dir / "calls")
        self.domain = domain
        self.spool = spool
        self.clock = clock
        self.metrics = metrics or Metrics()
        self.metrics.watch(active_calls=self.active_calls_by_source, spool_depth=spool.depth)
        self.delivery = Delivery(spool, sinks, metrics=self.metrics, retry_max_s=retry_max_s, clock=clock)
        self._builder = VconBuilder(media, profile or Profile(default_domain=domain), sealing, build_workers)
        watched = [state_dir, spool.root, *finished_dirs, *([media.media_dir] if media.media_dir else [])]
        self.disk = DiskGuard(watched, min_free_bytes, self.metrics)
        self.live = LiveHub(self.metrics, clock.monotonic)
        self.pause_hooks: dict[str, Callable[[str, bool], Awaitable[None]]] = {}
        "Per adapter: told when the API pauses one of its calls (e.g. AMI mutes MixMonitor)."
        self._finished_dirs = (*finished_dirs, spool.outbox)
        self._accepting = True
        self._calls: dict[str, LiveCall] = {}
        self._uuids: OrderedDict[str, str] = OrderedDict()
        self._resumed: dict[str, ResumedCall] = {}
        self._sequence = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._finishing: set[asyncio.Task[None]] = set()

    # -- Capture protocol -------------------------------------------------------------

    @property
    def accepting(self) -> bool:
        """Taking new calls: not shutting down, and the disk above its free-space floor."""
        return self._accepting and not self.disk.low

    @property
    def can_record(self) -> bool:
        return not self.disk.low

    def now(self) -> datetime:
        return self.clock.now()

    def monotonic(self) -> float:
        return self.clock.monotonic()

    def vcon_uuid(self, call_id: str) -> str | None:
        """The uuid minted for a call (kept after the call ended)."""
        return self._uuids.get(call_id)

    def finished_vcon(self, vcon_uuid: str) -> bytes | None:
        """A finished vCon's bytes, from the output directory or the spool; None if there is none yet."""
        for place in self._finished_dirs:
            try:
                return (place / f"{vcon_uuid}.vcon").read_bytes()
            except FileNotFoundError:
                continue
        return None

    def resumed_calls(self, source: str) -> list[ResumedCall]:
        """Calls of ``source`` that a restarted service took up again, still waiting for their adapter."""
        return [r for r in self._resumed.values() if r.source == source and r.call_id in self._calls]

    def calls_snapshot(self) -> list[dict[str, object]]:
        """Calls in progress: what live listeners are told first, plus recording state per stream."""
        out: list[dict[str, object]] = []
        for snapshot in self.live.snapshots():
            call = next((c for c in self._calls.values() if c.uuid == snapshot["vcon_uuid"]), None)
            if call is None:
                continue
            streams = [
                {
                    "stream_id": r.stream_id,
                    "party": call.conversation.party_index(r.party),
                    "seconds": round(r.duration_s, 2),
                    "level_db": r.level_db,
                    "lost_s": round(r.lost_s, 3),
                    "write_errors": r.write_errors,
                    **dict(r.counters),
                }
                for r in call.recordings
            ]
            out.append(
                {**snapshot, "paused": call.paused, "answered": call.conversation.answered_at, "streams": streams}
            )
        return out

    async def request_pause(self, vcon_uuid: str, paused: bool, reason: str | None = None) -> bool | None:
        """Pause or resume a call on request (the API).

        True if it changed, False if it already was so, None if there is no such call in progress.
        """
        call = next((c for c in self._calls.values() if c.uuid == vcon_uuid), None)
        if call is None:
            return None
        if call.paused == paused:
            return False
        call_id, at = call.conversation.call_id, self.now()
        event: CaptureEvent
        if paused:
            event = RecordingPaused(call_id=call_id, at=at, by="api", reason=reason)
        else:
            event = RecordingResumed(call_id=call_id, at=at, by="api")
        self._handle(event)
        hook = self.pause_hooks.get(call.conversation.source)
        if hook is not None:
            await hook(call.conversation.call_id, paused)
        return True

    def active_calls_by_source(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for call in self._calls.values():
            counts[call.conversation.source] = counts.get(call.conversation.source, 0) + 1
        return counts

    def emit(self, event: CaptureEvent) -> None:
        loop = self._loop
        if loop is None:
            raise LocalProtocolError("the pipeline is not running")
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            self._handle(event)
        else:
            loop.call_soon_threadsafe(self._handle, event)

    def open_recording(
        self, call_id: str, stream_id: str, party: str, sample_rate: int, *, heard: tuple[str, ...] = ()
    ) -> StreamRecording:
        call = self._calls.get(call_id)
        if call is None:
            raise LocalProtocolError(f"open_recording for unknown call {call_id!r}")
        return call.open_recording(stream_id, party, sample_rate, self.clock, self.emit, heard)

    # -- events -----------------------------------------------------------------------

    def _handle(self, event: CaptureEvent) -> None:
        if isinstance(event, CallStarted):
            self._start_call(event)
            return
        call = self._calls.get(event.call_id)
        if call is None:
            log.warning("pipeline.unknown_call", extra={"call_id": event.call_id, "event": event.kind})
            return
        call.take(event)
        if isinstance(event, CallEnded):
            del self._calls[event.call_id]
            self._resumed.pop(event.call_id, None)
            outcome = str(event.disposition) if event.disposition else "completed"
            self.metrics.calls_ended.labels(call.conversation.source, outcome).inc()
            call.journal.close()
            self._finish(call)

    def _start_call(self, event: CallStarted) -> None:
        if event.call_id in self._calls:
            with call_scope(self._calls[event.call_id].conversation.uuid):
                log.info("pipeline.call_continued", extra={"call_id": event.call_id})
            return
        self._sequence += 1  # events are handled on the loop thread only (emit hands them over)
        vcon_uuid = uuid8_for(self.domain, event.at, self._sequence)
        directory = self.calls_dir / vcon_uuid  # created by the first write that succeeds
        journal = CallJournal(directory)
        journal.started(vcon_uuid, event)
        self._register(LiveCall(Conversation(vcon_uuid, event), directory, journal, self.live))
        self.metrics.calls_started.labels(event.source).inc()
        self.live.call_started(
            vcon_uuid,
            {"call_id": event.call_id, "source": event.source, "at": event.at, "parties": [], "paused": False},
        )
        with call_scope(vcon_uuid):
            log.info("pipeline.call_started", extra={"call_id": event.call_id, "source": event.source})

    def _register(self, call: LiveCall) -> None:
        call_id = call.conversation.call_id
        self._calls[call_id] = call
        self._uuids[call_id] = call.conversation.uuid
        if len(self._uuids) > RECENT_UUIDS:
            self._uuids.popitem(last=False)

    def _finish(self, call: LiveCall) -> None:
        assert self._loop is not None
        with call_scope(call.conversation.uuid):
            task = self._loop.create_task(
                self.finish_conversation(call.conversation, call.directory, call.recordings, call.journal)
            )
        self._finishing.add(task)
        task.add_done_callback(self._finishing.discard)

    async def finish_conversation(
        self,
        conv: Conversation,
        directory: Path,
        recordings: list[StreamRecording] | None = None,
        journal: CallJournal | None = None,
    ) -> None:
        """Build and spool one finished call's vCon (built in a worker process); then deliver.

        While the disk refuses (the call's audio, the vCon), it waits and tries again: the call
        is never dropped, and its directory stays for recovery should the process die meanwhile.
        """
        ended_at = conv.ended.at if conv.ended else self.now()
        delay, refusals = 0.25, 0
        while True:
            try:
                self._settle(conv, recordings or [])
                built = await self._builder.build(conv, self.now(), self.spool.reserve(conv.uuid))
                await asyncio.to_thread(self.spool.commit, conv.uuid)
                break
            except (OSError, TransientMediaError) as exc:
                refusals += 1
                self.metrics.write_failures.labels("vcon").inc()
                if refusals == 1 or refusals % 20 == 0:
                    error = (exc.strerror if isinstance(exc, OSError) else None) or str(exc)
                    log.warning(
                        "pipeline.vcon_waits_for_storage",
                        extra={"call_id": conv.call_id, "error": error, "tries": refusals},
                    )
                await asyncio.sleep(delay)
                delay = min(delay * 2, RETRY_MAX_S)
        if journal is not None and journal.dropped:
            self.metrics.write_failures.labels("journal").inc(journal.dropped)
        for problem in built.problems:
            log.error("pipeline.vcon_invalid", extra={"problem": problem})
        latency = (self.now() - ended_at).total_seconds()
        log.info(
            "pipeline.vcon_spooled",
            extra={
                "call_id": conv.call_id,
                "problems": len(built.problems),
                "bytes": built.size,
                "latency_s": round(latency, 3),
            },
        )
        self.metrics.vcons_emitted.labels(conv.source).inc()
        self.metrics.end_to_vcon.labels(conv.source).observe(max(latency, 0.0))
        self.delivery.wake()
        await asyncio.to_thread(shutil.rmtree, directory, True)

    def _settle(self, conv: Conversation, recordings: list[StreamRecording]) -> None:
        """Every recording of the call on disk (OSError while the disk refuses); losses noted in the vCon."""
        unsettled = [rec for rec in recordings if not rec.settle()]
        if unsettled:
            raise OSError(errno.ENOSPC, unsettled[0].last_error or "recording not written")
        lost = {rec.stream_id: round(rec.lost_s, 3) for rec in recordings if rec.lost_samples}
        failures = sum(rec.write_errors for rec in recordings)
        if failures:
            self.metrics.write_failures.labels("recording").inc(failures)
        if lost:
            self.metrics.audio_lost.inc(sum(lost.values()))
            conv.note(
                "audio_lost_disk_full",
                {"seconds": lost, "why": "the disk refused writes for too long: silence at the true place"},
            )

    # -- recovery ---------------------------------------------------------------------

    def resume(self, conv: Conversation, directory: Path) -> None:
        """Take up an interrupted call again as a live one: its adapter will continue or end it."""
        journal = CallJournal(directory)
        journal.resumed(self.now())
        self._register(LiveCall(conv, directory, journal, self.live))
        self._resumed[conv.call_id] = ResumedCall(
            call_id=conv.call_id,
            vcon_uuid=conv.uuid,
            source=conv.source,
            started_at=conv.started.at,
            answered_at=conv.answered_at,
            last_event_at=conv.last_event_at,
        )
        with call_scope(conv.uuid):
            log.info("pipeline.call_resumed", extra={"call_id": conv.call_id, "source": conv.source})

    # -- lifecycle --------------------------------------------------------------------

    async def start(self) -> None:
        """Bind to the running loop and start delivering (the spool's leftovers first)."""
        self._loop = asyncio.get_running_loop()
        self.disk.start()
        self.delivery.start()

    def stop_accepting(self) -> None:
        self._accepting = False

    def end_open_calls(self, cause: str) -> int:
        """End every call its adapter left open (the shutdown safety net); returns how many."""
        open_calls = list(self._calls)
        for call_id in open_calls:
            self._handle(CallEnded(call_id=call_id, at=self.now(), cause=cause))
        return len(open_calls)

    async def drain(self, timeout_s: float) -> bool:
        """Wait for finishing calls and for the spool to empty; True if all was delivered in time."""
        deadline = self.clock.monotonic() + timeout_s
        while self._finishing or self._calls:
            if self.clock.monotonic() >= deadline:
                return False
            await asyncio.sleep(0.05)
        return await self.delivery.wait_empty(deadline)

    async def aclose(self) -> None:
        await self.disk.aclose()
        await self.delivery.aclose()
        await asyncio.to_thread(self._builder.close)
