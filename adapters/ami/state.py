"""What the tracker knows about the PBX: channels, calls, and the recordings running on them.

Plain records; the tracker's rooms (:mod:`channels`, :mod:`transfers`, :mod:`dispositions`,
:mod:`commands`) each keep their part of a :class:`Call` up to date.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime


@dataclass(slots=True, eq=False)
class Channel:
    uniqueid: str
    name: str
    linkedid: str
    party: str | None
    "The endpoint (``PJSIP/alice``) the channel stands for; None for Local and other internal channels."
    number: str | None = None
    display: str | None = None
    up: bool = False
    hung_up: bool = False
    hung_up_at: datetime | None = None
    bridges: set[str] = field(default_factory=set)
    spans: list[Span] = field(default_factory=list)
    "Every bridge stay of the channel, in order."
    mixmonitor_file: str | None = None
    pair: Channel | None = None
    "The other half of a Local channel pair."
    dials: list[Channel] = field(default_factory=list)
    "Channels this one dialled (DialBegin)."
    sticky_identity: bool = False
    "The first CallerID stays (an Originate's Local half: later updates describe the far end)."
    seen_at_resync: bool = False
    "First seen in a CoreShowChannels listing: what runs on it (MixMonitor) is not known yet."
    dtmf_begun: str = ""
    "Digits whose DTMFBegin came (a key really pressed)."

    @property
    def local(self) -> bool:
        return self.name[:6].lower() == "local/"

    def lived_until(self, default: datetime) -> datetime:
        return self.hung_up_at or default


@dataclass(slots=True, eq=False)
class Span:
    """One stay of a channel in a bridge; ``end`` None while it lasts."""

    bridge: str
    channel: Channel
    start: datetime
    end: datetime | None = None

    def overlap(self, start: datetime, end: datetime) -> tuple[datetime, datetime] | None:
        """The part of [start, end] this stay covers (a point counts), or None."""
        lo = max(start, self.start)
        hi = end if self.end is None else min(end, self.end)
        return (lo, hi) if lo <= hi else None


@dataclass(slots=True, eq=False)
class Recording:
    """One MixMonitor on one channel (the adapter's or the dialplan's)."""

    stream_id: str
    file: str | None
    channel: Channel
    started_at: datetime | None
    "When the file's first sample was recorded; None while a ``b`` MixMonitor waits for a bridge."
    legs: bool = False
    "Per-direction files (MixMonitor ``r()``/``t()``) instead of one mixed file."
    failure: str | None = None
    ours: bool = False
    "Started by the adapter (else by the dialplan)."
    confirmed: bool = False
    "Its MixMonitorStart arrived."
    mixmonitor_at: datetime | None = None
    "When its MixMonitorStart came (a dialplan one; the file may start later, at the bridge)."
    bridged_only: bool = True
    "MixMonitor option ``b``: the file holds only the time the channel was bridged."


@dataclass(frozen=True, slots=True)
class Hangup:
    channel: Channel
    cause: int
    cause_txt: str
    at: datetime


@dataclass(frozen=True, slots=True)
class BlindTransfer:
    """A blind transfer waiting for the party it brings in."""

    at: datetime
    transferor: str
    transferee: str
    exten: str
    context: str


@dataclass(slots=True, eq=False)
class Call:
    """Everything that shares one ``Linkedid``."""

    call_id: str
    started_at: datetime
    channels: dict[str, Channel] = field(default_factory=dict)
    parties: dict[str, tuple[str | None, str | None]] = field(default_factory=dict)
    "Party key -> (tel, name) as last announced."
    answered_at: datetime | None = None
    answer_fallback: datetime | None = None
    "Answered while nobody listened, and the PBX has not said when yet: this is the best guess."
    dialing: set[str] = field(default_factory=set)
    failed_dial: str | None = None
    hangups: list[Hangup] = field(default_factory=list)
    held: set[str] = field(default_factory=set)
    "Parties that put the others on hold (Hold without its Unhold yet)."
    blind_pending: list[BlindTransfer] = field(default_factory=list)
    recordings: list[Recording] = field(default_factory=list)
    monitoring: str | None = None
    "Uniqueid of the channel the adapter's MixMonitor runs on."
    left_first: str | None = None
    "Party that last left a bridge while another party was still in it: who hung up."
    cdrs: list[dict[str, str]] = field(default_factory=list)
    ended_at: datetime | None = None
    resumed: bool = False
    "Taken over from a previous run of the recorder (its vCon is already open)."
    quick_end: bool = False
    "No Cdr will come (the PBX restarted): finish without waiting for them."
    paused_by: str | None = None
    "Who paused the recording (MixMonitor muted): 'api' through the recorder, 'pbx' by itself; None: recording."

    def live(self) -> list[Channel]:
        return [c for c in self.channels.values() if not c.hung_up]
