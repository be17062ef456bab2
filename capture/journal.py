"""The per-call journal: the one home of its format, written by the pipeline, read by recovery.

Each call in progress has a directory ``state_dir/calls/<vcon uuid>/`` holding its
recordings and ``journal.jsonl``, one JSON object a line:

* line 1: the ``CallStarted`` event plus ``"vcon_uuid"``;
* every later event of the call, as :func:`capture.events.event_to_json` makes it;
* ``{"kind": "recording_started", ...}`` when a recording the pipeline opened wrote its
  first sample (stream, party, file name, sample rate, wall-clock time of sample 0);
* ``{"kind": "resumed", "at": ...}`` when a restarted service took the call up again.

Lines are flushed to the kernel as they are written (a SIGKILL keeps them; a power cut
may not, like the audio written once a second). A line torn by a kill is skipped on read.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import IO, Any

from capture.errors import MediaError
from capture.events import EVENT_TYPES, CallStarted, CaptureEvent, event_from_json, event_to_json

JOURNAL = "journal.jsonl"
RECORDING_STARTED = "recording_started"
RESUMED = "resumed"


@dataclass(frozen=True, slots=True)
class RecordingStart:
    """A recording the pipeline opened for the call, as journaled at its first sample."""

    stream_id: str
    party: str
    file: str
    "File name inside the call's directory."
    sample_rate: int
    started_at: datetime


@dataclass(slots=True)
class JournalContents:
    """What a call's journal holds."""

    vcon_uuid: str
    started: CallStarted
    events: list[CaptureEvent] = field(default_factory=list)
    "Every event after CallStarted, in order (lines that no longer parse are skipped)."
    recordings: list[RecordingStart] = field(default_factory=list)
    resumed: list[datetime] = field(default_factory=list)
    "When restarted services took the call up again."


class CallJournal:
    """Appends one call's records; see the module docstring for the format."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        try:
            self._file: IO[str] = (directory / JOURNAL).open("a", encoding="utf-8")
        except OSError as exc:
            raise MediaError(f"cannot open the journal in {directory}: {exc.strerror}") from None

    @property
    def closed(self) -> bool:
        return self._file.closed

    def started(self, vcon_uuid: str, event: CallStarted) -> None:
        self._write({"vcon_uuid": vcon_uuid, **event_to_json(event)})

    def event(self, event: CaptureEvent) -> None:
        self._write(event_to_json(event))

    def recording_started(self, start: RecordingStart) -> None:
        self._write(
            {
                "kind": RECORDING_STARTED,
                "stream_id": start.stream_id,
                "party": start.party,
                "path": start.file,
                "sample_rate": start.sample_rate,
                "started_at": start.started_at.isoformat(),
            }
        )

    def resumed(self, at: datetime) -> None:
        self._write({"kind": RESUMED, "at": at.isoformat()})

    def close(self) -> None:
        self._file.close()

    def _write(self, record: dict[str, Any]) -> None:
        if self._file.closed:
            return
        try:
            self._file.write(json.dumps(record, default=str) + "\n")
            self._file.flush()
        except OSError as exc:
            raise MediaError(f"cannot write the journal in {self.directory}: {exc.strerror}") from None


def _lines(path: Path) -> list[dict[str, Any]]:
    records = []
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue  # a line torn by the kill
        if isinstance(record, dict):
            records.append(record)
    return records


def read_journal(directory: Path) -> JournalContents | None:
    """The journal of a call directory; None if it has none or its first line is unusable."""
    path = directory / JOURNAL
    records = _lines(path) if path.exists() else []
    if not records or records[0].get("kind") != CallStarted.kind or "vcon_uuid" not in records[0]:
        return None
    try:
        started = event_from_json(records[0])
    except (KeyError, TypeError, ValueError):
        return None
    assert isinstance(started, CallStarted)
    contents = JournalContents(str(records[0]["vcon_uuid"]), started)
    for record in records[1:]:
        kind = record.get("kind")
        try:
            if kind == RECORDING_STARTED:
                contents.recordings.append(
                    RecordingStart(
                        stream_id=str(record["stream_id"]),
                        party=str(record["party"]),
                        file=str(record["path"]),
                        sample_rate=int(record["sample_rate"]),
                        started_at=datetime.fromisoformat(record["started_at"]),
                    )
                )
            elif kind == RESUMED:
                contents.resumed.append(datetime.fromisoformat(record["at"]))
            elif kind in EVENT_TYPES:
                contents.events.append(event_from_json(record))
        except (KeyError, TypeError, ValueError):
            continue
    return contents
