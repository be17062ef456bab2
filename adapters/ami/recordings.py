"""Picking up finished MixMonitor files from the recordings directory.

Asterisk writes the file on the PBX host; the adapter sees it through ``recordings_dir``
(the monitor spool itself, or a mount of it). A file is taken once it exists and its size
has stopped changing; it is waited for at most ``wait_s``. Whatever goes wrong becomes a
``MediaUnavailable`` with the reason: a missing file never costs the call its vCon.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Callable
from pathlib import Path

import soundfile as sf

from adapters.ami.commands import RecordingSpec
from capture.events import MediaRecorded, MediaUnavailable

log = logging.getLogger(__name__)

POLL_S = 0.1


def candidates(spec: RecordingSpec, directory: Path) -> list[Path]:
    """Where the spec's file may be: as named, or its name inside ``directory``."""
    if spec.file:
        named = Path(spec.file)
        if named.is_absolute():
            return [named, directory / named.name]
        return [directory / named]
    if not spec.search:
        return []
    # The Uniqueid must not be the prefix of a longer one (…1722255899.1 vs …1722255899.12).
    whole = re.compile(re.escape(spec.search) + r"(?![0-9])")
    return sorted(p for p in directory.glob(f"*{spec.search}*") if p.suffix.lower() == ".wav" and whole.search(p.name))


def describe(spec: RecordingSpec, path: Path, call_id: str) -> MediaRecorded | MediaUnavailable:
    """The finished file as an event (its channel count decides the layout)."""
    try:
        info = sf.info(str(path))
    except (RuntimeError, OSError) as exc:
        return MediaUnavailable(
            call_id=call_id,
            at=spec.started_at,
            stream_id=spec.stream_id,
            reason=f"unreadable recording {path.name}: {exc}",
        )
    if info.channels == 2 and len(spec.channels) == 2:
        channels = spec.channels
    else:
        channels = (spec.heard,) * info.channels
    return MediaRecorded(
        call_id=call_id,
        at=spec.started_at,
        stream_id=spec.stream_id,
        path=str(path),
        started_at=spec.started_at,
        duration_s=info.frames / info.samplerate if info.samplerate else 0.0,
        channels=channels,
        mediatype="audio/x-wav",
    )


async def collect(
    spec: RecordingSpec, directory: Path, call_id: str, wait_s: float, monotonic: Callable[[], float]
) -> MediaRecorded | MediaUnavailable:
    """Wait (bounded, on the ``monotonic`` clock) for the spec's file to appear and stop growing, then describe it.

    Asterisk says nothing when it has written a file, so this waits by looking at it: I/O
    waiting for another process, not a timer of ours.
    """
    if spec.failure:
        return MediaUnavailable(call_id=call_id, at=spec.started_at, stream_id=spec.stream_id, reason=spec.failure)
    deadline = monotonic() + wait_s
    last_size = -1
    while True:
        found = next((p for p in candidates(spec, directory) if p.is_file()), None)
        if found is not None:
            size = found.stat().st_size
            if size == last_size and size > 0:
                return describe(spec, found, call_id)
            last_size = size
        if monotonic() >= deadline:
            break
        await asyncio.sleep(POLL_S)
    name = spec.file or f"*{spec.search}*"
    if found is not None:
        return describe(spec, found, call_id)
    log.warning("ami.recording_missing", extra={"call_id": call_id, "file": name})
    return MediaUnavailable(
        call_id=call_id,
        at=spec.started_at,
        stream_id=spec.stream_id,
        reason=f"recording {name} did not appear in {directory} within {wait_s:g} s",
    )
