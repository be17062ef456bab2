"""Sans-IO call tracker: AMI messages (and the time) in, capture events and commands out.

A call is everything that shares a ``Linkedid``: the caller's channel, the dialled legs, the
``Local`` hops between them, the legs a transfer adds. Parties are channel endpoints
(``PJSIP/alice``, ``SIP/150010002``); ``Local`` and other internal channels carry no party.
When the last channel of a call hangs up the call waits ``cdr_wait_s`` for its ``Cdr`` events
(they come after the Hangup), then :meth:`CallTracker.tick` finishes it with a
:class:`FinishCall` command: the I/O layer picks up the MixMonitor files it names, reports
them (``MediaRecorded`` / ``MediaUnavailable``) and then emits the ``CallEnded`` it carries.
A channel that changes ``Linkedid`` (the far end of an attended transfer) moves to that call.
"""

from __future__ import annotations

import logging
import re
from collections import OrderedDict
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from adapters.ami.protocol import Message
from capture.events import (
    CallAnswered,
    CallEnded,
    CallStarted,
    CaptureEvent,
    CdrFields,
    Disposition,
    DtmfReceived,
    HoldChanged,
    PartyJoined,
    Transferred,
)

log = logging.getLogger(__name__)

INTERNAL_TECHS = frozenset({"local", "snoop", "announcer", "cbann", "cbrec", "recorder"})
UNKNOWN = ("", "<unknown>", "<UNKNOWN>")
NUMBER = re.compile(r"^\+?[0-9*#]+$")
SAFE_NAME = re.compile(r"[^A-Za-z0-9._-]")
SKIPPED_CDR_KEYS = frozenset({"event", "privilege", "sequencenumber", "file", "line", "func"})
RECENT_LIMIT = 10_000

DIAL_STATUS = {
    "BUSY": Disposition.BUSY,
    "NOANSWER": Disposition.NO_ANSWER,
    "CANCEL": Disposition.NO_ANSWER,
    "CONGESTION": Disposition.CONGESTION,
    "CHANUNAVAIL": Disposition.FAILED,
}
CDR_DISPOSITION = {
    "BUSY": Disposition.BUSY,
    "NO ANSWER": Disposition.NO_ANSWER,
    "CONGESTION": Disposition.CONGESTION,
    "FAILED": Disposition.FAILED,
}
CAUSE_DISPOSITION = {
    17: Disposition.BUSY,
    18: Disposition.NO_ANSWER,
    19: Disposition.NO_ANSWER,
    34: Disposition.CONGESTION,
    38: Disposition.CONGESTION,
    42: Disposition.CONGESTION,
}
ASTERISK_DISPOSITION = {
    None: "ANSWERED",
    Disposition.BUSY: "BUSY",
    Disposition.NO_ANSWER: "NO ANSWER",
    Disposition.CONGESTION: "CONGESTION",
    Disposition.FAILED: "FAILED",
}


@dataclass(frozen=True, slots=True)
class StartMixMonitor:
    """Command: send ``Action: MixMonitor`` for this channel."""

    call_id: str
    stream_id: str
    channel: str
    file: str
    options: str


@dataclass(frozen=True, slots=True)
class RecordingSpec:
    """A MixMonitor file to pick up when the call is over.

    ``file`` is the name or path Asterisk writes (None when only the dialplan knows it; then
    a file in the recordings directory whose name contains ``search`` is taken). ``channels``
    is what each channel of a two-channel file carries; a one-channel file is ``heard``
    as one mix.
    """

    stream_id: str
    file: str | None
    search: str
    started_at: datetime
    channels: tuple[tuple[str, ...], ...]
    failure: str | None = None

    @property
    def heard(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(k for ch in self.channels for k in ch))


@dataclass(frozen=True, slots=True)
class FinishCall:
    """Command: report the call's recordings, then emit ``ended``.

    ``interrupted`` means the call did not really end (the capture is stopping), so files
    still being written are not waited for.
    """

    call_id: str
    recordings: tuple[RecordingSpec, ...]
    ended: CallEnded
    interrupted: bool = False


Output = CaptureEvent | StartMixMonitor | FinishCall


@dataclass(slots=True, eq=False)
class _Channel:
    uniqueid: str
    name: str
    linkedid: str
    party: str | None
    number: str | None = None
    display: str | None = None
    up: bool = False
    hung_up: bool = False
    bridges: set[str] = field(default_factory=set)
    mixmonitor_file: str | None = None


