"""Runs one fuzz target under atheris (coverage-guided, libFuzzer).

    python tests/fuzz/run.py TARGET SECONDS CORPUS_DIR [ARTIFACT_DIR]

``FUZZ_SEED`` and ``FUZZ_RUNS`` (environment) fix libFuzzer's seed and number of runs: the
same inputs on every machine (the suite's short runs). Exit code 0: no finding within the
time; non-zero: a crash, its input saved under ARTIFACT_DIR (``crash-<sha1>``). New
interesting inputs are added to CORPUS_DIR (seed it with a copy).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import atheris

sys.path.insert(0, str(Path(__file__).resolve().parent))
import targets  # noqa: E402


def main() -> None:
    name, seconds, corpus = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    artifacts = sys.argv[4] if len(sys.argv) > 4 else corpus
    with atheris.instrument_imports():
        for module in targets.MODULES[name]:
            __import__(module)
    target = targets.TARGETS[name]
    flags = [
        sys.argv[0],
        f"-max_total_time={seconds}",
        *([f"-seed={os.environ['FUZZ_SEED']}"] if os.environ.get("FUZZ_SEED") else []),
        *([f"-runs={os.environ['FUZZ_RUNS']}"] if os.environ.get("FUZZ_RUNS") else []),
        "-timeout=5",
        "-rss_limit_mb=1024",
        "-max_len=65536",
        f"-artifact_prefix={artifacts.rstrip('/')}/",
        "-print_final_stats=1",
        corpus,
    ]
    atheris.Setup(flags, target)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
