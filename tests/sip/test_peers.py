"""Real user agents as callers: baresip playing a WAV (PCMA, G.722 over SDES-SRTP, Opus) and pjsua2."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from audiocheck import best_lag, read_audio, voice_like, window_ncc, write_wav
from vconcheck import assert_valid

from adapters.sip.demo import two_voices

from .harness import Recorder, free_port, recording_channels

BARESIP_MODULES = ("g711", "g722", "opus", "aufile", "aubridge", "srtp", "account", "menu")


def baresip_call(tmp: Path, recorder: Recorder, wav: Path, rate: int, codec: str, extra: str = "") -> dict:  # type: ignore[type-arg]
    """One call from baresip (aufile hangs up at the end of the WAV); the vCon it became."""
    conf = tmp / "baresip"
    conf.mkdir()
    port = free_port()
    rtp = free_port() // 2 * 2
    lines = [f"sip_listen 127.0.0.1:{port}", f"audio_source aufile,{wav}", "audio_player aubridge,nil",
             f"ausrc_srate {rate}", f"rtp_ports {rtp}-{rtp + 9}", "module_path /usr/lib/baresip/modules"]  # fmt: skip
    lines += [f"module {m}.so" for m in BARESIP_MODULES]
    (conf / "config").write_text("\n".join(lines) + "\n")
    (conf / "accounts").write_text(f"<sip:caller@127.0.0.1:{port}>;regint=0;audio_codecs={codec}{extra}\n")
    proc = subprocess.Popen(
        ["baresip", "-f", str(conf), "-e", f"/dial sip:rec@127.0.0.1:{recorder.port}", "-t", "20"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        (vcon,) = recorder.vcons(1, timeout=20)
    finally:
        proc.terminate()  # baresip stays up after the call until -t; it is done once the vCon is there
        output, _ = proc.communicate(timeout=10)
    assert b"Call established" in output, output[-3000:]
    return vcon


@pytest.mark.parametrize(
    ("codec", "rate", "extra"),
    [("PCMA", 8000, ""), ("G722/16000/1", 16000, ";mediaenc=srtp"), ("opus/48000/2", 48000, "")],
    ids=["pcma", "g722-srtp", "opus"],
)
def test_baresip_plays_a_wav(tmp_path: Path, codec: str, rate: int, extra: str) -> None:
    source = voice_like(3.0, rate, seed=9)
    # baresip's aufile wants as many channels as the codec has (opus/48000/2 is stereo).
    wav = write_wav(tmp_path / "source.wav", np.stack([source, source], axis=1) if codec.endswith("/2") else source,
                    rate)  # fmt: skip
    recorder = Recorder.start(tmp_path)
    try:
        vcon = baresip_call(tmp_path, recorder, wav, rate, codec, extra)
    finally:
        recorder.stop()
    channels, recorded_rate, dialog = recording_channels(vcon)
    reference, _ = read_audio(wav, recorded_rate)
    # G.722 and Opus delay the signal through their filters (G.722: 22 samples). Whether the
    # sender's frame after the end of the WAV (carrying that tail) goes out before its BYE is
    # the sender's timing, so the last window is compared with what a receiver of the WAV's
    # own frames holds: the tail, up to 10 ms of codec delay, is silence. (Counted on the wire
    # under load: baresip sends 150 or 151 packets before its BYE and the recording holds each
    # one; unpadded, a 150-packet call scores [0.999, 0.999, 0.41]. The other way this test
    # failed, a recording 1 s too long, was a stall of the recorder: test_hostile_stall.py.)
    delay = min(max(best_lag(reference[:, 0], channels[0], recorded_rate), 0), recorded_rate // 100)
    recorded = np.concatenate([channels[0], np.zeros(delay)])
    scores = window_ncc(reference[:, 0], recorded, recorded_rate)
    assert len(scores) >= 2 and min(scores) >= 0.9, scores
    assert abs(dialog["duration"] - 3.0) < 0.1, dialog["duration"]
    assert vcon["parties"][0]["sip"].startswith("sip:caller@127.0.0.1")


def test_demo_command_pjsua2_call(tmp_path: Path) -> None:
    """`vcon-capture demo`: pjsua2 calls the real CLI; the recording matches the WAV it played."""
    out = tmp_path / "out"
    result = subprocess.run(
        [sys.executable, "-c", "import sys; from adapters.sip.demo import main; sys.exit(main(sys.argv[1:]))",
         "--seconds", "3", "--out", str(out)],
        capture_output=True, timeout=60, text=True,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    (path,) = out.glob("*.vcon")
    assert f"vCon written to {path}" in result.stdout and "recording, 3." in result.stdout
    vcon = assert_valid(json.loads(path.read_bytes()))
    channels, rate, dialog = recording_channels(vcon)
    assert abs(dialog["duration"] - 3.0) < 0.1, dialog["duration"]
    scores = window_ncc(two_voices(5.0)[: len(channels[0])], channels[0], rate)
    assert len(scores) >= 2 and min(scores) >= 0.9, scores
    assert vcon["parties"][0]["sip"] == "sip:demo-caller@127.0.0.1"
