"""What the console shows of a vCon document: pure functions of the parsed JSON, no I/O.

* :func:`summary`: one line of the list (start, duration, parties, disposition, source) and the
  words a search matches (:func:`matches`: numbers by their digits, names and addresses by
  substring, uuid and Call-ID by prefix).
* :func:`detail`: the detail page: parties, dialogs without their bodies, the CDR, attachments
  with bounded previews, and the timeline.
* :func:`timeline`: everything with a time on one axis whose zero is the call's first instant:
  each recording's stretch, ``party_history`` events (a DTMF key's keydown/keyup as one press,
  holds and mutes as bands from start to end), transfers, and the stretches a pause kept out.

Documents come from disk and may be anything: every accessor tolerates missing or mistyped
fields (a malformed vCon is shown as far as it can be, never an exception).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

from capture.vcon.content import parse_rfc3339

PREVIEW_CHARS = 16_000
"Attachment bodies shown up to this many characters (the download has the rest)."
AUDIO_TYPES = ("audio/",)
PARTY_FIELDS = ("name", "tel", "sip", "mailto", "stir", "uuid", "validation", "sip_display_name", "sip_user_agent")


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _str(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def _num(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _time(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        return parse_rfc3339(value)
    except ValueError:
        return None


def _iso(at: datetime | None) -> str | None:
    return at.astimezone(UTC).isoformat().replace("+00:00", "Z") if at else None


def party_label(party: Any, index: int) -> str:
    """How a party is named on screen: its name, else its number or address."""
    p = _dict(party)
    for key in ("name", "tel", "sip", "mailto"):
        if text := _str(p.get(key)):
            return text.removeprefix("sip:").removeprefix("mailto:")
    return f"party {index}"


def _parties(doc: dict[str, Any]) -> list[dict[str, Any]]:
    return [_dict(p) for p in _list(doc.get("parties"))]


def _attachment(doc: dict[str, Any], purpose: str) -> Any:
    for att in _list(doc.get("attachments")):
        if _dict(att).get("purpose") == purpose:
            body = att.get("body")
            if att.get("encoding") == "json" and isinstance(body, str):
                try:
                    return json.loads(body)
                except json.JSONDecodeError:
                    return None
            return body
    return None


def cdr_of(doc: dict[str, Any]) -> dict[str, Any]:
    return _dict(_attachment(doc, "cdr"))


def disposition_of(doc: dict[str, Any]) -> str:
    """``answered``, an ``incomplete`` dialog's disposition (busy, no-answer...), or the CDR's."""
    for dialog in _list(doc.get("dialog")):
        d = _dict(dialog)
        if d.get("type") == "incomplete" and _str(d.get("disposition")):
            return str(d["disposition"])
    cdr = cdr_of(doc)
    if _str(cdr.get("disposition")):
        return str(cdr["disposition"])
    has_audio = any(_dict(d).get("type") == "recording" for d in _list(doc.get("dialog")))
    return "answered" if has_audio else "unknown"


def _span(doc: dict[str, Any]) -> tuple[datetime | None, datetime | None]:
    """The call's first and last instants, from every dated thing in the document."""
    times: list[datetime] = []
    cdr = cdr_of(doc)
    for key in ("start", "end", "answer"):
        if (t := _time(cdr.get(key))) is not None:
            times.append(t)
    for dialog in _list(doc.get("dialog")):
        d = _dict(dialog)
        if (start := _time(d.get("start"))) is not None:
            times.append(start)
            if (duration := _num(d.get("duration"))) is not None:
                times.append(start + timedelta(seconds=duration))
        times += [t for h in _list(d.get("party_history")) if (t := _time(_dict(h).get("time"))) is not None]
    if not times and (created := _time(doc.get("created_at"))) is not None:
        times.append(created)
    return (min(times), max(times)) if times else (None, None)


@dataclass(frozen=True)
class Query:
    """What the list is filtered by (every given part must match)."""

    text: str = ""
    "Words, each matching a number (by digits), a name, an address, the uuid or the Call-ID."
    day_from: date | None = None
    day_to: date | None = None
    "Inclusive, on the call's start date in UTC."
    disposition: str | None = None

    @property
    def empty(self) -> bool:
        return not self.text.strip() and self.day_from is None and self.day_to is None and not self.disposition


