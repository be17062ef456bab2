"""Sans-IO call tracker: AMI messages (and the time) in, capture events and commands out.

A call is everything that shares a ``Linkedid``: the caller's channel, the dialled legs, the
``Local`` hops between them, the legs a transfer adds. The tracker routes each event to the
room that owns its concern: :class:`~adapters.ami.channels.ChannelBook` (channels, calls,
parties), :class:`~adapters.ami.transfers.Transfers`, :mod:`~adapters.ami.dispositions`
(how the call ended, its CDR) and :class:`~adapters.ami.commands.Monitors` (MixMonitor).

When the last channel of a call hangs up the call waits ``cdr_wait_s`` for its ``Cdr`` events
(they may come after the Hangup); :meth:`CallTracker.next_deadline` says when, and
:meth:`CallTracker.tick` then finishes it with a :class:`~adapters.ami.commands.FinishCall`
command: the I/O layer picks up the MixMonitor files it names, reports them
(``MediaRecorded`` / ``MediaUnavailable``) and then emits the ``CallEnded`` it carries.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime, timedelta

from adapters.ami import dispositions
from adapters.ami.channels import ChannelBook
from adapters.ami.commands import FinishCall, Monitors, Output
from adapters.ami.fields import as_int, event_time, lost
from adapters.ami.protocol import Message
from adapters.ami.state import Call, Channel, Hangup
from adapters.ami.transfers import Transfers
from capture.events import CallAnswered, CallEnded, DtmfReceived, HoldChanged
from capture.logs import call_scope

log = logging.getLogger(__name__)


def _no_uuid(call_id: str) -> str | None:
    return None


class CallTracker:
    """Follows every call on the PBX; see the module docstring.

    ``vcon_uuid`` (the capture's) lets the tracker's log lines about a call carry its uuid.
    """

    def __init__(
        self,
        *,
        mixmonitor: str = "dialplan",
        mixmonitor_options: str = "b",
        split_directions: bool = False,
        cdr_wait_s: float = 2.0,
        domain: str | None = None,
        vcon_uuid: Callable[[str], str | None] = _no_uuid,
    ) -> None:
        self.cdr_wait = timedelta(seconds=cdr_wait_s)
        self.book = ChannelBook(lambda call_id: call_scope(vcon_uuid(call_id)), domain=domain)
        self.transfers = Transfers(self.book)
        self.monitors = Monitors(mixmonitor=mixmonitor, options=mixmonitor_options, split_directions=split_directions)
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
        if name == "Cdr":
            dispositions.file_cdr(self.book, msg)
            return out
        if name == "BlindTransfer":
            self.transfers.blind(msg, at, out)
            return out
        if name == "AttendedTransfer":
            self.transfers.attended(msg, at, out)
            return out
        if name == "BridgeDestroy":
            self.book.bridges.pop(msg.get("BridgeUniqueid") or "", None)
            return out
        touched = self.book.touch(msg, at, out)
        if touched is None:
            return out
        call, chan = touched.call, touched.channel
        self._flushing.pop(call.call_id, None)
        if touched.moved_from is not None and not touched.moved_from.live():
            self._ending(touched.moved_from, at, now)
        if touched.came_up and not call.dialing:
            self._answer(call, at, out)
        match name:
            case "DialBegin":
                call.dialing.add(msg.get("DestUniqueid") or "")
            case "DialEnd":
                call.dialing.discard(msg.get("DestUniqueid") or "")
                status = (msg.get("DialStatus") or "").upper()
                if status == "ANSWER":
                    self._answer(call, at, out)
                elif status:
                    call.failed_dial = status
            case "BridgeEnter":
                self._bridge_enter(call, chan, msg.get("BridgeUniqueid") or "", at, out)
            case "BridgeLeave":
                self._bridge_leave(call, chan, msg.get("BridgeUniqueid") or "")
            case "Hold" | "Unhold" if chan.party:
                self.book.ensure_party(call, chan, at, out)
                out.append(HoldChanged(call_id=call.call_id, at=at, party=chan.party, held=name == "Hold"))
            case "DTMFEnd" if chan.party and msg.get("Direction") == "Received":
                self.book.ensure_party(call, chan, at, out)
                duration = as_int(msg.get("DurationMs")) / 1000
                out.append(
                    DtmfReceived(
                        call_id=call.call_id,
                        at=at - timedelta(seconds=duration),
                        party=chan.party,
                        digit=msg.get("Digit") or "?",
                        duration_s=duration,
                    )
                )
            case "VarSet" if msg.get("Variable") == "MIXMONITOR_FILENAME":
                chan.mixmonitor_file = msg.get("Value") or None
            case "MixMonitorStart":
                self.monitors.started(call, chan, at)
            case "CoreShowChannel" if msg.get("BridgeId"):
                if chan.up and chan.party:
                    # Bridged and up: answered, even if the DialEnd went by while we were away.
                    call.dialing.clear()
                    self._answer(call, at, out)
                self._bridge_enter(call, chan, msg["BridgeId"], at, out)
            case "Hangup":
                self._hangup(call, chan, msg, at, now, out)
        return out

    def resync(self, listing: list[Message], now: datetime) -> list[Output]:
        """After a reconnect: the ``CoreShowChannel`` events of ``CoreShowChannels``.

        Channels we knew that are gone hung up while we were away; channels we did not know
        start (or join) calls; known ones are left as they are, so nothing is emitted twice.
        """
        out: list[Output] = []
        present = {m.get("Uniqueid") for m in listing}
        for chan in list(self.book.channels.values()):
            if not chan.hung_up and chan.uniqueid not in present:
                gone = lost("hung up while AMI was disconnected")
                self._hangup(self.book.calls[chan.linkedid], chan, gone, now, now, out)
        for msg in listing:
            out.extend(self.handle(msg, now))
        return out

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
                self._hangup(call, chan, lost(reason), now, now, out)
            self._finish(call, out, interrupted=bool(live))
        return out

    # -- call progress ------------------------------------------------------------------

    def _answer(self, call: Call, at: datetime, out: list[Output]) -> None:
        if call.answered_at is None:
            call.answered_at = at
            out.append(CallAnswered(call_id=call.call_id, at=at))

    def _bridge_enter(self, call: Call, chan: Channel, bridge: str, at: datetime, out: list[Output]) -> None:
        chan.bridges.add(bridge)
        self.book.bridges.setdefault(bridge, set()).add(chan.uniqueid)
        if chan.party is None:
            return
        self.book.ensure_party(call, chan, at, out)
        self.monitors.bridged(call, chan, at, out)

    def _bridge_leave(self, call: Call, chan: Channel, bridge: str) -> None:
        chan.bridges.discard(bridge)
        members = self.book.bridges.get(bridge, set())
        members.discard(chan.uniqueid)
        channels = self.book.channels
        if chan.party and any(channels[uid].party for uid in members if uid in channels):
            call.left_first = chan.party

    def _hangup(self, call: Call, chan: Channel, msg: Message, at: datetime, now: datetime, out: list[Output]) -> None:
        if chan.party is not None:
            self.book.ensure_party(call, chan, at, out)
        self.book.hung_up(chan)
        call.hangups.append(Hangup(chan, as_int(msg.get("Cause")), msg.get("Cause-txt") or "", at))
        self.monitors.hung_up(call, chan)
        if not call.live():
            self._ending(call, at, now)

    def _ending(self, call: Call, at: datetime, now: datetime) -> None:
        call.ended_at = at
        self._flushing[call.call_id] = now + self.cdr_wait

    # -- the end ------------------------------------------------------------------------

    def _finish(self, call: Call, out: list[Output], *, interrupted: bool) -> None:
        self._flushing.pop(call.call_id, None)
        end = call.ended_at or call.started_at
        self.transfers.unanswered(call, out)
        outcome = dispositions.disposition(call)
        cause_code, cause_txt = dispositions.cause(call)
        out.append(dispositions.cdr_fields(call, end, outcome))
        ended_by = call.left_first if call.answered_at else None
        ended = CallEnded(call_id=call.call_id, at=end, disposition=outcome, cause=cause_txt or None, ended_by=ended_by)
        out.append(FinishCall(call.call_id, self.monitors.specs(call), ended, interrupted))
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
