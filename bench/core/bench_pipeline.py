"""How fast the pipeline turns ended calls into delivered vCons (the BYE->vCon tail under a burst).

N two-party calls with S seconds of 8 kHz audio per party are recorded through the real
Pipeline, then all end at the same moment; we measure, per call, the time from CallEnded
to its vCon in the output directory, and the time to drain them all.

Usage: python bench/core/bench_pipeline.py [--calls 200] [--seconds 20] [--out bench/results/pipeline.json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import shutil
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from capture import events as ev  # noqa: E402
from capture.mixdown import MediaPolicy  # noqa: E402
from capture.pipeline import Pipeline  # noqa: E402
from capture.sinks.directory import DirectorySink  # noqa: E402
from capture.spool import Spool  # noqa: E402

RATE = 8000


async def run(calls: int, seconds: float, root: Path) -> dict[str, float]:
    out = root / "out"
    out.mkdir()
    pipeline = Pipeline(
        state_dir=root / "state",
        domain="bench.example",
        media=MediaPolicy(),
        spool=Spool(root / "state" / "spool"),
        sinks=[DirectorySink(out)],
    )
    await pipeline.start()
    audio = (np.random.default_rng(1).standard_normal(int(seconds * RATE)) * 3000).astype(np.int16)
    t0 = datetime.now(UTC)
    for n in range(calls):
        call = f"c{n}"
        pipeline.emit(ev.CallStarted(call_id=call, at=t0, source="bench"))
        for party in ("a", "b"):
            pipeline.emit(ev.PartyJoined(call_id=call, at=t0, party=party, tel=f"+1555000{n:04d}"))
            rec = pipeline.open_recording(call, party, party, RATE)
            for i in range(0, len(audio), 160):
                rec.write_at(i, audio[i : i + 160], at=t0)
    ended = time.monotonic()
    for n in range(calls):
        pipeline.emit(ev.CallEnded(call_id=f"c{n}", at=t0 + timedelta(seconds=seconds)))
    seen: dict[str, float] = {}
    while len(seen) < calls:
        for path in out.glob("*.vcon"):
            seen.setdefault(path.name, time.monotonic() - ended)
        await asyncio.sleep(0.01)
    await pipeline.aclose()
    latencies = sorted(seen.values())
    return {
        "calls": calls,
        "audio_seconds_per_party": seconds,
        "drain_s": round(latencies[-1], 3),
        "vcons_per_s": round(calls / latencies[-1], 1),
        "latency_p50_s": round(latencies[len(latencies) // 2], 3),
        "latency_p99_s": round(latencies[int(len(latencies) * 0.99) - 1], 3),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=200)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "pipeline.json")
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="bench-pipeline-"))
    try:
        result = asyncio.run(run(args.calls, args.seconds, root))
    finally:
        shutil.rmtree(root, ignore_errors=True)
    report = {
        "command": "python bench/core/bench_pipeline.py " + " ".join(sys.argv[1:]),
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": f"{platform.machine()}, Python {platform.python_version()}",
        **result,
    }
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
