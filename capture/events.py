"""The events every adapter emits; the pipeline turns a call's events into one vCon.

Adapters translate their protocol into these and nothing else: they never build vCon JSON.
Every event names its call with ``call_id`` (adapter-local and stable for the call: the SIP
Call-ID, the AMI Linkedid, the WebRTC room session) and carries ``at``, an aware UTC datetime.
Parties are named by adapter-local keys (``party``); the assembler turns keys into indices
in the order parties joined. ``CallEnded`` is a call's last event: an adapter reports its
media (``MediaRecorded`` or ``MediaUnavailable``) before it; recordings opened through the
pipeline are closed by the pipeline itself when the call ends.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any, ClassVar


class Disposition(StrEnum):
    """Why a call never became a conversation (vCon core-03 ``incomplete`` dialog)."""

    NO_ANSWER = "no-answer"
    CONGESTION = "congestion"
    FAILED = "failed"
    BUSY = "busy"
    HUNG_UP = "hung-up"
    VOICEMAIL_NO_MESSAGE = "voicemail-no-message"


@dataclass(frozen=True, slots=True, kw_only=True)
class CaptureEvent:
    """Base of all events."""

    kind: ClassVar[str] = "event"
    call_id: str
    "Adapter-local call identifier, stable for the whole call."
    at: datetime
    "When it happened (aware, UTC)."

    def __post_init__(self) -> None:
        if self.at.tzinfo is None:
            raise ValueError("event time must be timezone-aware")


@dataclass(frozen=True, slots=True, kw_only=True)
class CallStarted(CaptureEvent):
    """A call (or room, or SIPREC recording session) began: the vCon's uuid is minted now."""

    kind: ClassVar[str] = "call_started"
    source: str
    "The adapter's name: sip, webrtc, ami."
    subject: str | None = None
    "Optional subject line of the vCon."
    application: str | None = None
    "What carried the conversation (vCon dialog ``application``), e.g. 'asterisk'."
    session_id: tuple[str, str] | None = None
    "RFC 7989 Session-ID as (local, remote) uuids; the nil uuid for a missing side."
    domain: str | None = None
    """The PBX's SIP domain (or host), e.g. ``pbx.example.com``: a party known only by an
    internal extension becomes ``sip:EXT@domain`` in the vCon (conservers refuse short ``tel``)."""
    sip_call_id: str | None = None
    "SIP Call-ID of the dialog being recorded (sip-signaling extension)."
    sip_from_tag: str | None = None
    sip_to_tag: str | None = None
    sip_cseq: int | None = None
    "CSeq number of the dialog-creating request."
    originator: str | None = None
    "Party key of who placed the call, when the adapter knows it (the dialogs' ``originator``)."


@dataclass(frozen=True, slots=True, kw_only=True)
class PartyJoined(CaptureEvent):
    """A participant appeared (or its identity became known; a repeat updates the fields)."""

    kind: ClassVar[str] = "party_joined"
    party: str
    "Adapter-local key of the participant."
    tel: str | None = None
    "E.164 number with '+' when known, else the digits as given."
    sip: str | None = None
    "SIP addr-spec (sip:alice@example.com)."
    name: str | None = None
    "Display name."
    mailto: str | None = None
    "E-mail address."
    stir: str | None = None
    "PASSporT (compact JWS) from a SIP Identity header."
    role: str | None = None
    "Free text role, kept in the CDR (CC extension roles are not emitted)."
    sip_contact: str | None = None
    "Addr-spec of the party's SIP Contact (sip-signaling extension)."
    sip_user_agent: str | None = None
    "The party's SIP User-Agent (or Server) header."
    sip_display_name: str | None = None
    "The display name exactly as SIP claimed it (``name`` may come from elsewhere)."


@dataclass(frozen=True, slots=True, kw_only=True)
class PartyLeft(CaptureEvent):
    """A participant left the conversation."""

    kind: ClassVar[str] = "party_left"
    party: str
    reason: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class CallAnswered(CaptureEvent):
    """The call was answered (CDR answer time)."""

    kind: ClassVar[str] = "call_answered"


@dataclass(frozen=True, slots=True, kw_only=True)
class MediaRecorded(CaptureEvent):
    """A finished audio file for a stream.

    ``channels`` names, per channel of the file, the party keys heard on it: a mono
    per-party stream is ``(("alice",),)``, a stereo MixMonitor file ``(("a",), ("b",))``.
    """

    kind: ClassVar[str] = "media_recorded"
    stream_id: str
    path: str
    started_at: datetime
    "Wall-clock time of the file's first sample."
    duration_s: float
    channels: tuple[tuple[str, ...], ...]
    mediatype: str = "audio/x-wav"
    stream: bool = False
    """True for a stream the core recorded (mono, timestamp-true): it is mixed with the call's other
    streams. False for a file recorded elsewhere (a MixMonitor WAV): mixed only if it is one party's
    mono WAV, else kept byte for byte."""


