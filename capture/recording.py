"""Timestamp-true recording of one stream into a mono 16-bit WAV, safe when the disk is full.

Adapters hand over decoded PCM with its sample position (from RTP or frame timestamps,
counted from the stream's first sample); the recording fills every gap with silence and
drops samples that arrive for a position already written, so the file's length is the
stream's true duration and every leg stays aligned with the others.

Audio is buffered and written at least once a second (a killed process leaves at most a
second unwritten), at the exact offset it belongs to. When a write fails (disk full, quota,
I/O error) nothing moves in time: the audio stays in memory and is written when space
returns; past ``backlog_s`` seconds held, the oldest audio is dropped and becomes silence
owed at its true place (written as zeros once space returns), and :attr:`lost_s` says how
much. The WAV header's sizes are patched when the recording closes; :meth:`settle` retries
whatever could not be written yet.

Paused stretches (:meth:`pause` / :meth:`resume`, by wall-clock time) are silence: audio for
a position inside one is zeroed before it is queued, so it reaches no file, no memory held
for the disk, and no live listener (``tap`` sees what is kept, nothing else).
"""

from __future__ import annotations

import errno
import logging
import os
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np

from capture.clock import SYSTEM, Clock
from capture.errors import MediaError
from capture.events import MediaRecorded
from capture.wavfile import HEADER_BYTES, SAMPLE_BYTES, header, repair

log = logging.getLogger(__name__)

FLUSH_SECONDS = 1.0
MAX_GAP_SECONDS = 3600.0
BACKLOG_SECONDS = 60.0
"Audio held in memory per stream while the disk refuses writes, before the oldest is dropped."
ZEROS = np.zeros(8000, dtype=np.int16)


