"""Recording metadata over time: a later document (re-INVITE, UPDATE, BYE) applied to what was
known, and what changed for the parties.

A ``complete`` document replaces the picture: a participant it no longer lists has left (SRCs
rarely say so otherwise; BroadWorks and Avaya never do). A ``partial`` one (RFC 7865 section
6.2; Ribbon writes ``Partial``) only adds or amends, and a participant leaves when it carries a
``disassociate-time``. When a placeholder (Avaya SBCE's ``sip:ASBCE@asbce.com``) goes and a new
participant sends its stream, the new one *replaces* it: same party, now known.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field

from adapters.sip.metadata import Participant, RecordingMetadata

LEFT_UNSAID = ""
"disassociated_at of a participant a complete document stopped listing (no time was given)."


@dataclass
class MetadataChange:
    joined: list[str] = field(default_factory=list)
    "Participant ids that appeared."
    left: list[str] = field(default_factory=list)
    "Participant ids that left (disassociate-time, or gone from a complete document)."
    changed: list[str] = field(default_factory=list)
    "Participant ids whose identity, role or streams changed."
    replaced: dict[str, str] = field(default_factory=dict)
    "Placeholder id -> the participant id now sending its streams."

    def __bool__(self) -> bool:
        return bool(self.joined or self.left or self.changed or self.replaced)


def merge_metadata(current: RecordingMetadata, update: RecordingMetadata) -> tuple[RecordingMetadata, MetadataChange]:
    """The metadata after ``update``, and what changed; ``current`` is left as it was."""
    merged = copy.deepcopy(current)
    change = MetadataChange()
    for pid, p in update.participants.items():
        old = merged.participants.get(pid)
        if old is None:
            merged.participants[pid] = copy.deepcopy(p)
            change.joined.append(pid)
            continue
        before, was_left = _identity(old), old.left
        _amend(old, p, complete=update.datamode == "complete")
        if was_left and not old.left:
            change.joined.append(pid)
        elif _identity(old) != before:
            change.changed.append(pid)
    if update.datamode == "complete":
        for pid, p in merged.participants.items():
            if pid not in update.participants and not p.left:
                p.disassociated_at = LEFT_UNSAID
    for pid, p in merged.participants.items():
        was = current.participants.get(pid)
        if p.left and (was is None or not was.left) and pid not in change.left:
            change.left.append(pid)
    merged.streams.update(copy.deepcopy(update.streams))
    for stream_id, stream in update.streams.items():
        if stream.label is None and stream_id in current.streams:
            merged.streams[stream_id].label = current.streams[stream_id].label
    for gone in change.left:
        old = current.participants.get(gone)
        if old is None or not old.placeholder:
            continue
        heirs = [pid for pid in change.joined if set(merged.participants[pid].sends) & set(old.sends)]
        if len(heirs) == 1:
            change.replaced[gone] = heirs[0]
    merged.datamode = update.datamode
    merged.extensions += update.extensions
    merged.vendor_ids.update(update.vendor_ids)
    merged.sip_session_ids = merged.sip_session_ids or update.sip_session_ids
    merged.session_id = merged.session_id or update.session_id
    merged.group_id = merged.group_id or update.group_id
    merged.stop_time = update.stop_time or merged.stop_time
    merged.repairs = update.repairs
    merged.problems = update.problems
    return merged, change


def _identity(p: Participant) -> tuple[object, ...]:
    return (p.aor, p.name, p.role, tuple(sorted(p.hints.items())), tuple(p.sends))


def _amend(old: Participant, new: Participant, *, complete: bool) -> None:
    old.aor = new.aor or old.aor
    old.name = new.name or old.name
    old.role = new.role or old.role
    old.hints.update(new.hints)
    if complete or new.sends:
        old.sends = list(new.sends)
    if complete or new.recvs:
        old.recvs = list(new.recvs)
    old.associated_at = new.associated_at or old.associated_at
    old.disassociated_at = (
        new.disassociated_at if new.disassociated_at is not None else (None if complete else old.disassociated_at)
    )


def same_recording(a: RecordingMetadata, b: RecordingMetadata) -> bool:
    """Does ``b`` continue the recording ``a`` belongs to (same group, or the same session
    offered again)? NetSapiens starts a new session per party change within one group."""
    if a.group_id and a.group_id == b.group_id:
        return True
    return bool(a.session_id and a.session_id == b.session_id)
