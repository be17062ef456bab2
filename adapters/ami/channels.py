"""Channel bookkeeping: channels by Uniqueid, calls by Linkedid, bridges, and who the parties are.

A channel belongs to the call of its ``Linkedid``; a channel whose ``Linkedid`` changes (the far
end of an attended transfer) moves to that call. Parties are channel endpoints
(``PJSIP/alice``); their number and name come from CallerID and ConnectedLine fields and are
announced with ``PartyJoined`` when new or changed.

``Local`` channels are not parties but wires (:mod:`bridges`), with two exceptions that are:
the ``;1`` half an AMI ``Originate`` starts a call with (it runs the Originate's application;
its party is who the Originate calls from: its first CallerID), and a ``;2`` half that
answers without dialling anyone (Playback, an IVR): the extension it runs,
``exten:3000@lab-local``. The recorder's own endpoints (``recorder_endpoints``: the SIP
fork's leg to vcon-capture) are no part of any call.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Callable, Collection
from datetime import datetime

from adapters.ami.bridges import Bridges
from adapters.ami.commands import Output, Scope
from adapters.ami.fields import NUMBER, endpoint, known
from adapters.ami.protocol import Message
from adapters.ami.state import Call, Channel
from capture.events import CallStarted, PartyJoined

log = logging.getLogger(__name__)

RECENT_LIMIT = 10_000
"How many channels of finished calls are remembered (to drop their late or stray events)."


class ChannelBook:
    """Every live channel and call; see the module docstring."""

    def __init__(self, scope: Scope, *, domain: str | None = None, ignore: Collection[str] = ()) -> None:
        self.scope = scope
        self.domain = domain
        self.ignore = frozenset(ignore)
        self.calls: dict[str, Call] = {}
        self.channels: dict[str, Channel] = {}
        self.by_name: dict[str, str] = {}
        self.bridges = Bridges()
        self.finished: OrderedDict[str, str] = OrderedDict()
        "Uniqueid -> Linkedid of channels of finished calls (late Cdr events, stray events)."
        self.listing_new: set[str] = set()
        "Uniqueids first seen in the resync listing being read."
        self.start_hints: dict[str, datetime] = {}
        "Linkedid -> when a call first seen in a resync listing really began."
        self.on_new_party: Callable[[Call, str, list[Output]], None] = _nothing
        self.moved_from: Call | None = None
        "Set by :meth:`touch`: the call its channel just left."
        self.came_up = False
        "Set by :meth:`touch`: its channel just went Up."

    def ignored(self, channel: str | None) -> bool:
        return bool(channel) and endpoint(channel or "") in self.ignore

    def touch(self, msg: Message, at: datetime, out: list[Output]) -> Channel | None:
        """Take in a channel event: the channel (created or moved as needed), or None to drop it.

        What the event did besides is left in :attr:`moved_from` (the call the channel left)
        and :attr:`came_up` (it went Up): no object per event on this hot path.
        """
        uniqueid = msg.get("Uniqueid")
        linkedid = msg.get("Linkedid")
        if not uniqueid or not linkedid:
            return None
        chan = self.channels.get(uniqueid)
        self.moved_from = None
        if chan is None:
            name = msg.get("Channel") or ""
            if uniqueid in self.finished or self.ignored(name):
                return None
            chan = self._new_channel(uniqueid, name, linkedid)
            self.call(linkedid, at, out).channels[uniqueid] = chan
        elif chan.hung_up:
            return None
        elif chan.linkedid != linkedid:
            self.moved_from = self._move(chan, linkedid, at, out)
        call = self.calls[linkedid]
        call.ended_at = None
        self._caller_id(call, chan, msg, at, out)
        self.came_up = not chan.up and msg.get("ChannelStateDesc") == "Up"
        if self.came_up:
            chan.up = True
        return chan

    def _new_channel(self, uniqueid: str, name: str, linkedid: str) -> Channel:
        chan = Channel(uniqueid, name, linkedid, endpoint(name), seen_at_resync=uniqueid in self.listing_new)
        self.channels[uniqueid] = chan
        self.by_name[name] = uniqueid
        if chan.local:
            base, _, half = name.rpartition(";")
            other = self.channels.get(self.by_name.get(f"{base};{'2' if half == '1' else '1'}", ""))
            if other is not None:
                chan.pair, other.pair = other, chan
            if half == "1" and uniqueid == linkedid:
                # An Originate's own channel: it stands for whoever the Originate calls from.
                chan.party = base.rpartition("-")[0] or base
                chan.sticky_identity = True
        return chan

    def call(self, linkedid: str, at: datetime, out: list[Output]) -> Call:
        """The call of ``linkedid``, started (``CallStarted``) if it is new."""
        call = self.calls.get(linkedid)
        if call is None:
            at = self.start_hints.pop(linkedid, at)
            call = self.calls[linkedid] = Call(linkedid, at)
            out.append(CallStarted(call_id=linkedid, at=at, source="ami", application="asterisk", domain=self.domain))
        return call

    def find(self, uniqueid: str | None, channel: str | None) -> Channel | None:
        """A tracked channel by Uniqueid, or by name when the Uniqueid is missing or unknown."""
        chan = self.channels.get(uniqueid or "")
        if chan is None and channel:
            chan = self.channels.get(self.by_name.get(channel, ""))
        return chan

    def hung_up(self, chan: Channel, at: datetime) -> None:
        chan.hung_up = True
        chan.hung_up_at = at
        self.bridges.leave_all(chan, at)
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
        self.bridges.forget(call.channels.values(), self.channels)
        for chan in call.channels.values():  # no reference cycles left for the garbage collector
            chan.spans.clear()
            chan.dials.clear()
            chan.pair = None
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

    def answered_without_dialling(self, call: Call, chan: Channel, at: datetime, out: list[Output]) -> None:
        """A Local ``;2`` half that ran an application itself (never bridged, dialled nobody) is
        the party the call reached."""
        if not chan.local or chan.party is not None or chan.dials or chan.spans or not chan.name.endswith(";2"):
            return
        base = chan.name.rpartition(";")[0].rpartition("-")[0]
        exten, _, context = base.removeprefix(base.split("/", 1)[0] + "/").partition("@")
        chan.party = f"exten:{exten}@{context}" if context else f"exten:{exten}"
        chan.number, chan.display, chan.sticky_identity = exten, None, True
        self.ensure_party(call, chan, at, out)

    def _caller_id(self, call: Call, chan: Channel, msg: Message, at: datetime, out: list[Output]) -> None:
        number = known(msg.get("CallerIDNum"))
        display = known(msg.get("CallerIDName"))
        if (number is not None or display is not None) and not (chan.sticky_identity and chan.number):
            unchanged = (number or chan.number) == chan.number and (display or chan.display) == chan.display
            chan.number = number or chan.number
            chan.display = display or chan.display
            # Most events repeat the CallerID already taken in: nothing to announce then.
            if chan.party and not (unchanged and chan.party in call.parties):
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
