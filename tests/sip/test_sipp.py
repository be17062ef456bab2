"""sipp as the caller: audio from a pcap through the real CLI into a vCon."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from audiocheck import voice_like, window_ncc

from capture.media.rtp import parse_rtp

from .harness import CODECS, Recorder, cdr, g711_frames, recording_channels, run_sipp, write_rtp_pcap
from .scenarios import ack, bye, invite, play, scenario, sdp

SAMPLE_PCAP = Path("/usr/share/sip-tester/g711a.pcap")
"PCMA, 30 ms ptime, 7.08 s: shipped with Debian's sip-tester."


def test_pcmu_call_with_rfc4733_dtmf(tmp_path: Path) -> None:
    source = voice_like(4.0, 8000, seed=11)
    payloads, reference = g711_frames(source, 0)
    pcap = write_rtp_pcap(tmp_path / "a.pcap", payloads, 0, dtmf=(5, 2.0))
    recorder = Recorder.start(tmp_path)
    try:
        result = run_sipp(tmp_path, scenario("pcmu", invite(sdp(0)), ack(), play(str(pcap), 4.6), bye(2)), recorder)
        assert result.returncode == 0, result.stdout[-2000:]
        (vcon,) = recorder.vcons(1)
    finally:
        recorder.stop()
    channels, rate, dialog = recording_channels(vcon)
    assert rate == 8000 and list(channels) == [0]
    assert abs(dialog["duration"] - len(reference) / 8000) < 0.1
    scores = window_ncc(reference, channels[0], 8000)
    assert len(scores) == 4 and min(scores) >= 0.9, scores
    caller, callee = vcon["parties"]
    assert caller["tel"] == "+15551230000" and caller["name"] == "Alice A." and callee["sip"].startswith("sip:rec@")
    assert dialog["originator"] == 0, "the trunk call's caller placed it"
    keys = [(h["event"], h.get("button")) for h in dialog.get("party_history", [])] or [
        (h["event"], h.get("button")) for d in vcon["dialog"] for h in d.get("party_history", [])
    ]
    assert ("keydown", "5") in keys and ("keyup", "5") in keys
    record = cdr(vcon)
    assert record["ended_by"] == "caller" and record["hangup_by"] == "remote" and record["final_status"] == 200
    assert record["sip_call_id"] and record["from_tag"] and record["to_tag"]
    assert vcon["dialog"][0]["session_id"]["local"] == "01234567-89ab-cdef-0123-456789abcdef"
    purposes = {a.get("purpose"): a for a in vcon["attachments"]}
    assert purposes["sip-invite"]["mediatype"] == "message/sip" and "INVITE sip:rec@" in purposes["sip-invite"]["body"]


def test_sipp_sample_pcma_pcap(tmp_path: Path) -> None:
    recorder = Recorder.start(tmp_path)
    try:
        result = run_sipp(
            tmp_path, scenario("pcma", invite(sdp(8, name="PCMA")), ack(), play(str(SAMPLE_PCAP), 7.4), bye(2)),
            recorder,
        )  # fmt: skip
        assert result.returncode == 0, result.stdout[-2000:]
        (vcon,) = recorder.vcons(1)
    finally:
        recorder.stop()
    channels, rate, dialog = recording_channels(vcon)
    # The pcap itself is the reference: decode its payloads the way a perfect receiver would.
    data = SAMPLE_PCAP.read_bytes()
    pos, payloads = 24, []
    while pos + 16 <= len(data):
        incl = int.from_bytes(data[pos + 8 : pos + 12], "little")
        frame = data[pos + 16 : pos + 16 + incl]
        pos += 16 + incl
        ihl = (frame[14] & 0x0F) * 4
        payloads.append(parse_rtp(frame[14 + ihl + 8 :]).payload)
    reference = CODECS[8][1](b"".join(payloads)).astype(float) / 32768
    assert abs(dialog["duration"] - len(reference) / 8000) < 0.1
    scores = window_ncc(reference, channels[0], 8000)
    assert min(scores) >= 0.9, scores
    assert np.max(np.abs(channels[0])) > 0.05
