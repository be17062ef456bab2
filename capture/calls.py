"""One call in progress, as the pipeline keeps it: its facts, journal, recordings, pauses and live listeners.

A :class:`LiveCall` takes the call's events in order (:meth:`LiveCall.take`): it journals
each one, feeds the :class:`Conversation`, applies pauses to every recording (those opened
later too), and tells live listeners (:class:`capture.live.LiveHub`) what happened. It opens
the call's recordings (:meth:`LiveCall.open_recording`), each journaled at its first sample
and tapped for live audio. The pipeline routes events to calls and finishes ended ones.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import numpy as np

from capture.clock import Clock
from capture.events import (
    CallEnded,
    CaptureEvent,
    DtmfReceived,
    HoldChanged,
    MediaRecorded,
    MuteChanged,
    PartyJoined,
    PartyLeft,
    RecordingPaused,
    RecordingResumed,
)
from capture.journal import CallJournal, RecordingStart
from capture.live import LiveHub
from capture.logs import call_scope
from capture.recording import StreamRecording
from capture.vcon.assemble import Conversation

log = logging.getLogger(__name__)

_OnClose = Callable[[MediaRecorded], None]
_Tap = Callable[[int, np.ndarray], None]


@dataclass(slots=True, eq=False)
class LiveCall:
    conversation: Conversation
    directory: Path
    journal: CallJournal
    live: LiveHub
    recordings: list[StreamRecording] = field(default_factory=list)
    pauses: list[tuple[datetime, datetime | None]] = field(default_factory=list)
    held: set[int] = field(default_factory=set)
    "Party indices on hold now (for the live snapshot)."
    muted: set[int] = field(default_factory=set)

    @property
    def uuid(self) -> str:
        return self.conversation.uuid

    @property
    def paused(self) -> bool:
        return bool(self.pauses) and self.pauses[-1][1] is None

    def take(self, event: CaptureEvent) -> None:
        """One event of this call (not its CallStarted)."""
        if isinstance(event, CallEnded):
            for recording in self.recordings:
                recording.close(event.at)
        elif isinstance(event, RecordingPaused | RecordingResumed):
            self._pause(event)
        self.journal.event(event)
        self.conversation.handle(event)
        self._publish(event)

    def open_recording(
        self,
        stream_id: str,
        party: str,
        sample_rate: int,
        clock: Clock,
        on_close: _OnClose,
        heard: tuple[str, ...] = (),
    ) -> StreamRecording:
        name = "".join(c if c.isalnum() or c in "-_." else "_" for c in stream_id)
        journal = self.journal

        def started(rec: StreamRecording) -> None:
            assert rec.started_at is not None
            journal.recording_started(
                RecordingStart(rec.stream_id, rec.party, rec.path.name, rec.sample_rate, rec.started_at, rec.heard)
            )

        recording = StreamRecording(
            self.directory / f"{name}.wav",
            sample_rate,
            call_id=self.conversation.call_id,
            stream_id=stream_id,
            party=party,
            heard=heard,
            clock=clock,
            on_start=started,
            on_close=on_close,
        )
        for start, end in self.pauses:
            recording.pause(start)
            if end is not None:
                recording.resume(end)
        recording.tap = self._tap(recording, len(self.recordings))
        uuid, live = self.uuid, self.live
        recording.listened = lambda: live.wants(uuid)
        self.recordings.append(recording)
        return recording

    def _tap(self, recording: StreamRecording, number: int) -> _Tap:
        """Publish a recording's kept audio to live listeners (a call nobody listens to costs one check)."""
        conv, live = self.conversation, self.live
        announced: list[int] = []

        def tap(position: int, pcm: np.ndarray) -> None:
            if not announced:
                announced.append(conv.party_index(recording.party))
                stream = {
                    "party": announced[0],
                    "stream": number,
                    "stream_id": recording.stream_id,
                    "sample_rate": recording.sample_rate,
                    "encoding": "pcm_s16le",
                    "start": recording.started_at,
                }
                live.stream_started(conv.uuid, stream)
            if live.wants(conv.uuid):
                live.audio(conv.uuid, announced[0], number, position, pcm)

        return tap

    def _publish(self, event: CaptureEvent) -> None:
        """Tell live listeners what happened (and keep the snapshot late listeners get current)."""
        conv, live = self.conversation, self.live
        match event:
            case PartyJoined():
                fields = conv.party_fields().get(event.party, {})
                live.update(conv.uuid, "parties", list(conv.party_fields().values()))
                live.event(conv.uuid, "party_joined", at=event.at, party=conv.party_index(event.party), **fields)
            case PartyLeft():
                live.event(conv.uuid, "party_left", at=event.at, party=conv.party_index(event.party))
            case HoldChanged():
                party = conv.party_index(event.party)
                (self.held.add if event.held else self.held.discard)(party)
                live.update(conv.uuid, "held", sorted(self.held))
                live.event(conv.uuid, "hold" if event.held else "unhold", at=event.at, party=party)
            case MuteChanged():
                party = conv.party_index(event.party)
                (self.muted.add if event.muted else self.muted.discard)(party)
                live.update(conv.uuid, "muted", sorted(self.muted))
                live.event(conv.uuid, "mute" if event.muted else "unmute", at=event.at, party=party)
            case DtmfReceived():
                live.event(conv.uuid, "dtmf", at=event.at, party=conv.party_index(event.party), digit=event.digit)
            case RecordingPaused() | RecordingResumed():
                paused = isinstance(event, RecordingPaused)
                live.update(conv.uuid, "paused", paused)
                kind = "recording_paused" if paused else "recording_resumed"
                live.event(conv.uuid, kind, at=event.at, by=event.by)
            case CallEnded():
                live.call_ended(conv.uuid, at=event.at, call_id=conv.call_id)

    def _pause(self, event: RecordingPaused | RecordingResumed) -> None:
        if isinstance(event, RecordingPaused) and not self.paused:
            self.pauses.append((event.at, None))
            for recording in self.recordings:
                recording.pause(event.at)
        elif isinstance(event, RecordingResumed) and self.paused:
            self.pauses[-1] = (self.pauses[-1][0], event.at)
            for recording in self.recordings:
                recording.resume(event.at)
        fields = {"call_id": self.conversation.call_id, "by": event.by}
        with call_scope(self.uuid):
            if isinstance(event, RecordingPaused):
                log.info("pipeline.recording_paused", extra=fields)
            else:
                log.info("pipeline.recording_resumed", extra=fields)
