"""The RTP side of the SIP shell: one received stream's port, receiver and recording.

:class:`RtpEndpoint` is the datagram protocol on the stream's port. It only hands each
datagram with its arrival time to the stream's sans-IO
:class:`~capture.media.receiver.RtpReceiver`, tells the SIP core that media arrived, and
has the stream write what the receiver put out. :class:`RtpStream` is what the call knows
about the stream (party, port, SDES keys) and where its audio goes: it places the
receiver's PCM into the :class:`~capture.recording.StreamRecording` the core opened and
reports key presses.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import cast

from capture.errors import MediaError
from capture.media.codecs import Codec
from capture.media.receiver import AudioReceived, ReceiverStats, RtpReceiver
from capture.media.srtp import SrtpReceiver
from capture.recording import StreamRecording

log = logging.getLogger(__name__)

WallTime = Callable[[float], datetime]
"Wall-clock time of a monotonic instant."


class RtpStream:
    """One received stream of a call; the shell binds its port and attaches an :class:`RtpEndpoint`."""

    def __init__(
        self,
        *,
        call_id: str,
        stream_id: str,
        party: str,
        codec: Codec,
        event: Codec | None,
        open_recording: Callable[[str, str, str, int], StreamRecording],
        wall_time: WallTime,
        on_dtmf: Callable[[RtpStream, str, datetime, float], None],
        reorder_depth: int = 8,
    ) -> None:
        self.call_id = call_id
        self.stream_id = stream_id
        self.party = party
        self.receiver = RtpReceiver(codec, event, reorder_depth=reorder_depth)
        self.recording: StreamRecording | None = None
        self.port = 0
        "Local port, set once bound."
        self.endpoint: RtpEndpoint | None = None
        self.offered_crypto: str | None = None
        "The offer's a=crypto line in use (SDES-SRTP streams)."
        self.answer_crypto: str | None = None
        "Our a=crypto line in the answer (SDES-SRTP streams)."
        self._open = open_recording
        self._wall_time = wall_time
        self._on_dtmf = on_dtmf
        self.refused_audio = 0
        "Decoded runs the recording refused to place (each logged once per stream)."
        self._epoch: tuple[float, datetime] | None = None
        "(monotonic, wall clock) of one instant: maps the receiver's times to wall-clock times."

    def set_codecs(self, codec: Codec, event: Codec | None) -> None:
        """Codecs from a re-negotiated SDP; the recording goes on where it was."""
        self.receiver.set_codecs(codec, event)

    def rekey(self, crypto: str) -> None:
        """Decrypt with the key of an (re-)offered ``a=crypto`` line from now on."""
        srtp = SrtpReceiver(crypto)
        self.receiver.srtp = srtp
        self.offered_crypto = crypto
        self.answer_crypto = srtp.answer_line()

    def write(self) -> None:
        """Put what the receiver has decoded into the recording, report key presses."""
        receiver = self.receiver
        while (event := receiver.next_event()) is not None:
            if isinstance(event, AudioReceived):
                if self.recording is None:
                    self.recording = self._open(self.call_id, self.stream_id, self.party, event.sample_rate)
                at = self._wall(event.anchor + event.position / event.sample_rate)
                try:
                    self.recording.write_at(event.position, event.pcm, at=at)
                except MediaError as exc:  # a position the recording refuses (a gap of hours): that audio only
                    self.refused_audio += 1
                    if self.refused_audio == 1:
                        log.warning("sip.audio_refused", extra={"call_id": self.call_id, "stream_id": self.stream_id,
                                                                "error": str(exc)})  # fmt: skip
            else:
                self._on_dtmf(self, event.digit, self._wall(event.at), event.duration_s)

    def _wall(self, monotonic: float) -> datetime:
        if self._epoch is None:
            self._epoch = (monotonic, self._wall_time(monotonic))
        return self._epoch[1] + timedelta(seconds=monotonic - self._epoch[0])

    def close(self, at: datetime) -> ReceiverStats:
        """End of the stream (the call ended at ``at``): take what already reached the socket,
        release the receiver's held packets, write, close the file. Returns the counts."""
        if self.endpoint is not None:
            self.endpoint.close()
        self.receiver.close()
        self.write()
        if self.recording is not None:
            self.recording.close(at)
        stats = self.receiver.stats
        if stats.lost or stats.dropped or stats.late:
            log.info(
                "sip.stream_closed",
                extra={"call_id": self.call_id, "stream_id": self.stream_id, "packets": stats.received,
                       "lost": stats.lost, "late": stats.late, "dropped": stats.dropped,
                       "jitter_ms": round(stats.jitter_s * 1000, 1)},
            )  # fmt: skip
        return stats


class RtpEndpoint(asyncio.DatagramProtocol):
    """The datagram protocol on a stream's port: bytes to the receiver, audio to the recording."""

    def __init__(
        self, stream: RtpStream, sock: socket.socket, monotonic: Callable[[], float], on_media: Callable[[float], None]
    ) -> None:
        self.stream = stream
        self.sock = sock
        "The bound socket, drained at close so packets that beat the BYE still count."
        self.transport: asyncio.DatagramTransport | None = None
        self._receiver = stream.receiver
        self._monotonic = monotonic
        self._on_media = on_media

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        now = self._monotonic()
        receiver = self._receiver
        if receiver.receive(data, addr, now):
            self._on_media(now)
            if receiver.has_output:  # the stream's bookkeeping (live, counters) runs with its output
                self.stream.write()

    def close(self) -> None:
        """Read what is still queued on the socket, then release it."""
        try:
            while True:
                data, addr = self.sock.recvfrom(4096)
                self.datagram_received(data, addr)
        except OSError:
            pass
        if self.transport is not None:
            self.transport.close()
        else:
            self.sock.close()