@dataclass(frozen=True, slots=True, kw_only=True)
class MediaUnavailable(CaptureEvent):
    """A stream's recording could not be had; the vCon says why instead."""

    kind: ClassVar[str] = "media_unavailable"
    stream_id: str
    reason: str


@dataclass(frozen=True, slots=True, kw_only=True)
class DtmfReceived(CaptureEvent):
    """A DTMF key press: ``at`` is key down, ``at + duration_s`` key up."""

    kind: ClassVar[str] = "dtmf"
    party: str
    digit: str
    duration_s: float = 0.0


@dataclass(frozen=True, slots=True, kw_only=True)
class HoldChanged(CaptureEvent):
    """A participant put the call on hold (``held``) or resumed it."""

    kind: ClassVar[str] = "hold"
    party: str
    held: bool


@dataclass(frozen=True, slots=True, kw_only=True)
class MuteChanged(CaptureEvent):
    """A participant muted or unmuted."""

    kind: ClassVar[str] = "mute"
    party: str
    muted: bool


@dataclass(frozen=True, slots=True, kw_only=True)
class RecordingPaused(CaptureEvent):
    """Recording stops (PCI: a card number is being read): from ``at`` the call's audio is not kept.

    Adapters emit it for a pause the PBX or SRC signals (SIPREC ``a=inactive``, an Asterisk
    MixMonitor mute); the core emits it for a pause asked through its API. The audio of the
    paused stretch is never written anywhere; the recording keeps its length (silence).
    """

    kind: ClassVar[str] = "recording_paused"
    by: str
    "Who asked: api, src (SIPREC client), pbx..."
    reason: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class RecordingResumed(CaptureEvent):
    """Recording goes on after a :class:`RecordingPaused`."""

    kind: ClassVar[str] = "recording_resumed"
    by: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Transferred(CaptureEvent):
    """A transfer (RFC 5589 roles, as party keys)."""

    kind: ClassVar[str] = "transferred"
    transferee: str
    transferor: str
    target: str
    attended: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class AttachmentAdded(CaptureEvent):
    """Raw metadata kept verbatim: a SIP INVITE, rs-metadata XML, a PBX record..."""

    kind: ClassVar[str] = "attachment"
    purpose: str
    mediatype: str
    body: str
    "Text as received (encoded as ``none`` in the vCon)."
    party: str | None = None
    "Who supplied it; None means the recorder itself."


@dataclass(frozen=True, slots=True, kw_only=True)
class CaptureNoted(CaptureEvent):
    """A fact about the capture itself (what was odd, guessed or lost), for the vCon's ``capture_notes``.

    A later note with the same key replaces the earlier one.
    """

    kind: ClassVar[str] = "capture_noted"
    key: str
    value: Any
    "JSON-able."


@dataclass(frozen=True, slots=True, kw_only=True)
class CdrFields(CaptureEvent):
    """Fields for the call's CDR attachment, merged in arrival order (later wins)."""

    kind: ClassVar[str] = "cdr"
    fields: Mapping[str, Any]


@dataclass(frozen=True, slots=True, kw_only=True)
class CallEnded(CaptureEvent):
    """The call is over. A ``disposition`` means it never became a conversation."""

    kind: ClassVar[str] = "call_ended"
    disposition: Disposition | None = None
    cause: str | None = None
    "Why it ended, as the protocol said it (SIP Reason, Q.850 cause text...)."
    ended_by: str | None = None
    "Party key of who hung up, when known."


EVENT_TYPES: dict[str, type[CaptureEvent]] = {
    cls.kind: cls
    for cls in (
        CallStarted,
        PartyJoined,
        PartyLeft,
        CallAnswered,
        MediaRecorded,
        MediaUnavailable,
        DtmfReceived,
        HoldChanged,
        MuteChanged,
        RecordingPaused,
        RecordingResumed,
        Transferred,
        AttachmentAdded,
        CaptureNoted,
        CdrFields,
        CallEnded,
    )
}


def event_to_json(event: CaptureEvent) -> dict[str, Any]:
    """A JSON-ready dict of the event (for the per-call journal)."""
    data: dict[str, Any] = {"kind": event.kind}
    for f in dataclasses.fields(event):
        value = getattr(event, f.name)
        if isinstance(value, datetime):
            value = value.isoformat()
        elif isinstance(value, Mapping):
            value = dict(value)
        data[f.name] = value
    return data


def event_from_json(data: Mapping[str, Any]) -> CaptureEvent:
    """Inverse of :func:`event_to_json`."""
    cls = EVENT_TYPES[data["kind"]]
    kwargs: dict[str, Any] = {}
    for f in dataclasses.fields(cls):
        if f.name not in data:
            continue
        value = data[f.name]
        if f.name in ("at", "started_at"):
            value = datetime.fromisoformat(value)
        elif f.name == "channels":
            value = tuple(tuple(ch) for ch in value)
        elif f.name == "session_id" and value is not None:
            value = tuple(value)
        elif f.name == "disposition" and value is not None:
            value = Disposition(value)
        kwargs[f.name] = value
    return cls(**kwargs)
