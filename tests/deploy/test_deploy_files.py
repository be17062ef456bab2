"""Every deploy/ file the README or the container files name exists.

The Containerfile and compose.yaml cannot be built here (no container engine); what can
be checked is that everything they copy or mount is in the repository.
"""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CONTAINER = ROOT / "deploy" / "container"


def test_readme_names_only_existing_deploy_files() -> None:
    named = set(re.findall(r"\bdeploy/[\w./-]*\w", (ROOT / "README.md").read_text()))
    missing = sorted(p for p in named if not (ROOT / p).exists())
    assert not missing, f"README.md names missing files: {missing}"


def test_containerfile_copies_existing_paths() -> None:
    sources = []
    for line in (CONTAINER / "Containerfile").read_text().splitlines():
        if line.startswith("COPY "):
            sources += line.split()[1:-1]
    assert "capture" in sources and "adapters" in sources
    missing = [s for s in sources if not (ROOT / s).exists()]
    assert not missing, missing


def test_compose_builds_and_mounts_existing_paths() -> None:
    text = (CONTAINER / "compose.yaml").read_text()  # no YAML parser among the test dependencies
    contexts = re.findall(r"^\s+context: (\S+)$", text, re.M)
    dockerfiles = re.findall(r"^\s+dockerfile: (\S+)$", text, re.M)
    assert contexts and len(contexts) == len(dockerfiles)
    for context, dockerfile in zip(contexts, dockerfiles, strict=True):
        assert (CONTAINER / context / dockerfile).is_file(), dockerfile
    mounts = re.findall(r"^\s+- (\.{1,2}/[^:]+):", text, re.M)
    assert mounts, "the consumer mounts tests/conserver.py"
    missing = [m for m in mounts if not (CONTAINER / m).exists()]
    assert not missing, missing
