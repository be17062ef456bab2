"""Longer coverage-guided fuzzing runs of every network parser (the suite runs each for seconds).

    python bench/fuzz.py [--seconds 300] [--targets sip sdp ...]

Writes bench/results/fuzz.json: per target, executions, coverage (libFuzzer's cov/ft), corpus
growth, peak RSS and any crash (its input is kept under bench/results/fuzz-artifacts/).
"""

from __future__ import annotations

import argparse
import json
import platform
import re
import subprocess
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "fuzz"))
from seeds import seeds  # noqa: E402
from targets import TARGETS  # noqa: E402


def run(target: str, seconds: int, artifacts: Path) -> dict[str, object]:
    with tempfile.TemporaryDirectory(prefix=f"fuzz-{target}-") as tmp:
        corpus = Path(tmp)
        for n, seed in enumerate(seeds(target)):
            (corpus / f"seed-{n}").write_bytes(seed)
        started = len(list(corpus.iterdir()))
        artifacts.mkdir(parents=True, exist_ok=True)
        result = subprocess.run(
            [
                sys.executable,
                str(REPO / "tests" / "fuzz" / "run.py"),
                target,
                str(seconds),
                str(corpus),
                str(artifacts),
            ],
            capture_output=True,
            text=True,
            timeout=seconds + 300,
        )
        stats = dict(re.findall(r"stat::(\w+):\s+(\d+)", result.stderr))
        cov = re.findall(r"cov: (\d+) ft: (\d+)", result.stderr)
        crash = re.search(r"Test unit written to (\S+)", result.stderr)
        return {
            "target": target,
            "seconds": seconds,
            "executions": int(stats.get("number_of_executed_units", 0)),
            "coverage_edges": int(cov[-1][0]) if cov else None,
            "features": int(cov[-1][1]) if cov else None,
            "corpus_start": started,
            "corpus_end": len(list(corpus.iterdir())),
            "peak_rss_mb": int(stats.get("peak_rss_mb", 0)),
            "crash": crash.group(1) if crash else None,
            "exit": result.returncode,
        }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=300)
    parser.add_argument("--targets", nargs="*", default=sorted(TARGETS))
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "fuzz.json")
    args = parser.parse_args()
    results = [run(t, args.seconds, REPO / "bench" / "results" / "fuzz-artifacts") for t in args.targets]
    report = {
        "command": "python bench/fuzz.py " + " ".join(sys.argv[1:]),
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": f"{platform.machine()}, Python {platform.python_version()}",
        "results": results,
    }
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))
    return 1 if any(r["crash"] for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
