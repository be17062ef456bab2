"""The vCon object model (draft core-04 names), frozen and serialisable; nothing here does I/O."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from capture.vcon.content import rfc3339
from capture.vcon.syntax import VERSION

DialogType = Literal["recording", "text", "transfer", "incomplete", "recording-set"]
ChannelParties = int | list[int] | None


def _plain(value: Any) -> Any:
    if isinstance(value, datetime):
        return rfc3339(value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return _object(value)
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


def _object(obj: Any) -> dict[str, Any]:
    """Dataclass to dict, leaving out None and empty lists (the draft allows omitting them)."""
    out: dict[str, Any] = {}
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        if value is None or (isinstance(value, (list, tuple)) and not value and f.name != "recordings"):
            continue
        out[f.metadata.get("key", f.name)] = _plain(value)
    return out


def _with_content(obj: Dialog | Attachment) -> dict[str, Any]:
    """A dialog or attachment as a dict, its content's keys inline (body/encoding or url/content_hash)."""
    out = _object(dataclasses.replace(obj, content=None))
    if obj.content is not None:
        out.update(_object(obj.content))
    return out


@dataclass(frozen=True, slots=True, kw_only=True)
class Party:
    tel: str | None = None
    sip: str | None = None
    mailto: str | None = None
    name: str | None = None
    stir: str | None = None
    uuid: str | None = None
    validation: str | None = None
    sip_contact: str | None = None
    "sip-signaling extension: addr-spec of the party's Contact."
    sip_user_agent: str | None = None
    "sip-signaling extension: the party's User-Agent/Server header."
    sip_display_name: str | None = None
    "sip-signaling extension: the display name as SIP claimed it."


@dataclass(frozen=True, slots=True, kw_only=True)
class PartyEvent:
    """One ``party_history`` entry."""

    party: int
    time: datetime
    event: Literal["join", "drop", "hold", "unhold", "mute", "unmute", "keydown", "keyup"]
    button: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class SessionId:
    local: str
    remote: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Content:
    """Inline (``body`` + ``encoding``) or referenced (``url`` + ``content_hash``) content."""

    body: Any = None
    encoding: Literal["base64url", "json", "none"] | None = None
    url: str | None = None
    content_hash: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Dialog:
    type: DialogType
    start: datetime
    duration: float | None = None
    parties: int | list[int] | list[ChannelParties] | None = None
    originator: int | None = None
    mediatype: str | None = None
    filename: str | None = None
    content: Content | None = None
    disposition: str | None = None
    session_id: SessionId | None = None
    party_history: list[PartyEvent] = field(default_factory=list)
    application: str | None = None
    transferee: int | None = None
    transferor: int | None = None
    transfer_target: int | None = None
    original: int | None = None
    target_dialog: int | None = None
    recordings: list[int] | None = None
    recording_set: int | None = None
    sip_call_id: str | None = None
    "sip-signaling extension: the SIP Call-ID of the dialog the recording came from."
    sip_from_tag: str | None = None
    sip_to_tag: str | None = None
    sip_cseq: int | None = None
    "sip-signaling extension: CSeq number of the dialog-creating request."

    def to_dict(self) -> dict[str, Any]:
        return _with_content(self)


@dataclass(frozen=True, slots=True, kw_only=True)
class Attachment:
    start: datetime
    party: int
    dialog: int
    purpose: str | None = None
    type: str | None = None
    "Only where an extension defines it (lawful_basis); core-04 names it ``purpose``."
    mediatype: str | None = None
    filename: str | None = None
    content: Content | None = None

    def to_dict(self) -> dict[str, Any]:
        return _with_content(self)


@dataclass(frozen=True, slots=True, kw_only=True)
class Vcon:
    uuid: str
    created_at: datetime
    updated_at: datetime | None = None
    subject: str | None = None
    extensions: list[str] = field(default_factory=list)
    "Extensions used (§4.1.3); none we use is incompatible, so ``critical`` is never emitted."
    parties: list[Party] = field(default_factory=list)
    dialog: list[Dialog] = field(default_factory=list)
    attachments: list[Attachment] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"vcon": VERSION, "uuid": self.uuid, "created_at": rfc3339(self.created_at)}
        if self.updated_at is not None:
            out["updated_at"] = rfc3339(self.updated_at)
        if self.subject is not None:
            out["subject"] = self.subject
        if self.extensions:
            out["extensions"] = list(self.extensions)
        out["parties"] = [_object(p) for p in self.parties]
        out["dialog"] = [d.to_dict() for d in self.dialog]
        if self.attachments:
            out["attachments"] = [a.to_dict() for a in self.attachments]
        return out


def dumps(doc: dict[str, Any]) -> bytes:
    """The JSON bytes of a vCon document (UTF-8, compact)."""
    return json.dumps(doc, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
