"""Which channel each recorded stream lands on: a channel per party, one per stream a party sends at
once, and a mixed stream's channel lists everyone it carries (SIPREC mixed streams, PBX forks)."""

from __future__ import annotations

import json
from datetime import timedelta

import numpy as np
from audiocheck import read_audio
from test_pipeline import make_pipeline
from vconcheck import assert_valid

from capture import events as ev
from capture.vcon.content import b64url_decode

RATE = 8000


def tone(freq: float, seconds: float) -> np.ndarray:
    t = np.arange(int(seconds * RATE)) / RATE
    return (np.sin(2 * np.pi * freq * t) * 8000).astype(np.int16)


async def run(tmp_path, streams) -> dict:
    """streams: (stream id, party, heard, offset s, audio)."""
    pipeline = make_pipeline(tmp_path)
    await pipeline.start()
    t0 = pipeline.now()
    pipeline.emit(ev.CallStarted(call_id="c", at=t0, source="test"))
    for key in ("alice", "bob"):
        pipeline.emit(ev.PartyJoined(call_id="c", at=t0, party=key, tel=f"+1555123000{len(key)}", name=key))
    for stream_id, party, heard, offset, audio in streams:
        rec = pipeline.open_recording("c", stream_id, party, RATE, heard=heard)
        rec.write_at(0, audio, at=t0 + timedelta(seconds=offset))
    pipeline.emit(ev.CallEnded(call_id="c", at=t0 + timedelta(seconds=4)))
    assert await pipeline.drain(10)
    await pipeline.aclose()
    (path,) = (tmp_path / "out").glob("*.vcon")
    return assert_valid(json.loads(path.read_bytes()))


def audio_of(doc: dict) -> np.ndarray:
    (rec,) = [d for d in doc["dialog"] if d["type"] == "recording"]
    data, _ = read_audio(b64url_decode(rec["body"]))
    return data


def level(channel: np.ndarray, freq: float) -> float:
    spectrum = np.abs(np.fft.rfft(channel))
    return float(spectrum[int(freq * len(channel) / RATE)] / (spectrum.sum() + 1e-9))


async def test_a_party_sending_two_streams_at_once_gets_a_channel_for_each(tmp_path):
    doc = await run(
        tmp_path,
        [
            ("a-1", "alice", (), 0.0, tone(500, 2.0)),
            ("a-2", "alice", (), 0.0, tone(900, 2.0)),
            ("b-1", "bob", (), 0.0, tone(1300, 2.0)),
        ],
    )
    (rec,) = [d for d in doc["dialog"] if d["type"] == "recording"]
    assert rec["parties"] == [0, 0, 1]
    audio = audio_of(doc)
    assert audio.shape[1] == 3
    for channel, freq in enumerate((500, 900, 1300)):
        others = [f for f in (500, 900, 1300) if f != freq]
        assert level(audio[:, channel], freq) > 10 * max(level(audio[:, channel], f) for f in others)


async def test_a_party_whose_streams_follow_one_another_keeps_one_channel(tmp_path):
    doc = await run(
        tmp_path,
        [
            ("a-1", "alice", (), 0.0, tone(500, 1.0)),
            ("a-2", "alice", (), 1.5, tone(900, 1.0)),
            ("b-1", "bob", (), 0.0, tone(1300, 2.5)),
        ],
    )
    (rec,) = [d for d in doc["dialog"] if d["type"] == "recording"]
    assert rec["parties"] == [0, 1]
    audio = audio_of(doc)
    assert level(audio[:RATE, 0], 500) > 0.1 and level(audio[int(1.5 * RATE) :, 0], 900) > 0.1


async def test_a_mixed_stream_lists_every_party_it_carries(tmp_path):
    mix = tone(500, 2.0) // 2 + tone(1300, 2.0) // 2
    doc = await run(tmp_path, [("fork", "alice", ("alice", "bob"), 0.0, mix)])
    (rec,) = [d for d in doc["dialog"] if d["type"] == "recording"]
    assert rec["parties"] == [0, 1], "one channel holding both voices lists both parties"
    assert audio_of(doc).shape[1] == 1
