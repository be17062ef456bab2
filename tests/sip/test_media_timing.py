"""Where a call's media lands in time, through the real CLI with sipp (issue 16 leftovers):

- RFC 4733 key presses whose packets arrive about a second after their timestamp (a sender that
  queues its events, a press held long) are ONE key press at their timestamp, and the audio around
  them stays where it was (the operator console once saw each such press twice: at its time and
  again on arrival);
- a renegotiation from G.722 to Opus (the RTP clock goes from 8000 to 48000, both decode to 16 kHz)
  goes on where the call is: the audio after it is kept, at its time.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import av
import numpy as np
import pytest
from audiocheck import resample, voice_like, window_ncc

from capture.media.rtp import build_rtp

from .harness import Recorder, cdr, g711_frames, recording_channels, run_sipp, write_pcap, write_rtp_pcap
from .scenarios import ack, bye, invite, play, scenario, sdp


def when(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


@pytest.mark.parametrize("lag_s", [1.0, 1.5])
def test_key_press_arriving_late_is_one_press_at_its_time(tmp_path: Path, lag_s: float) -> None:
    source = voice_like(5.0, 8000, seed=12)
    payloads, reference = g711_frames(source, 0)
    pcap = write_rtp_pcap(tmp_path / "a.pcap", payloads, 0, dtmf=(5, 2.0), dtmf_lag_s=lag_s)
    recorder = Recorder.start(tmp_path)
    try:
        result = run_sipp(tmp_path, scenario("late-dtmf", invite(sdp(0)), ack(), play(str(pcap), 5.6), bye(2)),
                          recorder)  # fmt: skip
        assert result.returncode == 0, result.stdout[-2000:]
        (vcon,) = recorder.vcons(1)
    finally:
        recorder.stop()
    channels, rate, dialog = recording_channels(vcon)
    history = [h for d in vcon["dialog"] for h in d.get("party_history", []) if h["event"] in ("keydown", "keyup")]
    assert [(h["event"], h["button"]) for h in history] == [("keydown", "5"), ("keyup", "5")], history
    at = (when(history[0]["time"]) - when(dialog["start"])).total_seconds()
    assert abs(at - 2.0) < 0.1, f"the press is at its timestamp (2.0 s), not its arrival: {at:.3f} s"
    scores = window_ncc(reference, channels[0], 8000)
    assert len(scores) == 5 and min(scores) >= 0.9, "the audio around the late events stays in place"
    assert cdr(vcon)["rtp"]["caller-m0"]["packets"] == len(payloads) + 8


def encoded(codec: str, rate: int, frame: int, pcm: np.ndarray) -> list[bytes]:
    context = av.CodecContext.create(codec, "w")
    context.sample_rate, context.layout, context.format = rate, "mono", "s16"
    if codec == "libopus":
        context.bit_rate = 48000
    out: list[bytes] = []
    for i in range(0, len(pcm) - frame + 1, frame):
        chunk = av.AudioFrame.from_ndarray(pcm[None, i : i + frame], format="s16", layout="mono")
        chunk.sample_rate, chunk.pts = rate, i
        out += [bytes(p) for p in context.encode(chunk)]
    out += [bytes(p) for p in context.encode(None)]
    return out


def test_a_renegotiation_from_g722_to_opus_goes_on_where_the_call_is(tmp_path: Path) -> None:
    first, second = voice_like(2.0, 16000, seed=21), voice_like(2.0, 16000, seed=22)
    g722 = encoded("g722", 16000, 320, (first * 32767).astype(np.int16))
    opus = encoded("libopus", 48000, 960, (resample(second, 16000, 48000) * 32767).astype(np.int16))
    ssrc = 0x0C0DEC
    write_pcap(tmp_path / "g722.pcap",
               [(i * 0.02, build_rtp(9, i, i * 160, ssrc, p, i == 0)) for i, p in enumerate(g722)])  # fmt: skip
    # The same sender goes on: same SSRC, next sequence numbers, timestamps now in 48 kHz ticks.
    n = len(g722)
    write_pcap(tmp_path / "opus.pcap",
               [(i * 0.02, build_rtp(111, n + i, n * 960 + i * 960, ssrc, p)) for i, p in enumerate(opus)])  # fmt: skip
    offer_g722 = (
        sdp(9, name="G722")
        .replace(" 9 101", " 9 111 101")
        .replace("a=rtpmap:9 G722/8000", "a=rtpmap:9 G722/8000\na=rtpmap:111 opus/48000/2")
    )
    offer_opus = sdp(111, name="opus").replace("opus/8000", "opus/48000/2")
    recorder = Recorder.start(tmp_path)
    try:
        steps = scenario("g722-opus", invite(offer_g722), ack(), play(str(tmp_path / "g722.pcap"), 2.1),
                         invite(offer_opus, cseq=2, in_dialog=True), ack(2), play(str(tmp_path / "opus.pcap"), 2.5),
                         bye(3))  # fmt: skip
        result = run_sipp(tmp_path, steps, recorder)
        assert result.returncode == 0, result.stdout[-2000:]
        (vcon,) = recorder.vcons(1)
    finally:
        recorder.stop()
    channels, rate, dialog = recording_channels(vcon)
    assert rate == 16000
    samples = channels[0]
    assert dialog["duration"] >= 3.9, "the audio after the renegotiation is kept"
    before = window_ncc(first, samples[: 2 * rate + rate // 20], rate, max_lag_s=0.05)  # (room for the codec delay)
    after = window_ncc(second, samples[2 * rate - rate // 10 :], rate, max_lag_s=0.2)
    assert min(before) >= 0.9 and len(after) >= 1 and min(after) >= 0.9, (before, after)
