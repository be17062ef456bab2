"""From one call's events to the facts of one conversation.

Theory of operation: a :class:`Conversation` is fed the call's events in order
(:meth:`Conversation.handle`) and keeps only facts: who joined when, what they did, which
media files were recorded, how the call ended, the CDR fields and the capture notes. Audio is
not touched here, and neither is the vCon's layout: :func:`capture.vcon.layout.lay_out` turns
the facts plus the recorded content into the document.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from capture.events import (
    AttachmentAdded,
    CallAnswered,
    CallEnded,
    CallStarted,
    CaptureEvent,
    CaptureNoted,
    CdrFields,
    DtmfReceived,
    HoldChanged,
    MediaRecorded,
    MediaUnavailable,
    MuteChanged,
    PartyJoined,
    PartyLeft,
    RecordingPaused,
    RecordingResumed,
    Transferred,
)
from capture.vcon.content import rfc3339

PARTY_FIELDS = ("tel", "sip", "mailto", "name", "stir", "sip_contact", "sip_user_agent", "sip_display_name")
"PartyJoined fields that become Party fields."


@dataclass(slots=True)
class _PartyState:
    key: str
    fields: dict[str, str] = field(default_factory=dict)


class Conversation:
    """The facts of one call, gathered from its events."""

    def __init__(self, vcon_uuid: str, started: CallStarted) -> None:
        self.uuid = vcon_uuid
        self.call_id = started.call_id
        self.started = started
        self.answered_at: datetime | None = None
        self.ended: CallEnded | None = None
        self.last_event_at = started.at
        "The latest moment any event of the call speaks of."
        self._parties: dict[str, _PartyState] = {}
        self._history: list[tuple[str, datetime, str, str | None]] = []
        self.recordings: list[MediaRecorded] = []
        self.missing_media: list[MediaUnavailable] = []
        self._transfers: list[Transferred] = []
        self._attachments: list[AttachmentAdded] = []
        self.cdr: dict[str, Any] = {}
        self.notes: dict[str, Any] = {}
        self.pauses: list[dict[str, Any]] = []
        "Stretches whose audio was not kept: start, end (None if never resumed), by, reason."

    @property
    def source(self) -> str:
        return self.started.source

    def handle(self, event: CaptureEvent) -> None:
        """Take in one event of this call."""
        self.last_event_at = max(self.last_event_at, event.at)
        match event:
            case PartyJoined():
                state = self._party(event.party)
                if not state.fields:
                    self._history.append((event.party, event.at, "join", None))
                for name in PARTY_FIELDS:
                    value = getattr(event, name)
                    if value:
                        state.fields[name] = value
                if event.role:
                    self.cdr.setdefault("roles", {})[event.party] = event.role
            case PartyLeft():
                self._party(event.party)
                self._history.append((event.party, event.at, "drop", None))
            case CallAnswered():
                self.answered_at = self.answered_at or event.at
            case DtmfReceived():
                self._party(event.party)
                self._history.append((event.party, event.at, "keydown", event.digit))
                self._history.append(
                    (event.party, event.at + timedelta(seconds=event.duration_s), "keyup", event.digit)
                )
            case HoldChanged():
                self._party(event.party)
                self._history.append((event.party, event.at, "hold" if event.held else "unhold", None))
            case MuteChanged():
                self._party(event.party)
                self._history.append((event.party, event.at, "mute" if event.muted else "unmute", None))
            case MediaRecorded():
                for channel in event.channels:
                    for key in channel:
                        self._party(key)
                self.recordings.append(event)
            case MediaUnavailable():
                self.missing_media.append(event)
            case Transferred():
                for key in (event.transferee, event.transferor, event.target):
                    self._party(key)
                self._transfers.append(event)
            case AttachmentAdded():
                if event.party is not None:
                    self._party(event.party)
                self._attachments.append(event)
            case RecordingPaused():
                if not self.pauses or self.pauses[-1]["end"] is not None:
                    self.pauses.append({"start": event.at, "end": None, "by": event.by, "reason": event.reason})
            case RecordingResumed():
                if self.pauses and self.pauses[-1]["end"] is None:
                    self.pauses[-1]["end"] = event.at
                    self.pauses[-1]["resumed_by"] = event.by
            case CdrFields():
                self.cdr.update(event.fields)
            case CaptureNoted():
                self.notes[event.key] = event.value
            case CallEnded():
                self.ended = event
            case CallStarted():
                pass

    def _party(self, key: str) -> _PartyState:
        if key not in self._parties:
            self._parties[key] = _PartyState(key)
        return self._parties[key]

    def party_index(self, key: str) -> int:
        """The vCon index of a party (known from now on if it was not)."""
        self._party(key)
        return list(self._parties).index(key)

    @property
    def party_keys(self) -> list[str]:
        """Party keys in join order (index order in the vCon)."""
        return list(self._parties)

    def note(self, key: str, value: Any) -> None:
        """Record a fact about the capture itself (goes into the capture notes attachment)."""
        self.notes[key] = value

    def cdr_record(self) -> dict[str, Any]:
        """Computed CDR fields merged with what the adapter reported (the adapter's win)."""
        start = self.started.at
        end = self.ended.at if self.ended else None
        record: dict[str, Any] = {
            "call_id": self.call_id,
            "source": self.source,
            "start": rfc3339(start),
            "answer": rfc3339(self.answered_at) if self.answered_at else None,
            "end": rfc3339(end) if end else None,
            "duration": round((end - start).total_seconds(), 3) if end else None,
            "billsec": round((end - self.answered_at).total_seconds(), 3) if end and self.answered_at else 0,
            "disposition": self._cdr_disposition(),
            "hangup_cause": self.ended.cause if self.ended else None,
            "ended_by": self.ended.ended_by if self.ended else None,
        }
        record.update(self.cdr)
        return record

    def _cdr_disposition(self) -> str:
        if self.ended is not None and self.ended.disposition is not None:
            return str(self.ended.disposition)
        return "answered" if self.answered_at or self.recordings else "unknown"

    @property
    def history(self) -> list[tuple[str, datetime, str, str | None]]:
        """(party key, time, party_history event, button) in arrival order."""
        return list(self._history)

    @property
    def transfers(self) -> list[Transferred]:
        return list(self._transfers)

    @property
    def attachments(self) -> list[AttachmentAdded]:
        return list(self._attachments)

    def party_fields(self) -> dict[str, dict[str, str]]:
        """Identity fields per party key, in join order."""
        return {key: dict(state.fields) for key, state in self._parties.items()}
