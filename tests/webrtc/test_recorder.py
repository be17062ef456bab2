"""TrackRecorder on aiortc's own RemoteStreamTrack (the track a peer connection hands out),
writing into a real StreamRecording."""

from __future__ import annotations

import fractions
from datetime import UTC, datetime

import numpy as np
import soundfile as sf
from aiortc.rtcrtpreceiver import RemoteStreamTrack
from av import AudioFrame

from adapters.webrtc.recorder import RATE, TrackRecorder
from capture.recording import StreamRecording

T0 = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)


def frame(pts: int, rate: int = 48000, value: int = 1000, channels: int = 2) -> AudioFrame:
    samples = rate // 50
    data = np.full((1, samples * channels), value, dtype=np.int16)
    f = AudioFrame.from_ndarray(data, format="s16", layout="stereo" if channels == 2 else "mono")
    f.sample_rate, f.pts, f.time_base = rate, pts, fractions.Fraction(1, rate)
    return f


def recorder_for(tmp_path, track) -> TrackRecorder:
    recording = StreamRecording(tmp_path / "r.wav", RATE, call_id="c", stream_id="s", party="p")
    return TrackRecorder(
        track, recording, lambda: T0, setup_timeout_s=0.5, media_timeout_s=0.2, on_first_frame=lambda: None
    )


async def test_pts_gaps_become_silence_and_sample_0_is_the_anchor(tmp_path):
    track = RemoteStreamTrack(kind="audio")
    for pts in (0, 960, 2880, 3840):  # the frame at 1920 was lost
        track._queue.put_nowait(frame(pts))
    recorder = recorder_for(tmp_path, track)
    assert await recorder.run() == "no audio for 0.2 s"
    event = recorder.recording.close()
    pcm, rate = sf.read(tmp_path / "r.wav", dtype="int16")
    assert rate == RATE and len(pcm) == 5 * 960
    assert (pcm[1920:2880] == 0).all() and (pcm[:1920] == 1000).all() and (pcm[2880:] == 1000).all()
    assert event.started_at == T0


async def test_g711_frames_are_upsampled_onto_the_48k_timeline(tmp_path):
    track = RemoteStreamTrack(kind="audio")
    for pts in (0, 160, 480):
        track._queue.put_nowait(frame(pts, rate=8000, channels=1))
    recorder = recorder_for(tmp_path, track)
    await recorder.run()
    recorder.recording.close()
    pcm, _ = sf.read(tmp_path / "r.wav", dtype="int16")
    assert len(pcm) == 4 * 960 and (pcm[1920:2880] == 0).all() and (pcm[:1920] == 1000).all()


async def test_no_first_frame_is_a_setup_timeout(tmp_path):
    recorder = recorder_for(tmp_path, RemoteStreamTrack(kind="audio"))
    assert await recorder.run() == "no audio within 0.5 s of the answer"
    assert recorder.recording.close() is None


async def test_an_ended_track_stops_the_recorder(tmp_path):
    track = RemoteStreamTrack(kind="audio")
    track._queue.put_nowait(frame(0))
    track._queue.put_nowait(None)
    recorder = recorder_for(tmp_path, track)
    assert await recorder.run() == "track ended"
    assert recorder.frames == 1


def test_drain_keeps_frames_already_decoded_when_the_session_closes(tmp_path):
    track = RemoteStreamTrack(kind="audio")
    for pts in (0, 960, 1920):
        track._queue.put_nowait(frame(pts))
    recorder = recorder_for(tmp_path, track)
    recorder.drain()
    assert recorder.frames == 3 and recorder.recording.samples == 3 * 960
