"""One WHIP session: a participant's RTCPeerConnection and the recording of its audio.

Life: ``negotiate`` (offer in, answer out, tracks collected but not yet pulled), then
``start`` once the participant has joined its room, then ``close`` exactly once, for
whichever comes first: DELETE, the peer connection turning ``failed``/``closed``, no
audio within the setup timeout, audio stopping for the media timeout, or shutdown.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import MediaStreamTrack

from adapters.webrtc import jitter
from adapters.webrtc.identity import Identity
from adapters.webrtc.recorder import RATE, TrackRecorder
from capture.adapter import Capture
from capture.errors import RemoteProtocolError
from capture.events import MediaUnavailable, PartyLeft
from capture.logs import call_scope

log = logging.getLogger(__name__)

CLOSE_TIMEOUT_S = 5.0
"Bound on tearing down a peer connection and on a recorder task finishing after cancel."


class Session:
    def __init__(
        self,
        sid: str,
        room: str,
        identity: Identity,
        capture: Capture,
        *,
        configuration: RTCConfiguration,
        reorder_depth: int,
        setup_timeout_s: float,
        media_timeout_s: float,
        on_audio: Callable[[Session], None],
        on_closed: Callable[[Session], Awaitable[None]],
    ) -> None:
        self.sid = sid
        self.room = room
        self.identity = identity
        self.capture = capture
        self.call_id: str | None = None
        "Set when the session joins its room's call."
        self.pc = RTCPeerConnection(configuration)
        self._reorder_depth = reorder_depth
        self._setup_timeout_s = setup_timeout_s
        self._media_timeout_s = media_timeout_s
        self._on_audio = on_audio
        self._on_closed = on_closed
        self._tracks: list[MediaStreamTrack] = []
        self._buffers: dict[MediaStreamTrack, jitter.AudioReorderBuffer] = {}
        self._recorders: list[TrackRecorder] = []
        self._tasks: list[asyncio.Task[str]] = []
        self._closing: asyncio.Task[None] | None = None
        self.pc.on("track", self._tracks.append)
        self.pc.on("connectionstatechange", self._on_state)

    @property
    def party(self) -> str:
        return self.sid

    @property
    def closed(self) -> bool:
        return self._closing is not None

    async def negotiate(self, offer: str) -> str:
        """The SDP answer (with all candidates); RemoteProtocolError if aiortc refuses the offer."""
        try:
            await self.pc.setRemoteDescription(RTCSessionDescription(sdp=offer, type="offer"))
            audio = [t for t in self.pc.getTransceivers() if t.kind == "audio" and t.receiver.track is not None]
            if not audio or not self._tracks:
                raise RemoteProtocolError("offer has no audio codec in common (opus, G722, PCMU, PCMA)")
            for transceiver in self.pc.getTransceivers():
                if transceiver in audio:
                    buffer = jitter.install(transceiver.receiver, self._reorder_depth, self.capture.now)
                    self._buffers[transceiver.receiver.track] = buffer
                else:
                    transceiver.direction = "inactive"  # video is not recorded: do not receive and decode it
            await self.pc.setLocalDescription(await self.pc.createAnswer())
        except RemoteProtocolError:
            raise
        except Exception as exc:  # aiortc raises ValueError, OperationError, KeyError... on odd SDP
            raise RemoteProtocolError(f"offer rejected: {exc or type(exc).__name__}") from None
        return self.pc.localDescription.sdp

    def _scope(self) -> contextlib.AbstractContextManager[None]:
        """Log lines (and tasks) of this session carry its call's vCon uuid."""
        return call_scope(self.capture.vcon_uuid(self.call_id) if self.call_id else None)

    def start(self, call_id: str) -> None:
        """Begin pulling audio into the call's recordings."""
        self.call_id = call_id
        with self._scope():
            self._start_recorders(call_id)

    def _start_recorders(self, call_id: str) -> None:
        for n, track in enumerate(t for t in self._tracks if t.kind == "audio"):
            stream_id = f"{self.sid}-{n}"
            recording = self.capture.open_recording(call_id, stream_id, self.party, RATE)
            buffer = self._buffers[track]
            recorder = TrackRecorder(
                track,
                recording,
                lambda b=buffer: b.first_arrival or self.capture.now(),
                setup_timeout_s=self._setup_timeout_s,
                media_timeout_s=self._media_timeout_s,
                on_first_frame=lambda: self._on_audio(self),
                clock=self.capture.monotonic,
            )
            recorder.drain()  # anything decoded before now goes first, then frames come directly
            buffer.sink = recorder.deliver
            self._recorders.append(recorder)
            task = asyncio.create_task(recorder.run(), name=f"webrtc-record-{stream_id}")
            task.add_done_callback(self._on_recorder_done)
            self._tasks.append(task)

    @property
    def frames(self) -> int:
        return sum(r.frames for r in self._recorders)

    def _on_recorder_done(self, task: asyncio.Task[str]) -> None:
        if task.cancelled() or not all(t.done() for t in self._tasks):
            return
        if (error := task.exception()) is not None:
            with self._scope():
                fields = {"call_id": self.call_id, "party": self.sid, "error": str(error)}
                log.error("webrtc.recording_failed", extra=fields)
            self.close(f"recording failed: {error}")
        else:
            self.close(task.result())

    async def _on_state(self) -> None:
        if self.pc.connectionState in ("failed", "closed"):
            self.close(f"connection {self.pc.connectionState}")

    def close(self, reason: str) -> asyncio.Task[None]:
        """End the session (idempotent); the returned task finishes when it is torn down."""
        if self._closing is None:
            with self._scope():
                self._closing = asyncio.get_running_loop().create_task(
                    self._close(reason), name=f"webrtc-close-{self.sid}"
                )
        return self._closing

    async def _close(self, reason: str) -> None:
        for task in self._tasks:
            task.cancel()
        if self._tasks:
            await asyncio.wait(self._tasks, timeout=CLOSE_TIMEOUT_S)
        for recorder in self._recorders:
            recorder.drain()
        now = self.capture.now()
        lost = sum(b.reorder.lost for b in self._buffers.values())
        received = sum(b.reorder.received for b in self._buffers.values())
        self.capture.metrics.rtp_packets("webrtc", received, lost)
        with self._scope():
            log.info(
                "webrtc.participant_left",
                extra={
                    "call_id": self.call_id,
                    "party": self.sid,
                    "room": self.room,
                    "reason": reason,
                    "frames": self.frames,
                    "packets_lost": lost,
                    "packets": lost + received,
                },
            )
        if self.call_id is not None:
            for recorder in self._recorders:
                if recorder.recording.close(now) is None:
                    self.capture.emit(
                        MediaUnavailable(
                            call_id=self.call_id, at=now, stream_id=recorder.recording.stream_id, reason=reason
                        )
                    )
            self.capture.emit(PartyLeft(call_id=self.call_id, at=now, party=self.party, reason=reason))
        try:
            await asyncio.wait_for(self.pc.close(), CLOSE_TIMEOUT_S)
        except TimeoutError:
            with self._scope():
                log.warning("webrtc.close_timed_out", extra={"call_id": self.call_id, "party": self.sid})
        await self._on_closed(self)
