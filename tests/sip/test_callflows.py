"""Call flows against the real CLI with sipp: hold/resume, BYE from the recorder (media
timeout), CANCEL, capacity (503), and a flood of garbage during a live call."""

from __future__ import annotations

import os
import random
import socket
import threading
import time
from pathlib import Path

import numpy as np
from audiocheck import voice_like, window_ncc

from .harness import Recorder, cdr, g711_frames, recording_channels, run_sipp, write_rtp_pcap
from .scenarios import FIXED_BRANCH, ack, await_bye, bye, cancel, invite, pause, play, scenario, sdp


def history(vcon: dict) -> list[tuple[str, str | None]]:  # type: ignore[type-arg]
    return [(h["event"], h.get("button")) for d in vcon["dialog"] for h in d.get("party_history", [])]


def test_hold_resume_with_new_ssrc_keeps_one_aligned_recording(tmp_path: Path) -> None:
    first, ref1 = g711_frames(voice_like(2.0, 8000, seed=3), 0)
    second, ref2 = g711_frames(voice_like(2.0, 8000, seed=4), 0)
    pcap1 = write_rtp_pcap(tmp_path / "1.pcap", first, 0, ssrc=111)
    pcap2 = write_rtp_pcap(tmp_path / "2.pcap", second, 0, ssrc=222)
    recorder = Recorder.start(tmp_path)
    try:
        flow = scenario(
            "hold",
            invite(sdp(0)), ack(), play(str(pcap1), 2.0),
            invite(sdp(0, "sendonly"), cseq=2, in_dialog=True), ack(2), pause(1.0),
            invite(sdp(0, "sendrecv"), cseq=3, in_dialog=True), ack(3), play(str(pcap2), 2.2),
            bye(4),
        )  # fmt: skip
        result = run_sipp(tmp_path, flow, recorder)
        assert result.returncode == 0, result.stdout[-3000:]
        (vcon,) = recorder.vcons(1)
    finally:
        recorder.stop()
    events = [e for e, _ in history(vcon)]
    assert "hold" in events and "unhold" in events and events.index("hold") < events.index("unhold")
    channels, rate, dialog = recording_channels(vcon)
    audio = channels[0]
    # Timestamp-true: the second talk spurt sits where the wall clock puts it (after ~1 s of hold silence).
    assert 4.8 < dialog["duration"] < 5.6, dialog["duration"]
    assert min(window_ncc(ref1, audio[: 16000 + 800], 8000)) >= 0.9
    tail = audio[len(audio) - len(ref2) - 800 :]
    assert min(window_ncc(ref2, tail, 8000)) >= 0.9
    gap = audio[16000 + 800 : len(audio) - len(ref2) - 800]
    assert len(gap) > 4000 and np.max(np.abs(gap)) < 1e-3


def test_media_timeout_recorder_sends_bye(tmp_path: Path) -> None:
    payloads, reference = g711_frames(voice_like(2.0, 8000, seed=5), 0)
    pcap = write_rtp_pcap(tmp_path / "a.pcap", payloads, 0)
    recorder = Recorder.start(tmp_path, media_timeout_s=1.0)
    try:
        result = run_sipp(tmp_path, scenario("timeout", invite(sdp(0)), ack(), play(str(pcap), 2.0), await_bye()),
                          recorder)  # fmt: skip
        assert result.returncode == 0, result.stdout[-3000:]
        (vcon,) = recorder.vcons(1)
    finally:
        recorder.stop()
    record = cdr(vcon)
    assert record["hangup_by"] == "recorder" and record["hangup_cause"] == "media timeout"
    channels, _, dialog = recording_channels(vcon)
    assert abs(dialog["duration"] - 2.0) < 0.1
    assert min(window_ncc(reference, channels[0], 8000)) >= 0.9


def test_cancel_before_answer_gives_incomplete_vcon(tmp_path: Path) -> None:
    recorder = Recorder.start(tmp_path, answer_delay_s=3)
    flow = scenario(
        "cancel",
        invite(sdp(0), branch=FIXED_BRANCH, expect="180").replace('  <recv response="180" optional="true"/>\n', ""),
        cancel(),
        '  <recv response="200"/>\n  <recv response="487"/>\n',
        ack().replace("branch=[branch]", f"branch={FIXED_BRANCH}"),
    )
    try:
        result = run_sipp(tmp_path, flow, recorder)
        assert result.returncode == 0, result.stdout[-3000:]
        (vcon,) = recorder.vcons(1)
    finally:
        recorder.stop()
    (incomplete,) = [d for d in vcon["dialog"] if d["type"] == "incomplete"]
    assert incomplete["disposition"] == "hung-up"
    record = cdr(vcon)
    assert record["final_status"] == 487 and record["hangup_cause"] == "CANCEL"


