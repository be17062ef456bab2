"""Media timeouts of answered SIP calls, sans-IO: a call whose media stopped for
``timeout_s`` (and is not on hold) is to be ended.

Every media report moves a dialog's deadline later, never earlier, so one lower bound
(``check_at``) is enough: at that time the dialogs are scanned once, the overdue ones
returned and the bound moved to the earliest deadline left. A scan happens about once per
``timeout_s``, whatever the packet rate.
"""

from __future__ import annotations

from collections.abc import Iterable

from adapters.sip.dialogs import Dialog


class MediaTimeouts:
    """Which answered dialogs have had no media for ``timeout_s`` (None: never time out)."""

    def __init__(self, timeout_s: float | None) -> None:
        self.timeout_s = timeout_s
        self.check_at: float | None = None
        "No deadline falls before this."

    def watch(self, dialog: Dialog, now: float) -> None:
        """The dialog's media clock starts (again) at ``now``: answered, or back from hold."""
        dialog.media_at = now
        if self.timeout_s is None:
            return
        due = now + self.timeout_s
        if self.check_at is None or due < self.check_at:
            self.check_at = due

    def expired(self, dialogs: Iterable[Dialog], now: float) -> list[Dialog]:
        """The confirmed dialogs not on hold whose media is overdue at ``now``."""
        if self.check_at is None or now < self.check_at or self.timeout_s is None:
            return []
        overdue: list[Dialog] = []
        next_check: float | None = None
        for dialog in dialogs:
            if dialog.state != "confirmed" or dialog.held or dialog.media_at is None:
                continue
            due = dialog.media_at + self.timeout_s
            if now >= due:
                overdue.append(dialog)
            elif next_check is None or due < next_check:
                next_check = due
        self.check_at = next_check
        return overdue
