"""Where the SIP recorder's event loop spends its time: a py-spy profile with native frames.

``record(pid, seconds, raw)`` starts ``py-spy record --native`` on the recorder (it samples C
frames too, so uvloop's datagram path and the system calls show); ``summarize(raw)`` keeps
the main thread's samples and puts each in one layer by the frames on its stack, so the
layers add up to 100 % of the loop's samples, idle (epoll) included.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

IDLE = "waiting in epoll (idle)"

LAYERS = (
    # (layer, needles in the stack: the first layer with one in the stack wins)
    ("recording writes (PCM into the WAV)", ("capture/recording.py", "pwrite")),
    ("G.711/G.722 decoding", ("capture/media/decoders.py",)),
    ("RTP receive path in Python (endpoint, receiver, reorder, clock)", ("RtpEndpoint.datagram_received",)),
    ("SIP signalling, call setup and teardown (sockets, files)", ("adapters/sip/transport.py", "SipAdapter.")),
    ("pipeline, journal, events", ("capture/pipeline.py", "capture/journal.py", "capture/calls.py")),
    ("uvloop datagram path and recvmsg", ("uv__udp", "recvmsg", "loop___uv_udp_on_receive")),
    ("garbage collector", ("gc_collect",)),
)


def record(pid: int, seconds: float, raw: Path) -> subprocess.Popen[bytes]:
    """Start sampling ``pid`` for ``seconds`` (100 Hz) into ``raw`` (collapsed stacks; py-spy's own
    output beside it, ``.log``). Native frames need the target paused per sample (no --nonblocking)."""
    spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    with raw.with_suffix(".log").open("wb") as log:
        return subprocess.Popen(
            [spy, "record", "--native", "-r", "100", "-d", str(int(seconds)), "-f", "raw", "-o", str(raw),
             "--pid", str(pid)],
            stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip


def layer(stack: str, leaf: str) -> str:
    if "epoll_pwait" in leaf or "epoll_wait" in leaf:
        return IDLE
    for name, needles in LAYERS:
        if any(n in stack for n in needles):
            return name
    return "other (loop internals, timers, tasks)"


def summarize(raw: Path) -> dict[str, Any]:
    if not raw.exists():
        log = raw.with_suffix(".log")
        return {"error": log.read_text(errors="replace")[-500:] if log.exists() else "py-spy wrote nothing"}
    layers: Counter[str] = Counter()
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit() or "Runner.run" not in stack:  # the loop's thread only
            continue
        total += int(count)
        layers[layer(stack, stack.split(";")[-1])] += int(count)
    if not total:
        return {"samples": 0}
    busy = total - layers[IDLE]
    return {
        "samples_of_the_loop_thread": total,
        "pct_of_samples": {k: round(100 * v / total, 1) for k, v in layers.most_common()},
        "pct_of_busy_samples": {k: round(100 * v / busy, 1) for k, v in layers.most_common() if k != IDLE},
    }
