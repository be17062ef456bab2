"""The receive side of one RTP stream: socket -> reorder -> timestamp-true placement -> WAV.

Per packet the hot path parses the header, reorders by sequence number and queues the
payload with its position; payloads are decoded and written in batches. Telephone-events
become key presses reported through ``on_dtmf``.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from collections.abc import Callable
from datetime import datetime, timedelta

import pylibsrtp

from adapters.sip.codecs import Decoder, decoder_for
from adapters.sip.sdp import Codec
from adapters.sip.srtp import SrtpReceiver
from capture.errors import RemoteProtocolError
from capture.media.clock import RtpClock
from capture.media.dtmf import DtmfTracker, KeyPress
from capture.media.reorder import ReorderBuffer
from capture.media.rtp import RtpPacket, is_rtcp, parse_rtp
from capture.recording import StreamRecording

log = logging.getLogger(__name__)

BATCH_PACKETS = 25
"Decode and write every half second of 20 ms packets."


class RtpStream(asyncio.DatagramProtocol):
    """One received stream of a call; the socket is bound by the caller."""

    def __init__(
        self,
        *,
        call_id: str,
        stream_id: str,
        party: str,
        codec: Codec,
        event: Codec | None,
        open_recording: Callable[[str, str, str, int], StreamRecording],
        now: Callable[[], datetime],
        on_dtmf: Callable[[RtpStream, str, datetime, float], None],
        reorder_depth: int = 8,
    ) -> None:
        self.call_id = call_id
        self.stream_id = stream_id
        self.party = party
        self.recording: StreamRecording | None = None
        self.packets = 0
        self.dropped = 0
        "Packets that were not RTP, failed SRTP, or had an unexpected payload type."
        self.last_rx = time.monotonic()
        self.received_any = False
        self.remote: tuple[str, int] | None = None
        self.port = 0
        "Local port, set once bound."
        self.answer_crypto: str | None = None
        "Our a=crypto line in the answer (SDES-SRTP streams)."
        self._open = open_recording
        self._now = now
        self._on_dtmf = on_dtmf
        self._srtp: SrtpReceiver | None = None
        self.offered_crypto: str | None = None
        "The offer's a=crypto line in use (SDES-SRTP streams)."
        self._reorder_depth = reorder_depth
        self._reorder: ReorderBuffer[tuple[RtpPacket, float]] = ReorderBuffer(reorder_depth)
        self._ssrc: int | None = None
        self.lost = 0
        "Sequence numbers never received (summed over SSRCs)."
        self._dtmf = DtmfTracker()
        self._pending: list[tuple[int, bytes]] = []
        self._anchor: datetime | None = None
        "Wall-clock time of position 0, from the first packet's arrival."
        self.transport: asyncio.DatagramTransport | None = None
        self.sock: socket.socket | None = None
        "The bound socket, drained at close so packets that beat the BYE still count."
        self.codec = codec
        self.event = event
        self._decoder: Decoder = decoder_for(codec)
        self.clock = RtpClock(codec.clock_rate)

    def set_codecs(self, codec: Codec, event: Codec | None) -> None:
        """Codecs from a re-negotiated SDP; the recording goes on where it was."""
        self.event = event
        if codec == self.codec:
            return
        if self._pending:
            self._decode()
        decoder = decoder_for(codec)
        if self.recording is not None and decoder.sample_rate != self.recording.sample_rate:
            log.warning("codec change %s %s: %s -> %s changes the sample rate; kept %s",
                        self.call_id, self.stream_id, self.codec.name, codec.name, self.codec.name)  # fmt: skip
            return
        self.codec, self._decoder = codec, decoder
        if codec.clock_rate != self.clock.clock_rate:
            self.clock = RtpClock(codec.clock_rate)

    def rekey(self, crypto: str) -> None:
        """Decrypt with the key of an (re-)offered ``a=crypto`` line from now on."""
        self._srtp = SrtpReceiver(crypto)
        self.offered_crypto = crypto
        self.answer_crypto = self._srtp.answer_line()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        now = time.monotonic()
        rtcp = is_rtcp(data)
        if self._srtp is not None:
            try:
                data = self._srtp.unprotect(data, rtcp)
            except pylibsrtp.Error:
                self.dropped += 1
                return
        if rtcp:
            return
        try:
            packet = parse_rtp(data)
        except RemoteProtocolError:
            self.dropped += 1
            return
        pt = packet.payload_type
        if pt != self.codec.payload_type and (self.event is None or pt != self.event.payload_type):
            self.dropped += 1
            return
        self.packets += 1
        self.last_rx = now
        self.remote = addr
        self.received_any = True
        if packet.ssrc != self._ssrc:
            self._new_source(packet.ssrc)
        for released, arrival in self._reorder.push(packet.sequence, (packet, now)):
            self._place(released, arrival)

    def _new_source(self, ssrc: int) -> None:
        """Another sender (new SSRC): its sequence numbers start afresh."""
        for packet, arrival in self._reorder.flush():
            self._place(packet, arrival)
        self.lost += self._reorder.lost
        self._reorder = ReorderBuffer(self._reorder_depth)
        self._ssrc = ssrc

    def _place(self, packet: RtpPacket, arrival: float) -> None:
        position = self.clock.position(packet.ssrc, packet.timestamp, arrival)
        if self._anchor is None:
            ticks = timedelta(seconds=position / self.clock.clock_rate + time.monotonic() - arrival)
            self._anchor = self._now() - ticks
        if self.event is not None and packet.payload_type == self.event.payload_type:
            try:
                presses = self._dtmf.feed(position, packet.payload)
            except RemoteProtocolError:
                self.dropped += 1
                return
            self._report(presses)
            return
        self._pending.append((position, packet.payload))
        if len(self._pending) >= BATCH_PACKETS:
            self._decode()

    def _report(self, presses: list[KeyPress]) -> None:
        for press in presses:
            seconds = press.timestamp / self.clock.clock_rate
            at = self._anchor + timedelta(seconds=seconds) if self._anchor else self._now()
            self._on_dtmf(self, press.digit, at, press.duration / self.clock.clock_rate)

    def _decode(self) -> None:
        batch, self._pending = self._pending, []
        decoded = self._decoder.decode(batch)
        if not decoded:
            return
        if self.recording is None:
            self.recording = self._open(self.call_id, self.stream_id, self.party, self._decoder.sample_rate)
        for position, pcm in decoded:
            self.recording.write_at(
                position, pcm, at=self._anchor + timedelta(seconds=position / self._decoder.sample_rate)
            )

    def _drain(self) -> None:
        if self.sock is None:
            return
        try:
            while True:
                data, addr = self.sock.recvfrom(4096)
                self.datagram_received(data, addr)
        except OSError:
            return

    def close(self, at: datetime) -> None:
        """End of the stream: release what the reorder buffer holds, write, close the file."""
        self._drain()
        if self.transport is not None:
            self.transport.close()
        elif self.sock is not None:
            self.sock.close()
        self._new_source(-1)
        self._report(self._dtmf.flush())
        if self._pending:
            self._decode()
        if self.recording is not None:
            self.recording.close(at)
        if self.lost or self.dropped:
            log.info(
                "stream closed %s %s: %d packets, %d lost, %d dropped",
                self.call_id, self.stream_id, self.packets, self.lost, self.dropped,
            )  # fmt: skip
