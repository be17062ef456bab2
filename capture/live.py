"""Live audio and events while calls run: the hub every live consumer listens to.

The pipeline publishes each call's events and every piece of audio its recordings keep (so a
paused stretch is never sent: :mod:`capture.recording` zeroes it first). Listeners are
consumers on the recorder's own WebSocket endpoint (``GET /api/live``) and, per call, the
connections the recorder opens to a configured ``live_push_url`` (:mod:`capture.livepush`).
A listener may fall behind by at most ``MAX_LAG_S`` seconds (its oldest undelivered message
that old) or ``MAX_QUEUED`` messages; past that it is dropped (and counted), never waited for:
the recording is never affected by who listens, and one listener of every call is not dropped
just because there are many calls.

Framing, the same on both sides (one WebSocket per listener):

* text frames: one JSON object each, ``{"type": ..., "vcon_uuid": ..., "at": RFC 3339, ...}``:
  ``call`` (snapshot: parties, streams, paused, held, muted), ``call_started``, ``party_joined`` (``party``
  index, tel/sip/name), ``party_left``, ``hold``/``unhold``, ``mute``/``unmute``, ``dtmf`` (``digit``),
  ``recording_paused``/``recording_resumed`` (``by``), ``stream`` (a party's audio starts:
  ``party``, ``stream``, ``sample_rate``, ``encoding: "pcm_s16le"``, ``start`` = wall-clock
  time of sample 0), ``call_ended`` (the vCon's uuid: it is being built), ``dropped`` (this
  listener was too slow).
* binary frames: audio. 16-byte header ``b"VCA1"``, party index (u16, big endian), stream
  number within the call (u16), sample position (u64, at the stream's rate, counted from its
  ``start``), then 16-bit little-endian mono PCM. Gaps (loss, DTX, a pause) are just jumps in
  position, as in the recording.
"""

from __future__ import annotations

import asyncio
import json
import logging
import struct
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from capture.clock import SYSTEM
from capture.metrics import Metrics

log = logging.getLogger(__name__)

MAGIC = b"VCA1"
AUDIO_HEADER = struct.Struct(">4sHHQ")
MAX_LAG_S = 10.0
"A listener whose oldest undelivered message is older than this is dropped."
MAX_QUEUED = 200_000
"And one holding this many messages (a bound on memory whatever the rate): ~40 s of 100 calls."


def audio_frame(party: int, stream: int, position: int, pcm: np.ndarray) -> bytes:
    return AUDIO_HEADER.pack(MAGIC, party, stream, position) + pcm.astype("<i2").tobytes()


def parse_audio_frame(data: bytes) -> tuple[int, int, int, np.ndarray]:
    """(party, stream, position, pcm) of a binary frame (for consumers and tests)."""
    magic, party, stream, position = AUDIO_HEADER.unpack_from(data)
    if magic != MAGIC:
        raise ValueError("not a vcon-capture audio frame")
    return party, stream, position, np.frombuffer(data[AUDIO_HEADER.size :], dtype="<i2")


@dataclass(eq=False)
class Listener:
    """One consumer: messages in order, ``None`` when it is dropped or the hub closes."""

    vcon_uuid: str | None
    "Only this call's messages; None: every call."
    audio: bool = True
    "False: events only (no audio is framed for this listener)."
    queue: asyncio.Queue[str | bytes | None] = field(default_factory=asyncio.Queue)
    stamps: deque[float] = field(default_factory=deque)
    "When each queued message was queued (monotonic): how far behind the listener is."
    dropped: bool = False
    sent: int = 0

    async def get(self) -> str | bytes | None:
        """The next message (None: the listener was dropped or the hub closed)."""
        message = await self.queue.get()
        if self.stamps:
            self.stamps.popleft()
        return message

    def wants(self, vcon_uuid: str) -> bool:
        return not self.dropped and (self.vcon_uuid is None or self.vcon_uuid == vcon_uuid)

    def wants_audio(self, vcon_uuid: str) -> bool:
        return self.audio and self.wants(vcon_uuid)