def summary(doc: Any, form: str) -> dict[str, Any]:
    """One line of the list, plus ``words``: what a search looks in."""
    d = _dict(doc)
    start, end = _span(d)
    parties = _parties(d)
    cdr = cdr_of(d)
    duration = _num(cdr.get("duration"))
    if duration is None and start and end:
        duration = round((end - start).total_seconds(), 3)
    words = [str(d.get("uuid", "")).lower(), str(cdr.get("call_id") or "").lower()]
    for party in parties:
        words += [str(v).lower() for k, v in party.items() if k in PARTY_FIELDS and isinstance(v, str)]
    return {
        "uuid": _str(d.get("uuid")),
        "form": form,
        "start": _iso(start) or _str(d.get("created_at")),
        "duration": duration,
        "parties": [party_label(p, i) for i, p in enumerate(parties)],
        "source": _str(cdr.get("source")),
        "disposition": disposition_of(d) if form != "encrypted" else "unknown",
        "subject": _str(d.get("subject")),
        "recordings": sum(1 for x in _list(d.get("dialog")) if _dict(x).get("type") == "recording"),
        "words": words,
    }


def matches(line: dict[str, Any], query: Query) -> bool:
    """Whether a :func:`summary` line passes the query."""
    if query.disposition and line.get("disposition") != query.disposition:
        return False
    if query.day_from or query.day_to:
        start = _time(line.get("start"))
        if start is None:
            return False
        day = start.astimezone(UTC).date()
        if (query.day_from and day < query.day_from) or (query.day_to and day > query.day_to):
            return False
    words: list[str] = line.get("words", [])
    digits = [re.sub(r"\D", "", w) for w in words]
    for token in query.text.lower().split():
        token_digits = re.sub(r"[\s()+.\-]", "", token)
        if token_digits.isdigit() and len(token_digits) >= 3:
            if any(token_digits in d for d in digits if d):
                continue
        if not any(token in w for w in words):
            return False
    return True


def _channels(doc: dict[str, Any], index: int, dialog: dict[str, Any]) -> list[dict[str, Any]]:
    """Who is heard on each channel of a recording dialog (the capture notes' map when a channel mixes voices)."""
    parties = _parties(doc)
    notes = _dict(_attachment(doc, "capture_notes"))
    mixed = _dict(notes.get("channel_parties")).get(str(index))
    refs = _list(dialog.get("parties"))
    if isinstance(mixed, list):
        per_channel = [[p for p in _list(ch) if isinstance(p, int)] for ch in mixed]
    else:
        per_channel = [[p] if isinstance(p, int) else [x for x in _list(p) if isinstance(x, int)] for p in refs]
    return [
        {
            "channel": n,
            "parties": members,
            "label": " + ".join(party_label(parties[p], p) if 0 <= p < len(parties) else f"party {p}" for p in members),
        }
        for n, members in enumerate(per_channel)
    ]


