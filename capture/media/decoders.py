"""Decoders for the codecs of :mod:`capture.media.codecs`: payloads -> int16 PCM.

Payloads are decoded in batches: G.711 through the numpy tables of
:mod:`capture.media.g711` (one table lookup per batch; back-to-back packets come out as
one run, a slice of it), G.722, Opus, G.729 (A/B), G.723.1, GSM, iLBC and G.726 through
PyAV (FFmpeg decodes each of them). Positions are RTP clock ticks on
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

    def __init__(self, name: str, input_rate: int, output_rate: int, rtp_clock: int,
                 options: dict[str, str] | None = None) -> None:  # fmt: skip
        context = av.CodecContext.create(name, "r")
        assert isinstance(context, AudioCodecContext)
        context.sample_rate = input_rate
        context.layout = "mono"
        if options:
            context.options = options
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


class G729Decoder(AvDecoder):
    """G.729 / 729A / 729B: 10-byte frames, and with Annex B a 2-byte SID frame that ends a
    packet (or is all of it): comfort noise, kept as 10 ms of silence at its place."""

    def __init__(self, rtp_clock: int) -> None:
        super().__init__("g729", 8000, 8000, rtp_clock)

    def decode(self, batch: list[tuple[int, bytes]]) -> list[tuple[int, Pcm]]:
        voiced = [(pos, p[: len(p) // 10 * 10]) for pos, p in batch if len(p) >= 10]
        out = super().decode(voiced)
        for position, payload in batch:
            if len(payload) % 10 == 2:
                sid_at = position + (len(payload) // 10) * 80
                out.append((int(sid_at * self.samples_per_tick), np.zeros(80, dtype=np.int16)))
            elif len(payload) % 10:
                self.undecodable += 1
        return sorted(out, key=lambda run: run[0])


class IlbcDecoder(Decoder):
    """iLBC (RFC 3952): 38-byte frames in 20 ms mode, 50-byte frames in 30 ms mode; the mode is
    read from the first payload, each frame is decoded on its own."""

    def __init__(self, rtp_clock: int) -> None:
        self.sample_rate = 8000
        self.samples_per_tick = 8000 / rtp_clock
        self.undecodable = 0
        self._inner: AvDecoder | None = None
        self._block = 0

    def decode(self, batch: list[tuple[int, bytes]]) -> list[tuple[int, Pcm]]:
        out: list[tuple[int, Pcm]] = []
        for position, payload in batch:
            if self._inner is None and payload:
                self._block = 50 if len(payload) % 50 == 0 else 38
                self._inner = AvDecoder("ilbc", 8000, 8000, 8000, {"block_align": str(self._block)})
            if self._inner is None or len(payload) % self._block:
                self.undecodable += 1
                continue
            frame_ticks = (160 if self._block == 38 else 240) / self.samples_per_tick
            frames = [(int(position + i * frame_ticks), payload[k : k + self._block])
                      for i, k in enumerate(range(0, len(payload), self._block))]  # fmt: skip
            out += [(int(pos * self.samples_per_tick), pcm) for pos, pcm in self._inner.decode(frames)]
        self.undecodable += self._inner.undecodable if self._inner else 0
        if self._inner:
            self._inner.undecodable = 0
        return out


def _g726(codec: Codec) -> Decoder:
    """G.726 at 16/24/32/40 kbit/s: RFC 3551 packs codewords little-endian, AAL2- big-endian."""
    bits = {"16": "2", "24": "3", "32": "4", "40": "5"}[codec.name.rsplit("-", 1)[1]]
    name = "adpcm_g726" if codec.name.startswith("AAL2-") else "adpcm_g726le"
    return AvDecoder(name, 8000, 8000, codec.clock_rate, {"bits_per_coded_sample": bits})


_FACTORIES: dict[str, Callable[[Codec], Decoder]] = {
    "PCMU": lambda c: G711Decoder(ULAW),
    "PCMA": lambda c: G711Decoder(ALAW),
    "G722": lambda c: AvDecoder("g722", 16000, 16000, c.clock_rate),
    "OPUS": lambda c: AvDecoder("libopus", 48000, OPUS_OUTPUT_RATE, c.clock_rate),
    "G729": lambda c: G729Decoder(c.clock_rate),
    "G729A": lambda c: G729Decoder(c.clock_rate),
    "G729B": lambda c: G729Decoder(c.clock_rate),
    "G723": lambda c: AvDecoder("g723_1", 8000, 8000, c.clock_rate),
    "GSM": lambda c: AvDecoder("gsm", 8000, 8000, c.clock_rate),
    "ILBC": lambda c: IlbcDecoder(c.clock_rate),
    **{f"{prefix}G726-{rate}": _g726 for prefix in ("", "AAL2-") for rate in (16, 24, 32, 40)},
}


def decoder_for(codec: Codec) -> Decoder:
    """A fresh decoder; MediaError for a codec there is none for."""
    try:
        return _FACTORIES[codec.name](codec)
    except KeyError:
        raise MediaError(f"no decoder for {codec.name}") from None
