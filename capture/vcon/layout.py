"""Lays out a finished conversation as a vCon (draft core-04), pure: facts in, document out.

* Parties in the order they joined, keys mapped to indices; a number that is an internal
  extension becomes a ``sip:`` identity on the PBX's domain (:mod:`capture.vcon.numbers`).
* One ``recording`` dialog per recorded content; with several, a ``recording-set`` ties them.
  A recording's ``parties`` is a flat list of party indices, as consumers take it (vcon-server
  refuses nested lists): one per channel, or, when a channel holds several voices (a mixed
  file, a transfer), every party heard in it, the exact per-channel map going into the capture
  notes.
* An ``incomplete`` dialog when the call ended with a disposition; an answered call whose audio
  was lost still gets a ``recording-set`` with no recordings, so its history and attachments
  have a dialog to belong to.
* A ``transfer`` dialog per transfer (single-integer references, §4.3.14), pointing at the main
  dialog; no parties, session_id or party_history on it (§4.3.1.6).
* SIP dialog identifiers and party SIP details as the ``sip-signaling`` extension defines them,
  listed in ``extensions`` (never ``critical``: consumers may ignore them).
* Attachments: what adapters added verbatim, the CDR (json), the stretches whose audio was not
  kept (``recording_pauses``: start, end, who asked, why), the operator's lawful basis, and
  capture notes (missing media, an end by restart...).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

from capture.vcon.assemble import Conversation
from capture.vcon.content import rfc3339
from capture.vcon.model import Attachment, Content, Dialog, DialogType, Party, PartyEvent, SessionId, Vcon
from capture.vcon.numbers import party_identity
from capture.vcon.profile import LawfulBasis, Profile
from capture.vcon.syntax import LAWFUL_BASIS, SIP_SIGNALING

NIL_UUID = "00000000-0000-0000-0000-000000000000"
RECORDER = 0
"Attachments the recorder itself supplies name the first party (§4.4.3 wants one)."


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


def lay_out(conv: Conversation, recordings: list[RecordingContent], *, updated_at: datetime, profile: Profile) -> Vcon:
    """The finished vCon of ``conv`` with the given recorded content."""
    keys = conv.party_keys
    index = {key: i for i, key in enumerate(keys)}
    parties, numbers = _parties(conv, profile)
    start = conv.started.at
    end = conv.ended.at if conv.ended else updated_at
    notes = dict(conv.notes)
    started = conv.started
    session = None
    if started.session_id:
        local, remote = started.session_id
        session = SessionId(local=local or NIL_UUID, remote=remote or NIL_UUID)
    call_fields: dict[str, Any] = {
        "originator": index.get(started.originator) if started.originator else None,
        "session_id": session,
        "application": started.application,
        "sip_call_id": started.sip_call_id,
        "sip_from_tag": started.sip_from_tag,
        "sip_to_tag": started.sip_to_tag,
        "sip_cseq": started.sip_cseq,
    }

    def whole_call(kind: DialogType, **fields: Any) -> Dialog:
        """A dialog spanning the whole call, with everyone in it."""
        duration = round((end - start).total_seconds(), 3)
        return Dialog(
            type=kind, start=start, duration=duration, parties=list(range(len(keys))), **call_fields, **fields
        )

    dialogs: list[Dialog] = []
    channel_map: dict[str, list[list[int]]] = {}
    for rec in sorted(recordings, key=lambda r: r.start):
        channels = [[index[k] for k in ch] for ch in rec.channels]
        if len(channels) > 1 and any(len(ch) != 1 for ch in channels):
            channel_map[str(len(dialogs))] = channels
        dialogs.append(
            Dialog(
                type="recording",
                start=rec.start,
                duration=round(rec.duration_s, 3),
                parties=_flat(channels),
                mediatype=rec.mediatype,
                filename=rec.filename,
                content=rec.content,
                **call_fields,
            )
        )
    if channel_map:
        notes["channel_parties"] = channel_map
    if len(dialogs) > 1:
        set_index = len(dialogs)
        dialogs = [replace(d, recording_set=set_index) for d in dialogs]
        dialogs.append(whole_call("recording-set", recordings=list(range(set_index))))
    disposition = conv.ended.disposition if conv.ended else None
    if disposition is not None:
        dialogs.append(whole_call("incomplete", disposition=str(disposition)))
    elif not dialogs:
        dialogs.append(whole_call("recording-set", recordings=[]))
    main = len(dialogs) - 1 if len(dialogs) > 1 and dialogs[-1].type != "recording" else 0
    history = [
        PartyEvent(party=index[key], time=at, event=kind, button=button)  # type: ignore[arg-type]
        for key, at, kind, button in sorted(conv.history, key=lambda h: h[1])
    ]
    dialogs[main] = replace(dialogs[main], party_history=history)
    for t in conv.transfers:
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

    attachments = [
        Attachment(
            start=a.at,
            party=index[a.party] if a.party is not None else RECORDER,
            dialog=main,
            purpose=a.purpose,
            mediatype=a.mediatype,
            content=Content(body=a.body, encoding="none"),
        )
        for a in conv.attachments
    ]
    cdr = conv.cdr_record()
    if numbers:
        cdr["internal_numbers"] = numbers
    attachments.append(_json_attachment("cdr", cdr, end, main))
    extensions = []
    if conv.pauses:
        pauses = [{k: rfc3339(v) if isinstance(v, datetime) else v for k, v in p.items()} for p in conv.pauses]
        at = conv.pauses[0]["start"]
        attachments.append(_json_attachment("recording_pauses", pauses, at, main))
    if profile.lawful_basis is not None:
        attachments.append(_lawful_basis(profile.lawful_basis, start, main))
        extensions.append(LAWFUL_BASIS)
    if conv.missing_media:
        notes["missing_media"] = [{"stream": m.stream_id, "reason": m.reason} for m in conv.missing_media]
    if notes:
        attachments.append(_json_attachment("capture_notes", notes, end, main))
    if not parties:
        parties = [Party(name="unknown")]
    if _uses_sip_signaling(parties, dialogs):
        extensions.insert(0, SIP_SIGNALING)
    return Vcon(
        uuid=conv.uuid,
        created_at=start,
        updated_at=updated_at,
        subject=started.subject,
        extensions=extensions,
        parties=parties,
        dialog=dialogs,
        attachments=attachments,
    )


def _parties(conv: Conversation, profile: Profile) -> tuple[list[Party], dict[str, str]]:
    """The parties, and the raw extension of each party whose number went into ``sip``."""
    domain = conv.started.domain or profile.default_domain
    parties, numbers = [], {}
    for i, fields in enumerate(conv.party_fields().values()):
        fields, extension = party_identity(fields, domain, profile.extension_re)
        if extension is not None:
            numbers[str(i)] = extension
        parties.append(Party(**fields))
    return parties, numbers


def _flat(channels: list[list[int]]) -> list[int]:
    """A recording's ``parties``: one index per channel, or every party heard when a channel mixes several."""
    if all(len(ch) == 1 for ch in channels):
        return [ch[0] for ch in channels]
    return list(dict.fromkeys(p for ch in channels for p in ch))


