"""A loss-tolerant stand-in for aiortc's audio jitter buffer, decoding on the event loop.

aiortc 1.16 gives each audio receiver ``JitterBuffer(capacity=16, prefetch=4)``: one missing
packet stalls output until 16 newer ones arrived, then the hole is evicted together with
the 4 prefetched good frames, so 5 % packet loss becomes ~22 % lost audio. Recording needs
no playout deadline, so this buffer only reorders (capture's ReorderBuffer): it gives up
on a hole once ``depth`` newer packets wait and never drops a packet it has. Gaps in time
are the recorder's business, from the frame timestamps.

Released packets are decoded right here and the frames put on the receiver's track, in
order. aiortc would hand them to a decoder thread per receiver that returns every frame
with ``run_coroutine_threadsafe``; with dozens of sessions those threads queue on the GIL
and fall seconds behind while the process still has CPU to spare (measured: 50 sessions
kept only a third of their audio). Decoding a 20 ms Opus frame takes tens of microseconds.

Opus is decoded straight to mono (libopus downmixes inside the decoder; aiortc's decoder
makes stereo, which then had to be averaged: about 40 % of the decoding path's time), and a
decoded frame goes to ``sink`` when one is set (the recorder, called directly) instead of
through the track's queue and a task switch per frame.
"""

from __future__ import annotations

import fractions
import logging
from collections.abc import Callable
from datetime import datetime

import av
from aiortc.codecs import get_decoder
from aiortc.codecs.base import Decoder
from aiortc.jitterbuffer import JitterFrame
from aiortc.rtcrtpparameters import RTCRtpCodecParameters
from aiortc.rtcrtpreceiver import RTCRtpReceiver
from aiortc.rtp import RtpPacket
from av import AudioFrame
from av.frame import Frame

from adapters.webrtc import aiortc_compat as compat
from capture.media.reorder import ReorderBuffer

log = logging.getLogger(__name__)

OPUS_RATE = 48000


class MonoOpusDecoder(Decoder):
    """Opus to 48 kHz mono s16 frames (whatever the sender's channel count)."""

    def __init__(self) -> None:
        self.codec = av.CodecContext.create("libopus", "r")
        self.codec.format = "s16"
        self.codec.layout = "mono"
        self.codec.sample_rate = OPUS_RATE
        self.time_base = fractions.Fraction(1, OPUS_RATE)

    def decode(self, encoded_frame: JitterFrame) -> list[Frame]:
        packet = av.Packet(encoded_frame.data)
        packet.pts = encoded_frame.timestamp
        packet.time_base = self.time_base
        return list(self.codec.decode(packet))


def decoder_for(codec: RTCRtpCodecParameters) -> Decoder:
    if codec.mimeType.lower() == "audio/opus":
        return MonoOpusDecoder()
    return get_decoder(codec)


class AudioReorderBuffer:
    """Has the interface aiortc's receiver expects of ``JitterBuffer`` (``add``), and never
    returns a frame to it: everything it releases is decoded onto the track here."""

    def __init__(self, receiver: RTCRtpReceiver, depth: int, now: Callable[[], datetime]) -> None:
        self._receiver = receiver
        self._now = now
        self.reorder: ReorderBuffer[RtpPacket] = ReorderBuffer(depth)
        self.first_arrival: datetime | None = None
        "Wall-clock arrival of the first packet, whose timestamp is the track's pts 0."
        self._decoders: dict[str, Decoder] = {}
        self.decode_errors = 0
        self.sink: Callable[[AudioFrame], None] | None = None
        "Takes each decoded frame, in order; unset, frames go to the track's queue."

    def add(self, packet: RtpPacket) -> tuple[bool, JitterFrame | None]:
        if self.first_arrival is None:
            self.first_arrival = self._now()
        for released in self.reorder.push(packet.sequence_number, packet):
            self._decode(released)
        return False, None

    def _decode(self, packet: RtpPacket) -> None:
        receiver = self._receiver
        codec = compat.receiver_codec(receiver, packet.payload_type)
        if codec is None or receiver.track is None:
            return
        decoder = self._decoders.get(codec.mimeType)
        if decoder is None:
            decoder = self._decoders[codec.mimeType] = decoder_for(codec)
        timestamp = compat.media_timestamp(receiver, packet.timestamp)
        try:
            frames = decoder.decode(JitterFrame(data=compat.depayloaded(packet), timestamp=timestamp))
        except av.FFmpegError as exc:
            # Keep the decoder's state; the next packet decodes normally.
            self.decode_errors += 1
            log.debug(
                "webrtc.undecodable_packet",
                extra={"codec": codec.mimeType, "sequence": packet.sequence_number, "error": str(exc)},
            )
            return
        if self.sink is not None:
            for frame in frames:
                self.sink(frame)  # type: ignore[arg-type]  # audio decoders make AudioFrames
            return
        queue = compat.track_queue(receiver.track)
        for frame in frames:
            queue.put_nowait(frame)


def install(receiver: RTCRtpReceiver, depth: int, now: Callable[[], datetime]) -> AudioReorderBuffer:
    """Replace an audio receiver's jitter buffer (before its first packet arrives)."""
    buffer = AudioReorderBuffer(receiver, depth, now)
    compat.replace_jitter_buffer(receiver, buffer)
    return buffer
