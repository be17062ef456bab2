"""The parties of one SIPREC recording session as its metadata arrives and changes.

Pure bookkeeping between the metadata documents (INVITE, re-INVITE, UPDATE, BYE) and the
capture events: which party keys exist, with which identity, who joined or left when, which
keys are heard on each offered m-line, and the notes the vCon must carry when something was
repaired, unusable or guessed. Party keys are the metadata's participant ids; a placeholder's
key is kept by the participant that replaces it (same party, now known).
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

from adapters.sip.attribution import attribute
from adapters.sip.metadata import RecordingMetadata
from adapters.sip.metadata_merge import merge_metadata
from adapters.sip.parties import participant_fields
from adapters.sip.siprec import parse_metadata
from capture.errors import RemoteProtocolError


@dataclass
class PartyChanges:
    """What a metadata document changed, as capture events will say it."""

    joined: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    "(party key, PartyJoined fields): new parties, or known ones whose identity changed."
    left: list[tuple[str, str]] = field(default_factory=list)
    "(party key, reason)."
    notes: list[str] = field(default_factory=list)


@dataclass
class SessionParties:
    metadata: RecordingMetadata | None = None
    "Everything known so far (None: no usable metadata yet)."
    keys: dict[str, str] = field(default_factory=dict)
    "participant id -> party key."
    fields: dict[str, dict[str, Any]] = field(default_factory=dict)
    "party key -> the fields last announced."
    notes: list[str] = field(default_factory=list)
    "Everything worth a line in capture_notes, in order."

    def read(self, xml: bytes, *, where: str) -> PartyChanges:
        """Apply one rs-metadata document (``where``: "INVITE", "UPDATE", "BYE"...)."""
        changes = PartyChanges()
        try:
            document = parse_metadata(xml)
        except RemoteProtocolError as exc:
            self._note(
                changes,
                f"rs-metadata in {where} unusable ({exc}); parties from the SIP headers"
                if self.metadata is None
                else f"rs-metadata in {where} unusable ({exc}); kept the earlier one",
            )
            return changes
        if document.repairs:
            self._note(changes, f"rs-metadata in {where} was not well-formed, repaired: {', '.join(document.repairs)}")
        for problem in document.problems:
            self._note(changes, f"rs-metadata in {where}: {problem}")
        if self.metadata is None:
            if not document.participants:
                self._note(changes, f"rs-metadata in {where} names no participant; parties from the SIP headers")
                return changes
            self.metadata = document
            left_ids: list[str] = []
        else:
            self.metadata, change = merge_metadata(self.metadata, document)
            for old, new in change.replaced.items():
                self.keys[new] = self.keys.get(old, old)
                self._note(changes, f"participant {new!r} replaces the placeholder {old!r}")
            left_ids = [pid for pid in change.left if pid not in change.replaced]
        for pid, participant in self.metadata.participants.items():
            if participant.left:
                continue
            key = self.keys.setdefault(pid, pid)
            fields = participant_fields(participant)
            if self.fields.get(key) != fields:
                self.fields[key] = fields
                changes.joined.append((key, fields))
            if participant.placeholder and not participant.hints:
                self._note(changes, f"participant {pid!r} is the SRC's placeholder {participant.aor!r}")
        for pid in left_ids:
            key = self.keys.get(pid, pid)
            if key in self.fields and not any(k == key and not self.metadata.participants[p].left
                                              for p, k in self.keys.items()):  # fmt: skip
                changes.left.append((key, f"left the recorded call (rs-metadata in {where})"))
        return changes

    def heard(self, labels: list[str | None]) -> list[tuple[str, ...]]:
        """Party keys heard on each offered m-line (empty: nobody known); guesses are noted."""
        if self.metadata is None:
            return [() for _ in labels]
        out = []
        for label, a in zip(labels, attribute(self.metadata, labels), strict=True):
            keys = tuple(dict.fromkeys(self.keys.get(p, p) for p in a.participants))
            if a.guessed:
                note = f"stream {label!r}: {a.guessed}"
                if note not in self.notes:
                    self.notes.append(note)
            out.append(keys)
        return out

    @property
    def communication_session_id(self) -> str | None:
        return self.metadata.communication_session_id if self.metadata else None

    @property
    def silent(self) -> bool:
        """The metadata has streams and participants but says nobody sends any of them (every
        association emptied): mid-call, the SRC paused the recording."""
        meta = self.metadata
        present = [p for p in meta.participants.values() if not p.left] if meta is not None else []
        return bool(meta and meta.streams and present) and not any(p.sends for p in present)

    def record(self, continues: dict[str, str] | None) -> dict[str, Any]:
        """What ties the recording session to the call it recorded, to that call's other forks and to
        the session it continues (the ``siprec-session`` attachment). Data only: how the metadata
        was read (repairs, guesses, fallbacks) is in :attr:`notes`, for capture_notes."""
        meta = self.metadata
        body: dict[str, Any] = {"communication_session_id": self.communication_session_id}
        if meta is not None:
            body.update(metadata_session_id=meta.session_id, group_id=meta.group_id, dialect=meta.dialect,
                        sip_session_ids=meta.sip_session_ids or None, vendor_ids=meta.vendor_ids or None)  # fmt: skip
        body["continues"] = continues
        return {k: v for k, v in body.items() if v is not None}

    def _note(self, changes: PartyChanges, note: str) -> None:
        if note not in self.notes:
            self.notes.append(note)
            changes.notes.append(note)


class RecordingGroups:
    """Recording sessions seen lately, by group and session id: a new INVITE that continues one
    (NetSapiens opens a new session per party change; an SRC may re-offer a session after a
    failover) is tied to the earlier vCon."""

    def __init__(self, size: int = 10000) -> None:
        self._seen: OrderedDict[str, dict[str, str]] = OrderedDict()
        self._size = size

    def seen(self, meta: RecordingMetadata, call_id: str, vcon_uuid: str | None) -> dict[str, str] | None:
        """The earlier session ``meta`` continues (its call id, vCon uuid and the shared id), if any;
        then ``meta`` is remembered as the latest of its group."""
        keys = [
            f"group:{meta.group_id}" if meta.group_id else "",
            f"session:{meta.session_id}" if meta.session_id else "",
        ]
        known = [self._seen[k] for k in keys if k in self._seen]
        earlier = next((seen for seen in known if seen["sip_call_id"] != call_id), None)
        mine = {"sip_call_id": call_id, "vcon_uuid": vcon_uuid or ""}
        for key in keys:
            self._seen[key] = {**mine, "shared": key}
            self._seen.move_to_end(key)
        while len(self._seen) > self._size:
            self._seen.popitem(last=False)
        return earlier