def _json_attachment(purpose: str, body: Any, at: datetime, dialog: int) -> Attachment:
    return Attachment(
        start=at,
        party=RECORDER,
        dialog=dialog,
        purpose=purpose,
        mediatype="application/json",
        content=Content(body=body, encoding="json"),
    )


def _lawful_basis(basis: LawfulBasis, start: datetime, dialog: int) -> Attachment:
    """draft-howe-vcon-lawful-basis: both ``type`` (the draft) and ``purpose`` (vcon-lib) say what it is."""
    expiry = start + timedelta(days=basis.expiry_days) if basis.expiry_days is not None else None
    body = {
        "lawful_basis": basis.basis,
        "expiration": rfc3339(expiry) if expiry else None,
        "purpose_grants": [{"purpose": basis.purpose, "granted": True, "granted_at": rfc3339(start)}],
    }
    return replace(_json_attachment("lawful_basis", body, start, dialog), type="lawful_basis")


def _uses_sip_signaling(parties: list[Party], dialogs: list[Dialog]) -> bool:
    party_keys = ("sip_contact", "sip_user_agent", "sip_display_name")
    dialog_keys = ("sip_call_id", "sip_from_tag", "sip_to_tag", "sip_cseq")
    return any(getattr(p, k) for p in parties for k in party_keys) or any(
        getattr(d, k) is not None for d in dialogs for k in dialog_keys
    )
