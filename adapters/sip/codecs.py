"""Payload -> PCM for the codecs the recorder answers with.

Payloads are collected per packet and decoded in batches: G.711 through the numpy tables
of :mod:`capture.media.g711` (one table lookup per batch), G.722 and Opus through PyAV.
Positions are RTP clock ticks; each decoder knows how many output samples a tick is.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import av
import numpy as np

from adapters.sip.sdp import Codec
from capture.errors import MediaError
from capture.media.g711 import ALAW, ULAW

log = logging.getLogger(__name__)

OPUS_OUTPUT_RATE = 16000
"Opus is decoded to 16 kHz: wideband speech, a third of the 48 kHz file size."


class Decoder:
    """Decodes (position in ticks, payload) batches into (sample position, int16 PCM)."""

    sample_rate: int
    samples_per_tick: float

    def decode(self, batch: list[tuple[int, bytes]]) -> list[tuple[int, np.ndarray]]:
        raise NotImplementedError


class G711Decoder(Decoder):
    def __init__(self, table: np.ndarray) -> None:
        self.table = table
        self.sample_rate = 8000
        self.samples_per_tick = 1.0

    def decode(self, batch: list[tuple[int, bytes]]) -> list[tuple[int, np.ndarray]]:
        pcm = self.table[np.frombuffer(b"".join(p for _, p in batch), dtype=np.uint8)]
        out, start = [], 0
        for position, payload in batch:
            out.append((position, pcm[start : start + len(payload)]))
            start += len(payload)
        return out


class AvDecoder(Decoder):
    """A PyAV (FFmpeg) decoder, one packet at a time, resampled to mono int16."""

    def __init__(self, name: str, input_rate: int, output_rate: int, rtp_clock: int) -> None:
        self.context = av.CodecContext.create(name, "r")
        self.context.sample_rate = input_rate
        self.context.layout = "mono"
        self.resampler = av.AudioResampler(format="s16", layout="mono", rate=output_rate)
        self.sample_rate = output_rate
        self.samples_per_tick = output_rate / rtp_clock

    def decode(self, batch: list[tuple[int, bytes]]) -> list[tuple[int, np.ndarray]]:
        out = []
        for position, payload in batch:
            try:
                frames = self.context.decode(av.Packet(payload))
            except av.FFmpegError as exc:
                log.debug("undecodable payload dropped: %s", exc)
                continue
            chunks = [f.to_ndarray().reshape(-1) for fr in frames for f in self.resampler.resample(fr)]
            if chunks:
                out.append((int(position * self.samples_per_tick), np.concatenate(chunks).astype(np.int16)))
        return out


_FACTORIES: dict[str, Callable[[Codec], Decoder]] = {
    "PCMU": lambda c: G711Decoder(ULAW),
    "PCMA": lambda c: G711Decoder(ALAW),
    "G722": lambda c: AvDecoder("g722", 16000, 16000, c.clock_rate),
    "OPUS": lambda c: AvDecoder("libopus", 48000, OPUS_OUTPUT_RATE, c.clock_rate),
}


def decoder_for(codec: Codec) -> Decoder:
    try:
        return _FACTORIES[codec.name](codec)
    except KeyError:
        raise MediaError(f"no decoder for {codec.name}") from None
