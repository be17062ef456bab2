"""Finishes calls that were in flight when the process died.

Each call's working directory holds its journal (events, and the start of each
recording) and its recordings. At start-up every directory left behind is replayed into a
:class:`Conversation`; recordings that were never closed get their WAV header repaired
(a killed writer leaves it saying 0 samples) and keep the audio up to the kill; a call
without ``CallEnded`` is ended at its last known moment and marked as ended by a restart.
The vCon then goes through the spool like any other.
"""

from __future__ import annotations

import json
import logging
import shutil
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from capture.errors import MediaError
from capture.events import CallEnded, CallStarted, CaptureEvent, MediaRecorded, event_from_json
from capture.logs import call_scope
from capture.pipeline import JOURNAL, Pipeline
from capture.recording import repair_wav
from capture.vcon.assemble import Conversation

log = logging.getLogger(__name__)

RESTART_CAUSE = "recorder restarted"


def _read_journal(path: Path) -> list[dict[str, Any]]:
    records = []
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            continue  # a line torn by the kill
    return records


def _reopened_recordings(directory: Path, conv: Conversation, started: list[dict[str, Any]]) -> list[MediaRecorded]:
    closed = {Path(r.path).name for r in conv.recordings}
    found = []
    for rec in started:
        path = directory / rec["path"]
        if rec["path"] in closed or not path.exists():
            continue
        try:
            frames = repair_wav(path)
        except MediaError as exc:
            log.warning("recording lost: %s", exc)
            continue
        found.append(
            MediaRecorded(
                call_id=conv.call_id,
                at=datetime.fromisoformat(rec["started_at"]),
                stream_id=rec["stream_id"],
                path=str(path),
                started_at=datetime.fromisoformat(rec["started_at"]),
                duration_s=frames / rec["sample_rate"],
                channels=((rec["party"],),),
            )
        )
    return found


def rebuild(directory: Path) -> Conversation | None:
    """The conversation of an interrupted call, ended if it had not ended."""
    journal = directory / JOURNAL
    records = _read_journal(journal) if journal.exists() else []
    if not records or records[0].get("kind") != CallStarted.kind:
        return None
    first = event_from_json(records[0])
    assert isinstance(first, CallStarted)
    conv = Conversation(records[0]["vcon_uuid"], first)
    last = first.at
    started: list[dict[str, Any]] = []
    for record in records[1:]:
        if record.get("kind") == "recording_started":
            started.append(record)
            continue
        try:
            event: CaptureEvent = event_from_json(record)
        except (KeyError, TypeError, ValueError):
            continue
        conv.handle(event)
        last = max(last, event.at)
    for rec in _reopened_recordings(directory, conv, started):
        conv.handle(rec)
        last = max(last, rec.started_at + timedelta(seconds=rec.duration_s))
    if conv.ended is None:
        conv.handle(CallEnded(call_id=conv.call_id, at=last, cause=RESTART_CAUSE))
        conv.note("ended_by_restart", True)
    return conv


async def recover_calls(pipeline: Pipeline) -> int:
    """Turn every interrupted call into a spooled vCon; returns how many."""
    count = 0
    for directory in sorted(p for p in pipeline.calls_dir.iterdir() if p.is_dir()):
        conv = rebuild(directory)
        if conv is None:
            log.warning("unreadable call directory removed: %s", directory)
            shutil.rmtree(directory, ignore_errors=True)
            continue
        with call_scope(conv.uuid):
            log.info("recovering interrupted call", extra={"call_id": conv.call_id})
            await pipeline.finish_conversation(conv, directory)
        count += 1
    return count
