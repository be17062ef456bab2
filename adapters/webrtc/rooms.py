"""Rooms: everyone who posts to the same ``/whip/{room}`` is one conversation, one vCon.

A room's call starts with its first participant and ends ``linger_s`` after its last one
left; someone joining during the linger continues the same call. A room nobody ever sent
audio to ends as a failed call (the vCon says so in an ``incomplete`` dialog).
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field

from adapters.webrtc.session import Session
from capture.adapter import Capture
from capture.events import CallAnswered, CallEnded, CallStarted, Disposition, PartyJoined
from capture.logs import call_scope

log = logging.getLogger(__name__)


@dataclass(eq=False)
class Room:
    name: str
    call_id: str
    sessions: dict[str, Session] = field(default_factory=dict)
    heard: bool = False
    "Some participant's audio arrived."
    last_left: str | None = None
    linger: asyncio.TimerHandle | None = None


class Rooms:
    def __init__(self, capture: Capture, *, linger_s: float, on_call_started: Callable[[str], None]) -> None:
        self.capture = capture
        self.linger_s = linger_s
        self._on_call_started = on_call_started
        self._rooms: dict[str, Room] = {}

    def __len__(self) -> int:
        return len(self._rooms)

    def participants(self, name: str) -> int:
        room = self._rooms.get(name)
        return len(room.sessions) if room else 0

    def join(self, session: Session) -> str:
        """Add a negotiated session to its room (starting the room's call); returns the call id."""
        room = self._rooms.get(session.room)
        now = self.capture.now()
        if room is None:
            room = Room(session.room, f"webrtc-{session.room}-{secrets.token_hex(4)}")
            self._rooms[room.name] = room
            self.capture.emit(
                CallStarted(call_id=room.call_id, at=now, source="webrtc", subject=room.name, application="webrtc")
            )
            self._on_call_started(room.call_id)
            with call_scope(self.capture.vcon_uuid(room.call_id)):
                log.info("webrtc.room_opened", extra={"call_id": room.call_id, "room": room.name})
        if room.linger is not None:
            room.linger.cancel()
            room.linger = None
        room.sessions[session.sid] = session
        identity = session.identity
        self.capture.emit(
            PartyJoined(
                call_id=room.call_id,
                at=now,
                party=session.party,
                name=identity.name,
                tel=identity.tel,
                mailto=identity.mailto,
            )
        )
        return room.call_id

    def heard(self, session: Session) -> None:
        """A participant's first audio frame arrived."""
        room = self._rooms.get(session.room)
        if room is None or room.call_id != session.call_id or room.heard:
            return
        room.heard = True
        self.capture.emit(CallAnswered(call_id=room.call_id, at=self.capture.now()))

    def leave(self, session: Session) -> None:
        """A joined session closed; the room's linger starts when it was the last one."""
        room = self._rooms.get(session.room)
        if room is None or room.sessions.pop(session.sid, None) is None or room.sessions:
            return
        room.last_left = session.party
        loop = asyncio.get_running_loop()
        room.linger = loop.call_later(self.linger_s, self._end, room, "last participant left")

    def _end(self, room: Room, cause: str) -> None:
        if self._rooms.get(room.name) is not room:
            return
        del self._rooms[room.name]
        if room.linger is not None:
            room.linger.cancel()
        disposition = None if room.heard else Disposition.FAILED
        if not room.heard:
            cause = f"{cause}; no audio was received"
        self.capture.emit(
            CallEnded(
                call_id=room.call_id,
                at=self.capture.now(),
                disposition=disposition,
                cause=cause,
                ended_by=room.last_left,
            )
        )
        with call_scope(self.capture.vcon_uuid(room.call_id)):
            log.info("webrtc.room_closed", extra={"call_id": room.call_id, "room": room.name, "cause": cause})

    async def close_all(self, reason: str) -> None:
        """Shutdown: close every session, then end every room at once."""
        sessions = [s for room in self._rooms.values() for s in room.sessions.values()]
        if sessions:
            await asyncio.gather(*(s.close(reason) for s in sessions))
        for room in list(self._rooms.values()):
            self._end(room, reason)
