"""Checks a vCon document against draft core-04, including the rules the WG schema cannot express.

Beyond the schema: index ranges and what they point at, body xor url, ``content_hash`` format,
the per-dialog-type table of §4.3.1.6 (:mod:`capture.vcon.rules`), §4.4's attachment rules
(start, party, dialog; mediatype and encoding with a non-empty inline body), legacy fields of
earlier drafts, and the types of the extension fields we emit (``sip-signaling``).

:func:`problems` returns one ``"$.json.path: what is wrong"`` string per problem; an empty
list means valid. Referenced files are not read here (no I/O): :func:`referenced_content`
lists them so a caller can check their hashes with :func:`capture.vcon.content.hash_matches`.
"""

from __future__ import annotations

import uuid as uuidlib
from collections.abc import Iterator
from typing import Any

from capture.vcon.content import CONTENT_HASH_RE, b64url_decode, parse_rfc3339
from capture.vcon.rules import TRANSFER_REFERENCES, table_problems
from capture.vcon.syntax import KNOWN_VERSIONS, LAWFUL_BASIS, LEGACY_KEYS, SIP_SIGNALING

DIALOG_TYPES = {"recording", "text", "transfer", "incomplete", "recording-set"}
DISPOSITIONS = {"no-answer", "congestion", "failed", "busy", "hung-up", "voicemail-no-message"}
ENCODINGS = {"base64url", "json", "none"}
HISTORY_EVENTS = {"join", "drop", "hold", "unhold", "mute", "unmute", "keydown", "keyup"}
CONTENT_TYPES = {"recording", "text"}
"Dialog types that carry content (body or url); Table 1 forbids it on the others."
SIP_PARTY_FIELDS = ("sip_contact", "sip_user_agent", "sip_display_name")
SIP_DIALOG_FIELDS = ("sip_call_id", "sip_from_tag", "sip_to_tag")


def form_of(doc: Any) -> str:
    """``unsigned``, ``signed`` (JWS), ``encrypted`` (JWE) or ``unknown``."""
    if not isinstance(doc, dict):
        return "unknown"
    if "ciphertext" in doc and "recipients" in doc:
        return "encrypted"
    if "payload" in doc and "signatures" in doc:
        return "signed"
    if "uuid" in doc or any(k in doc for k in ("parties", "dialog", "analysis", "attachments")):
        return "unsigned"
    return "unknown"


