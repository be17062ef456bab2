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
    bridges: set[str] = field(default_factory=set)
    mixmonitor_file: str | None = None


@dataclass(slots=True, eq=False)
class Recording:
    """One MixMonitor on one channel (the adapter's or the dialplan's)."""

    stream_id: str
    file: str | None
    uniqueid: str
    party: str
    started_at: datetime
    legs: bool = False
    "Per-direction files (MixMonitor ``r()``/``t()``) instead of one mixed file."
    failure: str | None = None


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
    dialing: set[str] = field(default_factory=set)
    failed_dial: str | None = None
    hangups: list[Hangup] = field(default_factory=list)
    blind_pending: list[BlindTransfer] = field(default_factory=list)
    recordings: list[Recording] = field(default_factory=list)
    monitoring: str | None = None
    "Uniqueid of the channel the adapter's MixMonitor runs on."
    left_first: str | None = None
    "Party that last left a bridge while another party was still in it: who hung up."
    cdrs: list[dict[str, str]] = field(default_factory=list)
    ended_at: datetime | None = None

    def live(self) -> list[Channel]:
        return [c for c in self.channels.values() if not c.hung_up]
