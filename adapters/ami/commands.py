"""What the tracker asks its I/O layer to do, and the MixMonitor policy that decides it.

Commands: :class:`StartMixMonitor` (send ``Action: MixMonitor``) and :class:`FinishCall` (pick
up the call's MixMonitor files, report them, then emit its ``CallEnded``). :class:`Monitors`
decides when the adapter records a call (``mixmonitor = "adapter"``: once the call is bridged,
on the caller's own channel when it can) and keeps track of every MixMonitor that runs, the
dialplan's included, so that :meth:`Monitors.specs` can name the files when the call is over.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import datetime

from adapters.ami.state import Call, Channel, Recording
from capture.events import CallEnded, CaptureEvent

SAFE_NAME = re.compile(r"[^A-Za-z0-9._-]")

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


class Monitors:
    """The MixMonitors of every call: when the adapter starts one, and which files a call leaves."""

    def __init__(self, *, mixmonitor: str, options: str, split_directions: bool) -> None:
        if mixmonitor not in ("adapter", "dialplan"):
            raise ValueError(f"mixmonitor must be adapter or dialplan, not {mixmonitor!r}")
        self.mixmonitor = mixmonitor
        self.options = options
        self.split_directions = split_directions

    def bridged(self, call: Call, chan: Channel, at: datetime, out: list[Output]) -> None:
        """A party's channel entered a bridge: in adapter mode, record the call if nobody does yet."""
        if self.mixmonitor != "adapter" or call.monitoring is not None or chan.party is None:
            return
        origin = call.channels.get(call.call_id)
        if origin is not None and origin.party is not None and not origin.hung_up and origin is not chan:
            return  # wait for the caller's own channel: it stays for the whole call
        call.monitoring = chan.uniqueid
        n = len(call.recordings) + 1
        stream_id = f"mixmonitor-{n}"
        base = "vcon-" + SAFE_NAME.sub("_", call.call_id) + ("" if n == 1 else f"-{n}")
        options = self.options
        if self.split_directions:
            options += f"r({base}-rx.wav)t({base}-tx.wav)"
        call.recordings.append(
            Recording(stream_id, f"{base}.wav", chan.uniqueid, chan.party, at, self.split_directions)
        )
        out.append(StartMixMonitor(call.call_id, stream_id, chan.name, f"{base}.wav", options))

    def hung_up(self, call: Call, chan: Channel) -> None:
        if call.monitoring == chan.uniqueid:
            call.monitoring = None  # another leg that stays on may be recorded next

    @staticmethod
    def started(call: Call, chan: Channel, at: datetime) -> None:
        """``MixMonitorStart``: ours began, or the dialplan started one."""
        for rec in call.recordings:
            if rec.uniqueid == chan.uniqueid and rec.failure is None:
                rec.started_at = at
                return
        if chan.party is None:
            return
        n = len(call.recordings) + 1
        call.recordings.append(Recording(f"mixmonitor-{n}", chan.mixmonitor_file, chan.uniqueid, chan.party, at))

    @staticmethod
    def failed(call: Call, stream_id: str, reason: str) -> None:
        for rec in call.recordings:
            if rec.stream_id == stream_id:
                rec.failure = f"MixMonitor refused: {reason}"

    @staticmethod
    def specs(call: Call) -> tuple[RecordingSpec, ...]:
        """The files to pick up for a finished call (or why there are none)."""
        others = tuple(call.parties)
        specs = []
        for rec in call.recordings:
            heard = tuple(k for k in others if k != rec.party)
            channels = ((rec.party,), heard) if heard else ((rec.party,),)
            search = rec.uniqueid
            if rec.legs and rec.file:
                base = rec.file.removesuffix(".wav")
                rx = RecordingSpec(
                    f"{rec.stream_id}-rx", f"{base}-rx.wav", search, rec.started_at, ((rec.party,),), rec.failure
                )
                tx = RecordingSpec(
                    f"{rec.stream_id}-tx",
                    f"{base}-tx.wav",
                    search,
                    rec.started_at,
                    (heard or (rec.party,),),
                    rec.failure,
                )
                specs += [rx, tx]
            else:
                specs.append(RecordingSpec(rec.stream_id, rec.file, search, rec.started_at, channels, rec.failure))
        if call.answered_at is not None and not specs:
            specs.append(
                RecordingSpec("mixmonitor", None, "", call.answered_at, ((),), "no MixMonitor ran on this call")
            )
        return tuple(specs)
