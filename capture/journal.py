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
Writing never raises: when the disk refuses (full, quota), lines wait in memory (up to
``BACKLOG_LINES``) and go out with the next write that succeeds; what had to be dropped is
counted in :attr:`CallJournal.dropped` (the journal only matters if the process dies before
the call ends: the live call is kept in memory).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import IO, Any

from capture.events import EVENT_TYPES, CallStarted, CaptureEvent, event_from_json, event_to_json

JOURNAL = "journal.jsonl"
RECORDING_STARTED = "recording_started"
RESUMED = "resumed"
BACKLOG_LINES = 10_000


@dataclass(frozen=True, slots=True)
class RecordingStart:
    """A recording the pipeline opened for the call, as journaled at its first sample."""

    stream_id: str
    party: str
    file: str
    "File name inside the call's directory."
    sample_rate: int
    started_at: datetime
    heard: tuple[str, ...] = ()
    "Every party the stream carries (empty: just ``party``)."


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
        self._file: IO[str] | None = None
        self._closed = False
        self._backlog: list[str] = []
        self.dropped = 0
        "Lines lost because the disk refused them for too long."
        self.last_error: str | None = None

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def complete(self) -> bool:
        """Every line is on disk."""
        return not self._backlog and not self.dropped

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
                "heard": list(start.heard),
            }
        )

    def resumed(self, at: datetime) -> None:
        self._write({"kind": RESUMED, "at": at.isoformat()})

    def close(self) -> None:
        """Stop journaling (one last attempt at what waits)."""
        self._drain()
        self._closed = True
        if self._file is not None:
            try:
                self._file.close()
            except OSError:
                pass
            self._file = None

    def _write(self, record: dict[str, Any]) -> None:
        if self._closed:
            return
        self._backlog.append(json.dumps(record, default=str) + "\n")
        self._drain()

    def _drain(self) -> None:
        if not self._backlog:
            return
        try:
            if self._file is None:
                self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
                self._file = (self.directory / JOURNAL).open("a", encoding="utf-8")
            self._file.write("".join(self._backlog))
            self._file.flush()
        except OSError as exc:
            self.last_error = exc.strerror or str(exc)
            self._reset_file()
            if len(self._backlog) > BACKLOG_LINES:
                # Keep the first line (CallStarted: recovery needs it) and the newest ones.
                drop = len(self._backlog) - BACKLOG_LINES
                self.dropped += drop
                self._backlog = self._backlog[:1] + self._backlog[1 + drop :]
            return
        self._backlog.clear()

    def _reset_file(self) -> None:
        """After a failed write the file may hold a torn line: start a fresh line on the next open."""
        if self._file is not None:
            try:
                self._file.close()
            except OSError:
                pass
            self._file = None
        if self._backlog and not self._backlog[0].startswith("\n"):
            self._backlog[0] = "\n" + self._backlog[0]


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
                        heard=tuple(str(p) for p in record.get("heard") or ()),
                    )
                )
            elif kind == RESUMED:
                contents.resumed.append(datetime.fromisoformat(record["at"]))
            elif kind in EVENT_TYPES:
                contents.events.append(event_from_json(record))
        except (KeyError, TypeError, ValueError):
            continue
    return contents
