"""Sans-IO call tracker: AMI messages (and the time) in, capture events and commands out.

A call is everything that shares a ``Linkedid``: the caller's channel, the dialled legs, the
``Local`` hops between them, the legs a transfer adds. The tracker routes each event to the
room that owns its concern: :class:`~adapters.ami.channels.ChannelBook` (channels, calls,
parties, bridges), :class:`~adapters.ami.transfers.Transfers`, :mod:`~adapters.ami.dispositions`
(how the call ended, its CDR) and :class:`~adapters.ami.commands.Monitors` (MixMonitor).

When the last channel of a call hangs up the call waits ``cdr_wait_s`` for its ``Cdr`` events
(they may come after the Hangup); :meth:`CallTracker.next_deadline` says when, and
:meth:`CallTracker.tick` then finishes it with a :class:`~adapters.ami.commands.FinishCall`
command: the I/O layer picks up the MixMonitor files it names, reports them
(``MediaRecorded`` / ``MediaUnavailable``) and then emits the ``CallEnded`` it carries.

Restarts and reconnects (:mod:`~adapters.ami.resync`): times always come from the PBX
(event ``Timestamp``, ``CDR(answer)``), never from when the tracker learnt of something.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection
from datetime import datetime, timedelta

from adapters.ami import dispositions
from adapters.ami.channels import ChannelBook
from adapters.ami.commands import FinishCall, Monitors, Output
from adapters.ami.fields import as_int, event_time, lost
from adapters.ami.protocol import Message
from adapters.ami.resync import Resync
from adapters.ami.state import Call, Channel, Hangup
from adapters.ami.transfers import Transfers
from capture.adapter import ResumedCall
from capture.events import CallAnswered, CallEnded, DtmfReceived, HoldChanged, RecordingPaused, RecordingResumed
from capture.logs import call_scope

log = logging.getLogger(__name__)


def _no_uuid(call_id: str) -> str | None:
    return None


class CallTracker:
    """Follows every call on the PBX; see the module docstring.

    ``vcon_uuid`` (the capture's) lets the tracker's log lines about a call carry its uuid;
    channels of ``recorder_endpoints`` (``PJSIP/vcon-recorder``) are never part of a call.
    """

    def __init__(
        self,
        *,
        mixmonitor: str = "dialplan",
        mixmonitor_options: str = "b",
        split_directions: bool = False,
        dialplan_options: str = "b",
        cdr_wait_s: float = 2.0,
        domain: str | None = None,
        recorder_endpoints: Collection[str] = (),
        vcon_uuid: Callable[[str], str | None] = _no_uuid,
    ) -> None:
        self.cdr_wait = timedelta(seconds=cdr_wait_s)
        scope = lambda call_id: call_scope(vcon_uuid(call_id))  # noqa: E731
        self.book = ChannelBook(scope, domain=domain, ignore=recorder_endpoints)
        self.transfers = Transfers(self.book)
        self.monitors = Monitors(
            self.book.bridges,
            mixmonitor=mixmonitor,
            options=mixmonitor_options,
            split_directions=split_directions,
            dialplan_options=dialplan_options,
        )
        self.resyncs = Resync(self)
        self._flushing: dict[str, datetime] = {}
        "Calls waiting for their Cdr events, and until when."

    # -- queries -------------------------------------------------------------------------

    @property
    def active_calls(self) -> list[str]:
        return list(self.book.calls)

    def next_deadline(self) -> datetime | None:
        """When :meth:`tick` next has something to do."""
        return min(self._flushing.values()) if self._flushing else None

    # -- input ---------------------------------------------------------------------------

    def handle(self, msg: Message, now: datetime) -> list[Output]:
        """One AMI event from the live stream."""
        out: list[Output] = []
        name = msg.event
        at = event_time(msg, now)
        match name:
            case "Cdr":
                dispositions.file_cdr(self.book, msg)
                return out
            case "BlindTransfer":
                self.transfers.blind(msg, at, out)
                return out
            case "AttendedTransfer":
                self.transfers.attended(msg, at, out)
                return out
            case "BridgeDestroy":
                self.book.bridges.destroyed(msg.get("BridgeUniqueid") or "")
                return out
            case "FullyBooted":
                self.resyncs.booted(msg, now)
                return out
        book = self.book
        chan = book.touch(msg, at, out)
        if chan is None:
            return out
        call = book.calls[chan.linkedid]
        if self._flushing:
            self._flushing.pop(call.call_id, None)
        if book.moved_from is not None and not book.moved_from.live():
            self.ending(book.moved_from, at, now)
        if book.came_up and not call.dialing:
            if name != "CoreShowChannel":
                self.answer(call, at, out)
            elif call.answered_at is None:
                call.answer_fallback = call.answer_fallback or now  # a listing is undated: ask first
        if "ChanVariable" in msg:  # manager.conf channelvars
            for value in msg.getall("ChanVariable"):
                key, _, found = value.partition("=")
                if key == "MIXMONITOR_FILENAME":
                    chan.mixmonitor_file = found or chan.mixmonitor_file
        match name:
            case "DialBegin":
                self._dial(call, chan, msg)
            case "DialEnd":
                call.dialing.discard(msg.get("DestUniqueid") or "")
                status = (msg.get("DialStatus") or "").upper()
                if status == "ANSWER":
                    self.answer(call, at, out)
                elif status:
                    call.failed_dial = status
            case "BridgeEnter":
                self.bridge_enter(call, chan, msg.get("BridgeUniqueid") or "", at, out)
            case "BridgeLeave":
                self._bridge_leave(call, chan, msg.get("BridgeUniqueid") or "", at)
            case "Hold" | "Unhold" if chan.party:
                self._hold(call, chan, name == "Hold", at, out)
            case "DTMFBegin":
                chan.dtmf_begun += msg.get("Digit") or "?"
            case "DTMFEnd" if chan.party and msg.get("Direction") == "Received":
                self._dtmf(call, chan, msg, at, out)
            case "VarSet" if msg.get("Variable") == "MIXMONITOR_FILENAME":
                chan.mixmonitor_file = msg.get("Value") or None
            case "MixMonitorStart":
                if not self.monitors.started(call, chan, at):
                    with self.book.scope(call.call_id):
                        log.warning("ami.second_mixmonitor", extra={"call_id": call.call_id, "channel": chan.name})
            case "MixMonitorMute":
                self._muted(call, chan, msg.get("State") == "1", at, out)
            case "CoreShowChannel":
                self.resyncs.listed(call, chan, msg, now, out)
            case "Hangup":
                self.hangup(call, chan, msg, at, now, out)
        return out

    def resync(self, listing: list[Message], now: datetime, known: set[str] | None = None) -> list[Output]:
        """After a (re)connect: the ``CoreShowChannel`` events of ``CoreShowChannels``;
        ``known`` = :meth:`known_channels` when the listing was asked for."""
        return self.resyncs.apply(listing, now, known)

    def known_channels(self) -> set[str]:
        return set(self.book.channels)

    def resume(self, calls: list[ResumedCall]) -> None:
        """Calls a previous run of the recorder had open: continue them (no second vCon)."""
        self.resyncs.resume(calls)

    def connection_lost(self, at: datetime) -> None:
        """The AMI connection dropped at ``at``: channels gone at the next resync ended then."""
        self.resyncs.lost(at)

    def inspected(self, call_id: str, uniqueid: str, values: dict[str, str], now: datetime) -> list[Output]:
        """The answer to an :class:`~adapters.ami.commands.InspectChannel` (empty if it failed)."""
        return self.resyncs.inspected(call_id, uniqueid, values, now)

    def pause(self, call_id: str, paused: bool) -> list[str]:
        """The recorder's API paused (or resumed) the call: the channels whose MixMonitor to mute
        (or unmute). The PBX's MixMonitorMute events that follow are the echo of it, not news."""
        call = self.book.calls.get(call_id)
        if call is None:
            return []
        call.paused_by = "api" if paused else None
        return [r.channel.name for r in call.recordings if r.failure is None and not r.channel.hung_up]

    def _muted(self, call: Call, chan: Channel, muted: bool, at: datetime, out: list[Output]) -> None:
        """A MixMonitor was muted or unmuted at the PBX (dialplan, another AMI client): the
        recording is paused by the PBX from then on (its file holds silence), unless we asked."""
        if call.paused_by == "api" or (call.paused_by is None) != muted:
            return
        call.paused_by = "pbx" if muted else None
        if muted:
            out.append(RecordingPaused(call_id=call.call_id, at=at, by="pbx", reason=f"MixMonitorMute on {chan.name}"))
        else:
            out.append(RecordingResumed(call_id=call.call_id, at=at, by="pbx"))

    def mixmonitor_failed(self, call_id: str, stream_id: str, reason: str) -> None:
        """The MixMonitor action for ``stream_id`` was refused."""
        call = self.book.calls.get(call_id)
        if call is not None:
            self.monitors.failed(call, stream_id, reason)

    def tick(self, now: datetime) -> list[Output]:
        """Finish the calls whose wait for Cdr events is over."""
        out: list[Output] = []
        due = {call_id for call_id, at in self._flushing.items() if at <= now}
        for call in [c for c in self.book.calls.values() if c.call_id in due]:  # in the order calls began
            self._finish(call, out, interrupted=False)
        return out

    def stop(self, now: datetime, reason: str = "capture stopped") -> list[Output]:
        """End every call now (shutdown)."""
        out: list[Output] = []
        for call in list(self.book.calls.values()):
            live = call.live()
            for chan in live:
                self.hangup(call, chan, lost(reason), now, now, out)
            self._finish(call, out, interrupted=bool(live))
        return out

    # -- call progress ------------------------------------------------------------------

    def answer(self, call: Call, at: datetime, out: list[Output]) -> None:
        if call.answered_at is None:
            call.answered_at = at
            call.answer_fallback = None
            out.append(CallAnswered(call_id=call.call_id, at=at))

    def _dial(self, call: Call, chan: Channel, msg: Message) -> None:
        if self.book.ignored(msg.get("DestChannel")):
            return
        dest = msg.get("DestUniqueid") or ""
        call.dialing.add(dest)
        dialled = self.book.channels.get(dest)
        if dialled is not None:
            chan.dials.append(dialled)

    def bridge_enter(self, call: Call, chan: Channel, bridge: str, at: datetime, out: list[Output]) -> None:
        self.book.bridges.enter(chan, bridge, at)
        self.book.ensure_party(call, chan, at, out)
        self.monitors.bridged(call, chan, at, out)

    def _bridge_leave(self, call: Call, chan: Channel, bridge: str, at: datetime) -> None:
        members = self.book.bridges.leave(chan, bridge, at)
        channels = self.book.channels
        if chan.party and any(channels[uid].party for uid in members if uid in channels):
            call.left_first = chan.party

    def _hold(self, call: Call, chan: Channel, held: bool, at: datetime, out: list[Output]) -> None:
        """Hold/Unhold as a pair: an Unhold with no Hold before it (Asterisk sends one on every
        blind transfer) is no event."""
        assert chan.party is not None
        if held == (chan.party in call.held):
            return
        if held:
            call.held.add(chan.party)
        else:
            call.held.discard(chan.party)
        self.book.ensure_party(call, chan, at, out)
        out.append(HoldChanged(call_id=call.call_id, at=at, party=chan.party, held=held))

    def _dtmf(self, call: Call, chan: Channel, msg: Message, at: datetime, out: list[Output]) -> None:
        assert chan.party is not None
        digit = msg.get("Digit") or "?"
        duration = as_int(msg.get("DurationMs")) / 1000
        if duration == 0 and digit not in chan.dtmf_begun:
            return  # queued by the AMI Atxfer action (the feature code it dials), not pressed
        chan.dtmf_begun = chan.dtmf_begun.replace(digit, "", 1)
        self.book.ensure_party(call, chan, at, out)
        start = at - timedelta(seconds=duration)
        out.append(DtmfReceived(call_id=call.call_id, at=start, party=chan.party, digit=digit, duration_s=duration))

    def hangup(self, call: Call, chan: Channel, msg: Message, at: datetime, now: datetime, out: list[Output]) -> None:
        if chan.party is not None:
            self.book.ensure_party(call, chan, at, out)
            if chan.party in call.held:  # whoever held the others is gone: the hold is over
                self._hold(call, chan, False, at, out)
        self.book.hung_up(chan, at)
        call.hangups.append(Hangup(chan, as_int(msg.get("Cause")), msg.get("Cause-txt") or "", at))
        self.monitors.hung_up(call, chan)
        if not call.live():
            self.ending(call, at, now)

    def ending(self, call: Call, at: datetime, now: datetime) -> None:
        call.ended_at = at
        self._flushing[call.call_id] = now if call.quick_end else now + self.cdr_wait

    # -- the end ------------------------------------------------------------------------

    def _finish(self, call: Call, out: list[Output], *, interrupted: bool) -> None:
        self._flushing.pop(call.call_id, None)
        end = call.ended_at or call.started_at
        if call.answered_at is None and call.answer_fallback is not None:
            self.answer(call, call.answer_fallback, out)
        for chan in call.channels.values():
            self.book.answered_without_dialling(call, chan, call.answered_at or end, out)
        self.transfers.unanswered(call, out)
        outcome = dispositions.disposition(call)
        cause_code, cause_txt = dispositions.cause(call)
        out.append(dispositions.cdr_fields(call, end, outcome))
        ended_by = call.left_first if call.answered_at else None
        ended = CallEnded(call_id=call.call_id, at=end, disposition=outcome, cause=cause_txt or None, ended_by=ended_by)
        out.append(FinishCall(call.call_id, self.monitors.specs(call, end), ended, interrupted))
        with self.book.scope(call.call_id):
            log.info(
                "ami.call_finished",
                extra={
                    "call_id": call.call_id,
                    "disposition": str(outcome),
                    "cdrs": len(call.cdrs),
                    "cause": cause_code,
                },
            )
        self.book.forget(call)
