"""SIGKILL of the whole service mid-call: a SIP call and a WebRTC session both come back as vCons.

"The time of the kill" for a recording is the moment its last audio reached the kernel: a
recording is written in one-second batches (capture/recording.py FLUSH_SECONDS), so a SIGKILL
loses what was still buffered. Each WAV's mtime, read after the kill and before the restart
repairs it, is that moment. The recovered audio must run from the first sample to within
0.5 s of it, never past the kill itself, and lose at most the one buffered second.
"""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

from sip.harness import recording_channels
from trust_service import SIP_RATE, WEBRTC_RATE, Service, SipCaller, WhipCaller, iso_ts, matching_windows
from vconcheck import assert_valid
from webrtc_harness import recording

from capture.recording import FLUSH_SECONDS

AUDIO_BEFORE_KILL_S = 3.0


def notes(doc: dict) -> dict:
    (att,) = [a for a in doc["attachments"] if a["purpose"] == "capture_notes"]
    return att["body"] if isinstance(att["body"], dict) else json.loads(att["body"])


def test_sigkill_mid_call_recovers_sip_and_webrtc_with_audio_up_to_the_kill(tmp_path: Path) -> None:
    service = Service(tmp_path).start()
    sip = SipCaller.start(tmp_path, service.sip_port, 10.0)
    # The client SIGKILLs itself 8 s after its answer, reporting when its first frame left.
    web = WhipCaller.start(tmp_path, service.whip_base, "killroom", 10.0, "--vanish-after", "8")
    try:
        wavs = service.wait_recording(("sip", "webrtc"), AUDIO_BEFORE_KILL_S)
        uuids = {source: records[0]["vcon_uuid"] for source, records in service.journals().items()}
        assert service.proc is not None
        killed_at = time.time()
        os.kill(service.proc.pid, signal.SIGKILL)
        service.proc.wait(10)
        last_write = {source: wav.stat().st_mtime for source, wav in wavs.items()}
        assert not list(service.out.glob("*.vcon")), "nothing was finished before the kill"

        service.start()
        service.vcons(2)
        first_frame_at = web.result()["first_frame_at"]
        assert service.stop() == 0, service.logs()[-3000:]
    finally:
        sip.close()
        web.close()
        service.kill()
    assert "Traceback" not in service.logs()
    assert not list((service.state / "calls").iterdir()), "every journal was turned into a vCon"

    docs = {s: assert_valid(json.loads((service.out / f"{u}.vcon").read_bytes())) for s, u in uuids.items()}
    figures = {}
    for source, doc in docs.items():
        assert notes(doc) == {"ended_by_restart": True}
        (dialog,) = [d for d in doc["dialog"] if d["type"] == "recording"]
        start = iso_ts(dialog["start"])
        duration = dialog["duration"]
        figures[source] = (round(duration, 3), round(last_write[source] - start, 3), round(killed_at - start, 3))
        assert abs(duration - (last_write[source] - start)) < 0.5, figures
        assert duration <= killed_at - start + 0.05, figures
        assert killed_at - start - duration < FLUSH_SECONDS + 0.5, figures
    print("recovered (duration, last write - start, kill - start) s:", figures)

    channels, rate, _ = recording_channels(docs["sip"])
    assert rate == SIP_RATE
    scores = matching_windows(sip.reference, channels[0], rate)
    assert len(scores) >= 2 and min(scores) >= 0.9, scores

    audio, rate, start = recording(docs["webrtc"])
    assert rate == WEBRTC_RATE
    assert abs(start.timestamp() - first_frame_at) < 0.5, "the recording starts at the client's first frame"
    scores = matching_windows(web.reference, audio[:, 0], rate)
    assert len(scores) >= 2 and min(scores) >= 0.9, scores
