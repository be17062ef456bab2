"""Long calls: memory stays flat while recording, and building the vCon has a bounded peak.

A two-hour two-party G.711 call is ~230 MB of WAV and a ~310 MB vCon. tests/core/longcall.py
records one (time compressed: as fast as the recorder takes it) and builds its vCon in a
process of its own, so its peak RSS (VmHWM) is this call's alone. The audio encodes each frame's
number, so windows at the start, middle and end of the streamed base64 are checked exactly.
"""

from __future__ import annotations

import base64
import json
import mmap
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
from vconcheck import assert_valid

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from longcall import FRAME, frame_audio  # noqa: E402

PEAK_MB = 120.0
"The whole process, Python, numpy and the recorder included (it measured ~45 MB for two hours)."


def test_two_hour_call_records_flat_and_builds_within_a_bounded_peak(tmp_path):
    hours = 2.0 if shutil.disk_usage(tmp_path).free > 2e9 else 0.5
    result = subprocess.run(
        [sys.executable, str(HERE / "longcall.py"), str(tmp_path), str(hours)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["rss_after_recording_mb"] - report["rss_before_mb"] < 10, report
    assert report["peak_mb"] < PEAK_MB, report
    assert report["problems"] == []
    wav_bytes = 44 + report["frames"] * FRAME * 2 * 2
    assert report["vcon_bytes"] > wav_bytes * 4 / 3, "the audio is inline (base64url)"

    with (tmp_path / "call.vcon").open("rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as doc:
        start = doc.find(b'"body":"') + len(b'"body":"')
        end = doc.find(b'"', start)
        assert end - start == (wav_bytes * 4 + 2) // 3, "unpadded base64url of the whole WAV"
        skeleton = json.loads(doc[:start] + b"UklGRg" + doc[end:])
        assert_valid(skeleton)
        for i in (0, report["frames"] // 2, report["frames"] - 1):
            first = 44 + i * FRAME * 4
            chars = first // 3 * 4
            piece = doc[start + chars : min(start + chars + 4 * (FRAME * 4 // 3 + 2), end)]
            raw = base64.urlsafe_b64decode(piece + b"=" * (-len(piece) % 4))
            skip = first - first // 3 * 3
            stereo = np.frombuffer(raw[skip : skip + FRAME * 4], dtype="<i2").reshape(-1, 2)
            for party in (0, 1):
                assert np.array_equal(stereo[:, party], frame_audio(party, i)), (i, party)
    (rec,) = [d for d in skeleton["dialog"] if d["type"] == "recording"]
    assert rec["duration"] == hours * 3600 and rec["parties"] == [0, 1]
    notes = [a["body"] for a in skeleton["attachments"] if a["purpose"] == "capture_notes"]
    if hours == 2.0:
        assert "set media_url_base" in notes[0]["large_inline_audio"], "a clear warning that it belongs by reference"
