"""A PBX's forked copy of a call, as the recipes in deploy/ send it: who is on the call, and
the PBX's reports of calls that never had a conversation.

A FreeSWITCH eavesdrop (deploy/freeswitch, scripts/vcon_capture.lua) or an Asterisk ChanSpy
(deploy/asterisk/extensions-fork.conf) calls the recorder with ONE audio stream that mixes
both sides of the call. The INVITE's From/P-Asserted-Identity is the caller as the PBX
could write it, but its Request-URI and To are the recorder itself, and its Contact and
User-Agent are the PBX's gateway: identities come from the ``X-Vcon-*`` headers instead.

- ``X-Vcon-Call-Uuid`` (FreeSWITCH) or ``X-Vcon-Linkedid`` (Asterisk) marks a copy; with
  ``X-Vcon-Disposition`` it is a *report* of a call that has no audio to copy (busy,
  cancelled, unanswered, or answered but the copy failed), answered ``603 Decline`` at once.
- ``X-Vcon-Encoding: percent``: every value is percent-encoded UTF-8 (FreeSWITCH); without
  it values are taken as received (Asterisk). Values are never split on commas.
- The copy's BYE says who ended the call in ``X-Vcon-Ended-By`` (``caller``, ``callee``,
  ``pbx``); without it nobody is guessed.

Pure data: :class:`adapters.sip.call.SipCall` turns it into events.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import unquote

from adapters.sip.message import SipMessage, parse_name_addr, uri_hostport
from adapters.sip.parties import caller_fields, clean_name, identity_fields, number_of
from capture.errors import RemoteProtocolError
from capture.events import CallAnswered, CaptureEvent, Disposition, MediaUnavailable

PREFIX = "X-Vcon-"
MAX_VALUE = 256
"Characters kept of one header value (a longer one is cut, and the vCon says so)."
DISPOSITIONS = {d.value: d for d in Disposition}
ANSWERED = "answered"
"A report of a conversation whose copy could not be made (the audio is lost, the call is not)."
_CONTROLS = dict.fromkeys([*range(0x20), 0x7F])


@dataclass
class Fork:
    """What the PBX says about the call it copied to us."""

    pbx: str
    "freeswitch (X-Vcon-Call-Uuid) or asterisk (X-Vcon-Linkedid)."
    values: dict[str, str]
    "Decoded X-Vcon-* values by their name without the prefix, lower case (caller-name...)."
    notes: list[str] = field(default_factory=list)
    "What was odd about the headers (an unknown encoding, a cut value...), for capture_notes."

    def get(self, name: str) -> str | None:
        return self.values.get(name) or None

    @property
    def pbx_call_id(self) -> str | None:
        return self.get("call-uuid") or self.get("linkedid")

    @property
    def is_report(self) -> bool:
        """A signalling-only report: no audio will come (answered 603 at once)."""
        return self.get("disposition") is not None

    def disposition(self) -> Disposition | None:
        """The report's disposition; None for ``answered`` (a conversation without its audio)."""
        value = (self.get("disposition") or "").lower()
        if value == ANSWERED:
            return None
        if value not in DISPOSITIONS:
            self._note(f"X-Vcon-Disposition {value!r} is not a disposition we know: recorded as failed")
            return Disposition.FAILED
        return DISPOSITIONS[value]

    def time(self, name: str) -> datetime | None:
        """An X-Vcon time (RFC 3339, e.g. ``X-Vcon-Created``), aware UTC; None if absent or unreadable."""
        value = self.get(name)
        if value is None:
            return None
        try:
            at = datetime.fromisoformat(value)
        except ValueError:
            self._note(f"X-Vcon-{name.title()} {value!r} is not an RFC 3339 time: ignored")
            return None
        return at.replace(tzinfo=UTC) if at.tzinfo is None else at.astimezone(UTC)

    # -- parties ------------------------------------------------------------------------

    def caller(self, invite: SipMessage) -> dict[str, Any]:
        """The caller: From / P-Asserted-Identity for ``sip`` (the PBX's address for them), the
        X-Vcon number and the exact name; never the gateway's Contact or User-Agent."""
        fields = caller_fields(invite)
        display = _display(invite, "P-Asserted-Identity") or _display(invite, "From")
        if display:
            fields["sip_display_name"] = display
        number = number_of(self.get("caller-num") or "")
        if number:
            fields["tel"] = number
        name = self.name("caller-name")
        if name:
            fields["name"] = name
        return fields

    def callee(self, invite: SipMessage, own_hosts: frozenset[str]) -> dict[str, Any]:
        """Who answered as the PBX knows them (X-Vcon-Callee-*), else who was dialled, else
        P-Called-Party-ID or the first Diversion; the Request-URI only for its number: its host
        is the recorder."""
        fields: dict[str, Any] = {}
        name = self.name("callee-name")
        user = self.get("callee-num") or self.get("dialled-num")
        if user is None:
            for header in ("P-Called-Party-ID", "Diversion"):
                uri = _uri(invite, header)
                if uri is not None:
                    found = identity_fields(uri, None)
                    if "sip" in found and _host(found["sip"]) in own_hosts:
                        del found["sip"]
                    fields.update(found)
                    break
            else:
                user = _user(invite.uri or "") or _user(_uri(invite, "To") or "")
        if user is not None:
            number = number_of(user)
            if number:
                fields["tel"] = number
            elif user and self.domain(invite):
                fields["sip"] = f"sip:{user}@{self.domain(invite)}"
        if name:
            fields["name"] = name
        return fields

    def name(self, key: str) -> str | None:
        """A display name from the headers: controls dropped."""
        value = self.get(key)
        return value.translate(_CONTROLS).strip() or None if value else None

    def domain(self, invite: SipMessage) -> str | None:
        """The PBX's host: P-Asserted-Identity's, else From's (Request-URI and To are the recorder)."""
        for header in ("P-Asserted-Identity", "From"):
            uri = _uri(invite, header)
            host = _host(uri) if uri else ""
            if host:
                return host
        return None

    # -- the CDR ------------------------------------------------------------------------

    def cdr(self, invite: SipMessage, bye: dict[str, str]) -> dict[str, Any]:
        """The PBX's side of the call for the CDR (joined with its own CDR by ``pbx_call_id``)."""
        fields: dict[str, Any] = {
            "pbx": self.pbx,
            "pbx_call_id": self.pbx_call_id,
            "pbx_source_channel": self.get("source-channel"),
            "pbx_callee_channel": self.get("callee-channel"),
            "pbx_direction": self.get("direction"),
            "dialled": self.get("dialled-num") or _user(invite.uri or ""),
            "pbx_hangup_cause": bye.get("hangup-cause") or self.get("hangup-cause"),
            "pbx_ended_by": bye.get("ended-by") or self.get("ended-by"),
        }
        if self.is_report:
            fields.update(pbx_disposition=self.get("disposition"), pbx_sip_status=self.get("sip-status"),
                          notification=True)  # fmt: skip
            if (self.get("disposition") or "").lower() == ANSWERED:
                fields["disposition"] = ANSWERED  # known answered, if not when: no answer time is made up
        return {k: v for k, v in fields.items() if v is not None}

    def ended_by(self, bye: dict[str, str]) -> str | None:
        """``caller`` or ``callee`` as the PBX said (the BYE's header, else the report's); None otherwise."""
        value = (bye.get("ended-by") or self.get("ended-by") or "").lower()
        return value if value in ("caller", "callee") else None

    def report_end(self, call_id: str, started_at: datetime, now: datetime) -> tuple[datetime, list[CaptureEvent]]:
        """When a reported call ended (X-Vcon-Ended), and what to say before its end: a call that was
        answered but whose copy failed (``answered``) was a conversation, and has no audio because..."""
        ended = max(self.time("ended") or now, started_at)
        if (self.get("disposition") or "").lower() != ANSWERED:
            return ended, []
        events: list[CaptureEvent] = []
        answered = self.time("answered")
        if answered is not None:
            events.append(CallAnswered(call_id=call_id, at=min(max(answered, started_at), ended)))
        why = f"the PBX could not copy the audio: {self.get('hangup-cause') or 'no cause given'}"
        events.append(MediaUnavailable(call_id=call_id, at=ended, stream_id="pbx-copy", reason=why))
        return ended, events

    def _note(self, note: str) -> None:
        if note not in self.notes:
            self.notes.append(note)


