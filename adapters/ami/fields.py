"""Reading AMI field values: times, numbers, CallerIDs and channel names."""

from __future__ import annotations

import re
from datetime import UTC, datetime

from adapters.ami.protocol import Message

INTERNAL_TECHS = frozenset({"local", "snoop", "announcer", "cbann", "cbrec", "recorder"})
UNKNOWN = ("", "<unknown>", "<UNKNOWN>")
NUMBER = re.compile(r"^\+?[0-9*#]+$")


def endpoint(channel: str) -> str | None:
    """``SIP/150010002-0000002d`` -> ``SIP/150010002``; None for Local and other internal channels."""
    tech, _, rest = channel.partition("/")
    if not rest or tech.lower() in INTERNAL_TECHS:
        return None
    base, sep, suffix = rest.rpartition("-")
    if sep and base and all(c in "0123456789abcdefABCDEF" for c in suffix):
        return f"{tech}/{base}"
    return channel


def as_int(value: str | None) -> int:
    try:
        return int(value or 0)
    except ValueError:
        return 0


def known(value: str | None) -> str | None:
    """A CallerID field, or None for Asterisk's ways of saying "unknown"."""
    return None if value is None or value in UNKNOWN else value


def event_time(msg: Message, now: datetime) -> datetime:
    """The event's ``Timestamp`` (manager.conf ``timestampevents=yes``) or, without it, now."""
    stamp = msg.get("Timestamp")
    if stamp:
        try:
            return datetime.fromtimestamp(float(stamp), UTC)
        except (ValueError, OverflowError, OSError):
            pass
    return now


def iso(at: datetime) -> str:
    return at.isoformat().replace("+00:00", "Z")


def lost(reason: str) -> Message:
    """A stand-in Hangup for a channel whose real one we did not see."""
    return Message([("Event", "Hangup"), ("Cause", "0"), ("Cause-txt", reason)])
