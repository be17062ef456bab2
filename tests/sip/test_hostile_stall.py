"""A stall under load moves no audio (issue 18, item 6: the flaky G.722/SRTP test).

Under load a process can stop running for a second or more (CPU starved, a write blocked
on a busy disk). The recorder used to take a packet's arrival as the moment it read it:
after a stall of over a second the queued packets looked a second late, the RTP clock took
that for a sender that paused its timestamps and put the rest of the call a second later
(a 3 s call became 4 s, its last second misplaced: per-second correlation [1, 1, 0.41]).
Here the stall is made on purpose with SIGSTOP/SIGCONT, of the recorder (packets wait in
its socket) and of the sender (it sends its backlog at once), with real sipp and baresip.
"""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
from audiocheck import best_lag, read_audio, voice_like, window_ncc, write_wav
from fakecapture import FakeCapture

from adapters.sip.rtp import RtpStream
from capture.media.codecs import Codec
from capture.media.rtp import build_rtp

from .harness import Recorder, free_port, g711_frames, recording_channels, write_rtp_pcap
from .scenarios import ack, bye, invite, play, scenario, sdp
from .test_peers import baresip_call

STALL_S = 1.5


def stop_for(pid: int, seconds: float) -> None:
    os.kill(pid, signal.SIGSTOP)
    try:
        time.sleep(seconds)
    finally:
        os.kill(pid, signal.SIGCONT)


def when_answered(recorder: Recorder, then: float, action: threading.Thread) -> threading.Thread:
    """Start ``action`` ``then`` seconds after the recorder answered the call."""

    def wait() -> None:
        deadline = time.monotonic() + 20
        while b"sip.call_answered" not in recorder.log.read_bytes() and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(then)
        action.start()
        action.join()

    waiter = threading.Thread(target=wait)
    waiter.start()
    return waiter


def sipp_call(tmp_path: Path, recorder: Recorder, pcap: Path, seconds: float) -> subprocess.Popen[bytes]:
    path = tmp_path / "stall.xml"
    path.write_text(scenario("stall", invite(sdp(0)), ack(), play(str(pcap), seconds), bye(2)))
    args = ["sipp", "-sf", str(path), "-s", "rec", f"127.0.0.1:{recorder.port}", "-i", "127.0.0.1",
            "-p", str(free_port()), "-mp", str(free_port() & ~1), "-m", "1", "-l", "1", "-nostdin",
            "-timeout", "40", "-timeout_error"]  # fmt: skip
    return subprocess.Popen(args, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            env={**os.environ, "TERM": "dumb"})  # fmt: skip


def check(vcon: dict, reference: np.ndarray, seconds: float) -> None:  # type: ignore[type-arg]
    channels, rate, dialog = recording_channels(vcon)
    assert abs(len(channels[0]) / rate - seconds) < 0.1, ("nothing moved later by the stall", len(channels[0]) / rate)
    # G.722 delays the signal 22 samples; the frame after the WAV's end that carries them goes
    # out before baresip's BYE or not (150 or 151 packets, counted on the wire: the recorder
    # has every packet sent), so the last window is compared with what the WAV's own frames
    # carry, as tests/sip/test_peers.py does. G.711 has no delay: nothing is added.
    delay = min(max(best_lag(reference, channels[0], rate), 0), rate // 100)
    scores = window_ncc(reference, np.concatenate([channels[0], np.zeros(delay)]), rate)
    assert len(scores) == int(seconds) and min(scores) >= 0.9, scores


def test_recorder_stalled_mid_call_keeps_every_packet_in_place(tmp_path: Path) -> None:
    payloads, reference = g711_frames(voice_like(4.0, 8000, seed=31), 0)
    pcap = write_rtp_pcap(tmp_path / "a.pcap", payloads, 0)
    recorder = Recorder.start(tmp_path)
    try:
        waiter = when_answered(recorder, 1.2, threading.Thread(target=stop_for, args=(recorder.proc.pid, STALL_S)))
        sipp = sipp_call(tmp_path, recorder, pcap, 4.4)
        output, _ = sipp.communicate(timeout=60)
        waiter.join()
        assert sipp.returncode == 0, output[-2000:]
        (vcon,) = recorder.vcons(1)
    finally:
        recorder.stop()
    check(vcon, reference, 4.0)


def test_sender_stalled_mid_call_then_sending_its_backlog_keeps_it_in_place(tmp_path: Path) -> None:
    payloads, reference = g711_frames(voice_like(4.0, 8000, seed=32), 0)
    pcap = write_rtp_pcap(tmp_path / "a.pcap", payloads, 0)
    recorder = Recorder.start(tmp_path)
    try:
        sipp = sipp_call(tmp_path, recorder, pcap, 4.4)
        waiter = when_answered(recorder, 1.2, threading.Thread(target=stop_for, args=(sipp.pid, STALL_S)))
        output, _ = sipp.communicate(timeout=60)
        waiter.join()
        assert sipp.returncode == 0, output[-2000:]
        (vcon,) = recorder.vcons(1)
    finally:
        recorder.stop()
    check(vcon, reference, 4.0)


def test_recorder_stalled_during_a_baresip_g722_srtp_call(tmp_path: Path) -> None:
    """The flaky test's own configuration, with the stall it met under load made on purpose."""
    wav = write_wav(tmp_path / "source.wav", voice_like(3.0, 16000, seed=9), 16000)
    recorder = Recorder.start(tmp_path)
    try:
        waiter = when_answered(recorder, 1.0, threading.Thread(target=stop_for, args=(recorder.proc.pid, STALL_S)))
        vcon = baresip_call(tmp_path, recorder, wav, 16000, "G722/16000/1", ";mediaenc=srtp")
        waiter.join()
    finally:
        recorder.stop()
    reference, _ = read_audio(wav, 16000)
    check(vcon, reference[:, 0], 3.0)


def test_audio_the_recording_refuses_costs_that_audio_never_the_call(tmp_path: Path) -> None:
    """A call back from over an hour on hold: the recording refuses a gap that long (its rule);
    that run is dropped and logged, the stream goes on and closes (before: an exception in the
    socket's callback at every packet and at the BYE, the call never ended)."""
    capture = FakeCapture(tmp_path)
    stream = RtpStream(call_id="c", stream_id="caller-m0", party="caller", codec=Codec(0, "PCMU", 8000), event=None,
                       open_recording=capture.open_recording, wall_time=lambda _: datetime(2026, 1, 1, tzinfo=UTC),
                       on_dtmf=lambda *_: None)  # fmt: skip
    stream.receiver.batch_packets = 1
    for i in range(50):
        stream.receiver.receive(build_rtp(0, i, 160 * i, 7, b"\xff" * 160), ("127.0.0.1", 4000), i * 0.02)
        stream.write()
    stream.receiver.receive(build_rtp(0, 50, 8000, 7, b"\xff" * 160), ("127.0.0.1", 4000), 3700.0)
    stream.write()
    stream.close(datetime(2026, 1, 1, 1, 2, tzinfo=UTC))
    assert stream.refused_audio == 1 and stream.recording is not None
    assert stream.recording.duration_s == 1.0 and stream.recording.settled, "the first second kept, the file closed"
