"""Coverage-guided fuzzing (atheris) of every parser that takes bytes from the network, briefly.

Each target runs for FUZZ_SECONDS from seeds taken from the test data; any exception other than
the parser's RemoteProtocolError (or a hang, or a memory blow-up) fails with the crashing input
saved. ``python bench/fuzz.py`` runs the same targets for minutes each.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from seeds import seeds  # noqa: E402
from targets import TARGETS  # noqa: E402

FUZZ_SECONDS = 8
HERE = Path(__file__).resolve().parent


@pytest.mark.parametrize("target", sorted(TARGETS))
def test_fuzz_target_finds_nothing(target, tmp_path):
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    for n, seed in enumerate(seeds(target)):
        (corpus / f"seed-{n}").write_bytes(seed)
    assert any(corpus.iterdir()), f"no seeds for {target}"
    result = subprocess.run(
        [sys.executable, str(HERE / "run.py"), target, str(FUZZ_SECONDS), str(corpus), str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=FUZZ_SECONDS + 120,
    )
    crashes = sorted(p.name for p in tmp_path.glob("crash-*")) + sorted(p.name for p in tmp_path.glob("timeout-*"))
    assert result.returncode == 0 and not crashes, f"{crashes}\n{result.stderr[-4000:]}"
    assert "stat::number_of_executed_units" in result.stderr, "the fuzzer did not run"
