"""16-bit PCM WAV files without a library in the way: the header we write, and reading any WAV's PCM.

The recorder writes its own WAVs (a 44-byte header, then samples at known offsets), so it
always knows how many frames are on disk, can write at an exact offset after a failed write,
and leaves a file that :func:`repair` makes whole after a kill (the header then says 0
samples: its sizes are only patched at close). Files from elsewhere (an Asterisk MixMonitor
WAV) are read through :func:`pcm_layout`, which walks the chunks.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path

from capture.errors import MediaError

HEADER_BYTES = 44
SAMPLE_BYTES = 2


def header(sample_rate: int, channels: int, frames: int) -> bytes:
    """A canonical PCM_16 WAV header for ``frames`` frames."""
    block = channels * SAMPLE_BYTES
    data = frames * block
    return (
        b"RIFF"
        + struct.pack("<I", 36 + data)
        + b"WAVEfmt "
        + struct.pack("<IHHIIHH", 16, 1, channels, sample_rate, sample_rate * block, block, 16)
        + b"data"
        + struct.pack("<I", data)
    )


@dataclass(frozen=True, slots=True)
class PcmLayout:
    """Where a WAV file's samples are and what they are."""

    data_offset: int
    frames: int
    channels: int
    sample_rate: int
    bits: int


def pcm_layout(path: Path) -> PcmLayout:
    """The data chunk of a PCM WAV; the frame count comes from the file length when the header
    says 0 (a writer killed before it could patch it). MediaError if it is not a PCM WAV."""
    try:
        with path.open("rb") as f:
            head = f.read(12)
            if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
                raise MediaError(f"{path.name} is not a WAV file")
            size = f.seek(0, 2)
            pos, fmt = 12, None
            while pos + 8 <= size:
                f.seek(pos)
                chunk, length = f.read(4), int.from_bytes(f.read(4), "little")
                if chunk == b"fmt ":
                    fmt = f.read(16)
                elif chunk == b"data":
                    break
                pos += 8 + length + (length & 1)
            else:
                raise MediaError(f"{path.name} has no data chunk")
    except OSError as exc:
        raise MediaError(f"cannot read {path.name}: {exc.strerror}") from None
    if fmt is None or len(fmt) < 16:
        raise MediaError(f"{path.name} has no fmt chunk")
    tag, channels, rate, _, block, bits = struct.unpack("<HHIIHH", fmt)
    if tag not in (1, 0xFFFE) or bits != 16 or not channels or not block:
        raise MediaError(f"{path.name} is not 16-bit PCM (format {tag:#x}, {bits} bits)")
    start = pos + 8
    declared = length if 0 < length <= size - start else size - start
    return PcmLayout(start, declared // block, channels, rate, bits)


def repair(path: Path) -> int:
    """Make a WAV whose writer died readable: set the RIFF and data sizes from the file's real
    length, dropping a torn last frame. Returns the number of frames."""
    layout = pcm_layout(path)
    block = layout.channels * SAMPLE_BYTES
    on_disk = (path.stat().st_size - layout.data_offset) // block
    data_bytes = on_disk * block
    try:
        with path.open("r+b") as f:
            f.truncate(layout.data_offset + data_bytes)
            f.seek(4)
            f.write(struct.pack("<I", layout.data_offset + data_bytes - 8))
            f.seek(layout.data_offset - 4)
            f.write(struct.pack("<I", data_bytes))
    except OSError as exc:
        raise MediaError(f"cannot repair {path.name}: {exc.strerror}") from None
    return on_disk