@dataclass(slots=True, eq=False)
class _Recording:
    stream_id: str
    file: str | None
    uniqueid: str
    party: str
    started_at: datetime
    legs: bool = False
    failure: str | None = None


@dataclass(slots=True, eq=False)
class _Call:
    call_id: str
    started_at: datetime
    channels: dict[str, _Channel] = field(default_factory=dict)
    parties: dict[str, tuple[str | None, str | None]] = field(default_factory=dict)
    answered_at: datetime | None = None
    dialing: set[str] = field(default_factory=set)
    failed_dial: str | None = None
    hangups: list[tuple[_Channel, int, str, datetime]] = field(default_factory=list)
    blind_pending: list[tuple[datetime, str, str, str, str]] = field(default_factory=list)
    recordings: list[_Recording] = field(default_factory=list)
    monitoring: str | None = None
    "Uniqueid of the channel the adapter's MixMonitor runs on."
    left_first: str | None = None
    "Party that last left a bridge while another party was still in it: who hung up."
    cdrs: list[dict[str, str]] = field(default_factory=list)
    ended_at: datetime | None = None
    flush_at: datetime | None = None

    def live(self) -> list[_Channel]:
        return [c for c in self.channels.values() if not c.hung_up]


class CallTracker:
    """Follows every call on the PBX; see the module docstring."""

    def __init__(
        self,
        *,
        mixmonitor: str = "dialplan",
        mixmonitor_options: str = "b",
        split_directions: bool = False,
        cdr_wait_s: float = 2.0,
    ) -> None:
        if mixmonitor not in ("adapter", "dialplan"):
            raise ValueError(f"mixmonitor must be adapter or dialplan, not {mixmonitor!r}")
        self.mixmonitor = mixmonitor
        self.mixmonitor_options = mixmonitor_options
        self.split_directions = split_directions
        self.cdr_wait = timedelta(seconds=cdr_wait_s)
        self._calls: dict[str, _Call] = {}
        self._channels: dict[str, _Channel] = {}
        self._by_name: dict[str, str] = {}
        self._bridges: dict[str, set[str]] = {}
        self._finished: OrderedDict[str, str] = OrderedDict()
        "Uniqueid -> Linkedid of channels of finished calls (late Cdr events, stray events)."

    # -- queries -------------------------------------------------------------------------

    @property
    def active_calls(self) -> list[str]:
        return list(self._calls)

    def next_deadline(self) -> datetime | None:
        """When :meth:`tick` next has something to do."""
        deadlines = [c.flush_at for c in self._calls.values() if c.flush_at is not None]
        return min(deadlines) if deadlines else None

    # -- input ---------------------------------------------------------------------------

    def handle(self, msg: Message, now: datetime) -> list[Output]:
        """One AMI event from the live stream."""
        out: list[Output] = []
        name = msg.event
        at = _event_time(msg, now)
        if name == "Cdr":
            self._cdr(msg)
            return out
        if name == "BlindTransfer":
            self._blind_transfer(msg, at, out)
            return out
        if name == "AttendedTransfer":
            self._attended_transfer(msg, at, out)
            return out
        if name == "BridgeDestroy":
            self._bridges.pop(msg.get("BridgeUniqueid") or "", None)
            return out
        chan = self._touch(msg, at, now, out)
        if chan is None:
            return out
        call = self._calls[chan.linkedid]
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
                self._ensure_party(call, chan, at, out)
                out.append(HoldChanged(call_id=call.call_id, at=at, party=chan.party, held=name == "Hold"))
            case "DTMFEnd" if chan.party and msg.get("Direction") == "Received":
                self._ensure_party(call, chan, at, out)
                duration = _int(msg.get("DurationMs")) / 1000
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
                self._mixmonitor_started(call, chan, at)
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
        for chan in list(self._channels.values()):
            if not chan.hung_up and chan.uniqueid not in present:
                gone = _lost("hung up while AMI was disconnected")
                self._hangup(self._calls[chan.linkedid], chan, gone, now, now, out)
        for msg in listing:
            out.extend(self.handle(msg, now))
        return out

    def mixmonitor_failed(self, call_id: str, stream_id: str, reason: str) -> None:
        """The MixMonitor action for ``stream_id`` was refused."""
        call = self._calls.get(call_id)
        if call is None:
            return
        for rec in call.recordings:
            if rec.stream_id == stream_id:
                rec.failure = f"MixMonitor refused: {reason}"

    def tick(self, now: datetime) -> list[Output]:
        """Finish the calls whose wait for Cdr events is over."""
        out: list[Output] = []
        for call in [c for c in self._calls.values() if c.flush_at is not None and c.flush_at <= now]:
            self._finish(call, out, interrupted=False)
        return out

    def stop(self, now: datetime, reason: str = "capture stopped") -> list[Output]:
        """End every call now (shutdown)."""
        out: list[Output] = []
        for call in list(self._calls.values()):
            live = call.live()
            for chan in live:
                self._hangup(call, chan, _lost(reason), now, now, out)
            self._finish(call, out, interrupted=bool(live))
        return out

    # -- channels and parties -----------------------------------------------------------

    def _touch(self, msg: Message, at: datetime, now: datetime, out: list[Output]) -> _Channel | None:
        uniqueid = msg.get("Uniqueid")
        linkedid = msg.get("Linkedid")
        if not uniqueid or not linkedid:
            return None
        chan = self._channels.get(uniqueid)
        if chan is None:
            if uniqueid in self._finished:
                return None
            chan = _Channel(uniqueid, msg.get("Channel") or "", linkedid, _endpoint(msg.get("Channel") or ""))
            self._channels[uniqueid] = chan
            self._by_name[chan.name] = uniqueid
            self._call(linkedid, at, out).channels[uniqueid] = chan
        elif chan.hung_up:
            return None
        elif chan.linkedid != linkedid:
            self._move(chan, linkedid, at, now, out)
        call = self._calls[linkedid]
        call.flush_at = call.ended_at = None
        self._caller_id(call, chan, msg, at, out)
        if not chan.up and msg.get("ChannelStateDesc") == "Up":
            chan.up = True
            if not call.dialing:
                self._answer(call, at, out)
        return chan

    def _call(self, linkedid: str, at: datetime, out: list[Output]) -> _Call:
        call = self._calls.get(linkedid)
        if call is None:
            call = self._calls[linkedid] = _Call(linkedid, at)
            out.append(CallStarted(call_id=linkedid, at=at, source="ami", application="asterisk"))
            log.info("ami.call_started call_id=%s", linkedid)
        return call

    def _move(self, chan: _Channel, linkedid: str, at: datetime, now: datetime, out: list[Output]) -> None:
        old = self._calls[chan.linkedid]
        del old.channels[chan.uniqueid]
        chan.linkedid = linkedid
        new = self._call(linkedid, at, out)
        new.channels[chan.uniqueid] = chan
        log.info("ami.channel_moved call_id=%s from=%s channel=%s", linkedid, old.call_id, chan.name)
        self._ensure_party(new, chan, at, out)
        if not old.live():
            self._ending(old, at, now)

    def _caller_id(self, call: _Call, chan: _Channel, msg: Message, at: datetime, out: list[Output]) -> None:
        number = _known(msg.get("CallerIDNum"))
        display = _known(msg.get("CallerIDName"))
        if number is not None or display is not None:
            chan.number = number or chan.number
            chan.display = display or chan.display
            if chan.party:
                self._ensure_party(call, chan, at, out, quiet=True)
        connected_num = _known(msg.get("ConnectedLineNum"))
        connected_name = _known(msg.get("ConnectedLineName"))
        if connected_num and connected_name:
            # The connected line names a party we only know by number: give it the name.
            for key, (tel, name) in call.parties.items():
                if name is None and tel == connected_num and key != chan.party:
                    call.parties[key] = (tel, connected_name)
                    out.append(PartyJoined(call_id=call.call_id, at=at, party=key, tel=tel, name=connected_name))

    def _ensure_party(self, call: _Call, chan: _Channel, at: datetime, out: list[Output], quiet: bool = False) -> None:
        """Emit PartyJoined for the channel's party if it is new to the call or its identity changed.

        ``quiet``: a party with no identity yet is not announced (it will be when it matters).
        """
        if chan.party is None:
            return
        tel = chan.number if chan.number and NUMBER.match(chan.number) else None
        name = chan.display or (chan.number if tel is None else None)
        known = call.parties.get(chan.party)
        if known is None:
            if tel is None and name is None:
                if quiet:
                    return
                name = chan.party
            call.parties[chan.party] = (tel, name)
            out.append(PartyJoined(call_id=call.call_id, at=at, party=chan.party, tel=tel, name=name))
            self._blind_target(call, chan.party, out)
            return
        merged = (tel or known[0], name or known[1])
        if merged != known:
            call.parties[chan.party] = merged
            out.append(PartyJoined(call_id=call.call_id, at=at, party=chan.party, tel=merged[0], name=merged[1]))

    # -- call progress ------------------------------------------------------------------

    def _answer(self, call: _Call, at: datetime, out: list[Output]) -> None:
        if call.answered_at is None:
            call.answered_at = at
            out.append(CallAnswered(call_id=call.call_id, at=at))

    def _bridge_enter(self, call: _Call, chan: _Channel, bridge: str, at: datetime, out: list[Output]) -> None:
        chan.bridges.add(bridge)
        self._bridges.setdefault(bridge, set()).add(chan.uniqueid)
        if chan.party is None:
            return
        self._ensure_party(call, chan, at, out)
        if self.mixmonitor != "adapter" or call.monitoring is not None:
            return
        origin = call.channels.get(call.call_id)
        if origin is not None and origin.party is not None and not origin.hung_up and origin is not chan:
            return  # wait for the caller's own channel: it stays for the whole call
        call.monitoring = chan.uniqueid
        n = len(call.recordings) + 1
        stream_id = f"mixmonitor-{n}"
        base = "vcon-" + SAFE_NAME.sub("_", call.call_id) + ("" if n == 1 else f"-{n}")
        options = self.mixmonitor_options
        if self.split_directions:
            options += f"r({base}-rx.wav)t({base}-tx.wav)"
        call.recordings.append(
            _Recording(stream_id, f"{base}.wav", chan.uniqueid, chan.party, at, legs=self.split_directions)
        )
        out.append(StartMixMonitor(call.call_id, stream_id, chan.name, f"{base}.wav", options))

    def _bridge_leave(self, call: _Call, chan: _Channel, bridge: str) -> None:
        chan.bridges.discard(bridge)
        members = self._bridges.get(bridge, set())
        members.discard(chan.uniqueid)
        if chan.party and any(self._channels[uid].party for uid in members if uid in self._channels):
            call.left_first = chan.party

    def _mixmonitor_started(self, call: _Call, chan: _Channel, at: datetime) -> None:
        for rec in call.recordings:
            if rec.uniqueid == chan.uniqueid and rec.failure is None:
                rec.started_at = at
                return
        if chan.party is None:
            return
        n = len(call.recordings) + 1
        call.recordings.append(_Recording(f"mixmonitor-{n}", chan.mixmonitor_file, chan.uniqueid, chan.party, at))

    def _hangup(
        self, call: _Call, chan: _Channel, msg: Message, at: datetime, now: datetime, out: list[Output]
    ) -> None:
        if chan.party is not None:
            self._ensure_party(call, chan, at, out)
        chan.hung_up = True
        for bridge in chan.bridges:
            self._bridges.get(bridge, set()).discard(chan.uniqueid)
        chan.bridges.clear()
        if self._by_name.get(chan.name) == chan.uniqueid:
            del self._by_name[chan.name]
        call.hangups.append((chan, _int(msg.get("Cause")), msg.get("Cause-txt") or "", at))
        if call.monitoring == chan.uniqueid:
            call.monitoring = None  # another leg that stays on may be recorded next
        if not call.live():
            self._ending(call, at, now)

    def _ending(self, call: _Call, at: datetime, now: datetime) -> None:
        call.ended_at = at
        call.flush_at = now + self.cdr_wait

    def _cdr(self, msg: Message) -> None:
        uniqueid = msg.get("UniqueID") or ""
        linkedid = msg.get("LinkedID")
        if linkedid is None:
            chan = self._channels.get(uniqueid)
            linkedid = chan.linkedid if chan else self._finished.get(uniqueid)
        call = self._calls.get(linkedid or "")
        if call is None:
            log.warning("ami.cdr_unmatched uniqueid=%s linkedid=%s", uniqueid, linkedid)
            return
        call.cdrs.append({k: v for k, v in msg.fields if k.lower() not in SKIPPED_CDR_KEYS})

    # -- transfers ----------------------------------------------------------------------

    def _party_of(self, uniqueid: str | None, channel: str | None) -> _Channel | None:
        chan = self._channels.get(uniqueid or "")
        if chan is None and channel:
            chan = self._channels.get(self._by_name.get(channel, ""))
        return chan

    def _blind_transfer(self, msg: Message, at: datetime, out: list[Output]) -> None:
        if (msg.get("Result") or "Success") != "Success":
            return
        transferor = self._party_of(msg.get("TransfererUniqueid"), msg.get("TransfererChannel"))
        transferee = self._party_of(msg.get("TransfereeUniqueid"), msg.get("TransfereeChannel"))
        if transferor is None or transferee is None or transferor.party is None or transferee.party is None:
            log.warning("ami.transfer_unresolved kind=blind channel=%s", msg.get("TransfererChannel"))
            return
        call = self._calls[transferee.linkedid]
        self._ensure_party(call, transferor, at, out)
        self._ensure_party(call, transferee, at, out)
        exten, context = msg.get("Extension") or "", msg.get("Context") or ""
        call.blind_pending.append((at, transferor.party, transferee.party, exten, context))

    def _blind_target(self, call: _Call, party: str, out: list[Output]) -> None:
        """A party new to the call after a blind transfer is where the transferee went."""
        for pending in call.blind_pending:
            at, transferor, transferee, _, _ = pending
            if party not in (transferor, transferee):
                call.blind_pending.remove(pending)
                out.append(
                    Transferred(call_id=call.call_id, at=at, transferee=transferee, transferor=transferor, target=party)
                )
                return

    def _attended_transfer(self, msg: Message, at: datetime, out: list[Output]) -> None:
        if (msg.get("Result") or "Success") != "Success":
            return
        transferor = self._party_of(msg.get("OrigTransfererUniqueid"), msg.get("OrigTransfererChannel"))
        second = self._party_of(msg.get("SecondTransfererUniqueid"), msg.get("SecondTransfererChannel"))
        if transferor is None or transferor.party is None:
            log.warning("ami.transfer_unresolved kind=attended channel=%s", msg.get("OrigTransfererChannel"))
            return
        call = self._calls[transferor.linkedid]
        second_call = second.linkedid if second else msg.get("SecondTransfererLinkedid")
        transferee = self._party_of(msg.get("TransfereeUniqueid"), msg.get("TransfereeChannel"))
        target = self._party_of(msg.get("TransferTargetUniqueid"), msg.get("TransferTargetChannel"))
        skip = {transferor.uniqueid, second.uniqueid if second else ""}
        bridges = [msg.get(k) for k in ("OrigBridgeUniqueid", "SecondBridgeUniqueid", "DestBridgeUniqueid")]
        for uid in set().union(*(self._bridges.get(b or "", set()) for b in bridges)) - skip:
            chan = self._channels[uid]
            if chan.party is None:
                continue
            if transferee is None and chan.linkedid == call.call_id:
                transferee = chan
            elif target is None and chan.linkedid == second_call:
                target = chan
        if transferee is None or target is None or transferee.party is None or target.party is None:
            log.warning("ami.transfer_unresolved kind=attended call_id=%s", call.call_id)
            return
        self._ensure_party(call, transferor, at, out)
        self._ensure_party(call, transferee, at, out)
        self._ensure_party(call, target, at, out)
        out.append(
            Transferred(
                call_id=call.call_id,
                at=at,
                transferee=transferee.party,
                transferor=transferor.party,
                target=target.party,
                attended=True,
            )
        )

    # -- the end ------------------------------------------------------------------------

    def _finish(self, call: _Call, out: list[Output], *, interrupted: bool) -> None:
        end = call.ended_at or call.started_at
        for at, transferor, transferee, exten, context in call.blind_pending:
            # Nobody new answered the transfer (voicemail, an IVR, a failed dial): the target
            # is the extension it went to.
            key = f"exten:{exten}@{context}" if context else f"exten:{exten}"
            tel = exten if NUMBER.match(exten) else None
            out.append(PartyJoined(call_id=call.call_id, at=at, party=key, tel=tel, name=None if tel else exten))
            out.append(
                Transferred(call_id=call.call_id, at=at, transferee=transferee, transferor=transferor, target=key)
            )
        call.blind_pending.clear()

        disposition = self._disposition(call)
        cause_code, cause_txt = self._cause(call)
        fields: dict[str, Any] = {
            "linkedid": call.call_id,
            "start": _iso(call.started_at),
            "answer": _iso(call.answered_at) if call.answered_at else None,
            "end": _iso(end),
            "billsec": int((end - call.answered_at).total_seconds()) if call.answered_at else 0,
            "disposition": ASTERISK_DISPOSITION.get(disposition, "FAILED"),
            "hangup_cause": cause_txt,
            "hangup_cause_code": cause_code,
        }
        if call.cdrs:
            fields["asterisk_cdr"] = call.cdrs
        out.append(CdrFields(call_id=call.call_id, at=end, fields=fields))

        others = tuple(call.parties)
        specs = []
        for rec in call.recordings:
            heard = tuple(k for k in others if k != rec.party)
            channels = ((rec.party,), heard) if heard else ((rec.party,),)
            search = rec.uniqueid
            if rec.legs and rec.file:
                base = rec.file.removesuffix(".wav")
                specs.append(
                    RecordingSpec(
                        f"{rec.stream_id}-rx", f"{base}-rx.wav", search, rec.started_at, ((rec.party,),), rec.failure
                    )
                )
                specs.append(
                    RecordingSpec(
                        f"{rec.stream_id}-tx",
                        f"{base}-tx.wav",
                        search,
                        rec.started_at,
                        (heard or (rec.party,),),
                        rec.failure,
                    )
                )
            else:
                specs.append(RecordingSpec(rec.stream_id, rec.file, search, rec.started_at, channels, rec.failure))
        if call.answered_at is not None and not specs:
            specs.append(
                RecordingSpec("mixmonitor", None, "", call.answered_at, ((),), "no MixMonitor ran on this call")
            )
        ended_by = call.left_first if call.answered_at else None
        ended = CallEnded(
            call_id=call.call_id, at=end, disposition=disposition, cause=cause_txt or None, ended_by=ended_by
        )
        out.append(FinishCall(call.call_id, tuple(specs), ended, interrupted))
        log.info("ami.call_finished call_id=%s disposition=%s cdrs=%d", call.call_id, disposition, len(call.cdrs))

        del self._calls[call.call_id]
        for chan in call.channels.values():
            self._channels.pop(chan.uniqueid, None)
            if self._by_name.get(chan.name) == chan.uniqueid:
                del self._by_name[chan.name]
            self._finished[chan.uniqueid] = call.call_id
        while len(self._finished) > RECENT_LIMIT:
            self._finished.popitem(last=False)

    def _disposition(self, call: _Call) -> Disposition | None:
        if call.answered_at is not None:
            return None
        if call.failed_dial in DIAL_STATUS:
            return DIAL_STATUS[call.failed_dial]
        for cdr in call.cdrs:
            disposition = CDR_DISPOSITION.get((cdr.get("Disposition") or "").upper())
            if disposition is not None:
                return disposition
        code, _ = self._cause(call)
        return CAUSE_DISPOSITION.get(code, Disposition.NO_ANSWER if code in (0, 16) else Disposition.FAILED)

    @staticmethod
    def _cause(call: _Call) -> tuple[int, str]:
        """The first real hangup cause: a party's channel with a nonzero cause wins."""
        ranked = sorted(call.hangups, key=lambda h: (h[0].party is None, h[1] == 0))
        if not ranked:
            return 0, ""
        _, code, text, _ = ranked[0]
        return code, text


