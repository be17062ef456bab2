"""An in-memory Capture for adapters' in-process tests: events collected, recordings in a directory.

End-to-end tests use the real pipeline through the CLI; this stands in for it where a
test drives an adapter's pieces directly.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

from capture.adapter import ResumedCall
from capture.clock import SYSTEM, Clock
from capture.events import CaptureEvent
from capture.metrics import Metrics
from capture.recording import StreamRecording


class FakeCapture:
    def __init__(self, directory: Path, clock: Clock = SYSTEM) -> None:
        self.directory = directory
        self.clock = clock
        self.events: list[CaptureEvent] = []
        self.accepting = True
        self.can_record = True
        "False: as if the disk were below its floor (refusals leave no vCon)."
        self.metrics = Metrics()

    def now(self) -> datetime:
        return self.clock.now()

    def monotonic(self) -> float:
        return self.clock.monotonic()

    def resumed_calls(self, source: str) -> list[ResumedCall]:
        return []

    def emit(self, event: CaptureEvent) -> None:
        self.events.append(event)

    def vcon_uuid(self, call_id: str) -> str | None:
        return None

    def finished_vcon(self, vcon_uuid: str) -> bytes | None:
        return None

    def open_recording(
        self, call_id: str, stream_id: str, party: str, sample_rate: int, *, heard: tuple[str, ...] = ()
    ) -> StreamRecording:
        return StreamRecording(
            self.directory / f"{stream_id}.wav", sample_rate, call_id=call_id, stream_id=stream_id, party=party,
            heard=heard, clock=self.clock, on_close=self.emit,
        )  # fmt: skip
