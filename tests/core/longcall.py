"""Records a long two-party call (time compressed) and builds its vCon, reporting memory: run as a process.

``python tests/core/longcall.py DIR HOURS`` prints one JSON line: RSS before and after
recording, the peak RSS of the whole run (VmHWM), and the vCon's size; the test then checks
the audio of windows at the start, middle and end.
"""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np

from capture import events as ev
from capture.finishing import build_vcon
from capture.mixdown import MediaPolicy
from capture.recording import StreamRecording
from capture.vcon.assemble import Conversation
from capture.vcon.profile import Profile

RATE = 8000
FRAME = 160


def status_mb(field: str) -> float:
    """VmRSS (now) or VmHWM (peak) of this process, in MB. The peak is not ru_maxrss: that one
    survives exec, so a child forked from a large test runner would report the runner's peak."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no {field} in /proc/self/status")


def rss_mb() -> float:
    return status_mb("VmRSS")


def frame_audio(party: int, i: int) -> np.ndarray:
    """Frame i of a party: a ramp that encodes the frame number, so any window can be checked."""
    base = (i * 7 + party * 1000) % 20000 - 10000
    return (base + np.arange(FRAME) * (party + 1)).astype(np.int16)


def main(root: Path, hours: float) -> None:
    t0 = datetime(2026, 11, 29, 8, 0, tzinfo=UTC)
    conv = Conversation("01a20a70-582c-807b-8305-1e11b6ccbc27", ev.CallStarted(call_id="c", at=t0, source="test"))
    frames = int(hours * 3600 * RATE / FRAME)
    before = rss_mb()
    recs = []
    for party in (0, 1):
        conv.handle(ev.PartyJoined(call_id="c", at=t0, party=f"p{party}", tel=f"+1555123000{party}"))
        recs.append(
            StreamRecording(root / f"p{party}.wav", RATE, call_id="c", stream_id=f"p{party}", party=f"p{party}")
        )
    for i in range(frames):
        for party, rec in enumerate(recs):
            rec.write_at(i * FRAME, frame_audio(party, i), at=t0)
    for rec in recs:
        conv.handle(rec.close(t0))
    recorded = rss_mb()
    conv.handle(ev.CallEnded(call_id="c", at=t0 + timedelta(hours=hours)))
    target = root / "call.vcon"
    built = build_vcon(conv, t0, target, MediaPolicy(), Profile(), None)
    peak = status_mb("VmHWM")
    print(
        json.dumps(
            {
                "rss_before_mb": round(before, 1),
                "rss_after_recording_mb": round(recorded, 1),
                "peak_mb": round(peak, 1),
                "vcon_bytes": built.size,
                "problems": built.problems,
                "frames": frames,
            }
        )
    )


if __name__ == "__main__":
    main(Path(sys.argv[1]), float(sys.argv[2]))
