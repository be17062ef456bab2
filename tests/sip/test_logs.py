"""One logging style: a JSON log of real SIP calls (sipp through the real CLI) carries the
conversation's vcon_uuid on every line about a call."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from audiocheck import voice_like

from .harness import Recorder, cdr, g711_frames, run_sipp, write_rtp_pcap
from .scenarios import ack, bye, invite, play, scenario, sdp

CALL_LOGGERS = ("adapters.sip.call", "adapters.sip.rtp", "capture.media.")
"Modules whose every line is about a call."


def is_about_a_call(entry: dict[str, Any]) -> bool:
    return "call_id" in entry or "sip_call_id" in entry or entry["logger"].startswith(CALL_LOGGERS)


def test_every_line_about_a_call_carries_its_vcon_uuid(tmp_path: Path) -> None:
    payloads, _ = g711_frames(voice_like(2.0, 8000, seed=21), 0)
    pcap = write_rtp_pcap(tmp_path / "a.pcap", payloads, 0, dtmf=(3, 1.0))
    recorder = Recorder.start(tmp_path, log_format="json")
    try:
        answered = run_sipp(tmp_path, scenario("logged", invite(sdp(0)), ack(), play(str(pcap), 2.4), bye(2)),
                            recorder)  # fmt: skip
        assert answered.returncode == 0, answered.stdout[-2000:]
        refused = run_sipp(tmp_path, scenario("amr", invite(sdp(96, name="AMR"), expect="488")), recorder)
        assert refused.returncode == 0, refused.stdout[-2000:]
        vcons = recorder.vcons(2)
    finally:
        text = recorder.stop()
    uuids = {cdr(v)["sip_call_id"]: v["uuid"] for v in vcons}
    entries = [json.loads(line) for line in text.splitlines() if line.strip()]
    about_calls = [e for e in entries if is_about_a_call(e)]
    missing = [e for e in about_calls if not e.get("vcon_uuid")]
    assert not missing, "\n".join(json.dumps(e) for e in missing[:10])
    for entry in about_calls:
        call_id = entry.get("call_id") or entry.get("sip_call_id")
        if call_id in uuids:
            assert entry["vcon_uuid"] == uuids[call_id], entry
    events = {(e["message"], uuids.get(e.get("call_id"))) for e in about_calls}
    answered_uuid, refused_uuid = (v["uuid"] for v in sorted(vcons, key=lambda v: "incomplete" in str(v["dialog"])))
    assert {("sip.call_answered", answered_uuid), ("sip.call_ended", answered_uuid)} <= events, events
    assert ("sip.call_rejected", refused_uuid) in events, events
