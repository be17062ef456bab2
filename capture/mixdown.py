"""Turns a call's recorded files into the content of its recording dialogs, in bounded memory.

Per-party mono streams (SIP legs, WebRTC participants) become, by layout, either one WAV
with a channel per party aligned on each stream's wall-clock start (``channels``), or one
file per stream tied by a recording-set (``files``). Files an adapter recorded whole (e.g.
an Asterisk MixMonitor WAV) are kept byte for byte. Content is inlined as base64url
(streamed into the vCon file by :mod:`capture.vconfile`), or, with a media base URL, written
beside the vCon (streamed, hashed on the way) and referenced with url + content_hash.

Nothing holds a whole recording: the mix is produced a chunk of frames at a time from the
sources (read with ``pread`` at their offsets), so a two-hour call costs what a short one does.
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Literal

import numpy as np

from capture.errors import MediaError
from capture.events import MediaRecorded
from capture.mediastore import S3Config, stage, upload
from capture.vcon.content import b64url
from capture.vcon.layout import RecordingContent
from capture.vcon.model import Content
from capture.vconfile import BodyTokens, StreamedBody
from capture.wavfile import SAMPLE_BYTES, PcmLayout, header, pcm_layout

log = logging.getLogger(__name__)

Layout = Literal["channels", "files"]
MIX_FRAMES = 32_768
"Frames mixed per step."
LARGE_INLINE_BYTES = 100_000_000
"Inline audio past this size is worth a warning (a conserver takes it, but slowly and whole)."
FILE_CHUNK = 256 * 1024


@dataclass(frozen=True, slots=True)
class MediaPolicy:
    layout: Layout = "channels"
    url_base: str | None = None
    "https base URL under which ``media_dir`` is served; None inlines the audio."
    media_dir: Path | None = None
    "Where referenced files are written."
    s3: S3Config | None = None
    "Object storage for referenced audio (instead of media_dir + url_base)."
    staging_dir: Path | None = None
    "Where audio waits on local disk before it is uploaded."
    inline_max_bytes: int | None = None
    """With a media location: audio up to this size stays inline, larger goes by reference
    (None: all audio by reference). Without one, audio past it (or past 100 MB) is inlined with a warning."""

    @property
    def can_reference(self) -> bool:
        return self.s3 is not None or (self.url_base is not None and self.media_dir is not None)

    def by_reference(self, size: int) -> bool:
        if not self.can_reference:
            return False
        return self.inline_max_bytes is None or size > self.inline_max_bytes

    def too_large_inline(self, size: int) -> bool:
        return not self.can_reference and size > (self.inline_max_bytes or LARGE_INLINE_BYTES)


@dataclass(frozen=True, slots=True)
class Rendered:
    """A call's recording contents, and the bodies to stream into the vCon for the inline ones."""

    contents: list[RecordingContent]
    bodies: list[StreamedBody]
    notes: dict[str, object]