def timeline(doc: Any) -> dict[str, Any]:
    """Everything dated in the vCon, in seconds from the call's first instant (see the module docstring)."""
    d = _dict(doc)
    origin, end = _span(d)
    if origin is None or end is None:
        return {"origin": None, "duration": 0.0, "recordings": [], "events": [], "bands": []}
    parties = _parties(d)

    def t(at: datetime) -> float:
        return round((at - origin).total_seconds(), 3)

    def who(p: Any) -> str:
        return party_label(parties[p], p) if isinstance(p, int) and 0 <= p < len(parties) else "?"

    recordings: list[dict[str, Any]] = []
    events: list[dict[str, Any]] = []
    bands: list[dict[str, Any]] = []
    open_bands: dict[tuple[int, str], float] = {}
    pressed: dict[tuple[int, str], dict[str, Any]] = {}
    for i, dialog in enumerate(_list(d.get("dialog"))):
        dl = _dict(dialog)
        start = _time(dl.get("start"))
        if dl.get("type") == "recording" and start is not None:
            recordings.append(
                {
                    "dialog": i,
                    "start": t(start),
                    "duration": _num(dl.get("duration")) or 0.0,
                    "channels": _channels(d, i, dl),
                }
            )
        if dl.get("type") == "transfer" and start is not None:
            label = f"transfer: {who(dl.get('transferee'))} to {who(dl.get('transfer_target'))}"
            label += f" (by {who(dl.get('transferor'))})"
            events.append({"t": t(start), "kind": "transfer", "party": dl.get("transferor"), "label": label})
        history = sorted(
            (h for h in (_dict(x) for x in _list(dl.get("party_history"))) if _time(h.get("time"))),
            key=lambda h: _time(h["time"]) or origin,
        )
        for h in history:
            at, kind, party = t(_time(h["time"]) or origin), str(h.get("event")), h.get("party")
            p = party if isinstance(party, int) else -1
            if kind in ("keydown", "keyup"):
                button = str(h.get("button", "?"))
                if kind == "keydown" or (p, button) not in pressed:
                    press = {"t": at, "kind": "dtmf", "party": party, "label": f"DTMF {button} by {who(party)}"}
                    press["button"], press["duration"] = button, None
                    events.append(press)
                    if kind == "keydown":
                        pressed[(p, button)] = press
                    continue
                press = pressed.pop((p, button))
                press["duration"] = round(at - press["t"], 3)
                continue
            if kind in ("hold", "mute"):
                open_bands.setdefault((p, kind), at)
            elif kind in ("unhold", "unmute") and (p, kind[2:]) in open_bands:
                bands.append({"kind": kind[2:], "party": party, "start": open_bands.pop((p, kind[2:])), "end": at})
            verb = {"join": "joined", "drop": "left", "hold": "on hold", "unhold": "off hold"}.get(kind, kind)
            events.append({"t": at, "kind": kind, "party": party, "label": f"{who(party)} {verb}"})
    duration = t(end)
    for (p, kind), start_t in open_bands.items():
        bands.append({"kind": kind, "party": p if p >= 0 else None, "start": start_t, "end": duration})
    for pause in _list(_attachment(d, "recording_pauses")):
        ps, pe = _time(_dict(pause).get("start")), _time(_dict(pause).get("end"))
        if ps is not None:
            bands.append({"kind": "paused", "party": None, "start": t(ps), "end": t(pe) if pe else duration})
    events.sort(key=lambda e: e["t"])
    return {"origin": _iso(origin), "duration": duration, "recordings": recordings, "events": events, "bands": bands}


def _preview(att: dict[str, Any]) -> tuple[str | None, int]:
    """(text shown, size in characters of the body as stored)."""
    body, encoding = att.get("body"), att.get("encoding")
    if body is None:
        return None, 0
    if encoding == "json" or not isinstance(body, str):
        text = json.dumps(json.loads(body) if isinstance(body, str) else body, indent=2, ensure_ascii=False)
        return text[:PREVIEW_CHARS], len(text)
    if encoding == "base64url":
        return None, len(body)
    return body[:PREVIEW_CHARS], len(body)


def detail(doc: Any) -> dict[str, Any]:
    """The detail page of an unsigned (or unwrapped) vCon; bodies are left out (audio has its own URL)."""
    d = _dict(doc)
    parties = _parties(d)
    dialogs = []
    for i, dialog in enumerate(_list(d.get("dialog"))):
        dl = {k: v for k, v in _dict(dialog).items() if k not in ("body", "party_history")}
        dl["index"] = i
        dl["inline"] = "body" in _dict(dialog)
        dl["history_entries"] = len(_list(_dict(dialog).get("party_history")))
        dialogs.append(dl)
    attachments = []
    for i, att in enumerate(_list(d.get("attachments"))):
        a = _dict(att)
        try:
            text, size = _preview(a)
        except (TypeError, ValueError):
            text, size = None, len(str(a.get("body", "")))
        entry = {k: v for k, v in a.items() if k != "body"}
        entry.update(index=i, preview=text, size=size, truncated=text is not None and len(text) < size)
        attachments.append(entry)
    return {
        "uuid": _str(d.get("uuid")),
        "subject": _str(d.get("subject")),
        "created_at": _str(d.get("created_at")),
        "disposition": disposition_of(d),
        "parties": [
            {"index": i, "label": party_label(p, i), **{k: v for k, v in p.items() if k in PARTY_FIELDS}}
            for i, p in enumerate(parties)
        ],
        "dialogs": dialogs,
        "cdr": cdr_of(d),
        "notes": _attachment(d, "capture_notes"),
        "attachments": attachments,
        "timeline": timeline(d),
    }


def is_audio(dialog: dict[str, Any]) -> bool:
    mediatype = str(dialog.get("mediatype") or "")
    return dialog.get("type") == "recording" and (mediatype.startswith(AUDIO_TYPES) or not mediatype)
