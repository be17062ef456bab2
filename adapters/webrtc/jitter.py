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
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime

import av
from aiortc.codecs import get_decoder
from aiortc.codecs.base import Decoder
from aiortc.jitterbuffer import JitterFrame
from aiortc.rtcrtpreceiver import RTCRtpReceiver
from aiortc.rtp import RtpPacket

from adapters.webrtc import aiortc_compat as compat
from capture.media.reorder import ReorderBuffer

log = logging.getLogger(__name__)


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
            decoder = self._decoders[codec.mimeType] = get_decoder(codec)
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
        queue = compat.track_queue(receiver.track)
        for frame in frames:
            queue.put_nowait(frame)


def install(receiver: RTCRtpReceiver, depth: int, now: Callable[[], datetime]) -> AudioReorderBuffer:
    """Replace an audio receiver's jitter buffer (before its first packet arrives)."""
    buffer = AudioReorderBuffer(receiver, depth, now)
    compat.replace_jitter_buffer(receiver, buffer)
    return buffer
