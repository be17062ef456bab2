"""The receive side of one RTP stream, sans-IO: datagrams and arrival times in, positioned
PCM, key presses and counts out. Shared by every adapter that receives RTP itself.

Theory of operation (one :class:`RtpReceiver` per received stream):

- ``receive(data, addr, now)`` takes one datagram and its arrival time (monotonic
  seconds). A datagram from a source the stream does not take
  (:mod:`capture.media.source`: the SDP's address, or the source it latched onto) is
  refused before anything else is done with it; SRTP is unprotected when the stream has a
  key (failures counted apart); RTCP sharing the port (RFC 5761) is skipped; what is not
  RTP, or carries a payload type the signalling did not agree, is dropped and counted.
  It returns True when the packet was this stream's media (the caller's media timeout
  restarts), False otherwise. Refusals and SRTP failures are logged at most once a minute.
- Packets go through a :class:`~capture.media.reorder.ReorderBuffer` per sender (a new
  SSRC flushes the old sender's packets and starts afresh), then the
  :class:`~capture.media.clock.RtpClock` turns (ssrc, timestamp, arrival) into a
  position: gaps keep their true length, what a timestamp cannot be trusted for is placed
  on the arrival clock, and packets held up on the way (a stall of the sender or of this
  process) keep their timestamps. Telephone-events never move the timeline: a key press
  is known by its key-down timestamp and placed on the audio's timeline when reported.
- Audio payloads are queued with their position and decoded every ``batch_packets``
  packets (and at ``close``); RFC 4733 telephone-events become key presses.
- Output is drained with ``next_event()``: :class:`AudioReceived` (sample position, PCM,
  and the arrival time of position 0 for the wall-clock start) and :class:`KeyPressed`.
  The receiver writes nothing: the caller puts the PCM into its recording.
- ``close()`` releases what the reorder buffer holds, decodes the rest, and ends a key
  press in progress. ``stats`` counts received, lost, late, duplicate and dropped packets
  and the interarrival jitter (RFC 3550 section 6.4.1).

Per packet the hot path is a header unpack, a reorder push and a list append.
"""

from __future__ import annotations

import logging
from collections import deque
from dataclasses import dataclass

from capture.errors import RemoteProtocolError
from capture.media.clock import RtpClock
from capture.media.codecs import Codec
from capture.media.decoders import Decoder, Pcm, decoder_for
from capture.media.dtmf import DtmfTracker, KeyPress
from capture.media.reorder import ReorderBuffer
from capture.media.rtp import HEADER, parse_rtp
from capture.media.source import SourcePolicy, Verdict
from capture.media.srtp import SrtpError, SrtpReceiver

log = logging.getLogger(__name__)

BATCH_PACKETS = 25
"Decode every half second of 20 ms packets."
LOG_EVERY_S = 60.0
"Refused sources and SRTP failures are logged once a minute per stream, however many there are."
_RTCP_FIRST, _RTCP_END = 192, 224
"Second-byte values of RTCP packets multiplexed on the RTP port (RFC 5761 section 4)."


@dataclass(frozen=True, slots=True)
class AudioReceived:
    """Decoded audio to place in the stream's recording."""

    position: int
    "Sample position of ``pcm[0]`` (at ``sample_rate``), counted from the stream's position 0."
    pcm: Pcm
    "Mono int16 samples."
    sample_rate: int
    anchor: float
    "Arrival time (monotonic seconds) of position 0: the wall-clock start of the recording."


@dataclass(frozen=True, slots=True)
class KeyPressed:
    """One DTMF key press (RFC 4733), reported once."""

    digit: str
    "0-9, *, #, A-D."
    at: float
    "Key-down time, monotonic seconds on the arrival clock."
    duration_s: float


MediaEvent = AudioReceived | KeyPressed
_Held = tuple[int, int, bytes, float]
"A packet in the reorder buffer: payload type, timestamp, payload, arrival time."


