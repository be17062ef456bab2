"""A vCon's audio for the browser: inline bodies decoded, local referenced files found, peaks for a waveform.

* :func:`locate`: where a recording dialog's audio is: decoded from its inline base64url body,
  a referenced file found beside the vCon (or in ``media_dir``) by the URL's last path segment,
  or only a URL (object storage, another server): the page links that one, the console never
  fetches it.
* :func:`peaks`: ``bins`` (min, max) pairs per channel, read in blocks (bounded memory, whatever
  the length), so the page draws a waveform from a few kilobytes.
"""

from __future__ import annotations

import io
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import soundfile

from capture.vcon.content import b64url_decode

BINS = 1000
"Peaks per channel: enough for a full-width waveform on any screen."
BLOCK_FRAMES = 1 << 18
"Frames read at a time when computing peaks."


@dataclass(frozen=True)
class AudioSource:
    """One recording dialog's audio: exactly one of ``data``, ``path``, ``url`` says where it is."""

    mediatype: str
    data: bytes | None = None
    path: Path | None = None
    url: str | None = None


def locate(dialog: dict[str, Any], dirs: Sequence[Path]) -> AudioSource | None:
    """Where a recording dialog's audio is (None: no audio, or a body that does not decode)."""
    mediatype = str(dialog.get("mediatype") or "audio/x-wav")
    body = dialog.get("body")
    if isinstance(body, str):
        if dialog.get("encoding") != "base64url":
            return None
        try:
            return AudioSource(mediatype, data=b64url_decode(body))
        except ValueError:
            return None
    url = dialog.get("url")
    if not isinstance(url, str):
        return None
    name = url.split("?", 1)[0].rsplit("/", 1)[-1]
    if name and name not in (".", ".."):
        for folder in dirs:
            if (folder / name).is_file():
                return AudioSource(mediatype, path=folder / name, url=url)
    return AudioSource(mediatype, url=url)


def peaks(source: bytes | Path, bins: int = BINS) -> dict[str, Any]:
    """Per channel, ``bins`` minima and maxima (-1..1) over equal stretches, plus rate and duration.

    Raises ``soundfile.LibsndfileError`` (a ``RuntimeError``) for something that is not audio.
    """
    opened = soundfile.SoundFile(io.BytesIO(source) if isinstance(source, bytes) else str(source))
    with opened as f:
        frames, channels, rate = f.frames, f.channels, f.samplerate
        per_bin = max(1, math.ceil(frames / bins)) if frames else 1
        count = math.ceil(frames / per_bin) if frames else 0
        lows = np.zeros((count, channels), dtype=np.int16)
        highs = np.zeros((count, channels), dtype=np.int16)
        done = 0
        block = max(per_bin, BLOCK_FRAMES // per_bin * per_bin)
        while done < count:
            pcm = f.read(block, dtype="int16", always_2d=True)
            if not len(pcm):
                break
            n = math.ceil(len(pcm) / per_bin)
            padded = np.concatenate((pcm, np.repeat(pcm[-1:], n * per_bin - len(pcm), axis=0)))
            shaped = padded.reshape(n, per_bin, channels)
            lows[done : done + n] = shaped.min(axis=1)
            highs[done : done + n] = shaped.max(axis=1)
            done += n
    scale = 1 / 32768
    return {
        "rate": rate,
        "frames": frames,
        "duration": round(frames / rate, 3) if rate else 0.0,
        "channels": [
            {
                "min": [round(float(v) * scale, 3) for v in lows[:done, c]],
                "max": [round(float(v) * scale, 3) for v in highs[:done, c]],
            }
            for c in range(channels)
        ],
    }
