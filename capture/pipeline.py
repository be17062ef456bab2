"""The one pipeline: adapters' events in, finished vCons spooled and delivered.

Theory of operation:

1. ``CallStarted`` mints the vCon uuid and opens the call's working directory under
   ``state_dir/calls/<uuid>/``: its recordings and a journal (one JSON line per event) live
   there, so a killed process can finish the call at its next start (:mod:`capture.recovery`).
2. Every later event of the call is journaled and fed to its :class:`Conversation`.
3. ``CallEnded`` closes the call's recordings, renders the audio (in a thread), assembles
   and validates the vCon, and writes it to the spool. Only then is the working directory
   removed and delivery tried: a vCon is on disk before any sink sees it.
4. One delivery loop per sink takes vCons from the spool, retries transient failures
   with capped exponential backoff, dead-letters permanent ones, and the spool forgets a
   vCon once every sink has it.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import shutil
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import IO

from capture.atomic import ensure_dir
from capture.errors import DeliveryError, LocalProtocolError, PermanentDeliveryError
from capture.events import CallEnded, CallStarted, CaptureEvent, event_to_json
from capture.finishing import Sealing, VconBuilder
from capture.logs import call_scope
from capture.metrics import Metrics
from capture.mixdown import MediaPolicy
from capture.recording import StreamRecording
from capture.sinks import Sink
from capture.sinks.directory import DirectorySink
from capture.spool import Spool
from capture.vcon.assemble import Conversation
from capture.vcon.syntax import Syntax
from capture.vcon.uuid8 import uuid8_for

log = logging.getLogger(__name__)

JOURNAL = "journal.jsonl"
BUILD_WORKERS = 2
"Worker processes building vCons from finished calls."
RECENT_UUIDS = 10_000
"How many call ids :meth:`Pipeline.vcon_uuid` still answers for after their call ended."


def utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass(slots=True)
class _Call:
    conversation: Conversation
    directory: Path
    journal: IO[str]
    recordings: list[StreamRecording] = field(default_factory=list)


class Pipeline:
    """Implements :class:`capture.adapter.Capture` for the adapters."""

    def __init__(
        self,
        *,
        state_dir: Path,
        domain: str,
        syntax: Syntax,
        media: MediaPolicy,
        spool: Spool,
        sinks: list[Sink],
        retry_max_s: float = 60.0,
        clock: Callable[[], datetime] = utcnow,
        metrics: Metrics | None = None,
        sealing: Sealing | None = None,
        build_workers: int = BUILD_WORKERS,
    ) -> None:
        self.calls_dir = ensure_dir(state_dir / "calls")
        self.domain = domain
        self.syntax = syntax
        self.media = media
        self.spool = spool
        self.sinks = sinks
        self.retry_max_s = retry_max_s
        self._clock = clock
        self.metrics = metrics or Metrics()
        self.metrics.watch(self)
        self._builder = VconBuilder(media, syntax, sealing, build_workers)
        self._accepting = True
        self._calls: dict[str, _Call] = {}
        self._uuids: OrderedDict[str, str] = OrderedDict()
        self._sequence = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._finishing: set[asyncio.Task[None]] = set()
        self._delivery: list[asyncio.Task[None]] = []
        self._wake: dict[str, asyncio.Event] = {}

    # -- Capture protocol -------------------------------------------------------------

    @property
    def accepting(self) -> bool:
        return self._accepting

    def now(self) -> datetime:
        return self._clock()

    def vcon_uuid(self, call_id: str) -> str | None:
        """The uuid minted for a call (kept after the call ended)."""
        return self._uuids.get(call_id)

    def finished_vcon(self, vcon_uuid: str) -> bytes | None:
        """A finished vCon's bytes, from the output directory or the spool; None if there is none yet."""
        places = [s.directory for s in self.sinks if isinstance(s, DirectorySink)] + [self.spool.outbox]
        for place in places:
            try:
                return (place / f"{vcon_uuid}.vcon").read_bytes()
            except FileNotFoundError:
                continue
        return None

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

    def open_recording(self, call_id: str, stream_id: str, party: str, sample_rate: int) -> StreamRecording:
        call = self._calls.get(call_id)
        if call is None:
            raise LocalProtocolError(f"open_recording for unknown call {call_id!r}")
        name = "".join(c if c.isalnum() or c in "-_." else "_" for c in stream_id)
        recording = StreamRecording(
            call.directory / f"{name}.wav",
            sample_rate,
            call_id=call_id,
            stream_id=stream_id,
            party=party,
            on_start=lambda rec: self._journal_recording(call, rec),
            on_close=self.emit,
        )
        call.recordings.append(recording)
        return recording

    # -- events -----------------------------------------------------------------------

    def _handle(self, event: CaptureEvent) -> None:
        if isinstance(event, CallStarted):
            self._start_call(event)
            return
        call = self._calls.get(event.call_id)
        if call is None:
            log.warning("event for unknown call dropped", extra={"call_id": event.call_id, "event": event.kind})
            return
        if isinstance(event, CallEnded):
            for recording in call.recordings:
                recording.close(event.at)
        self._journal(call, event_to_json(event))
        call.conversation.handle(event)
        if isinstance(event, CallEnded):
            del self._calls[event.call_id]
            outcome = str(event.disposition) if event.disposition else "completed"
            self.metrics.calls_ended.labels(call.conversation.source, outcome).inc()
            call.journal.close()
            self._finish(call)

    def _start_call(self, event: CallStarted) -> None:
        if event.call_id in self._calls:
            log.warning("duplicate CallStarted ignored", extra={"call_id": event.call_id})
            return
        self._sequence += 1  # events are handled on the loop thread only (emit hands them over)
        vcon_uuid = uuid8_for(self.domain, event.at, self._sequence)
        directory = ensure_dir(self.calls_dir / vcon_uuid)
        journal = (directory / JOURNAL).open("a", encoding="utf-8")
        call = _Call(Conversation(vcon_uuid, event), directory, journal)
        self.metrics.calls_started.labels(event.source).inc()
        self._calls[event.call_id] = call
        self._uuids[event.call_id] = vcon_uuid
        if len(self._uuids) > RECENT_UUIDS:
            self._uuids.popitem(last=False)
        self._journal(call, {"vcon_uuid": vcon_uuid, **event_to_json(event)})
        with call_scope(vcon_uuid):
            log.info("call started", extra={"call_id": event.call_id, "source": event.source})

    def _journal(self, call: _Call, record: dict[str, object]) -> None:
        call.journal.write(json.dumps(record, default=str) + "\n")
        call.journal.flush()

    def _journal_recording(self, call: _Call, rec: StreamRecording) -> None:
        assert rec.started_at is not None
        if not call.journal.closed:
            self._journal(
                call,
                {
                    "kind": "recording_started",
                    "stream_id": rec.stream_id,
                    "party": rec.party,
                    "path": rec.path.name,
                    "sample_rate": rec.sample_rate,
                    "started_at": rec.started_at.isoformat(),
                },
            )

    def _finish(self, call: _Call) -> None:
        assert self._loop is not None
        with call_scope(call.conversation.uuid):
            task = self._loop.create_task(self.finish_conversation(call.conversation, call.directory))
        self._finishing.add(task)
        task.add_done_callback(self._finishing.discard)

    async def finish_conversation(self, conv: Conversation, directory: Path) -> None:
        """Build and spool one finished call's vCon (built in a worker process); then deliver."""
        ended_at = conv.ended.at if conv.ended else self.now()
        data, found = await self._builder.build(conv)
        for problem in found:
            log.error("vCon invalid: %s", problem)
        await asyncio.to_thread(self.spool.put, conv.uuid, data)
        latency = (self.now() - ended_at).total_seconds()
        log.info(
            "vCon spooled", extra={"call_id": conv.call_id, "problems": len(found), "latency_s": round(latency, 3)}
        )
        self.metrics.vcons_emitted.labels(conv.source).inc()
        self.metrics.end_to_vcon.labels(conv.source).observe(max(latency, 0.0))
        for event in self._wake.values():
            event.set()
        await asyncio.to_thread(shutil.rmtree, directory, True)

    # -- delivery ---------------------------------------------------------------------

    async def _deliver_loop(self, sink: Sink) -> None:
        wake = self._wake[sink.name]
        backoff = 0.5
        while True:
            wake.clear()
            pending = [u for u in self.spool.pending() if not self.spool.acknowledged(u, sink.name)]
            if not pending:
                await wake.wait()
                continue
            for vcon_uuid in pending:
                with call_scope(vcon_uuid):
                    try:
                        data = await asyncio.to_thread(self.spool.read, vcon_uuid)
                    except FileNotFoundError:
                        continue
                    try:
                        await sink.deliver(vcon_uuid, data)
                    except PermanentDeliveryError as exc:
                        log.error("delivery refused, dead-lettered: %s", exc.reason, extra={"sink": sink.name})
                        await asyncio.to_thread(self.spool.dead_letter, vcon_uuid, sink.name, exc.reason)
                        self.metrics.vcons_dead.labels(sink.name).inc()
                    except DeliveryError as exc:
                        delay = backoff * (0.5 + random.random())
                        log.warning(
                            "delivery failed, retry in %.1f s: %s", delay, exc.reason, extra={"sink": sink.name}
                        )
                        backoff = min(backoff * 2, self.retry_max_s)
                        await asyncio.sleep(delay)
                        break
                    else:
                        backoff = 0.5
                        await asyncio.to_thread(self.spool.acknowledge, vcon_uuid, sink.name)
                        self.metrics.vcons_delivered.labels(sink.name).inc()
                        log.info("vCon delivered", extra={"sink": sink.name})
                    await asyncio.to_thread(self.spool.release_if_done, vcon_uuid, [s.name for s in self.sinks])

    # -- lifecycle --------------------------------------------------------------------

    async def start(self) -> None:
        """Bind to the running loop and start delivering (the spool's leftovers first)."""
        self._loop = asyncio.get_running_loop()
        for sink in self.sinks:
            self._wake[sink.name] = asyncio.Event()
            self._delivery.append(asyncio.create_task(self._deliver_loop(sink), name=f"deliver-{sink.name}"))

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
        deadline = time.monotonic() + timeout_s
        while self._finishing or self._calls:
            if time.monotonic() >= deadline:
                return False
            await asyncio.sleep(0.05)
        while self.spool.depth():
            if time.monotonic() >= deadline:
                return False
            await asyncio.sleep(0.05)
        return True

    async def aclose(self) -> None:
        for task in self._delivery:
            task.cancel()
        await asyncio.gather(*self._delivery, return_exceptions=True)
        for sink in self.sinks:
            await sink.aclose()
        await asyncio.to_thread(self._builder.close)