def read_fork(msg: SipMessage) -> Fork | None:
    """The fork an INVITE announces (None: not a PBX's copy)."""
    values, notes = x_vcon(msg)
    if values.get("call-uuid"):
        return Fork("freeswitch", values, notes)
    if values.get("linkedid"):
        return Fork("asterisk", values, notes)
    return None


def x_vcon(msg: SipMessage) -> tuple[dict[str, str], list[str]]:
    """Every X-Vcon-* value of a message, decoded as its X-Vcon-Encoding says; and notes."""
    encoding = (msg.get_line("X-Vcon-Encoding") or "").strip().lower()
    notes: list[str] = []
    if encoding not in ("", "percent"):
        notes.append(f"X-Vcon-Encoding {encoding!r} is unknown: X-Vcon values taken as received")
    values: dict[str, str] = {}
    for name, raw in msg.headers:
        key = name.lower()
        if not key.startswith(PREFIX.lower()) or key == "x-vcon-encoding":
            continue
        key = key[len(PREFIX) :]
        if key in values:
            continue
        value = unquote(raw, encoding="utf-8", errors="replace") if encoding == "percent" else raw
        value = value.strip()
        if len(value) > MAX_VALUE:
            notes.append(f"{name} was {len(value)} characters long: kept the first {MAX_VALUE}")
            value = value[:MAX_VALUE]
        values[key] = value
    return values, notes


def bye_values(msg: SipMessage) -> dict[str, str]:
    """The X-Vcon-* values of the copy's BYE (X-Vcon-Ended-By, X-Vcon-Hangup-Cause)."""
    values, _ = x_vcon(msg)
    return values


def _uri(msg: SipMessage, header: str) -> str | None:
    value = msg.get(header)
    try:
        return parse_name_addr(value).uri if value else None
    except RemoteProtocolError:
        return None


def _display(msg: SipMessage, header: str) -> str | None:
    value = msg.get(header)
    try:
        return clean_name(parse_name_addr(value).display) if value else None
    except RemoteProtocolError:
        return None


def _user(uri: str) -> str | None:
    """The user part of a sip:/tel: URI (without parameters), None if it has none."""
    scheme, sep, rest = uri.strip().strip("<>").partition(":")
    if not sep:
        return None
    if scheme.lower() == "tel":
        return rest.split(";", 1)[0] or None
    user, at, _ = rest.partition("@")
    return user.split(";", 1)[0] or None if at else None


def _host(uri: str) -> str:
    try:
        return uri_hostport(uri)[0].lower() if "@" in uri or ":" in uri else ""
    except ValueError:
        return ""