class PcmSource:
    """One recorded stream's PCM, read a slice at a time (channel 0 of its file)."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.layout: PcmLayout = pcm_layout(Path(path))

    @property
    def rate(self) -> int:
        return self.layout.sample_rate

    @property
    def frames(self) -> int:
        return self.layout.frames

    def read(self, start: int, count: int) -> np.ndarray:
        """Frames [start, start + count) of channel 0 (clipped to the file), as int16."""
        start, end = max(start, 0), min(start + count, self.frames)
        if end <= start:
            return np.zeros(0, dtype=np.int16)
        block = self.layout.channels * SAMPLE_BYTES
        try:
            fd = os.open(self.path, os.O_RDONLY)
            try:
                raw = os.pread(fd, (end - start) * block, self.layout.data_offset + start * block)
            finally:
                os.close(fd)
        except OSError as exc:
            raise MediaError(f"cannot read {Path(self.path).name}: {exc.strerror}") from None
        pcm = np.frombuffer(raw[: len(raw) - len(raw) % block], dtype="<i2")
        return pcm.reshape(-1, self.layout.channels)[:, 0]


@dataclass(slots=True)
class _Placed:
    channel: int
    offset: int
    "Output frame of the stream's first sample."
    source: PcmSource
    ratio: float
    "Input frames per output frame."

    def frames_out(self) -> int:
        return int(round(self.source.frames / self.ratio))

    def slice(self, a: int, b: int) -> tuple[int, np.ndarray]:
        """(first output frame, samples) of this stream within output frames [a, b)."""
        lo, hi = max(a, self.offset), min(b, self.offset + self.frames_out())
        if hi <= lo:
            return lo, np.zeros(0, dtype=np.int16)
        if self.ratio == 1.0:
            return lo, self.source.read(lo - self.offset, hi - lo)
        wanted = (np.arange(lo, hi) - self.offset) * self.ratio
        first = int(wanted[0])
        pcm = self.source.read(first, int(wanted[-1]) - first + 2).astype(np.float64)
        return lo, np.interp(wanted - first, np.arange(len(pcm)), pcm).astype(np.int16)


@dataclass(frozen=True, slots=True)
class _Mix:
    """A mixed multi-channel WAV, produced on demand."""

    placed: list[_Placed]
    channels: int
    rate: int
    frames: int

    @property
    def size(self) -> int:
        return 44 + self.frames * self.channels * SAMPLE_BYTES

    def chunks(self) -> Iterator[bytes]:
        yield header(self.rate, self.channels, self.frames)
        for a in range(0, self.frames, MIX_FRAMES):
            b = min(a + MIX_FRAMES, self.frames)
            mix = np.zeros((b - a, self.channels), dtype=np.int32)
            for p in self.placed:
                lo, pcm = p.slice(a, b)
                mix[lo - a : lo - a + len(pcm), p.channel] += pcm
            yield np.clip(mix, -32768, 32767).astype("<i2").tobytes()


def _is_party_stream(rec: MediaRecorded) -> bool:
    """A mono WAV that goes into the mix: a stream the core recorded (one party, or a mix it was told
    of), or one party's file recorded elsewhere (MixMonitor's per-direction files). A file of
    several voices recorded elsewhere (a MixMonitor mix) is kept as it is."""
    if rec.mediatype != "audio/x-wav" or len(rec.channels) != 1 or not rec.channels[0]:
        return False
    return rec.stream or len(rec.channels[0]) == 1


def assign_channels(recordings: list[MediaRecorded], party_order: list[str]) -> tuple[list[tuple[str, ...]], list[int]]:
    """The channels of a mix (the party keys each carries) and each recording's channel.

    A channel per party, in join order, holding that party's streams one after another; a
    stream that overlaps one already in its party's channel (a party sending two streams at
    once) gets a channel of its own, as does a mixed stream (it lists every party it carries).
    """
    order = {k: i for i, k in enumerate(party_order)}
    ranked = sorted(
        range(len(recordings)),
        key=lambda i: (min(order.get(k, len(order)) for k in recordings[i].channels[0]), recordings[i].started_at),
    )
    channels: list[tuple[str, ...]] = []
    spans: list[list[tuple[datetime, datetime]]] = []
    assigned = [0] * len(recordings)
    for i in ranked:
        rec = recordings[i]
        heard = rec.channels[0]
        span = (rec.started_at, rec.started_at + timedelta(seconds=rec.duration_s))
        for channel, (carries, taken) in enumerate(zip(channels, spans, strict=True)):
            if carries == heard and all(span[1] <= a or span[0] >= b for a, b in taken):
                taken.append(span)
                assigned[i] = channel
                break
        else:
            channels.append(heard)
            spans.append([span])
            assigned[i] = len(channels) - 1
    return channels, assigned


def mix_channels(
    recordings: list[MediaRecorded], party_order: list[str]
) -> tuple[_Mix, datetime, list[tuple[str, ...]]]:
    """One WAV of several channels (:func:`assign_channels`), streams placed at their wall-clock start."""
    sources = [(rec, PcmSource(rec.path)) for rec in recordings]
    rate = max(src.rate for _, src in sources)
    channels, assigned = assign_channels(recordings, party_order)
    start = min(rec.started_at for rec in recordings)
    placed = [
        _Placed(
            channel=assigned[i],
            offset=int(round((rec.started_at - start).total_seconds() * rate)),
            source=src,
            ratio=src.rate / rate,
        )
        for i, (rec, src) in enumerate(sources)
    ]
    frames = max((p.offset + p.frames_out() for p in placed), default=0)
    return _Mix(placed, len(channels), rate, frames), start, channels


def _file_chunks(path: str) -> Callable[[], Iterator[bytes]]:
    def chunks() -> Iterator[bytes]:
        try:
            with open(path, "rb") as f:
                while data := f.read(FILE_CHUNK):
                    yield data
        except OSError as exc:
            raise MediaError(f"cannot read {Path(path).name}: {exc.strerror}") from None

    return chunks


def _store(
    policy: MediaPolicy, vcon_uuid: str, started: datetime, filename: str, mediatype: str, chunks: Iterator[bytes]
) -> Content:
    """Referenced content: written beside the vCon, or uploaded to object storage. OSError or
    TransientMediaError when it cannot be stored now (the caller retries)."""
    if policy.s3 is None:
        assert policy.url_base is not None
        return Content(
            url=f"{policy.url_base.rstrip('/')}/{filename}", content_hash=_write_media(policy, filename, chunks)
        )
    staging = policy.staging_dir or Path(".")
    staged = staging / f".{vcon_uuid}-{filename}.part"
    try:
        size, digest = stage(staged, chunks)
        url = upload(policy.s3, staged, policy.s3.key(vcon_uuid, started, filename), size, digest, mediatype)
    finally:
        staged.unlink(missing_ok=True)
    return Content(url=url, content_hash=digest)


def _write_media(policy: MediaPolicy, filename: str, chunks: Iterator[bytes]) -> str:
    """Write a referenced file (temp, fsync, rename) and return its content_hash. OSError if the disk refuses."""
    assert policy.media_dir is not None
    target = policy.media_dir / filename
    tmp = target.with_name(f".{filename}.tmp")
    digest = hashlib.sha512()
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(fd, "wb") as f:
            for data in chunks:
                digest.update(data)
                f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return "sha512-" + b64url(digest.digest())


@dataclass(frozen=True, slots=True)
class _Piece:
    chunks: Callable[[], Iterator[bytes]]
    size: int
    start: datetime
    duration_s: float
    channels: tuple[tuple[str, ...], ...]
    mediatype: str
    ext: str


def render_recordings(
    vcon_uuid: str,
    recordings: list[MediaRecorded],
    party_order: list[str],
    policy: MediaPolicy,
    started: datetime | None = None,
) -> Rendered:
    """The recording contents of a call, in the order their dialogs should appear."""
    streams = [r for r in recordings if _is_party_stream(r)]
    whole = [r for r in recordings if not _is_party_stream(r)]
    pieces: list[_Piece] = []
    if streams and policy.layout == "channels":
        mix, start, channels = mix_channels(streams, party_order)
        pieces.append(_Piece(mix.chunks, mix.size, start, mix.frames / mix.rate, tuple(channels), "audio/x-wav", "wav"))
    else:
        whole = streams + whole
    for rec in whole:
        try:
            size = Path(rec.path).stat().st_size
        except OSError as exc:
            raise MediaError(f"cannot read {Path(rec.path).name}: {exc.strerror}") from None
        ext = Path(rec.path).suffix.lstrip(".") or "bin"
        pieces.append(
            _Piece(_file_chunks(rec.path), size, rec.started_at, rec.duration_s, rec.channels, rec.mediatype, ext)
        )
    tokens = BodyTokens()
    contents: list[RecordingContent] = []
    bodies: list[StreamedBody] = []
    notes: dict[str, object] = {}
    for i, piece in enumerate(pieces):
        filename = f"{vcon_uuid}.{piece.ext}" if len(pieces) == 1 else f"{vcon_uuid}-{i}.{piece.ext}"
        if policy.by_reference(piece.size):
            content = _store(policy, vcon_uuid, started or piece.start, filename, piece.mediatype, piece.chunks())
        else:
            token = tokens.next()
            bodies.append(StreamedBody(token, piece.chunks, piece.size))
            content = Content(body=token, encoding="base64url")
        contents.append(
            RecordingContent(
                start=piece.start,
                duration_s=piece.duration_s,
                channels=piece.channels,
                content=content,
                mediatype=piece.mediatype,
                filename=filename,
            )
        )
    inline_large = [p for p in pieces if policy.too_large_inline(p.size)]
    if inline_large:
        megabytes = round(sum(p.size for p in inline_large) / 1e6, 1)
        notes["large_inline_audio"] = (
            f"{megabytes} MB of audio inline; set media_url_base and media_dir to send it by reference"
        )
        log.warning("mixdown.large_inline_audio", extra={"megabytes": megabytes})
    return Rendered(contents, bodies, notes)
