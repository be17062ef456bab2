"""Decoders for the codecs of :mod:`capture.media.codecs`: payloads -> int16 PCM.

Payloads are decoded in batches: G.711 through the numpy tables of
:mod:`capture.media.g711` (one table lookup per batch; back-to-back packets come out as
one run, a slice of it), G.722 and Opus through PyAV. Positions are RTP clock ticks on
the way in and output samples on the way out; each decoder knows how many output samples
a tick is.
"""

from __future__ import annotations

from collections.abc import Callable

import av
import numpy as np
import numpy.typing as npt
from av.audio.codeccontext import AudioCodecContext

from capture.errors import MediaError
from capture.media.codecs import Codec
from capture.media.g711 import ALAW, ULAW

Pcm = npt.NDArray[np.int16]
"Mono 16-bit samples."

OPUS_OUTPUT_RATE = 16000
"Opus is decoded to 16 kHz: wideband speech, a third of the 48 kHz file size."


class Decoder:
    """Decodes (position in ticks, payload) batches into (sample position, int16 PCM) runs."""

    sample_rate: int
    "Output samples per second."
    samples_per_tick: float

    undecodable: int
    "Payloads the codec library refused."

    def decode(self, batch: list[tuple[int, bytes]]) -> list[tuple[int, Pcm]]:
        """Positioned PCM for a batch in sequence order; undecodable payloads are left out and counted."""
        raise NotImplementedError


class G711Decoder(Decoder):
    """G.711 through one table lookup per batch; back-to-back packets come out as one run (a slice)."""

    def __init__(self, table: Pcm) -> None:
        self.table = table
        self.sample_rate = 8000
        self.samples_per_tick = 1.0
        self.undecodable = 0

    def decode(self, batch: list[tuple[int, bytes]]) -> list[tuple[int, Pcm]]:
        pcm: Pcm = self.table[np.frombuffer(b"".join([p for _, p in batch]), dtype=np.uint8)]
        out: list[tuple[int, Pcm]] = []
        run_position, run_start, start, expected = 0, 0, 0, None
        for position, payload in batch:
            if position != expected:
                if expected is not None:
                    out.append((run_position, pcm[run_start:start]))
                run_position, run_start = position, start
            start += len(payload)
            expected = position + len(payload)
        if expected is not None:
            out.append((run_position, pcm[run_start:start]))
        return out


class AvDecoder(Decoder):
    """A PyAV (FFmpeg) decoder, one packet at a time, resampled to mono int16."""

    def __init__(self, name: str, input_rate: int, output_rate: int, rtp_clock: int) -> None:
        context = av.CodecContext.create(name, "r")
        assert isinstance(context, AudioCodecContext)
        context.sample_rate = input_rate
        context.layout = "mono"
        self.context = context
        self.undecodable = 0
        self.resampler = av.AudioResampler(format="s16", layout="mono", rate=output_rate)
        self.sample_rate = output_rate
        self.samples_per_tick = output_rate / rtp_clock

    def decode(self, batch: list[tuple[int, bytes]]) -> list[tuple[int, Pcm]]:
        out: list[tuple[int, Pcm]] = []
        for position, payload in batch:
            try:
                frames = self.context.decode(av.Packet(payload))
            except av.FFmpegError:
                self.undecodable += 1
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
    """A fresh decoder; MediaError for a codec there is none for."""
    try:
        return _FACTORIES[codec.name](codec)
    except KeyError:
        raise MediaError(f"no decoder for {codec.name}") from None
