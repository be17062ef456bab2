"""Channel bookkeeping: channels by Uniqueid, calls by Linkedid, bridges, and who the parties are.

A channel belongs to the call of its ``Linkedid``; a channel whose ``Linkedid`` changes (the far
end of an attended transfer) moves to that call. Parties are channel endpoints
(``PJSIP/alice``); their number and name come from CallerID and ConnectedLine fields and are
announced with ``PartyJoined`` when new or changed.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from adapters.ami.commands import Output, Scope
from adapters.ami.fields import NUMBER, endpoint, known
from adapters.ami.protocol import Message
from adapters.ami.state import Call, Channel
from capture.events import CallStarted, PartyJoined

log = logging.getLogger(__name__)

RECENT_LIMIT = 10_000
"How many channels of finished calls are remembered (to drop their late or stray events)."


@dataclass(frozen=True, slots=True)
class Touched:
    """What one event did to its channel."""

    channel: Channel
    call: Call
    moved_from: Call | None
    "The call the channel left (its Linkedid changed)."
    came_up: bool
    "The channel went Up with this event."


class ChannelBook:
    """Every live channel and call; see the module docstring."""

    def __init__(self, scope: Scope, *, domain: str | None = None) -> None:
        self.scope = scope
        self.domain = domain
        self.calls: dict[str, Call] = {}
        self.channels: dict[str, Channel] = {}
        self.by_name: dict[str, str] = {}
        self.bridges: dict[str, set[str]] = {}
        self.finished: OrderedDict[str, str] = OrderedDict()
        "Uniqueid -> Linkedid of channels of finished calls (late Cdr events, stray events)."
        self.on_new_party: Callable[[Call, str, list[Output]], None] = _nothing

    def touch(self, msg: Message, at: datetime, out: list[Output]) -> Touched | None:
        """Take in a channel event: the channel (created or moved as needed) and its call, or None to drop it."""
        uniqueid = msg.get("Uniqueid")
        linkedid = msg.get("Linkedid")
        if not uniqueid or not linkedid:
            return None
        chan = self.channels.get(uniqueid)
        moved_from = None
        if chan is None:
            if uniqueid in self.finished:
                return None
            name = msg.get("Channel") or ""
            chan = Channel(uniqueid, name, linkedid, endpoint(name))
            self.channels[uniqueid] = chan
            self.by_name[chan.name] = uniqueid
            self.call(linkedid, at, out).channels[uniqueid] = chan
        elif chan.hung_up:
            return None
        elif chan.linkedid != linkedid:
            moved_from = self._move(chan, linkedid, at, out)
        call = self.calls[linkedid]
        call.ended_at = None
        self._caller_id(call, chan, msg, at, out)
        came_up = not chan.up and msg.get("ChannelStateDesc") == "Up"
        if came_up:
            chan.up = True
        return Touched(chan, call, moved_from, came_up)

    def call(self, linkedid: str, at: datetime, out: list[Output]) -> Call:
        """The call of ``linkedid``, started (``CallStarted``) if it is new."""
        call = self.calls.get(linkedid)
        if call is None:
            call = self.calls[linkedid] = Call(linkedid, at)
            out.append(CallStarted(call_id=linkedid, at=at, source="ami", application="asterisk", domain=self.domain))
        return call

    def find(self, uniqueid: str | None, channel: str | None) -> Channel | None:
        """A live channel by Uniqueid, or by name when the Uniqueid is missing or unknown."""
        chan = self.channels.get(uniqueid or "")
        if chan is None and channel:
            chan = self.channels.get(self.by_name.get(channel, ""))
        return chan

    def hung_up(self, chan: Channel) -> None:
        chan.hung_up = True
        for bridge in chan.bridges:
            self.bridges.get(bridge, set()).discard(chan.uniqueid)
        chan.bridges.clear()
        if self.by_name.get(chan.name) == chan.uniqueid:
            del self.by_name[chan.name]

    def forget(self, call: Call) -> None:
        """The call is finished: drop it, remembering its channels for a while."""
        del self.calls[call.call_id]
        for chan in call.channels.values():
            self.channels.pop(chan.uniqueid, None)
            if self.by_name.get(chan.name) == chan.uniqueid:
                del self.by_name[chan.name]
            self.finished[chan.uniqueid] = call.call_id
        while len(self.finished) > RECENT_LIMIT:
            self.finished.popitem(last=False)

    # -- parties -------------------------------------------------------------------------

    def ensure_party(self, call: Call, chan: Channel, at: datetime, out: list[Output], quiet: bool = False) -> None:
        """Emit PartyJoined for the channel's party if it is new to the call or its identity changed.

        ``quiet``: a party with no identity yet is not announced (it will be when it matters).
        """
        if chan.party is None:
            return
        tel = chan.number if chan.number and NUMBER.match(chan.number) else None
        name = chan.display or (chan.number if tel is None else None)
        seen = call.parties.get(chan.party)
        if seen is None:
            if tel is None and name is None:
                if quiet:
                    return
                name = chan.party
            call.parties[chan.party] = (tel, name)
            out.append(PartyJoined(call_id=call.call_id, at=at, party=chan.party, tel=tel, name=name))
            self.on_new_party(call, chan.party, out)
            return
        merged = (tel or seen[0], name or seen[1])
        if merged != seen:
            call.parties[chan.party] = merged
            out.append(PartyJoined(call_id=call.call_id, at=at, party=chan.party, tel=merged[0], name=merged[1]))

    def _caller_id(self, call: Call, chan: Channel, msg: Message, at: datetime, out: list[Output]) -> None:
        number = known(msg.get("CallerIDNum"))
        display = known(msg.get("CallerIDName"))
        if number is not None or display is not None:
            chan.number = number or chan.number
            chan.display = display or chan.display
            if chan.party:
                self.ensure_party(call, chan, at, out, quiet=True)
        connected_num = known(msg.get("ConnectedLineNum"))
        connected_name = known(msg.get("ConnectedLineName"))
        if connected_num and connected_name:
            # The connected line names a party we only know by number: give it the name.
            for key, (tel, name) in call.parties.items():
                if name is None and tel == connected_num and key != chan.party:
                    call.parties[key] = (tel, connected_name)
                    out.append(PartyJoined(call_id=call.call_id, at=at, party=key, tel=tel, name=connected_name))

    def _move(self, chan: Channel, linkedid: str, at: datetime, out: list[Output]) -> Call:
        old = self.calls[chan.linkedid]
        del old.channels[chan.uniqueid]
        chan.linkedid = linkedid
        new = self.call(linkedid, at, out)
        new.channels[chan.uniqueid] = chan
        with self.scope(linkedid):
            log.info("ami.channel_moved", extra={"call_id": linkedid, "from_call": old.call_id, "channel": chan.name})
        self.ensure_party(new, chan, at, out)
        return old


def _nothing(call: Call, party: str, out: list[Output]) -> None:
    return None
