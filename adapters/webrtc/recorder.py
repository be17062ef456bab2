"""Pulls one remote audio track's frames and writes them where their timestamps say.

aiortc numbers a track's frames with ``pts`` counted from its first RTP timestamp; a jump
in pts is lost audio or DTX and becomes silence, so the file's offset stays media time.
Sample 0 is anchored at a wall-clock time, which is what lines participants up: the
arrival of the first RTP packet, taken before the packet waits for decoding or for this
task, so a busy process does not shift one participant against another.
aiortc's MediaRecorder is not used: it ignores timestamps.

Frames come two ways: :meth:`TrackRecorder.deliver`, called by the jitter buffer right after
decoding (no queue, no task switch per 20 ms frame: the session's path), or the track's
queue, read by :meth:`TrackRecorder.run`. ``recv()`` never returns if DTLS never completed,
so every wait is bounded: by the setup timeout until the first frame, by the media timeout
after it, from one timer re-armed from the last frame's time (not a timeout per frame).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import datetime

import numpy as np
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack
from av import AudioFrame

from adapters.webrtc import aiortc_compat as compat
from capture.recording import StreamRecording

RATE = 48000
"Every participant is recorded as 48 kHz mono (Opus decodes to 48 kHz; G.711 and G.722 are upsampled)."


def mono_pcm(frame: AudioFrame) -> np.ndarray:
    """The frame's samples as int16 mono at RATE."""
    pcm = frame.to_ndarray().reshape(-1, len(frame.layout.channels))
    mono = pcm[:, 0] if pcm.shape[1] == 1 else pcm.mean(axis=1)
    if frame.sample_rate != RATE and len(mono):
        n = len(mono) * RATE // frame.sample_rate
        mono = np.interp(np.arange(n) * (frame.sample_rate / RATE), np.arange(len(mono)), mono)
    return np.asarray(mono, dtype=np.int16)


class TrackRecorder:
    """One participant's audio track into one StreamRecording; ``anchor()`` is the wall-clock
    time of pts 0, asked for when the first frame comes. ``clock`` (monotonic seconds, the
    event loop's clock) times the media timeout; by default the running loop's."""

    def __init__(
        self,
        track: MediaStreamTrack,
        recording: StreamRecording,
        anchor: Callable[[], datetime],
        *,
        setup_timeout_s: float,
        media_timeout_s: float,
        on_first_frame: Callable[[], None],
        clock: Callable[[], float] | None = None,
    ) -> None:
        self.track = track
        self.recording = recording
        self._anchor = anchor
        self._setup_timeout_s = setup_timeout_s
        self._media_timeout_s = media_timeout_s
        self._on_first_frame = on_first_frame
        self._clock = clock
        self.frames = 0
        self.first_frame_at: datetime | None = None
        self._last_frame = 0.0
        "The clock's time of the last frame written."
        self._task: asyncio.Task[str] | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._outcome: str | Exception | None = None
        "Why run() stops (a reason, or the error a delivered frame raised), once decided."

    async def run(self) -> str:
        """Record until the track ends or goes quiet; returns why it stopped."""
        loop = asyncio.get_running_loop()
        if self._clock is None:
            self._clock = loop.time
        self._task = asyncio.current_task()
        self._arm(self._setup_timeout_s)
        try:
            while self._outcome is None:
                self.write(await self.track.recv())
        except MediaStreamError:
            return "track ended"
        except asyncio.CancelledError:
            if self._outcome is None:
                raise
            assert self._task is not None
            self._task.uncancel()
        finally:
            if self._timer is not None:
                self._timer.cancel()
        if isinstance(self._outcome, Exception):
            raise self._outcome
        return self._outcome

    def _arm(self, delay: float) -> None:
        self._timer = asyncio.get_running_loop().call_later(max(0.0, delay), self._deadline)

    def _deadline(self) -> None:
        if self.frames:
            assert self._clock is not None
            remaining = self._last_frame + self._media_timeout_s - self._clock()
            if remaining > 0:
                self._arm(remaining)
                return
            self._stop(f"no audio for {self._media_timeout_s:g} s")
        else:
            self._stop(f"no audio within {self._setup_timeout_s:g} s of the answer")

    def _stop(self, outcome: str | Exception) -> None:
        if self._outcome is None:
            self._outcome = outcome
            if self._task is not None:
                self._task.cancel()

    def deliver(self, frame: AudioFrame) -> None:
        """Write a frame handed over by the jitter buffer; an error ends run() with it (the
        receiver that called us keeps going)."""
        if self._outcome is not None:
            return
        try:
            self.write(frame)
        except Exception as exc:  # e.g. MediaError: run() raises it, the session closes
            self._stop(exc)

    def drain(self) -> None:
        """Write the frames already decoded and waiting, so a session that closes while the
        process runs behind keeps them."""
        queue = compat.track_queue(self.track)
        while not queue.empty():
            frame = queue.get_nowait()
            if frame is not None:
                self.write(frame)

    def write(self, frame: AudioFrame) -> None:
        if self.first_frame_at is None:
            self.first_frame_at = self._anchor()
            self._on_first_frame()
        self.frames += 1
        if self._clock is not None:
            self._last_frame = self._clock()
        position = round(frame.pts * frame.time_base * RATE)
        self.recording.write_at(position, mono_pcm(frame), at=self.first_frame_at)
