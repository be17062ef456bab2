"""From one call's events to one vCon.

Theory of operation: a :class:`Conversation` is fed the call's events in order
(:meth:`Conversation.handle`) and keeps only facts: who joined when, what they did, which
media files were recorded, how the call ended. Audio is not touched here; the caller turns
the recorded files into :class:`RecordingContent` (inline bytes or a URL + hash) and
:meth:`Conversation.to_vcon` lays out the document:

* parties in the order they joined, keys mapped to indices;
* one ``recording`` dialog per recording content (channels mapped to party indices); with
  several, a ``recording-set`` ties them together;
* an ``incomplete`` dialog when the call ended with a disposition;
* an answered call whose audio was lost still gets a ``recording-set`` with no recordings,
  so its history and attachments have a dialog to belong to;
* a ``transfer`` dialog per transfer, pointing at the main dialog;
* attachments: what adapters added verbatim, the CDR (json), and capture notes (missing
  media, an end by restart).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

from capture.events import (
    AttachmentAdded,
    CallAnswered,
    CallEnded,
    CallStarted,
    CaptureEvent,
    CdrFields,
    DtmfReceived,
    HoldChanged,
    MediaRecorded,
    MediaUnavailable,
    MuteChanged,
    PartyJoined,
    PartyLeft,
    Transferred,
)
from capture.vcon.content import rfc3339
from capture.vcon.model import Attachment, Content, Dialog, DialogType, Party, PartyEvent, SessionId, Vcon

NIL_UUID = "00000000-0000-0000-0000-000000000000"


@dataclass(frozen=True, slots=True, kw_only=True)
class RecordingContent:
    """A recorded file ready to go into a dialog."""

    start: datetime
    duration_s: float
    channels: tuple[tuple[str, ...], ...]
    "Party keys heard on each channel."
    content: Content
    mediatype: str
    filename: str


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
                for name in ("tel", "sip", "mailto", "name", "stir"):
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
            case CdrFields():
                self.cdr.update(event.fields)
            case CallEnded():
                self.ended = event
            case CallStarted():
                pass

    def _party(self, key: str) -> _PartyState:
        if key not in self._parties:
            self._parties[key] = _PartyState(key)
        return self._parties[key]

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

    def to_vcon(self, recordings: list[RecordingContent], *, updated_at: datetime) -> Vcon:
        """The finished vCon, with the given recorded content."""
        index = {key: i for i, key in enumerate(self._parties)}
        parties = [Party(**state.fields) for state in self._parties.values()]
        start = self.started.at
        end = self.ended.at if self.ended else updated_at
        everyone = list(range(len(parties)))
        history = [
            PartyEvent(party=index[key], time=at, event=kind, button=button)  # type: ignore[arg-type]
            for key, at, kind, button in sorted(self._history, key=lambda h: h[1])
        ]
        session = None
        if self.started.session_id:
            local, remote = self.started.session_id
            session = SessionId(local=local or NIL_UUID, remote=remote or NIL_UUID)
        application = self.started.application

        def whole_call(kind: DialogType, **fields: Any) -> Dialog:
            """A dialog spanning the whole call, with everyone in it."""
            return Dialog(
                type=kind,
                start=start,
                duration=round((end - start).total_seconds(), 3),
                parties=everyone,
                session_id=session,
                application=application,
                **fields,
            )

        dialogs: list[Dialog] = []
        for rec in sorted(recordings, key=lambda r: r.start):
            dialogs.append(
                Dialog(
                    type="recording",
                    start=rec.start,
                    duration=round(rec.duration_s, 3),
                    parties=_layout([[index[k] for k in ch] for ch in rec.channels]),
                    mediatype=rec.mediatype,
                    filename=rec.filename,
                    content=rec.content,
                    session_id=session,
                    application=application,
                )
            )
        if len(dialogs) > 1:
            set_index = len(dialogs)
            dialogs = [replace(d, recording_set=set_index) for d in dialogs]
            dialogs.append(whole_call("recording-set", recordings=list(range(set_index))))
        disposition = self.ended.disposition if self.ended else None
        if disposition is not None:
            dialogs.append(whole_call("incomplete", disposition=str(disposition)))
        elif not dialogs:
            dialogs.append(whole_call("recording-set", recordings=[]))
        main = len(dialogs) - 1 if len(dialogs) > 1 and dialogs[-1].type != "recording" else 0
        dialogs[main] = replace(dialogs[main], party_history=history)
        for t in self._transfers:
            dialogs.append(
                Dialog(
                    type="transfer",
                    start=t.at,
                    transferee=index[t.transferee],
                    transferor=index[t.transferor],
                    transfer_target=index[t.target],
                    original=main,
                    target_dialog=main,
                )
            )

        recorder = 0
        attachments = [
            Attachment(
                start=a.at,
                party=index[a.party] if a.party is not None else recorder,
                dialog=main,
                purpose=a.purpose,
                mediatype=a.mediatype,
                content=Content(body=a.body, encoding="none"),
            )
            for a in self._attachments
        ]
        attachments.append(
            Attachment(
                start=end,
                party=recorder,
                dialog=main,
                purpose="cdr",
                mediatype="application/json",
                content=Content(body=self.cdr_record(), encoding="json"),
            )
        )
        notes = dict(self.notes)
        if self.missing_media:
            notes["missing_media"] = [{"stream": m.stream_id, "reason": m.reason} for m in self.missing_media]
        if notes:
            attachments.append(
                Attachment(
                    start=end,
                    party=recorder,
                    dialog=main,
                    purpose="capture_notes",
                    mediatype="application/json",
                    content=Content(body=notes, encoding="json"),
                )
            )
        if not parties:
            parties = [Party(name="unknown")]
        return Vcon(
            uuid=self.uuid,
            created_at=start,
            updated_at=updated_at,
            subject=self.started.subject,
            parties=parties,
            dialog=dialogs,
            attachments=attachments,
        )


def _channel(indices: list[int]) -> int | list[int]:
    return indices[0] if len(indices) == 1 else indices


def _layout(channels: list[list[int]]) -> list[int] | list[int | list[int]]:
    """Dialog ``parties`` for a file's channels.

    A single channel lists everyone in its mix, always as a list: vcon-server's ingest
    refuses a bare int (and nested lists), so a one-party file is ``[0]``, a stereo file ``[0, 1]``.
    """
    if len(channels) == 1:
        return channels[0]
    return [_channel(ch) for ch in channels]