def test_eleven_calls_with_max_calls_ten(tmp_path: Path) -> None:
    payloads, reference = g711_frames(voice_like(2.0, 8000, seed=6), 0)
    pcap = write_rtp_pcap(tmp_path / "a.pcap", payloads, 0)
    recorder = Recorder.start(tmp_path, max_calls=10, retry_after_s=7)
    answered = invite(sdp(0)).replace(
        '<recv response="200" rtd="true"/>',
        '<recv response="503" optional="true" next="busy"/>\n  <recv response="200" rtd="true"/>',
    )
    flow = scenario(
        "capacity", answered, ack(), play(str(pcap), 2.4), bye(2),
        '  <nop next="end"/>\n  <label id="busy"/>\n', ack(), '  <label id="end"/>\n',
    )  # fmt: skip
    try:
        result = run_sipp(tmp_path, flow, recorder, calls=11, rate=100)
        assert result.returncode == 0, result.stdout[-3000:]
        vcons = recorder.vcons(11)
    finally:
        recorder.stop()
    rejected = [v for v in vcons if any(d["type"] == "incomplete" for d in v["dialog"])]
    recorded = [v for v in vcons if v not in rejected]
    assert len(rejected) == 1 and len(recorded) == 10
    assert cdr(rejected[0])["final_status"] == 503
    assert [d["disposition"] for d in rejected[0]["dialog"] if d["type"] == "incomplete"] == ["congestion"]
    for vcon in recorded:
        channels, _, dialog = recording_channels(vcon)
        assert abs(dialog["duration"] - 2.0) < 0.1
        assert min(window_ncc(reference, channels[0], 8000)) >= 0.9


def garbage(rng: random.Random) -> bytes:
    kind = rng.randrange(4)
    if kind == 0:
        return rng.randbytes(rng.randrange(1, 1400))
    if kind == 1:
        return b"INVITE sip:x SIP/2.0\r\nVia: " + rng.randbytes(rng.randrange(0, 200)) + b"\r\n\r\n"
    if kind == 2:
        return b"SIP/2.0 200 OK\r\nCSeq: x\r\n" + b"X: y\r\n" * rng.randrange(0, 50)
    return bytes([0x80, 0]) + rng.randbytes(rng.randrange(10, 200))


def test_ten_thousand_malformed_datagrams_during_a_live_call(tmp_path: Path) -> None:
    payloads, reference = g711_frames(voice_like(3.0, 8000, seed=7), 0)
    pcap = write_rtp_pcap(tmp_path / "a.pcap", payloads, 0)
    recorder = Recorder.start(tmp_path)
    rng = random.Random(42)

    def flood() -> None:
        time.sleep(0.5)
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            for i in range(10_000):
                s.sendto(garbage(rng), ("127.0.0.1", recorder.port))
                if i % 500 == 0:
                    time.sleep(0.05)

    flooder = threading.Thread(target=flood)
    try:
        flooder.start()
        result = run_sipp(tmp_path, scenario("flood", invite(sdp(0)), ack(), play(str(pcap), 3.2), bye(2)), recorder)
        flooder.join()
        assert result.returncode == 0, result.stdout[-3000:]
        (vcon,) = recorder.vcons(1)
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.settimeout(5)
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
            s.sendto(
                (f"OPTIONS sip:rec@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:{port};branch=z9hG4bKo1\r\n"
                 f"From: <sip:probe@127.0.0.1>;tag=p\r\nTo: <sip:rec@127.0.0.1>\r\nCall-ID: probe-{os.getpid()}\r\n"
                 "CSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n").encode(),
                ("127.0.0.1", recorder.port),
            )  # fmt: skip
            assert s.recv(65536).startswith(b"SIP/2.0 200 OK")
        short, short_ref = g711_frames(voice_like(1.0, 8000, seed=8), 0)
        pcap2 = write_rtp_pcap(tmp_path / "b.pcap", short, 0)
        result = run_sipp(tmp_path, scenario("after", invite(sdp(0)), ack(), play(str(pcap2), 1.2), bye(2)), recorder)
        assert result.returncode == 0, result.stdout[-3000:]
        vcons = recorder.vcons(2)
    finally:
        log = recorder.stop()
    channels, _, dialog = recording_channels(vcon)
    assert abs(dialog["duration"] - 3.0) < 0.1
    assert min(window_ncc(reference, channels[0], 8000)) >= 0.9
    assert any(abs(recording_channels(v)[2]["duration"] - 1.0) < 0.1 for v in vcons)
    assert log.count("sip.malformed") == 1, "malformed input is logged once per source per minute"