def _endpoint(channel: str) -> str | None:
    """``SIP/150010002-0000002d`` -> ``SIP/150010002``; None for Local and other internal channels."""
    tech, _, rest = channel.partition("/")
    if not rest or tech.lower() in INTERNAL_TECHS:
        return None
    base, sep, suffix = rest.rpartition("-")
    if sep and base and all(c in "0123456789abcdefABCDEF" for c in suffix):
        return f"{tech}/{base}"
    return channel


def _lost(reason: str) -> Message:
    """A stand-in Hangup for a channel whose real one we did not see."""
    return Message([("Event", "Hangup"), ("Cause", "0"), ("Cause-txt", reason)])


def _int(value: str | None) -> int:
    try:
        return int(value or 0)
    except ValueError:
        return 0


def _known(value: str | None) -> str | None:
    return None if value is None or value in UNKNOWN else value


def _event_time(msg: Message, now: datetime) -> datetime:
    """The event's ``Timestamp`` (manager.conf ``timestampevents=yes``) or, without it, now."""
    stamp = msg.get("Timestamp")
    if stamp:
        try:
            return datetime.fromtimestamp(float(stamp), UTC)
        except (ValueError, OverflowError, OSError):
            pass
    return now


def _iso(at: datetime) -> str:
    return at.isoformat().replace("+00:00", "Z")
