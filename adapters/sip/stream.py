"""A received stream as a SIP call drives it: :class:`adapters.sip.rtp.RtpStream` plus what the
operator sees while the call runs and how soon live listeners hear it.

- Live latency: while someone listens to the call live (``recording.listened()``), every
  packet is decoded and placed in the recording as it arrives; otherwise packets are decoded
  in batches (cheaper). The stream's first packet is always decoded at once, so its recording
  (and with it whether anyone listens) exists from the first packet on.
- Counters: about once a second (on the packets' own arrival clock, no timer),
  ``recording.counters`` gets the stream's packets, lost, dropped and jitter_ms, which the
  pipeline shows with the call while it runs (operator console, live snapshot).
"""

from __future__ import annotations

from typing import Any, Protocol

from adapters.sip.rtp import RtpStream
from capture.media.receiver import BATCH_PACKETS
from capture.recording import StreamRecording


class Opener(Protocol):
    """``Capture.open_recording``."""

    def __call__(self, call_id: str, stream_id: str, party: str, sample_rate: int, *,
                 heard: tuple[str, ...] = ()) -> StreamRecording: ...  # fmt: skip


COUNT_EVERY_S = 1.0
"How often (seconds of arrival time) the counters shown with a running call are refreshed."


class CallStream(RtpStream):
    """An RTP stream of a call: batches while nobody listens, packet by packet while someone does.

    ``heard``: every party whose voice the stream carries (its sender first); more than one for
    a mixed stream, whose recording's channel then lists them all (:meth:`hear` adds one that
    joins the mix later)."""

    def __init__(self, *, heard: tuple[str, ...], open_recording: Opener, **kwargs: Any) -> None:
        super().__init__(open_recording=self._open_recording, **kwargs)
        self.heard = heard
        self._opener = open_recording
        self.live: bool | None = None
        "Whether audio goes packet by packet now (None: not known yet, the first packet goes at once)."
        self._counted_at: float | None = None
        self.receiver.batch_packets = 1

    def hear(self, keys: tuple[str, ...]) -> None:
        """More parties are heard on this stream (a mixed stream someone joined)."""
        heard = tuple(dict.fromkeys(self.heard + keys))
        if heard != self.heard:
            self.heard = heard
            if self.recording is not None:
                self.recording.heard = heard

    def _open_recording(self, call_id: str, stream_id: str, party: str, sample_rate: int) -> StreamRecording:
        if len(self.heard) > 1:
            return self._opener(call_id, stream_id, party, sample_rate, heard=self.heard)
        return self._opener(call_id, stream_id, party, sample_rate)

    def write(self) -> None:
        recording = self.recording
        if recording is not None:
            live = recording.listened()
            if live is not self.live:
                self.live = live
                self.receiver.batch_packets = 1 if live else BATCH_PACKETS
        super().write()
        at = self.receiver.last_received
        if self.recording is not None and at is not None:
            if self._counted_at is None or at - self._counted_at >= COUNT_EVERY_S:
                self._counted_at = at
                self.count()

    def count(self) -> None:
        """Put the receiver's counts where the running call is shown."""
        if self.recording is None:
            return
        stats = self.receiver.stats
        self.recording.counters.update(packets=stats.received, lost=stats.lost, dropped=stats.dropped,
                                       jitter_ms=round(stats.jitter_s * 1000))  # fmt: skip
