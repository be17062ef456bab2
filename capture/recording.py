"""Timestamp-true recording of one stream into a mono 16-bit WAV.

Adapters hand over decoded PCM with its sample position (from RTP or frame timestamps,
counted from the stream's first sample); the recording fills every gap with silence and
drops samples that arrive for a position already written, so the file's length is the
stream's true duration and every leg stays aligned with the others. Audio is buffered and
written at least once a second, so a killed process leaves at most a second unwritten.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import soundfile as sf

from capture.clock import SYSTEM, Clock
from capture.errors import MediaError
from capture.events import MediaRecorded

log = logging.getLogger(__name__)

FLUSH_SECONDS = 1.0
MAX_GAP_SECONDS = 3600.0


class StreamRecording:
    """One party's stream, written as it arrives."""

    def __init__(
        self,
        path: Path,
        sample_rate: int,
        *,
        call_id: str,
        stream_id: str,
        party: str,
        clock: Clock = SYSTEM,
        on_start: Callable[[StreamRecording], None] | None = None,
        on_close: Callable[[MediaRecorded], None] | None = None,
    ) -> None:
        self.path = path
        self.sample_rate = sample_rate
        self.call_id = call_id
        self.stream_id = stream_id
        self.party = party
        self.started_at: datetime | None = None
        "Wall-clock time of sample 0, set by the first write."
        self._clock = clock
        self._on_start = on_start
        self._on_close = on_close
        self._pending: list[np.ndarray] = []
        self._pending_samples = 0
        self._written = 0
        self._closed = False
        try:
            self._file = sf.SoundFile(path, "w", samplerate=sample_rate, channels=1, subtype="PCM_16", format="WAV")
        except (sf.LibsndfileError, OSError) as exc:
            raise MediaError(f"cannot create {path}: {exc}") from None

    @property
    def samples(self) -> int:
        """Samples placed so far, silence included."""
        return self._written

    @property
    def duration_s(self) -> float:
        return self._written / self.sample_rate

    def write_at(self, position: int, pcm: np.ndarray, *, at: datetime | None = None) -> None:
        """Place ``pcm`` (int16 mono) at sample ``position``; ``at`` anchors sample 0 on first use."""
        if self._closed:
            return
        if self.started_at is None:
            anchor = at or self._clock.now()
            self.started_at = anchor - timedelta(seconds=position / self.sample_rate)
            if self._on_start is not None:
                self._on_start(self)
        if position > self._written:
            gap = position - self._written
            if gap > MAX_GAP_SECONDS * self.sample_rate:
                raise MediaError(f"{self.stream_id}: gap of {gap / self.sample_rate:.0f} s refused")
            self._queue(np.zeros(gap, dtype=np.int16))
        elif position < self._written:
            pcm = pcm[self._written - position :]
        if len(pcm):
            self._queue(np.asarray(pcm, dtype=np.int16))

    def append(self, pcm: np.ndarray, *, at: datetime | None = None) -> None:
        """Place ``pcm`` right after what was written."""
        self.write_at(self._written, pcm, at=at)

    def pad_to(self, position: int) -> None:
        """Extend with silence up to ``position`` (e.g. the stream ended during a pause)."""
        if self.started_at is not None and position > self._written:
            self.write_at(position, np.zeros(0, dtype=np.int16))

    def _queue(self, pcm: np.ndarray) -> None:
        self._pending.append(pcm)
        self._pending_samples += len(pcm)
        self._written += len(pcm)
        if self._pending_samples >= FLUSH_SECONDS * self.sample_rate:
            self.flush()

    def flush(self) -> None:
        if not self._pending:
            return
        data = np.concatenate(self._pending)
        self._pending.clear()
        self._pending_samples = 0
        # sf.write hands the bytes to the kernel (libsndfile does not buffer), which is all a
        # SIGKILL needs; SoundFile.flush() would fsync, per stream per second, on the event loop.
        self._file.write(data)

    def close(self, at: datetime | None = None) -> MediaRecorded | None:
        """Finish the file; returns (and reports) the MediaRecorded event, None if nothing was heard."""
        if self._closed:
            return None
        self._closed = True
        self.flush()
        self._file.close()
        if self.started_at is None:
            self.path.unlink(missing_ok=True)
            return None
        event = MediaRecorded(
            call_id=self.call_id,
            at=at or self._clock.now(),
            stream_id=self.stream_id,
            path=str(self.path),
            started_at=self.started_at,
            duration_s=self.duration_s,
            channels=((self.party,),),
        )
        if self._on_close is not None:
            self._on_close(event)
        return event


def repair_wav(path: Path) -> int:
    """Make a WAV whose writer was killed readable: fix the RIFF and data sizes from the
    file's real length (dropping a torn last frame). Returns the number of frames."""
    with path.open("r+b") as f:
        head = f.read(12)
        if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
            raise MediaError(f"{path} is not a WAV file")
        size = f.seek(0, 2)
        pos, block_align, data_start = 12, 0, 0
        while pos + 8 <= size:
            f.seek(pos)
            chunk, length = f.read(4), int.from_bytes(f.read(4), "little")
            if chunk == b"fmt ":
                fmt = f.read(16)
                block_align = int.from_bytes(fmt[12:14], "little")
            if chunk == b"data":
                data_start = pos + 8
                break
            pos += 8 + length + (length & 1)
        if not data_start or not block_align:
            raise MediaError(f"{path} has no fmt or data chunk")
        frames = (size - data_start) // block_align
        data_bytes = frames * block_align
        f.truncate(data_start + data_bytes)
        f.seek(4)
        f.write((data_start + data_bytes - 8).to_bytes(4, "little"))
        f.seek(data_start - 4)
        f.write(data_bytes.to_bytes(4, "little"))
    return frames
