"""Hold, and a SIPREC client's pause of the recording, read from what each offer and metadata
document says (pure bookkeeping: the call emits the events it returns).

- Hold: a party whose every stream the offerer stopped sending on (``inactive``/``recvonly``,
  and ``sendonly`` for a phone, whose own direction it is; a null address; port 0).
- Pause (RFC 7866; PCI): mid-call, a SIPREC SRC puts EVERY stream ``a=inactive``
  (``sdp``), or sends metadata in which nobody sends any stream any more (``metadata``). That is
  a :class:`~capture.events.RecordingPaused` by ``src``, not a hold of everyone; its end (a
  stream sends again, someone sends again) is a :class:`~capture.events.RecordingResumed`.
  Each source keeps its word until it speaks again: the recording is paused while either does.
  A session that STARTS with every stream inactive (Cisco CUBE recording a held call) is on
  hold, not paused: nothing was being recorded yet.
"""

from __future__ import annotations

from typing import Any

from adapters.sip.sdp import MediaDescription
from capture.events import CaptureEvent, HoldChanged, RecordingPaused, RecordingResumed

NOT_SENDING = ("inactive", "recvonly")
"Directions of an offerer that sends nothing (a SIPREC SRC's streams are otherwise sendonly)."
Emit = list[tuple[type[CaptureEvent], dict[str, Any]]]


class MediaDirections:
    """Who is on hold and whether the SRC paused the recording, as offers come."""

    def __init__(self) -> None:
        self.held: dict[str, bool] = {}
        self.paused_by: set[str] = set()
        "What says the recording is paused now: 'sdp' (every stream inactive), 'metadata' (nobody sends)."
        self._all_stopped = False

    @property
    def idle(self) -> bool:
        """No media is expected (a hold, or a pause): the media timeout does not run."""
        return any(self.held.values()) or bool(self.paused_by)

    def offer(self, streams: list[tuple[str, MediaDescription]], *, siprec: bool, announce: bool,
              where: str) -> Emit:  # fmt: skip
        """An offer's m-lines (with the party each stream's hold belongs to); ``announce`` False for
        the initial INVITE (only holds are reported then: the call starts held)."""
        stopped = NOT_SENDING if siprec else (*NOT_SENDING, "sendonly")
        held_now: dict[str, bool] = {}
        for party, m in streams:
            idle = m.direction in stopped or m.address in ("0.0.0.0", "::") or m.port == 0
            held_now[party] = held_now.get(party, True) and idle
        all_stopped = bool(held_now) and all(held_now.values())
        out: Emit = []
        if siprec and announce:
            if all_stopped and not self._all_stopped:
                self._all_stopped = True
                return self.pause("sdp", True, f"every stream inactive ({where})")
            if not all_stopped:
                out += self.pause("sdp", False)
        self._all_stopped = all_stopped
        if "sdp" in self.paused_by:
            return out
        for party, held in held_now.items():
            if self.held.get(party, False) != held and (announce or held):
                out.append((HoldChanged, {"party": party, "held": held}))
            self.held[party] = held
        return out

    def metadata(self, silent_before: bool, silent: bool, where: str) -> Emit:
        """A mid-call metadata document: ``silent`` when it has nobody sending any stream."""
        if silent and not silent_before:
            return self.pause("metadata", True, f"the rs-metadata in {where} has nobody sending any stream")
        return self.pause("metadata", False) if not silent else []

    def pause(self, why: str, paused: bool, reason: str = "") -> Emit:
        before = bool(self.paused_by)
        if paused:
            self.paused_by.add(why)
        else:
            self.paused_by.discard(why)
        if self.paused_by and not before:
            return [(RecordingPaused, {"by": "src", "reason": reason})]
        if before and not self.paused_by:
            return [(RecordingResumed, {"by": "src"})]
        return []
