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
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import soundfile as sf

from adapters.ami.commands import RecordingSpec
from capture.errors import MediaError
from capture.events import MediaRecorded, MediaUnavailable
from capture.recording import repair_wav

log = logging.getLogger(__name__)

POLL_S = 0.1
ALIGNED = ".aligned.wav"
"Suffix of a copy with the unbridged stretches put back as silence."
HEADER_PEEK = 256


def candidates(spec: RecordingSpec, directory: Path) -> list[Path]:
    """Where the spec's file may be: as named, or its name inside ``directory``."""
    if spec.file:
        named = Path(spec.file)
        if named.is_absolute():
            return [named, directory / named.name]
        return [directory / named]
    if not spec.search:
        return []
    # The Uniqueid must not be the prefix of a longer one (…1722255899.1 vs …1722255899.12);
    # a name that ends in it (vcon-<linkedid>-<uniqueid>.wav, the deploy snippet's) comes first.
    whole = re.compile(re.escape(spec.search) + r"(?![0-9])")
    found = sorted(p for p in directory.glob(f"*{spec.search}*") if p.suffix.lower() == ".wav" and whole.search(p.name))
    return sorted(found, key=lambda p: not p.name.endswith(f"-{spec.search}.wav"))


def torn(path: Path) -> bool:
    """A WAV whose header undercounts its data: Asterisk died before it wrote the sizes
    (format_wav.c writes 0 and fixes them only when the file is closed)."""
    try:
        with path.open("rb") as f:
            head = f.read(HEADER_PEEK)
            size = f.seek(0, 2)
    except OSError:
        return False
    if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
        return False
    riff = int.from_bytes(head[4:8], "little")
    at = head.find(b"data", 12)
    data = int.from_bytes(head[at + 4 : at + 8], "little") if 0 < at <= len(head) - 8 else 0
    return riff + 8 < size or (at > 0 and data == 0 and size > at + 8)


def repaired(path: Path) -> Path:
    """The file with its header fixed from its length: in place, or (a read-only spool) a
    copy in a temporary directory."""
    try:
        repair_wav(path)
        return path
    except PermissionError:
        copy = Path(tempfile.mkdtemp(prefix="vcon-ami-")) / path.name
        shutil.copyfile(path, copy)
        repair_wav(copy)
        return copy


def aligned(path: Path, gaps: tuple[tuple[float, float], ...]) -> Path:
    """A copy of the file with silence where the channel was out of a bridge, so its audio
    stays on the call's timeline (beside it, or in a temporary directory)."""
    data, rate = sf.read(str(path), dtype="int16", always_2d=True)
    pieces, done = [], 0
    for offset, length in gaps:
        at = min(int(round(offset * rate)), len(data))
        pieces += [data[done:at], np.zeros((int(round(length * rate)), data.shape[1]), dtype=np.int16)]
        done = at
    pieces.append(data[done:])
    target = path.with_name(path.stem + ALIGNED)
    try:
        sf.write(str(target), np.concatenate(pieces), rate, subtype="PCM_16")
    except (RuntimeError, OSError):
        target = Path(tempfile.mkdtemp(prefix="vcon-ami-")) / target.name
        sf.write(str(target), np.concatenate(pieces), rate, subtype="PCM_16")
    return target


def describe(spec: RecordingSpec, path: Path, call_id: str) -> MediaRecorded | MediaUnavailable:
    """The finished file as an event (its channel count decides the layout); a torn file is
    repaired first, and a file with no audio is reported, never a 0 s recording."""
    note = ""
    try:
        if torn(path):
            path, note = repaired(path), " (header repaired: the PBX stopped before it finished the file)"
            log.warning("ami.recording_repaired", extra={"call_id": call_id, "file": path.name})
        info = sf.info(str(path))
    except (RuntimeError, OSError, MediaError) as exc:
        return MediaUnavailable(
            call_id=call_id,
            at=spec.started_at,
            stream_id=spec.stream_id,
            reason=f"unreadable recording {path.name}: {exc}",
        )
    if info.frames and spec.gaps:
        try:
            path = aligned(path, spec.gaps)
            info = sf.info(str(path))
        except (RuntimeError, OSError) as exc:
            log.warning("ami.recording_not_aligned", extra={"call_id": call_id, "error": str(exc)})
    if info.frames == 0:
        return MediaUnavailable(
            call_id=call_id,
            at=spec.started_at,
            stream_id=spec.stream_id,
            reason=f"recording {path.name} is empty{note}",
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
