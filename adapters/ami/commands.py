"""What the tracker asks its I/O layer to do, and the MixMonitor policy that decides it.

Commands: :class:`StartMixMonitor` (send ``Action: MixMonitor``) and :class:`FinishCall` (pick
up the call's MixMonitor files, report them, then emit its ``CallEnded``), and
:class:`InspectChannel` (``Getvar``). :class:`Monitors` decides when the adapter records a
call (``mixmonitor = "adapter"``: once the call is bridged, on the caller's own channel when
it can, on a Local half when the call has no other) and keeps track of every MixMonitor that
runs, the dialplan's included, so that :meth:`Monitors.specs` can name the files when the
call is over and say whose voices each holds (by bridge membership over its time).

Never two MixMonitors on one channel: a channel that already records (the dialplan's
MixMonitor, or ours from before a restart, found by ``Getvar MIXMONITOR_FILENAME`` or the
``VCON_MIXMONITOR`` variable our ``i()`` option sets) is recorded by that one.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import datetime

from adapters.ami.bridges import Bridges
from adapters.ami.state import Call, Channel, Recording
from capture.events import CallEnded, CaptureEvent

SAFE_NAME = re.compile(r"[^A-Za-z0-9._-]")
MIN_GAP_S = 0.05
"Shorter stretches out of a bridge are not worth a silence of their own."

Scope = Callable[[str], AbstractContextManager[None]]
"``scope(call_id)``: log lines written inside carry the call's vCon uuid."


@dataclass(frozen=True, slots=True)
class StartMixMonitor:
    """Command: send ``Action: MixMonitor`` for this channel."""

    call_id: str
    stream_id: str
    channel: str
    file: str
    options: str


@dataclass(frozen=True, slots=True)
class InspectChannel:
    """Command: read channel variables (``Getvar``) of a channel first seen in a resync listing,
    then hand them to :meth:`CallTracker.inspected`: does a MixMonitor already record it,
    and when did Asterisk answer it."""

    call_id: str
    uniqueid: str
    channel: str
    variables: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class RecordingSpec:
    """A MixMonitor file to pick up when the call is over.

    ``file`` is the name or path Asterisk writes (None when only the dialplan knows it; then
    a file in the recordings directory whose name contains ``search`` is taken, one that ends
    in ``-<search>.wav`` first, as the deploy snippet names them). ``channels``
    is what each channel of a two-channel file carries; a one-channel file is ``heard``
    as one mix.
    """

    stream_id: str
    file: str | None
    search: str
    started_at: datetime
    channels: tuple[tuple[str, ...], ...]
    failure: str | None = None
    gaps: tuple[tuple[float, float], ...] = ()
    """Silences the file left out, as (offset in the file, length) in seconds: a ``b``
    MixMonitor writes nothing while its channel is out of a bridge (a transfer ringing)."""

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


Output = CaptureEvent | StartMixMonitor | InspectChannel | FinishCall


MIXMONITOR_VAR = "VCON_MIXMONITOR"
"Set on a channel (MixMonitor option ``i()``) by every MixMonitor the adapter starts."
INSPECTED = ("MIXMONITOR_FILENAME", MIXMONITOR_VAR, "CDR(answer,u)")


class Monitors:
    """The MixMonitors of every call: when the adapter starts one, and which files a call leaves."""

    def __init__(
        self,
        bridges: Bridges,
        *,
        mixmonitor: str,
        options: str,
        split_directions: bool,
        dialplan_options: str = "b",
    ) -> None:
        if mixmonitor not in ("adapter", "dialplan"):
            raise ValueError(f"mixmonitor must be adapter or dialplan, not {mixmonitor!r}")
        self.bridges = bridges
        self.mixmonitor = mixmonitor
        self.options = options
        self.split_directions = split_directions
        self.dialplan_bridged_only = "b" in dialplan_options

    # -- starting -------------------------------------------------------------------------

    def bridged(self, call: Call, chan: Channel, at: datetime, out: list[Output]) -> None:
        """A channel entered a bridge: a waiting ``b`` recording starts; in adapter mode, record
        the call if nobody does yet."""
        for rec in call.recordings:
            if rec.channel is chan and rec.started_at is None:
                rec.started_at = at
        if self.mixmonitor != "adapter" or call.monitoring is not None or self.recording(call) is not None:
            return
        if chan.seen_at_resync:
            return  # it may record already: the tracker inspects it first
        real = chan.party is not None and not chan.local
        if real:
            origin = call.channels.get(call.call_id)
            if origin is not None and origin.party and not origin.local and not origin.hung_up and origin is not chan:
                return  # wait for the caller's own channel: it stays for the whole call
        elif not chan.local or any(c.party and not c.local for c in call.live()):
            return  # a Local half only when the call has no real endpoint to record on
        self.start(call, chan, at, out)

    def start(self, call: Call, chan: Channel, at: datetime, out: list[Output]) -> None:
        call.monitoring = chan.uniqueid
        n = len(call.recordings) + 1
        stream_id = f"mixmonitor-{n}"
        base = "vcon-" + SAFE_NAME.sub("_", call.call_id) + ("" if n == 1 else f"-{n}")
        file, options = f"{base}.wav", self.options
        if self.split_directions:
            file = ""  # no mixed file beside the two directions
            options += f"r({base}-rx.wav)t({base}-tx.wav)i({MIXMONITOR_VAR})"
        rec = Recording(stream_id, f"{base}.wav", chan, at, self.split_directions, ours=True)
        rec.bridged_only = "b" in self.options
        call.recordings.append(rec)
        out.append(StartMixMonitor(call.call_id, stream_id, chan.name, file, options))

    def adopt(self, call: Call, chan: Channel, file: str | None, since: datetime) -> None:
        """A MixMonitor found running on a channel (after a restart): its file is the call's."""
        if file is None and not self.split_directions:
            return
        n = len(call.recordings) + 1
        name = file or "vcon-" + SAFE_NAME.sub("_", call.call_id) + ".wav"
        call.recordings.append(Recording(f"mixmonitor-{n}", name, chan, since, file is None, ours=True))

    def recording(self, call: Call) -> Recording | None:
        """The recording that runs now on a live channel of the call, if any."""
        for rec in call.recordings:
            if rec.failure is None and not rec.channel.hung_up:
                return rec
        return None

    def hung_up(self, call: Call, chan: Channel) -> None:
        if call.monitoring == chan.uniqueid:
            call.monitoring = None  # another leg that stays on may be recorded next

    def started(self, call: Call, chan: Channel, at: datetime) -> bool:
        """``MixMonitorStart``: ours began, or the dialplan started one; False if it is a second one."""
        for rec in call.recordings:
            if rec.channel is chan and rec.failure is None:
                if rec.ours and rec.started_at is not None and not rec.confirmed:
                    rec.started_at, rec.confirmed = at, True
                    return True
                return False
        n = len(call.recordings) + 1
        rec = Recording(f"mixmonitor-{n}", chan.mixmonitor_file, chan, at, mixmonitor_at=at)
        rec.bridged_only = self.dialplan_bridged_only
        if rec.bridged_only and not chan.bridges:
            rec.started_at = None  # option b: nothing is written before the channel is bridged
        call.recordings.append(rec)
        return True

    @staticmethod
    def failed(call: Call, stream_id: str, reason: str) -> None:
        for rec in call.recordings:
            if rec.stream_id == stream_id:
                rec.failure = f"MixMonitor refused: {reason}"
        if call.monitoring is not None and all(
            r.failure for r in call.recordings if r.channel.uniqueid == call.monitoring
        ):
            call.monitoring = None

    # -- the end --------------------------------------------------------------------------

    def specs(self, call: Call, end: datetime) -> tuple[RecordingSpec, ...]:
        """The files to pick up for a finished call (or why there are none)."""
        specs: list[RecordingSpec] = []
        for rec in call.recordings:
            chan = rec.channel
            # Never bridged: a "b" MixMonitor wrote nothing, unless the dialplan's had no "b" after all.
            started = rec.started_at or rec.mixmonitor_at or call.started_at
            until = chan.lived_until(end)
            own = [chan.party] if chan.party else self.bridges.behind(chan, started, until)
            heard = [p for p in self.bridges.heard(chan, started, until) if p not in own]
            if not own and not heard:
                own = [p for p in call.parties]
            channels = (tuple(own), tuple(heard)) if heard else (tuple(own),)
            gaps = unbridged(chan, started, until) if rec.bridged_only else ()
            if rec.legs and rec.file:
                base = rec.file.removesuffix(".wav")
                for leg, voices in (("rx", tuple(own)), ("tx", tuple(heard) or tuple(own))):
                    specs.append(
                        RecordingSpec(
                            f"{rec.stream_id}-{leg}",
                            f"{base}-{leg}.wav",
                            chan.uniqueid,
                            started,
                            (voices,),
                            rec.failure,
                            gaps,
                        )
                    )
            else:
                specs.append(
                    RecordingSpec(rec.stream_id, rec.file, chan.uniqueid, started, channels, rec.failure, gaps)
                )
        if call.answered_at is not None and not specs:
            reason = "no MixMonitor ran on this call"
            if self.mixmonitor == "adapter" and not any(c.spans for c in call.channels.values()):
                reason += ": none of its channels was ever in a bridge, and MixMonitor (option b) records bridged audio"
            specs.append(RecordingSpec("mixmonitor", None, "", call.answered_at, ((),), reason))
        return tuple(specs)


def unbridged(chan: Channel, start: datetime, end: datetime) -> tuple[tuple[float, float], ...]:
    """Where, in a ``b`` MixMonitor's file, the channel was out of any bridge for a while."""
    stays = sorted(w for s in chan.spans if (w := s.overlap(start, end)) is not None)
    gaps: list[tuple[float, float]] = []
    offset, last = 0.0, None
    for lo, hi in stays:
        if last is not None and lo > last:
            if (lo - last).total_seconds() >= MIN_GAP_S:
                gaps.append((round(offset, 3), (lo - last).total_seconds()))
        elif last is not None:
            lo = last  # overlapping stays (a swap between bridges): count the time once
        offset += max(0.0, (hi - lo).total_seconds())
        last = hi if last is None else max(last, hi)
    return tuple(gaps)
