"""Where our server's time goes: a py-spy raw profile (collapsed stacks) summarized.

Self time is put in a bucket by the innermost frame's file, so the buckets add up to 100 %
of the samples; ``top`` lists the innermost functions with the most samples.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

BUCKETS = (
    ("libopus decode (PyAV)", ("opus.py:", "MonoOpusDecoder", "OpusDecoder")),
    ("waiting in epoll (idle)", ("selectors.py",)),
    ("asyncio event loop, tasks, queues", ("asyncio/",)),
    ("SRTP (pylibsrtp)", ("pylibsrtp/",)),
    ("ICE, DTLS, RTP/RTCP (aioice, aiortc)", ("aioice/", "aiortc/", "pyee/")),
    ("reorder buffer, hand-over to the decoder (ours)", ("capture/media/", "jitter.py", "aiortc_compat.py")),
    ("recording: PCM into the WAV (ours + capture)", ("recorder.py", "capture/", "numpy/")),
)


def bucket(frame: str) -> str:
    for name, needles in BUCKETS:
        if any(n in frame for n in needles):
            return name
    return "other"


def summarize(raw: Path, top: int = 12) -> dict[str, Any]:
    buckets: Counter[str] = Counter()
    leaves: Counter[str] = Counter()
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        leaf = stack.split(";")[-1]
        total += int(count)
        buckets[bucket(leaf)] += int(count)
        leaves[leaf] += int(count)
    if not total:
        return {"samples": 0}
    busy = total - buckets["waiting in epoll (idle)"]
    return {
        "samples": total,
        "self_time_pct_of_samples": {k: round(100 * v / total, 1) for k, v in buckets.most_common()},
        "self_time_pct_of_busy_samples": {
            k: round(100 * v / busy, 1) for k, v in buckets.most_common() if k != "waiting in epoll (idle)"
        },
        "top_functions_pct": {k: round(100 * v / total, 1) for k, v in leaves.most_common(top)},
    }
