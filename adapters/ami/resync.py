"""After a (re)connect or a restart: what the PBX still has, and one owner per call.

* Calls a previous run had open come back as :class:`~capture.adapter.ResumedCall`
  (:meth:`Resync.resume`): the tracker knows them before the listing arrives, so their
  channels join the same call (no second ``CallStarted``, the journal's answer time).
* ``CoreShowChannels`` lists the channels up now (:meth:`Resync.apply`). Channels we knew that
  are gone hung up while we were away: at the moment the connection dropped (the client
  knows it), not when it came back. When Asterisk itself restarted (``FullyBooted`` with an
  uptime shorter than our absence), no ``Cdr`` will come for them: they finish at once.
* A channel first seen in a listing may already be recorded (our MixMonitor from before a
  restart, or the dialplan's), and its call may have been answered while nobody listened:
  the tracker asks (:class:`~adapters.ami.commands.InspectChannel`, ``Getvar``) before it
  starts a MixMonitor, and takes the answer time from ``CDR(answer,u)``. A listing has no
  Timestamp, so nothing in it is dated "now" when the PBX can say better.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from adapters.ami.commands import INSPECTED, MIXMONITOR_VAR, InspectChannel, Output
from adapters.ami.fields import lost
from adapters.ami.protocol import Message
from adapters.ami.state import Call, Channel, Hangup, Recording
from capture.adapter import ResumedCall

if TYPE_CHECKING:
    from adapters.ami.tracker import CallTracker

GONE = "hung up while AMI was disconnected"
GONE_WHILE_DOWN = "hung up while the recorder was down"


def hms(value: str | None) -> float | None:
    """``00:01:05`` -> 65.0 (CoreShowChannel ``Duration``); also plain seconds."""
    if not value:
        return None
    try:
        parts = [float(p) for p in value.split(":")]
    except ValueError:
        return None
    seconds = 0.0
    for part in parts:
        seconds = seconds * 60 + part
    return seconds


class Resync:
    def __init__(self, tracker: CallTracker) -> None:
        self.tracker = tracker
        self.lost_at: datetime | None = None
        self.resumed: dict[str, ResumedCall] = {}

    def resume(self, calls: list[ResumedCall]) -> None:
        book = self.tracker.book
        for resumed in calls:
            if resumed.call_id in book.calls:
                continue
            call = Call(resumed.call_id, resumed.started_at, answered_at=resumed.answered_at, resumed=True)
            book.calls[resumed.call_id] = call
            self.resumed[resumed.call_id] = resumed

    def lost(self, at: datetime) -> None:
        if self.lost_at is None:
            self.lost_at = at

    def booted(self, msg: Message, now: datetime) -> None:
        """``FullyBooted`` after a login: a small ``Uptime`` means Asterisk restarted while we were away."""
        uptime = hms(msg.get("Uptime"))
        if uptime is None or self.lost_at is None:
            return
        if uptime < (now - self.lost_at).total_seconds():
            for call in self.tracker.book.calls.values():
                call.quick_end = True

    def apply(self, listing: list[Message], now: datetime, known: set[str] | None = None) -> list[Output]:
        """``known``: the channels tracked when the listing was asked for. Only those can be
        gone: one first seen since came after Asterisk took the listing (the live events
        that follow its reply may be handled before the listing is)."""
        tracker, book = self.tracker, self.tracker.book
        out: list[Output] = []
        gone_at = self.lost_at or now
        present = {m.get("Uniqueid") for m in listing}
        for chan in list(book.channels.values()):
            if known is not None and chan.uniqueid not in known:
                continue
            if not chan.hung_up and chan.uniqueid not in present:
                call = book.calls[chan.linkedid]
                tracker.hangup(call, chan, lost(GONE), max(gone_at, call.started_at), now, out)
        for msg in listing:
            uniqueid, linkedid = msg.get("Uniqueid") or "", msg.get("Linkedid") or ""
            if linkedid not in book.calls and (age := hms(msg.get("Duration"))) is not None:
                start = now - timedelta(seconds=age)
                book.start_hints[linkedid] = min(start, book.start_hints.get(linkedid, start))
            if uniqueid not in book.channels and uniqueid not in book.finished:
                book.listing_new.add(uniqueid)
                out += tracker.handle(msg, now)
                book.listing_new.discard(uniqueid)
                new = book.channels.get(uniqueid)
                if new is not None:
                    self._new_channel(book.calls[new.linkedid], new, msg, now, out)
            else:
                out += tracker.handle(msg, now)
        book.start_hints.clear()
        for call_id, resumed in list(self.resumed.items()):
            taken = book.calls.get(call_id)
            if taken is not None and not taken.live():
                self._gone_while_down(taken, resumed, now)
        self.resumed.clear()
        self.lost_at = None
        return out

    def listed(self, call: Call, chan: Channel, msg: Message, now: datetime, out: list[Output]) -> None:
        """A ``CoreShowChannel`` for a channel the tracker already followed."""
        if chan.seen_at_resync:
            return  # first seen in this listing: _new_channel takes it in
        bridge = msg.get("BridgeId")
        if not bridge:
            return
        if bridge not in chan.bridges:
            self.tracker.bridge_enter(call, chan, bridge, now, out)
        if chan.up and chan.party and call.answered_at is None:
            # Answered while we were away: Asterisk's CDR knows when.
            call.dialing.clear()
            call.answer_fallback = now
            out.append(InspectChannel(call.call_id, chan.uniqueid, chan.name, ("CDR(answer,u)",)))

    def _new_channel(self, call: Call, chan: Channel, msg: Message, now: datetime, out: list[Output]) -> None:
        chan.seen_at_resync = True
        bridge = msg.get("BridgeId")
        if chan.party is not None:
            self.tracker.book.ensure_party(call, chan, now, out)
        if not bridge:
            chan.seen_at_resync = False
            return
        bridged_for = hms(msg.get("BridgedDuration"))
        since = now - timedelta(seconds=bridged_for) if bridged_for is not None else call.answered_at or now
        self.tracker.book.bridges.enter(chan, bridge, since)
        if chan.up and call.answered_at is None:
            call.dialing.clear()
            call.answer_fallback = since
        out.append(InspectChannel(call.call_id, chan.uniqueid, chan.name, INSPECTED))

    def inspected(self, call_id: str, uniqueid: str, values: dict[str, str], now: datetime) -> list[Output]:
        out: list[Output] = []
        book = self.tracker.book
        call, chan = book.calls.get(call_id), book.channels.get(uniqueid)
        if call is None or chan is None:
            return out
        answered = hms(values.get("CDR(answer,u)"))
        if answered and call.answered_at is None:
            self.tracker.answer(call, datetime.fromtimestamp(answered, UTC), out)
        if not chan.seen_at_resync:
            return out
        chan.seen_at_resync = False
        file = values.get("MIXMONITOR_FILENAME") or chan.mixmonitor_file
        if file or values.get(MIXMONITOR_VAR):
            since = min((s.start for s in chan.spans), default=now)
            if call.resumed and call.answered_at is not None:
                since = call.answered_at  # our MixMonitor began when the call was bridged
            self.tracker.monitors.adopt(call, chan, file or None, since)
        elif chan.bridges and not chan.hung_up:
            self.tracker.monitors.bridged(call, chan, now, out)
        return out

    def _gone_while_down(self, call: Call, resumed: ResumedCall, now: datetime) -> None:
        """A resumed call that ended while no recorder listened: ended at its last known moment,
        with whatever files its MixMonitors left."""
        placeholder = Channel(call.call_id, "", call.call_id, None, hung_up=True, hung_up_at=resumed.last_event_at)
        call.channels.setdefault(call.call_id, placeholder)
        since = resumed.answered_at or resumed.started_at
        call.recordings.append(Recording("mixmonitor-1", None, placeholder, since))
        call.hangups.append(Hangup(placeholder, 0, GONE_WHILE_DOWN, resumed.last_event_at))
        call.quick_end = True
        self.tracker.ending(call, resumed.last_event_at, now)
