"""Bridge membership over time, and whose voice reaches a bridge through a channel.

Every ``BridgeEnter``/``BridgeLeave`` opens or closes a :class:`~adapters.ami.state.Span`;
spans are kept until every channel that was in the bridge is gone, so a transfer or a
recording can ask who was in a bridge at a given moment, or over a stretch of time.

A ``Local`` channel pair is a wire through the dialplan: audio entering ``;1`` leaves at
``;2``. :meth:`Bridges.behind` follows such wires (chains of them too) to the parties at
their far end: the members of the bridge the other half is in, the channel it dialled, or
the application it runs (an Originate's Playback, an IVR), which is a party of its own.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from adapters.ami.state import Channel, Span

MAX_GONE_STAYS = 1000
"Stays of channels already gone kept per bridge, at most."
MAX_HOPS = 8
"Local chains longer than this are not followed (a loop in the dialplan)."


class Bridges:
    def __init__(self) -> None:
        self.current: dict[str, set[str]] = {}
        "Bridge -> Uniqueids in it now."
        self.history: dict[str, list[Span]] = {}
        "Bridge -> every stay in it, while any of its channels may still be asked about."

    def enter(self, chan: Channel, bridge: str, at: datetime) -> None:
        chan.bridges.add(bridge)
        self.current.setdefault(bridge, set()).add(chan.uniqueid)
        span = Span(bridge, chan, at)
        chan.spans.append(span)
        self.history.setdefault(bridge, []).append(span)

    def leave(self, chan: Channel, bridge: str, at: datetime) -> set[str]:
        """Close the channel's stay; returns the Uniqueids still in the bridge."""
        chan.bridges.discard(bridge)
        members = self.current.get(bridge, set())
        members.discard(chan.uniqueid)
        for span in chan.spans:
            if span.bridge == bridge and span.end is None:
                span.end = at
        return members

    def leave_all(self, chan: Channel, at: datetime) -> None:
        for bridge in list(chan.bridges):
            self.leave(chan, bridge, at)

    def destroyed(self, bridge: str) -> None:
        self.current.pop(bridge, None)

    def forget(self, channels: Iterable[Channel], alive: dict[str, Channel]) -> None:
        """Drop, from the bridges these channels were in, the stays nobody can ask about any more:
        those of channels no longer tracked that ended before any tracked channel's stay began
        (a tracked channel of another call may still need to know who it shared the bridge with)."""
        for bridge in {span.bridge for chan in channels for span in chan.spans}:
            stays = self.history.get(bridge, [])
            tracked = [s.start for s in stays if s.channel.uniqueid in alive]
            if not tracked:
                self.history.pop(bridge, None)
                continue
            first = min(tracked)
            kept = [s for s in stays if s.channel.uniqueid in alive or s.end is None or s.end >= first]
            gone = [s for s in kept if s.channel.uniqueid not in alive]
            if len(gone) > MAX_GONE_STAYS:  # a bridge that lives for ever (a conference): the oldest go
                dropped = {id(s) for s in gone[: len(gone) - MAX_GONE_STAYS]}
                kept = [s for s in kept if id(s) not in dropped]
            self.history[bridge] = kept

    def near(self, bridge: str, at: datetime) -> list[Channel]:
        """The channels of a bridge around ``at``: those in it then first, then those that left last."""
        stays = self.history.get(bridge, [])
        inside = [s.channel for s in stays if s.overlap(at, at)]
        left = [s for s in stays if s.end is not None and s.end < at]
        left.sort(key=lambda s: s.end or at, reverse=True)
        return list(dict.fromkeys([*inside, *(s.channel for s in left)]))

    def behind(self, chan: Channel, start: datetime, end: datetime, hops: int = 0) -> list[str]:
        """The parties whose audio reaches a bridge through ``chan`` during [start, end]."""
        if chan.party is not None:
            return [chan.party]
        pair = chan.pair
        if pair is None or hops >= MAX_HOPS:
            return []
        if pair.party is not None:
            return [pair.party]
        found: list[str] = []
        for span in pair.spans:
            window = span.overlap(start, end)
            if window is not None:
                found += self.across(pair, span, window, hops + 1)
        if not found and not pair.spans:
            for dialled in pair.dials:
                found += self.behind(dialled, start, end, hops + 1)
        return list(dict.fromkeys(found))

    def across(self, chan: Channel, span: Span, window: tuple[datetime, datetime], hops: int = 0) -> list[str]:
        """The parties heard by ``chan`` from the others in the bridge of ``span`` during ``window``."""
        found: list[str] = []
        for other in self.history.get(span.bridge, []):
            if other.channel is chan:
                continue
            shared = other.overlap(*window)
            if shared is not None and (shared[0] < shared[1] or window[0] == window[1]):
                found += self.behind(other.channel, shared[0], shared[1], hops)
        return found

    def heard(self, chan: Channel, start: datetime, end: datetime) -> list[str]:
        """Everyone ``chan`` shared a bridge with during [start, end], in the order they came."""
        found: list[str] = []
        for span in chan.spans:
            window = span.overlap(start, end)
            if window is not None:
                found += self.across(chan, span, window)
        return list(dict.fromkeys(found))