class LiveHub:
    def __init__(self, metrics: Metrics, monotonic: Callable[[], float] = SYSTEM.monotonic) -> None:
        self._metrics = metrics
        self._monotonic = monotonic
        self._listeners: set[Listener] = set()
        self._calls: dict[str, dict[str, Any]] = {}
        "Per live call: the snapshot a listener joining mid-call is given first."
        self.on_call_started: list[Callable[[str, dict[str, Any]], None]] = []
        "Called as each call starts (the push client opens its connection there)."

    def listen(self, vcon_uuid: str | None = None, *, audio: bool = True) -> Listener:
        listener = Listener(vcon_uuid, audio)
        self._listeners.add(listener)
        self._metrics.live_listeners.inc()
        for uuid, snapshot in self._calls.items():
            if listener.wants(uuid):
                self._put(listener, json.dumps({"type": "call", "vcon_uuid": uuid, **snapshot}, default=str))
        return listener

    def forget(self, listener: Listener) -> None:
        if listener in self._listeners:
            self._listeners.discard(listener)
            self._metrics.live_listeners.dec()

    def wants(self, vcon_uuid: str) -> bool:
        """Anyone listening to this call's audio (cheap: audio is only framed for a listened call)."""
        return any(listener.wants_audio(vcon_uuid) for listener in self._listeners)

    # -- what the pipeline publishes ---------------------------------------------------

    def call_started(self, vcon_uuid: str, snapshot: Mapping[str, Any]) -> None:
        self._calls[vcon_uuid] = dict(snapshot)
        for hook in self.on_call_started:
            hook(vcon_uuid, self._calls[vcon_uuid])
        self.event(vcon_uuid, "call_started", **snapshot)

    def snapshots(self) -> list[dict[str, Any]]:
        """Every call in progress as late listeners see it first."""
        return [{"vcon_uuid": uuid, **snapshot} for uuid, snapshot in self._calls.items()]

    def call_ended(self, vcon_uuid: str, **fields: Any) -> None:
        self.event(vcon_uuid, "call_ended", **fields)
        self._calls.pop(vcon_uuid, None)

    def stream_started(self, vcon_uuid: str, stream: dict[str, Any]) -> None:
        """A recording's first audio: kept in the call's snapshot (late listeners learn its rate and
        start from it) and told to whoever listens now."""
        if vcon_uuid in self._calls:
            self._calls[vcon_uuid].setdefault("streams", []).append(stream)
        self.event(vcon_uuid, "stream", **stream)

    def update(self, vcon_uuid: str, key: str, value: Any) -> None:
        """Keep the snapshot a late listener gets current."""
        if vcon_uuid in self._calls:
            self._calls[vcon_uuid][key] = value

    def event(self, vcon_uuid: str, kind: str, **fields: Any) -> None:
        if not any(listener.wants(vcon_uuid) for listener in self._listeners):
            return
        text = json.dumps({"type": kind, "vcon_uuid": vcon_uuid, **fields}, default=str)
        for listener in list(self._listeners):
            if listener.wants(vcon_uuid):
                self._put(listener, text)

    def audio(self, vcon_uuid: str, party: int, stream: int, position: int, pcm: np.ndarray) -> None:
        frame: bytes | None = None
        for listener in list(self._listeners):
            if listener.wants_audio(vcon_uuid):
                frame = frame or audio_frame(party, stream, position, pcm)
                self._put(listener, frame)

    def _put(self, listener: Listener, message: str | bytes) -> None:
        now = self._monotonic()
        if listener.stamps and (now - listener.stamps[0] > MAX_LAG_S or len(listener.stamps) >= MAX_QUEUED):
            self._drop(listener)
            return
        listener.queue.put_nowait(message)
        listener.stamps.append(now)
        listener.sent += 1

    def _drop(self, listener: Listener) -> None:
        """A listener that fell behind: emptied, told, and closed (the recording never waits)."""
        listener.dropped = True
        self._metrics.live_dropped.inc()
        log.warning("live.listener_dropped", extra={"vcon_uuid": listener.vcon_uuid, "sent": listener.sent})
        while not listener.queue.empty():
            listener.queue.get_nowait()
        listener.stamps.clear()
        why = f"too slow: more than {MAX_LAG_S:g} s behind"
        listener.queue.put_nowait(json.dumps({"type": "dropped", "why": why}))
        listener.queue.put_nowait(None)
        self.forget(listener)

    def close(self) -> None:
        for listener in list(self._listeners):
            listener.queue.put_nowait(None)
            self.forget(listener)
