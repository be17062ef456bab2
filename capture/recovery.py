"""Finishes (or hands back) calls that were in flight when the process died.

At start-up every call directory left behind is read back from its journal
(:mod:`capture.journal`) into a :class:`Conversation`. Recordings the pipeline opened and
never closed get their WAV header repaired (a killed writer leaves it saying 0 samples)
and keep the audio up to the kill.

* A call whose adapter can tell, once it is back, whether the call still goes on (the
  adapter class declares ``resumes_calls``; AMI asks the PBX) is handed back to the
  pipeline as a live call (:meth:`Pipeline.resume`): the adapter continues it or ends it,
  so there is one vCon per call across the restart.
* Any other call without ``CallEnded`` is ended at its last known moment, marked as ended
  by a restart, and goes through the spool like any other.
"""

from __future__ import annotations

import logging
import shutil
from collections.abc import Collection
from datetime import timedelta
from pathlib import Path

from capture.errors import MediaError
from capture.events import CallEnded, MediaRecorded
from capture.journal import JournalContents, read_journal
from capture.logs import call_scope
from capture.pipeline import Pipeline
from capture.recording import repair_wav
from capture.vcon.assemble import Conversation

log = logging.getLogger(__name__)

RESTART_CAUSE = "recorder restarted"


def _reopened_recordings(directory: Path, conv: Conversation, journal: JournalContents) -> list[MediaRecorded]:
    closed = {Path(r.path).name for r in conv.recordings}
    found = []
    for rec in journal.recordings:
        path = directory / rec.file
        if rec.file in closed or not path.exists():
            continue
        try:
            frames = repair_wav(path)
        except MediaError as exc:
            log.warning("recovery.recording_lost", extra={"stream_id": rec.stream_id, "reason": str(exc)})
            continue
        found.append(
            MediaRecorded(
                call_id=conv.call_id,
                at=rec.started_at,
                stream_id=rec.stream_id,
                path=str(path),
                started_at=rec.started_at,
                duration_s=frames / rec.sample_rate,
                channels=(rec.heard or (rec.party,),),
                stream=True,
            )
        )
    return found


def rebuild(directory: Path, *, end: bool = True) -> Conversation | None:
    """The conversation of an interrupted call; ended (if it had not ended) unless ``end`` is False."""
    journal = read_journal(directory)
    if journal is None:
        return None
    conv = Conversation(journal.vcon_uuid, journal.started)
    for event in journal.events:
        conv.handle(event)
    for rec in _reopened_recordings(directory, conv, journal):
        conv.handle(rec)
        conv.last_event_at = max(conv.last_event_at, rec.started_at + timedelta(seconds=rec.duration_s))
    if end and conv.ended is None:
        conv.handle(CallEnded(call_id=conv.call_id, at=conv.last_event_at, cause=RESTART_CAUSE))
        conv.note("ended_by_restart", True)
    return conv


async def recover_calls(pipeline: Pipeline, resumable: Collection[str] = ()) -> int:
    """Spool every interrupted call, or resume it when its source is in ``resumable``; returns how many."""
    count = 0
    for directory in sorted(p for p in pipeline.calls_dir.iterdir() if p.is_dir()):
        conv = rebuild(directory, end=False)
        if conv is None:
            log.warning("recovery.unreadable_call_removed", extra={"directory": str(directory)})
            shutil.rmtree(directory, ignore_errors=True)
            continue
        count += 1
        if conv.ended is None and conv.source in resumable:
            pipeline.resume(conv, directory)
            continue
        if conv.ended is None:
            conv.handle(CallEnded(call_id=conv.call_id, at=conv.last_event_at, cause=RESTART_CAUSE))
            conv.note("ended_by_restart", True)
        with call_scope(conv.uuid):
            log.info("recovery.call_recovered", extra={"call_id": conv.call_id})
            await pipeline.finish_conversation(conv, directory)
    return count