@dataclass(frozen=True, slots=True)
class ReceiverStats:
    """What happened to one stream's packets."""

    received: int
    "Packets taken as this stream's media (duplicates and late ones included)."
    lost: int
    "Sequence numbers never received (summed over senders)."
    late: int
    "Packets that arrived after their hole was given up on (not recorded)."
    duplicates: int
    dropped: int
    "Datagrams that were not RTP, had an unexpected payload type or a bad telephone-event."
    undecodable: int
    "Payloads the codec could not decode."
    jitter_s: float
    "RFC 3550 interarrival jitter estimate of the audio packets."
    reanchors: int
    "Timestamps overruled by the arrival clock (new sender, pause, leap)."
    refused: int = 0
    "Datagrams from a source the stream does not take (:mod:`capture.media.source`)."
    srtp_failed: int = 0
    "SRTP packets that failed authentication or replay protection (forged, replayed, garbled)."
    moves: int = 0
    "Times the stream moved to another source (a re-INVITE, a media server switch, NAT rebinding)."


class RtpReceiver:
    """One received RTP stream: audio ``codec`` plus optional telephone-``event`` codec."""

    def __init__(
        self,
        codec: Codec,
        event: Codec | None = None,
        *,
        srtp: SrtpReceiver | None = None,
        reorder_depth: int = 8,
        batch_packets: int = BATCH_PACKETS,
    ) -> None:
        self.codec = codec
        self.event = event
        self.srtp = srtp
        "Decrypts SRTP/SRTCP when the stream is keyed (SDES); replace it on a re-key."
        self.remote: tuple[str, int] | None = None
        "Source address of the last media packet."
        self.last_received: float | None = None
        "Arrival time of the last media packet."
        self.expected_source: tuple[str, int] | None = None
        "Where the signalling says the packets come from (SDP c= address, m= port); None: unknown."
        self.source = SourcePolicy()
        "Which sources the stream takes packets from; the adapter sets its mode and context."
        self._from: tuple[str, int] | None = None
        "The source taken now (``source.current``), compared with every datagram's."
        self._decoder: Decoder = decoder_for(codec)
        self._clock: RtpClock[_Held] = RtpClock(codec.clock_rate)
        self._audio_pt = codec.payload_type
        self._event_pt = event.payload_type if event is not None else -1
        self._reorder_depth = reorder_depth
        self._reorder: ReorderBuffer[_Held] = ReorderBuffer(reorder_depth)
        self._batch = batch_packets
        self._ssrc: int | None = None
        self._anchor: float | None = None
        self._pending: list[tuple[int, bytes]] = []
        self._dtmf = DtmfTracker()
        self._events: deque[MediaEvent] = deque()
        self._audio_out = False
        self._closed = False
        self._received = 0
        self._dropped = 0
        self._refused = 0
        self._srtp_failed = 0
        self._logged: dict[str, float] = {}
        "When each kind of refusal was last logged."
        self._lost = self._late = self._duplicates = 0
        "Of previous senders' reorder buffers."
        self._transit: float | None = None
        self._jitter = 0.0

    @property
    def sample_rate(self) -> int:
        """Sample rate of the PCM this receiver puts out."""
        return self._decoder.sample_rate

    @property
    def stats(self) -> ReceiverStats:
        r = self._reorder
        return ReceiverStats(
            received=self._received,
            lost=self._lost + r.lost,
            late=self._late + r.late,
            duplicates=self._duplicates + r.duplicates,
            dropped=self._dropped,
            undecodable=self._decoder.undecodable,
            jitter_s=self._jitter / self._clock.clock_rate,
            reanchors=self._clock.reanchors,
            refused=self._refused,
            srtp_failed=self._srtp_failed,
            moves=self.source.moves,
        )

    @property
    def batch_packets(self) -> int:
        """Audio packets decoded together: 1 while someone listens live (latency), more otherwise (cost)."""
        return self._batch

    @batch_packets.setter
    def batch_packets(self, packets: int) -> None:
        self._batch = max(packets, 1)
        if self._pending and len(self._pending) >= self._batch:
            self._decode()

    def set_codecs(self, codec: Codec, event: Codec | None) -> bool:
        """Codecs from a renegotiation; the stream goes on where it was. False (and the old
        codec kept) if the new one would change the sample rate of audio already put out."""
        self.event = event
        self._event_pt = event.payload_type if event is not None else -1
        if codec == self.codec:
            return True
        if self._pending:
            self._decode()
        decoder = decoder_for(codec)
        if self._audio_out and decoder.sample_rate != self._decoder.sample_rate:
            log.warning(
                "media.codec_change_refused",
                extra={"codec": self.codec.name, "offered": codec.name, "why": "it changes the sample rate"},
            )
            return False
        self.codec, self._decoder, self._audio_pt = codec, decoder, codec.payload_type
        if codec.clock_rate != self._clock.clock_rate:
            self._put_all(self._clock.flush())
            # The new clock goes on where the stream is in time: positions never restart at 0.
            self._clock = RtpClock(codec.clock_rate, anchor=self._anchor)
        return True

    # -- input ------------------------------------------------------------------------

    def expect_source(self, address: tuple[str, int] | None) -> None:
        """The signalling's word on where this stream's packets come from (a re-offer may move it)."""
        self.expected_source = address
        self.source.expect(address)

    def receive(self, data: bytes, addr: tuple[str, int], now: float) -> bool:
        """One datagram that arrived at ``now``; True if it was media of this stream."""
        if self._closed:
            return False
        candidate = addr != self._from
        if candidate and self.source.check(addr, now, self.last_received) is Verdict.REFUSE:
            self._refused += 1
            if now - self._logged.get("refused", -LOG_EVERY_S) >= LOG_EVERY_S:
                self._log_refused(addr, now)
            return False
        rtcp = len(data) > 1 and _RTCP_FIRST <= data[1] < _RTCP_END
        if self.srtp is not None:
            try:
                data = self.srtp.unprotect(data, rtcp)
            except SrtpError:
                self._srtp_failed += 1
                if now - self._logged.get("srtp", -LOG_EVERY_S) >= LOG_EVERY_S:
                    self._logged["srtp"] = now
                    log.warning("media.srtp_failed", extra={"source": _text(addr), "so_far": self._srtp_failed})
                return False
        if rtcp:
            return False
        if len(data) > 12 and data[0] == 0x80:  # version 2 without padding, extension or CSRCs: the usual
            _, b1, seq, timestamp, ssrc = HEADER.unpack_from(data)
            pt, payload = b1 & 0x7F, data[12:]
        else:
            try:
                packet = parse_rtp(data)
            except RemoteProtocolError:
                self._dropped += 1
                return False
            pt, seq, timestamp, ssrc, payload = (packet.payload_type, packet.sequence, packet.timestamp,
                                                 packet.ssrc, packet.payload)  # fmt: skip
        if pt == self._audio_pt:
            rate = self._clock.clock_rate
            transit = now * rate - timestamp
            if ssrc == self._ssrc and self._transit is not None:
                d = abs(transit - self._transit)
                if d < rate:  # a wrap or a new timeline is not jitter
                    self._jitter += (d - self._jitter) / 16
            self._transit = transit
        elif pt != self._event_pt:
            self._dropped += 1
            return False
        if candidate:
            self._take(addr, ssrc)
        self._received += 1
        self.last_received = now
        self.remote = addr
        if ssrc != self._ssrc:
            self._new_source(ssrc)
        for item in self._reorder.push(seq, (pt, timestamp, payload, now)):
            self._place(*item)
        return True

    def close(self) -> None:
        """End of the stream: release and decode everything held (drain ``next_event`` after)."""
        if self._closed:
            return
        self._new_source(None)
        self._closed = True
        self._report(self._dtmf.flush())
        if self._pending:
            self._decode()
        if self._refused:
            self._log_refused(None, None)

    # -- output -----------------------------------------------------------------------

    def next_event(self) -> MediaEvent | None:
        """The next output, None when there is none (yet)."""
        return self._events.popleft() if self._events else None

    @property
    def has_output(self) -> bool:
        """Whether :meth:`next_event` has something (while batching, one packet in 25 brings output)."""
        return bool(self._events)

    # -- internals --------------------------------------------------------------------

    def _take(self, addr: tuple[str, int], ssrc: int) -> None:
        """A valid packet from ``addr`` takes the stream (its first source, or a move)."""
        policy = self.source
        previous = policy.current
        moved = policy.taken(addr, ssrc)
        self._from = addr
        if moved and policy.mode != "any":
            log.info("media.source_moved", extra={"source": _text(addr), "ssrc": ssrc, "previous": _text(previous),
                                                  "signalled": _text(policy.signalled)})  # fmt: skip
        elif not moved:
            log.debug("media.source_taken", extra={"source": _text(addr), "ssrc": ssrc, "mode": policy.mode,
                                                   "signalled": _text(policy.signalled)})  # fmt: skip

    def _log_refused(self, addr: tuple[str, int] | None, now: float | None) -> None:
        """Refused sources, once a minute (``addr`` the latest), and a summary at close."""
        policy = self.source
        if now is not None:
            self._logged["refused"] = now
        fields = {"source": _text(addr), "taken": _text(policy.current), "mode": policy.mode,
                  "signalled": _text(policy.signalled), "so_far": self._refused}  # fmt: skip
        if addr is not None:
            log.warning("media.source_refused", extra=fields)
        else:
            log.info("media.sources_refused_total", extra=fields)

    def _new_source(self, ssrc: int | None) -> None:
        """Another sender (new SSRC): its sequence numbers start afresh."""
        old = self._reorder
        for item in old.flush():
            self._place(*item)
        self._put_all(self._clock.flush())
        self._lost += old.lost
        self._late += old.late
        self._duplicates += old.duplicates
        self._reorder = ReorderBuffer(self._reorder_depth)
        self._ssrc = ssrc

    def _place(self, pt: int, timestamp: int, payload: bytes, arrival: float) -> None:
        assert self._ssrc is not None
        if pt == self._event_pt and self._anchor is not None:
            # Every packet of a key press carries its key-down timestamp, behind the audio by as long as
            # the key is held (more when the packets come late): a press is known by that timestamp,
            # placed on the audio's timeline when reported (_report), and never moves the timeline.
            self._key_event(timestamp, payload)
            return
        self._put_all(self._clock.place(self._ssrc, timestamp, arrival, (pt, timestamp, payload, arrival)))

    def _put_all(self, placed: list[tuple[int, _Held]]) -> None:
        for position, (pt, timestamp, payload, arrival) in placed:
            if self._anchor is None:
                self._anchor = arrival - position / self._clock.clock_rate
            if pt == self._event_pt:
                self._key_event(timestamp, payload)
                continue
            self._pending.append((position, payload))
            if len(self._pending) >= self._batch:
                self._decode()

    def _key_event(self, timestamp: int, payload: bytes) -> None:
        try:
            presses = self._dtmf.feed(timestamp, payload)
        except RemoteProtocolError:
            self._dropped += 1
            return
        self._report(presses)

    def _report(self, presses: list[KeyPress]) -> None:
        rate = self._clock.clock_rate
        for press in presses:
            assert self._anchor is not None
            position = self._clock.peek(press.timestamp)
            self._events.append(KeyPressed(press.digit, self._anchor + position / rate, press.duration / rate))

    def _decode(self) -> None:
        batch, self._pending = self._pending, []
        assert self._anchor is not None
        rate = self._decoder.sample_rate
        for position, pcm in self._decoder.decode(batch):
            self._events.append(AudioReceived(position, pcm, rate, self._anchor))
            self._audio_out = True


def _text(addr: tuple[str, int] | tuple[str, int, int, int] | None) -> str | None:
    return None if addr is None else f"[{addr[0]}]:{addr[1]}" if ":" in addr[0] else f"{addr[0]}:{addr[1]}"