class _Checker:
    def __init__(self, doc: dict[str, Any]) -> None:
        self.doc = doc
        self.out: list[str] = []
        parties = doc.get("parties")
        dialogs = doc.get("dialog")
        self.n_parties = len(parties) if isinstance(parties, list) else 0
        self.n_dialogs = len(dialogs) if isinstance(dialogs, list) else 0

    def problem(self, path: str, text: str) -> None:
        self.out.append(f"{path}: {text}")

    def date(self, obj: dict[str, Any], key: str, path: str, required: bool) -> None:
        if key not in obj:
            if required:
                self.problem(f"{path}.{key}", "required")
            return
        value = obj[key]
        if not isinstance(value, str):
            self.problem(f"{path}.{key}", "must be an RFC 3339 date-time string")
            return
        try:
            parse_rfc3339(value)
        except ValueError as exc:
            self.problem(f"{path}.{key}", str(exc))

    def index(self, value: Any, limit: int, path: str, what: str) -> None:
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            self.problem(path, f"must be a {what} index (non-negative integer)")
        elif value >= limit:
            self.problem(path, f"{what} index {value} out of range (there are {limit})")

    def legacy(self, obj: dict[str, Any], path: str) -> None:
        for key in sorted(LEGACY_KEYS & obj.keys()):
            self.problem(f"{path}.{key}", "legacy field of an earlier draft")

    def content(self, obj: dict[str, Any], path: str, *, mediatype_required: bool = True) -> None:
        """Inline or referenced content; ``mediatype`` is a MUST with an inline body except on analyses (§4.5.4)."""
        has_body, has_url = "body" in obj, "url" in obj
        if mediatype_required and has_body and obj["body"] not in ("", None) and "mediatype" not in obj:
            self.problem(f"{path}.mediatype", "required for inline content (core-04 §4.3.8, §4.4.5)")
        if has_body and has_url:
            self.problem(path, "has both body and url (inline xor referenced)")
        if has_body:
            encoding = obj.get("encoding")
            if encoding not in ENCODINGS:
                self.problem(f"{path}.encoding", f"must be one of {sorted(ENCODINGS)} with body, got {encoding!r}")
            elif encoding != "json" and not isinstance(obj["body"], str):
                self.problem(f"{path}.body", f"must be a string with encoding {encoding}")
            elif encoding == "base64url":
                try:
                    b64url_decode(obj["body"])
                except ValueError:
                    self.problem(f"{path}.body", "is not valid base64url")
        elif "encoding" in obj:
            self.problem(f"{path}.encoding", "given without body")
        if has_url:
            url = obj["url"]
            if not isinstance(url, str) or not url.startswith("https://"):
                self.problem(f"{path}.url", "must be an https URL")
            if "content_hash" not in obj:
                self.problem(f"{path}.content_hash", "required with url")
        if "content_hash" in obj:
            hashes = obj["content_hash"]
            values = [hashes] if isinstance(hashes, str) else hashes
            if not isinstance(values, list) or not values:
                self.problem(f"{path}.content_hash", "must be a string or a non-empty list of strings")
            elif not any(isinstance(v, str) and CONTENT_HASH_RE.match(v) for v in values):
                self.problem(f"{path}.content_hash", "needs a sha512-<86 base64url chars> value")
            if not has_url:
                self.problem(f"{path}.content_hash", "given without url")

    def check(self) -> list[str]:
        doc = self.doc
        self.legacy(doc, "$")
        listed = doc.get("extensions")
        self.extensions = {e for e in listed if isinstance(e, str)} if isinstance(listed, list) else set()
        for key in ("extensions", "critical"):
            values = doc.get(key)
            if isinstance(values, list) and not all(isinstance(v, str) for v in values):
                self.problem(f"$.{key}", "must be an array of extension names (strings)")
        if SIP_SIGNALING in (doc.get("critical") or []):
            self.problem("$.critical", f"{SIP_SIGNALING} is a compatible extension and must not be critical")
        if "vcon" in doc and doc["vcon"] not in KNOWN_VERSIONS:
            self.problem("$.vcon", f"unknown syntax version {doc['vcon']!r} (known: {sorted(KNOWN_VERSIONS)})")
        if "uuid" not in doc:
            self.problem("$.uuid", "required")
        else:
            try:
                uuidlib.UUID(str(doc["uuid"]))
                if not isinstance(doc["uuid"], str):
                    raise ValueError
            except ValueError:
                self.problem("$.uuid", "not a UUID string")
        self.date(doc, "created_at", "$", True)
        self.date(doc, "updated_at", "$", False)
        for key in ("parties", "dialog", "attachments", "analysis", "extensions", "critical"):
            if key in doc and not isinstance(doc[key], list):
                self.problem(f"$.{key}", "must be an array")
        for i, party in enumerate(self._objects("parties")):
            self.party(party, f"$.parties[{i}]")
        for i, dialog in enumerate(self._objects("dialog")):
            self.dialog(dialog, f"$.dialog[{i}]")
        for i, att in enumerate(self._objects("attachments")):
            self.attachment(att, f"$.attachments[{i}]")
        for i, analysis in enumerate(self._objects("analysis")):
            self.analysis(analysis, f"$.analysis[{i}]")
        return self.out

    def _objects(self, key: str) -> Iterator[dict[str, Any]]:
        items = self.doc.get(key)
        if not isinstance(items, list):
            return
        for i, item in enumerate(items):
            if isinstance(item, dict):
                yield item
            else:
                self.problem(f"$.{key}[{i}]", "must be an object")
                yield {}

    def party(self, party: dict[str, Any], path: str) -> None:
        self.legacy(party, path)
        for key in ("tel", "sip", "mailto", "name", "stir", "uuid", "validation", "did", *SIP_PARTY_FIELDS):
            if key in party and not isinstance(party[key], str):
                self.problem(f"{path}.{key}", "must be a string")

    def dialog(self, d: dict[str, Any], path: str) -> None:
        self.legacy(d, path)
        kind = d.get("type")
        if kind not in DIALOG_TYPES:
            self.problem(f"{path}.type", f"must be one of {sorted(DIALOG_TYPES)}, got {kind!r}")
        self.date(d, "start", path, False)
        duration = d.get("duration")
        if duration is not None and (
            isinstance(duration, bool) or not isinstance(duration, (int, float)) or duration < 0
        ):
            self.problem(f"{path}.duration", "must be a non-negative number of seconds")
        for key, why in table_problems(d):
            if key not in ("disposition", "recordings"):  # checked below, with their own messages
                self.problem(f"{path}.{key}", why)
        self.parties_field(d.get("parties"), f"{path}.parties")
        if "originator" in d:
            self.index(d["originator"], self.n_parties, f"{path}.originator", "party")
        if kind in CONTENT_TYPES:
            self.content(d, path)
        if kind == "incomplete":
            if d.get("disposition") not in DISPOSITIONS:
                self.problem(f"{path}.disposition", f"required on incomplete, one of {sorted(DISPOSITIONS)}")
        elif "disposition" in d:
            self.problem(f"{path}.disposition", "only allowed on incomplete dialogs")
        if kind == "transfer":
            self.transfer(d, path)
        if kind == "recording-set":
            recs = d.get("recordings")
            if not isinstance(recs, list):
                self.problem(f"{path}.recordings", "required on a recording-set (array of dialog indices)")
            else:
                for j, r in enumerate(recs):
                    self.index(r, self.n_dialogs, f"{path}.recordings[{j}]", "dialog")
                    if self.dialog_type(r) not in (None, "recording"):
                        self.problem(f"{path}.recordings[{j}]", "must point at a recording dialog")
        elif "recordings" in d:
            self.problem(f"{path}.recordings", "only allowed on a recording-set")
        if "recording_set" in d:
            self.index(d["recording_set"], self.n_dialogs, f"{path}.recording_set", "dialog")
        for j, entry in enumerate(d.get("party_history") or []):
            self.history(entry, f"{path}.party_history[{j}]")
        if "session_id" in d:
            self.session_id(d["session_id"], f"{path}.session_id")
        for key in SIP_DIALOG_FIELDS:
            if key in d and not isinstance(d[key], str):
                self.problem(f"{path}.{key}", "must be a string")
        cseq = d.get("sip_cseq")
        if "sip_cseq" in d and (not isinstance(cseq, int) or isinstance(cseq, bool) or cseq < 0):
            self.problem(f"{path}.sip_cseq", "must be a non-negative integer")

    def transfer(self, d: dict[str, Any], path: str) -> None:
        """§4.3.14: party roles and single-integer dialog references (each to one dialog of the right type)."""
        for key in ("transferee", "transferor", "transfer_target"):
            if key in d:
                self.index(d[key], self.n_parties, f"{path}.{key}", "party")
        for key, allowed in TRANSFER_REFERENCES.items():
            if key not in d:
                continue
            self.index(d[key], self.n_dialogs, f"{path}.{key}", "dialog")
            if self.dialog_type(d[key]) not in (None, *allowed):
                self.problem(f"{path}.{key}", f"must point at a {' or '.join(allowed)} dialog")

    def dialog_type(self, ref: Any) -> str | None:
        """The type of the dialog an in-range index points at (None if the index is unusable)."""
        if isinstance(ref, int) and not isinstance(ref, bool) and 0 <= ref < self.n_dialogs:
            target = self.doc["dialog"][ref]
            return target.get("type") if isinstance(target, dict) else None
        return None

    def parties_field(self, value: Any, path: str) -> None:
        if value is None:
            return
        if isinstance(value, list):
            for j, channel in enumerate(value):
                if channel is None:
                    continue
                if isinstance(channel, list):
                    for k, p in enumerate(channel):
                        self.index(p, self.n_parties, f"{path}[{j}][{k}]", "party")
                else:
                    self.index(channel, self.n_parties, f"{path}[{j}]", "party")
        else:
            self.index(value, self.n_parties, path, "party")

    def index_or_list(self, value: Any, limit: int, path: str, what: str) -> None:
        if isinstance(value, list):
            for j, v in enumerate(value):
                self.index(v, limit, f"{path}[{j}]", what)
        elif value != {}:
            self.index(value, limit, path, what)

    def history(self, entry: Any, path: str) -> None:
        if not isinstance(entry, dict):
            self.problem(path, "must be an object")
            return
        self.index(entry.get("party"), self.n_parties, f"{path}.party", "party")
        self.date(entry, "time", path, True)
        event = entry.get("event")
        if event not in HISTORY_EVENTS:
            self.problem(f"{path}.event", f"must be one of {sorted(HISTORY_EVENTS)}")
        if event in ("keydown", "keyup") and not isinstance(entry.get("button"), str):
            self.problem(f"{path}.button", "required for key events")

    def session_id(self, value: Any, path: str) -> None:
        items = value if isinstance(value, list) else [value]
        for j, item in enumerate(items):
            sub = f"{path}[{j}]" if isinstance(value, list) else path
            if item == {} or item is None:
                continue
            if isinstance(item, list):
                self.session_id(item, sub)
                continue
            if not isinstance(item, dict) or not {"local", "remote"} <= item.keys():
                self.problem(sub, "must be an object with local and remote")

    def attachment(self, a: dict[str, Any], path: str) -> None:
        self.legacy(a, path)
        if "type" in a and not (a["type"] == LAWFUL_BASIS and LAWFUL_BASIS in self.extensions):
            self.problem(f"{path}.type", "renamed purpose in core-02 (only the lawful_basis extension defines type)")
        self.date(a, "start", path, True)
        for key, limit, what in (("party", self.n_parties, "party"), ("dialog", self.n_dialogs, "dialog")):
            if key not in a:
                self.problem(f"{path}.{key}", "required")
            else:
                self.index(a[key], limit, f"{path}.{key}", what)
        self.content(a, path)

    def analysis(self, a: dict[str, Any], path: str) -> None:
        self.legacy(a, path)
        for key in ("type", "vendor"):
            if not isinstance(a.get(key), str):
                self.problem(f"{path}.{key}", "required")
        if "dialog" in a:
            self.index_or_list(a["dialog"], self.n_dialogs, f"{path}.dialog", "dialog")
        self.content(a, path, mediatype_required=False)


def problems(doc: Any) -> list[str]:
    """Every problem of an unsigned vCon document, each prefixed with its JSON path."""
    if not isinstance(doc, dict):
        return ["$: a vCon must be a JSON object"]
    form = form_of(doc)
    if form == "encrypted":
        return ["$: encrypted vCon (JWE): decrypt it first"]
    if form == "signed":
        return ["$: signed vCon (JWS): verify it, then validate its payload"]
    return _Checker(doc).check()


def referenced_content(doc: dict[str, Any]) -> Iterator[tuple[str, str, Any]]:
    """(JSON path, url, content_hash) of every referenced file in the document."""
    for key in ("dialog", "attachments", "analysis"):
        items = doc.get(key)
        if not isinstance(items, list):
            continue
        for i, item in enumerate(items):
            if isinstance(item, dict) and isinstance(item.get("url"), str):
                yield f"$.{key}[{i}]", item["url"], item.get("content_hash")
