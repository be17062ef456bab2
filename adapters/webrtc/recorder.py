"""Pulls one remote audio track's frames and writes them where their timestamps say.

aiortc numbers a track's frames with ``pts`` counted from its first RTP timestamp; a jump
in pts is lost audio or DTX and becomes silence, so the file's offset stays media time.
Sample 0 is anchored at a wall-clock time, which is what lines participants up: the
arrival of the first RTP packet, taken before the packet waits for decoding or for this
task, so a busy process does not shift one participant against another.
aiortc's MediaRecorder is not used: it ignores timestamps.

``recv()`` never returns if DTLS never completed, so every wait is bounded: by the setup
timeout until the first frame, by the media timeout after it.
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
    time of pts 0, asked for when the first frame comes."""

    def __init__(
        self,
        track: MediaStreamTrack,
        recording: StreamRecording,
        anchor: Callable[[], datetime],
        *,
        setup_timeout_s: float,
        media_timeout_s: float,
        on_first_frame: Callable[[], None],
    ) -> None:
        self.track = track
        self.recording = recording
        self._anchor = anchor
        self._setup_timeout_s = setup_timeout_s
        self._media_timeout_s = media_timeout_s
        self._on_first_frame = on_first_frame
        self.frames = 0
        self.first_frame_at: datetime | None = None

    async def run(self) -> str:
        """Record until the track ends or goes quiet; returns why it stopped."""
        while True:
            timeout = self._media_timeout_s if self.frames else self._setup_timeout_s
            try:
                frame = await asyncio.wait_for(self.track.recv(), timeout)
            except TimeoutError:
                if self.frames:
                    return f"no audio for {timeout:g} s"
                return f"no audio within {timeout:g} s of the answer"
            except MediaStreamError:
                return "track ended"
            self.write(frame)

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
        position = round(frame.pts * frame.time_base * RATE)
        self.recording.write_at(position, mono_pcm(frame), at=self.first_frame_at)
