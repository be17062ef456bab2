"""Turns a call's recorded files into the content of its recording dialogs.

Per-party mono streams (SIP legs, WebRTC participants) become, by layout, either one WAV
with a channel per party aligned on each stream's wall-clock start (``channels``), or one
file per stream tied by a recording-set (``files``). Files an adapter recorded whole (e.g.
an Asterisk MixMonitor WAV) are kept byte for byte. Content is inlined as base64url, or,
with a media base URL, written beside the vCon and referenced with url + content_hash.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Literal

import numpy as np
import soundfile as sf

from capture.atomic import write_atomic
from capture.errors import MediaError
from capture.events import MediaRecorded
from capture.vcon.content import b64url, content_hash
from capture.vcon.layout import RecordingContent
from capture.vcon.model import Content

Layout = Literal["channels", "files"]


@dataclass(frozen=True, slots=True)
class MediaPolicy:
    layout: Layout = "channels"
    url_base: str | None = None
    "https base URL under which ``media_dir`` is served; None inlines the audio."
    media_dir: Path | None = None
    "Where referenced files are written."


def _is_party_stream(rec: MediaRecorded) -> bool:
    return len(rec.channels) == 1 and len(rec.channels[0]) == 1 and rec.mediatype == "audio/x-wav"


def _read_pcm(path: str) -> tuple[np.ndarray, int]:
    try:
        data, rate = sf.read(path, dtype="int16", always_2d=True)
    except (sf.LibsndfileError, OSError) as exc:
        raise MediaError(f"cannot read {path}: {exc}") from None
    return data[:, 0], rate


def _resample(pcm: np.ndarray, src: int, dst: int) -> np.ndarray:
    if src == dst or not len(pcm):
        return pcm
    n = int(round(len(pcm) * dst / src))
    return np.interp(np.arange(n) * (src / dst), np.arange(len(pcm)), pcm.astype(np.float64)).astype(np.int16)


def mix_channels(recordings: list[MediaRecorded], party_order: list[str]) -> tuple[bytes, datetime, float, list[str]]:
    """One WAV, a channel per party (join order), streams placed at their wall-clock start.

    Returns (WAV bytes, start of the first sample, duration in s, party key per channel).
    """
    streams = [(rec, *_read_pcm(rec.path)) for rec in recordings]
    rate = max(r for _, _, r in streams)
    keys = [k for k in party_order if any(rec.channels[0][0] == k for rec in recordings)]
    start = min(rec.started_at for rec in recordings)
    placed: list[tuple[int, int, np.ndarray]] = []
    for rec, pcm, src_rate in streams:
        offset = int(round((rec.started_at - start).total_seconds() * rate))
        placed.append((keys.index(rec.channels[0][0]), offset, _resample(pcm, src_rate, rate)))
    length = max(offset + len(pcm) for _, offset, pcm in placed)
    mix = np.zeros((length, len(keys)), dtype=np.int32)
    for channel, offset, pcm in placed:
        mix[offset : offset + len(pcm), channel] += pcm
    out = io.BytesIO()
    sf.write(out, np.clip(mix, -32768, 32767).astype(np.int16), rate, subtype="PCM_16", format="WAV")
    return out.getvalue(), start, length / rate, keys


def _content(data: bytes, filename: str, policy: MediaPolicy) -> Content:
    if policy.url_base is None or policy.media_dir is None:
        return Content(body=b64url(data), encoding="base64url")
    write_atomic(policy.media_dir / filename, data)
    return Content(url=policy.url_base.rstrip("/") + "/" + filename, content_hash=content_hash(data))


def render_recordings(
    vcon_uuid: str, recordings: list[MediaRecorded], party_order: list[str], policy: MediaPolicy
) -> list[RecordingContent]:
    """The recording contents of a call, in the order their dialogs should appear."""
    streams = [r for r in recordings if _is_party_stream(r)]
    whole = [r for r in recordings if not _is_party_stream(r)]
    pieces: list[tuple[bytes, datetime, float, tuple[tuple[str, ...], ...], str, str]] = []
    if streams and policy.layout == "channels":
        data, start, duration, keys = mix_channels(streams, party_order)
        pieces.append((data, start, duration, tuple((k,) for k in keys), "audio/x-wav", "wav"))
    else:
        for rec in streams:
            data = Path(rec.path).read_bytes()
            pieces.append((data, rec.started_at, rec.duration_s, rec.channels, rec.mediatype, "wav"))
    for rec in whole:
        try:
            data = Path(rec.path).read_bytes()
        except OSError as exc:
            raise MediaError(f"cannot read {rec.path}: {exc.strerror}") from None
        ext = Path(rec.path).suffix.lstrip(".") or "bin"
        pieces.append((data, rec.started_at, rec.duration_s, rec.channels, rec.mediatype, ext))
    contents = []
    for i, (data, start, duration, channels, mediatype, ext) in enumerate(pieces):
        filename = f"{vcon_uuid}.{ext}" if len(pieces) == 1 else f"{vcon_uuid}-{i}.{ext}"
        contents.append(
            RecordingContent(
                start=start,
                duration_s=duration,
                channels=channels,
                content=_content(data, filename, policy),
                mediatype=mediatype,
                filename=filename,
            )
        )
    return contents
