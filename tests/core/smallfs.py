"""A small real filesystem a test can fill: a size-limited tmpfs mounted under the test's directory.

Mounting needs root (CAP_SYS_ADMIN); the suite runs as root in CI (scripts/install installs
Debian packages). Elsewhere the tests that need it are skipped with that reason.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest


@contextlib.contextmanager
def small_fs(where: Path, size: str) -> Iterator[Path]:
    where.mkdir(parents=True, exist_ok=True)
    result = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size},mode=0700", "tmpfs", str(where)], capture_output=True, text=True
    )
    if result.returncode != 0:
        pytest.skip(f"cannot mount a {size} tmpfs (needs root): {result.stderr.strip()}")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], capture_output=True)


def fill(fs: Path, keep_free: int = 0) -> Path:
    """Fill the filesystem up to ``keep_free`` bytes with one file; returns it (delete it to free the space)."""
    filler = fs / "filler"
    st = os.statvfs(fs)
    free = st.f_bavail * st.f_frsize
    with filler.open("ab") as f:
        remaining = max(free - keep_free, 0)
        block = b"\0" * 65536
        while remaining > 0:
            try:
                f.write(block[: min(remaining, len(block))])
                f.flush()
            except OSError:
                break
            remaining -= len(block)
    return filler


def free_bytes(fs: Path) -> int:
    st = os.statvfs(fs)
    return st.f_bavail * st.f_frsize