def repair_wav(path: Path) -> int:
    """Make a WAV whose writer was killed readable (see :func:`capture.wavfile.repair`); returns its frames."""
    return repair(path)


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
        heard: tuple[str, ...] = (),
        clock: Clock = SYSTEM,
        on_start: Callable[[StreamRecording], None] | None = None,
        on_close: Callable[[MediaRecorded], None] | None = None,
        backlog_s: float = BACKLOG_SECONDS,
    ) -> None:
        self.path = path
        self.sample_rate = sample_rate
        self.call_id = call_id
        self.stream_id = stream_id
        self.party = party
        self.heard = heard or (party,)
        "Every party whose voice the stream carries (a mixed stream: several)."
        self.started_at: datetime | None = None
        "Wall-clock time of sample 0, set by the first write."
        self._clock = clock
        self._on_start = on_start
        self._on_close = on_close
        self._backlog = int(backlog_s * sample_rate)
        self._pending: list[np.ndarray | int] = []
        "Audio not on disk yet, in order; an int is that many samples of silence owed."
        self._pending_samples = 0
        self._pending_audio = 0
        self._written = 0
        "Samples placed (logical length, silence included)."
        self._on_disk = 0
        "Samples in the file, after the header."
        self._fd: int | None = None
        self._header_ok = False
        self._closed = False
        self.lost_samples = 0
        "Audio dropped because the disk refused it for too long (now silence in the file)."
        self.write_errors = 0
        self.last_error: str | None = None
        self._pauses: list[tuple[datetime, datetime | None]] = []
        "Wall-clock stretches whose audio is not kept (the last one may still be open)."
        self.tap: Callable[[int, np.ndarray], None] | None = None
        "Sees (position, pcm) of every piece of audio kept, as it is placed (live listeners)."
        self.listened: Callable[[], bool] = lambda: False
        """Whether someone listens live right now: an RTP adapter then hands audio over packet by
        packet instead of in batches (live latency), and goes back to batches when they leave."""
        self.level_db: float | None = None
        "Level of the last second written (dBFS; None before any audio): the operator's meter."
        self.counters: dict[str, int] = {}
        "What the adapter counts for this stream (packets, lost...), shown with the call while it runs."
        self._retry_at = 0
        "After a refused write, the next attempt waits for this many placed samples (one more second)."

    @property
    def samples(self) -> int:
        """Samples placed so far, silence included."""
        return self._written

    @property
    def duration_s(self) -> float:
        return self._written / self.sample_rate

    @property
    def lost_s(self) -> float:
        return self.lost_samples / self.sample_rate

    @property
    def paused(self) -> bool:
        return bool(self._pauses) and self._pauses[-1][1] is None

    def pause(self, at: datetime) -> None:
        """From ``at`` on, audio is not kept (silence) until :meth:`resume`."""
        if not self.paused:
            self._pauses.append((at, None))

    def resume(self, at: datetime) -> None:
        if self.paused:
            start, _ = self._pauses[-1]
            self._pauses[-1] = (start, max(at, start))

    def _mask(self, position: int, pcm: np.ndarray) -> np.ndarray:
        """``pcm`` at ``position`` with every sample inside a paused stretch set to 0 (a copy if any is)."""
        assert self.started_at is not None
        end = position + len(pcm)
        out = pcm
        for start_at, end_at in self._pauses:
            a = round((start_at - self.started_at).total_seconds() * self.sample_rate)
            b = end if end_at is None else round((end_at - self.started_at).total_seconds() * self.sample_rate)
            lo, hi = max(a, position), min(b, end)
            if lo < hi:
                if out is pcm:
                    out = pcm.copy()
                out[lo - position : hi - position] = 0
        return out

    @property
    def settled(self) -> bool:
        """Everything placed is in the file (and, once closed, the header says so)."""
        return not self._pending and (self._header_ok or self.started_at is None)

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
            self._queue(gap)
        elif position < self._written:
            pcm = pcm[self._written - position :]
            position = self._written
        if len(pcm):
            pcm = np.asarray(pcm, dtype=np.int16)
            if self._pauses:
                pcm = self._mask(position, pcm)
            if self.tap is not None:
                self.tap(position, pcm)
            self._queue(pcm)

    def append(self, pcm: np.ndarray, *, at: datetime | None = None) -> None:
        """Place ``pcm`` right after what was written."""
        self.write_at(self._written, pcm, at=at)

    def pad_to(self, position: int) -> None:
        """Extend with silence up to ``position`` (e.g. the stream ended during a pause)."""
        if self.started_at is not None and position > self._written:
            self.write_at(position, np.zeros(0, dtype=np.int16))

    def _queue(self, item: np.ndarray | int) -> None:
        n = item if isinstance(item, int) else len(item)
        if isinstance(item, int) and self._pending and isinstance(self._pending[-1], int):
            self._pending[-1] += item
        else:
            self._pending.append(item)
        self._pending_samples += n
        if not isinstance(item, int):
            self._pending_audio += n
        self._written += n
        if self._pending_samples >= FLUSH_SECONDS * self.sample_rate and self._written >= self._retry_at:
            self.flush()

    def flush(self) -> bool:
        """Write what is pending; False if the disk refused (it stays pending, bounded)."""
        if not self._pending:
            return True
        try:
            self._write_pending()
        except OSError as exc:
            self._refused(exc)
            return False
        return True

    def _open(self) -> int:
        if self._fd is None:
            self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            self._fd = os.open(self.path, os.O_WRONLY | os.O_CREAT, 0o600)
        return self._fd

    def _write_pending(self) -> None:
        fd = self._open()
        if not self._header_ok:
            _pwrite_all(fd, header(self.sample_rate, 1, 0), 0)
            self._header_ok = True
        while self._pending:
            item = self._pending[0]
            if isinstance(item, int):
                while item:
                    n = min(item, len(ZEROS))
                    _pwrite_all(fd, ZEROS[:n].tobytes(), HEADER_BYTES + self._on_disk * SAMPLE_BYTES)
                    self._on_disk += n
                    item -= n
                    self._pending[0] = item
                    self._pending_samples -= n
                self._pending.pop(0)
                continue
            # Consecutive pieces of audio (a frame or a decoded batch each) go down in one write.
            run = 1
            while run < len(self._pending) and not isinstance(self._pending[run], int):
                run += 1
            pieces = [piece for piece in self._pending[:run] if not isinstance(piece, int)]
            block = pieces[0] if run == 1 else np.concatenate(pieces)
            # sf.write-style: the bytes reach the kernel (all a SIGKILL needs); fsync per stream per
            # second on the event loop would cost more than the RTP it stalls.
            _pwrite_all(fd, block.tobytes(), HEADER_BYTES + self._on_disk * SAMPLE_BYTES)
            if len(block):
                power = float(np.dot(block, block.astype(np.float64)) / len(block))
                self.level_db = round(10 * np.log10(max(power, 1.0) / 32768.0**2), 1)
            self._on_disk += len(block)
            self._pending_samples -= len(block)
            self._pending_audio -= len(block)
            del self._pending[:run]

    def _refused(self, exc: OSError) -> None:
        self.write_errors += 1
        self._retry_at = self._written + int(FLUSH_SECONDS * self.sample_rate)
        first = self.last_error is None
        self.last_error = exc.strerror or str(exc)
        if first or self.write_errors % 60 == 0:
            log.warning(
                "recording.write_failed",
                extra={"stream_id": self.stream_id, "error": self.last_error, "held_s": round(self._held_s(), 1)},
            )
        while self._pending_audio > self._backlog:
            self._drop_oldest_audio()

    def _held_s(self) -> float:
        return self._pending_samples / self.sample_rate

    def _drop_oldest_audio(self) -> None:
        """The oldest held audio becomes silence owed at the same place (the timeline keeps its length)."""
        for i, item in enumerate(self._pending):
            if isinstance(item, int):
                continue
            self._pending[i] = len(item)
            self._pending_audio -= len(item)
            self.lost_samples += len(item)
            merged: list[np.ndarray | int] = []
            for piece in self._pending:
                if isinstance(piece, int) and merged and isinstance(merged[-1], int):
                    merged[-1] += piece
                else:
                    merged.append(piece)
            self._pending = merged
            return

    def settle(self) -> bool:
        """Try again to put everything on disk (and, once closed, finalise the header); True when done."""
        if not self.flush():
            return False
        if self._closed and self.started_at is not None:
            try:
                self._finish_header()
            except OSError as exc:
                self._refused(exc)
                return False
        return True

    def _finish_header(self) -> None:
        fd = self._open()
        _pwrite_all(fd, header(self.sample_rate, 1, self._on_disk), 0)
        self._header_ok = True
        os.close(fd)
        self._fd = None

    def close(self, at: datetime | None = None) -> MediaRecorded | None:
        """Finish the file; returns (and reports) the MediaRecorded event, None if nothing was heard.

        If the disk still refuses, the audio stays held: :meth:`settle` finishes the file later.
        """
        if self._closed:
            return None
        self._closed = True
        if self.started_at is None:
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None
            self.path.unlink(missing_ok=True)
            return None
        self.settle()
        event = MediaRecorded(
            call_id=self.call_id,
            at=at or self._clock.now(),
            stream_id=self.stream_id,
            path=str(self.path),
            started_at=self.started_at,
            duration_s=self.duration_s,
            channels=(self.heard,),
            stream=True,
        )
        if self._on_close is not None:
            self._on_close(event)
        return event


def _pwrite_all(fd: int, data: bytes, offset: int) -> None:
    view = memoryview(data)
    while view:
        n = os.pwrite(fd, view, offset)
        if n <= 0:
            raise OSError(errno.ENOSPC, "short write")
        view = view[n:]
        offset += n
