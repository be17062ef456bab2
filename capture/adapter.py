"""What the core offers adapters, and what an adapter offers the core.

An adapter is a class registered under the entry-point group ``vcon_capture.adapters``
(see pyproject.toml); the CLI finds it there, so the core never imports an adapter. It
declares its settings as a frozen dataclass built with :func:`capture.settings.setting`,
and it talks to the core only through the :class:`Capture` it is given: events go in
with ``emit``, audio goes into recordings from ``open_recording``, and the time comes from
``now()`` (wall clock, for events) and ``monotonic()`` (for timers): adapters read no other
clock. Every log line an adapter writes about a call is written inside
``call_scope(capture.vcon_uuid(call_id))`` so it carries the call's vCon uuid.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass
from datetime import datetime
from importlib.metadata import entry_points
from typing import Any, ClassVar, Protocol

from capture.events import CaptureEvent
from capture.metrics import Metrics
from capture.recording import StreamRecording

ADAPTER_GROUP = "vcon_capture.adapters"
COMMAND_GROUP = "vcon_capture.commands"


@dataclass(frozen=True, slots=True)
class ResumedCall:
    """A call that was in progress when the service died, taken up again at its restart.

    Only adapters that declare ``resumes_calls`` get these: after they have learnt what the
    other side still has (e.g. an AMI resync), they continue each one by emitting more events
    with its ``call_id`` (a repeated ``CallStarted`` is ignored) or end it with ``CallEnded``.
    """

    call_id: str
    vcon_uuid: str
    source: str
    started_at: datetime
    answered_at: datetime | None
    last_event_at: datetime
    "The last moment the journal knew the call was alive."


class Capture(Protocol):
    """The pipeline as an adapter sees it."""

    @property
    def accepting(self) -> bool:
        """False once shutdown began or while the disk is below its floor: refuse new calls
        (SIP 503, WHIP 503)."""

    @property
    def can_record(self) -> bool:
        """False while nothing can be written (the disk below its free-space floor): a refused
        call then leaves no vCon. True while draining: a refusal is still a call on record."""

    def now(self) -> datetime:
        """The current time, aware UTC."""

    def monotonic(self) -> float:
        """Seconds on a clock that never jumps: timers and timeouts."""

    def emit(self, event: CaptureEvent) -> None:
        """Hand over an event; safe to call from any thread."""

    @property
    def metrics(self) -> Metrics:
        """Counters adapters feed, e.g. ``metrics.rtp_packets("sip", received, lost)``."""

    def vcon_uuid(self, call_id: str) -> str | None:
        """The uuid of the vCon a started call will become."""

    def finished_vcon(self, vcon_uuid: str) -> bytes | None:
        """The bytes of a finished vCon (e.g. to show it to the participant), None if not finished."""

    def open_recording(
        self, call_id: str, stream_id: str, party: str, sample_rate: int, *, heard: tuple[str, ...] = ()
    ) -> StreamRecording:
        """A timestamp-true mono recording for one stream of a started call, sent by ``party``.

        ``heard``: every party whose voice the stream carries when it is a mix (a SIPREC mixed
        stream, a PBX's forked copy of a call): its channel then lists them all. A party that
        sends several streams gets a channel for each. The pipeline closes the recording when
        the call ends if the adapter has not.
        """

    def resumed_calls(self, source: str) -> list[ResumedCall]:
        """Calls of this adapter taken up again after a restart and not yet continued or ended."""


class Adapter(abc.ABC):
    """One protocol's translator into capture events."""

    name: ClassVar[str]
    "Command name and config section: sip, webrtc, ami."
    summary: ClassVar[str]
    "One line for --help."
    settings_class: ClassVar[type]
    "Frozen dataclass of this adapter's settings."
    resumes_calls: ClassVar[bool] = False
    """True if the adapter can learn, after a restart, which of its calls are still going on
    (then interrupted calls are handed back to it as :class:`ResumedCall`, not closed)."""

    def __init__(self, settings: Any, capture: Capture) -> None:
        self.settings = settings
        self.capture = capture

    @abc.abstractmethod
    async def start(self) -> None:
        """Bind sockets and begin taking calls; raise StartupError if that is impossible."""

    @abc.abstractmethod
    async def stop(self) -> None:
        """Stop taking calls and end every active call with CallEnded.

        Keep listening: until :meth:`close`, new calls and load-balancer probes are refused
        with 503 (``capture.accepting`` is False), so a dispatcher sees the node draining.
        """

    async def close(self) -> None:
        """Release sockets and listeners; called once the pipeline has drained."""
        return None

    async def pause_media(self, call_id: str, paused: bool) -> None:
        """The core paused (or resumed) one of this adapter's calls on request (its API).

        Audio the core records itself is already silenced by the core; an adapter whose audio
        is recorded elsewhere (Asterisk's MixMonitor) makes the recorder there stop, too.
        """
        return None

    def describe(self) -> str:
        """Where it listens, for the startup log line."""
        return self.name


def _load_group(group: str) -> tuple[dict[str, Any], dict[str, str]]:
    """Objects registered under an entry-point group, and those that failed to load, with why.

    A broken plugin must not take the others down: it is reported, not raised.
    """
    found: dict[str, Any] = {}
    broken: dict[str, str] = {}
    for ep in entry_points(group=group):
        try:
            found[ep.name] = ep.load()
        except (ImportError, AttributeError) as exc:
            broken[ep.name] = f"{type(exc).__name__}: {exc}"
    return found, broken


def installed_adapters() -> tuple[dict[str, type[Adapter]], dict[str, str]]:
    """Adapter classes by name, and the adapters that failed to load."""
    return _load_group(ADAPTER_GROUP)


def installed_commands() -> tuple[dict[str, Any], dict[str, str]]:
    """Extra commands (``main(argv) -> int`` callables with a ``summary``) by name, and the broken ones."""
    return _load_group(COMMAND_GROUP)
