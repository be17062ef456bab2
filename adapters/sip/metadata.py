"""SIPREC recording metadata in every dialect the field sends, read into one model.

Elements and attributes are matched by local name whatever the namespace or prefix, so one
reader covers:

- RFC 7865 (``urn:ietf:params:xml:ns:recording:1``): ``participant_id``/``stream_id``
  attributes, ``participantstreamassoc``/``participantsessionassoc`` elements;
- the pre-RFC drafts (``urn:ietf:params:xml:ns:recording``; Oracle/Acme, AudioCodes, Ribbon,
  Metaswitch): ``id=``/``session=`` attributes, ``<send>``/``<recv>`` and the association
  times inside ``<participant>``, ``<aor>``/``<name>`` as direct children;
- BroadWorks / Webex Calling (``urn:ietf:params:xml:ns:siprec``, root
  ``<recording_metadata>``): ``<aor>`` text, ``<send><id>STREAM</id></send>``, ``<mode>``;
- vendor blocks (``extensiondata``, ``callData``, ``netsapiensExtension``, ``ac:AvayaUCID``...)
  kept verbatim and read by :mod:`adapters.sip.vendor` for roles, numbers and names.

Bad XML is repaired or read leniently (:mod:`adapters.sip.xmlsafe`); what was repaired is in
``repairs``. Which participant is heard on which m-line is :mod:`adapters.sip.attribution`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from xml.etree.ElementTree import Element, tostring

from adapters.sip.xmlsafe import local, parse_xml
from capture.errors import RemoteProtocolError

ROOTS = ("recording", "recording_metadata")
PLACEHOLDER_HOSTS = {"asbce.com"}
"Hosts of the dummy participant an SRC lists until it knows the real one (Avaya SBCE)."


@dataclass
class Participant:
    participant_id: str
    name: str | None = None
    aor: str | None = None
    sends: list[str] = field(default_factory=list)
    "Stream ids this participant sends, in document order (several for audio+video or mixed)."
    recvs: list[str] = field(default_factory=list)
    associated_at: str | None = None
    "associate-time as written (RFC 3339, sometimes without offset)."
    disassociated_at: str | None = None
    role: str | None = None
    "caller / callee, when a vendor extension says so."
    hints: dict[str, str] = field(default_factory=dict)
    "``uri`` (or number) and ``name`` a vendor extension gives for this participant."

    @property
    def placeholder(self) -> bool:
        """The SRC's stand-in for a party it does not know yet (no AOR, or a dummy one)."""
        if not self.aor or not self.aor.strip():
            return True
        host = self.aor.rsplit("@", 1)[-1].split(";", 1)[0].split(":", 1)[0].strip().lower()
        return host in PLACEHOLDER_HOSTS

    @property
    def left(self) -> bool:
        return self.disassociated_at is not None


@dataclass
class Stream:
    stream_id: str
    label: str | None = None
    mode: str | None = None
    "separate / mixed (pre-RFC and BroadWorks)."
    associated_at: str | None = None
    disassociated_at: str | None = None


@dataclass
class Extension:
    """A vendor block and whose it is (None: the session's)."""

    name: str
    "Local name of the block (extensiondata, callData, netsapiensExtension, AvayaUCID...)."
    element: Element = field(repr=False, compare=False)
    participant_id: str | None = None
    source: str | None = None
    "The block exactly as the SRC wrote it (None when the document had to be read leniently)."

    @property
    def xml(self) -> str:
        """The block as written, else re-serialized (namespace prefixes then renamed ``ns0``...)."""
        return self.source if self.source is not None else tostring(self.element, encoding="unicode").strip()


@dataclass
class RecordingMetadata:
    participants: dict[str, Participant] = field(default_factory=dict)
    "By participant id, in document order."
    streams: dict[str, Stream] = field(default_factory=dict)
    "By stream id, in document order."
    datamode: str = "complete"
    dialect: str = "rfc7865"
    "rfc7865, draft (the pre-RFC namespace) or broadworks."
    session_id: str | None = None
    "The recorded session's id in the metadata (session_id= or id=)."
    group_id: str | None = None
    sip_session_ids: list[str] = field(default_factory=list)
    "RFC 7989 Session-ID values of the communication session (sipSessionID)."
    initiator: str | None = None
    start_time: str | None = None
    stop_time: str | None = None
    extensions: list[Extension] = field(default_factory=list)
    vendor_ids: dict[str, str] = field(default_factory=dict)
    "Call identifiers vendors add: avaya_ucid, broadworks_ext_tracking_id, ribbon_gcid..."
    repairs: list[str] = field(default_factory=list)
    "How the XML had to be repaired to be read (empty when it was well-formed)."
    source: tuple[str, dict[int, tuple[int, int]]] = field(default=("", {}), repr=False)
    "The document's text and where each element sits in it (see :class:`adapters.sip.xmlsafe.Parsed`)."
    problems: list[str] = field(default_factory=list)
    "Inconsistencies noticed (an association naming an unknown participant...)."

    @property
    def stream_labels(self) -> dict[str, str]:
        """stream_id -> label."""
        return {s.stream_id: s.label for s in self.streams.values() if s.label is not None}

    @property
    def sends(self) -> dict[str, str]:
        """stream_id -> the first participant that sends it."""
        out: dict[str, str] = {}
        for p in self.participants.values():
            for stream_id in p.sends:
                out.setdefault(stream_id, p.participant_id)
        return out

    def senders(self, stream_id: str) -> list[Participant]:
        """Who sends a stream: those still present, else whoever last did."""
        senders = [p for p in self.participants.values() if stream_id in p.sends]
        return [p for p in senders if not p.left] or senders

    def streams_labelled(self, label: str | None) -> list[Stream]:
        if label is None:
            return []
        wanted = label.strip()
        exact = [s for s in self.streams.values() if s.label == wanted]
        return exact or [s for s in self.streams.values() if (s.label or "").lower() == wanted.lower()]

    def participant_for_label(self, label: str | None) -> Participant | None:
        """The participant the metadata explicitly says sends the stream with this label."""
        for stream in self.streams_labelled(label):
            senders = self.senders(stream.stream_id)
            if senders:
                return senders[0]
        return None

    @property
    def communication_session_id(self) -> str | None:
        """An id of the recorded call that every fork of it carries (for dedupe), best first:
        the RFC 7989 Session-ID pair, a vendor call id, the metadata session or group id."""
        for value in self.sip_session_ids:
            parts = sorted(p.split("=", 1)[-1].strip() for p in value.split(";") if p.strip())
            if parts:
                return "sip-session:" + ";".join(parts)
        for key in ("avaya_ucid", "broadworks_ext_tracking_id", "ribbon_gcid", "cs_call_id", "jambonz_call_sid"):
            if self.vendor_ids.get(key):
                return f"{key}:{self.vendor_ids[key]}"
        if self.session_id:
            return f"session:{self.session_id}"
        return f"group:{self.group_id}" if self.group_id else None


def read_metadata(xml: bytes) -> RecordingMetadata:
    """The structure of recording metadata in any dialect (vendor blocks kept, not yet read);
    RemoteProtocolError if it cannot be read at all."""
    root, repairs, text, spans = parse_xml(xml, "rs-metadata")
    if local(root.tag) not in ROOTS:
        if local(root.tag) == "requestsnapshot":
            raise RemoteProtocolError("rs-metadata is a snapshot request, not metadata", excerpt=xml)
        found = next((el for el in root.iter() if local(el.tag) in ROOTS), None)
        if found is None:
            raise RemoteProtocolError(f"rs-metadata root is <{local(root.tag)}>, not <recording>", excerpt=xml)
        root = found
    meta = RecordingMetadata(repairs=repairs, dialect=_dialect(root), source=(text, spans))
    for el in root:
        _READERS.get(local(el.tag), _other)(meta, el)
    _check(meta)
    return meta


def _dialect(root: Element) -> str:
    if local(root.tag) == "recording_metadata" or root.tag.startswith("{urn:ietf:params:xml:ns:siprec}"):
        return "broadworks"
    if root.tag.startswith("{urn:ietf:params:xml:ns:recording}"):
        return "draft"
    return "rfc7865"


def attr(el: Element, *names: str) -> str | None:
    """The first non-empty attribute among ``names`` (local names)."""
    values = {local(k): v.strip() for k, v in el.attrib.items()}
    return next((values[n] for n in names if values.get(n)), None)


def children(el: Element, name: str) -> list[Element]:
    return [c for c in el if local(c.tag) == name]


def text(el: Element | None) -> str | None:
    """Stripped text of an element (None when absent or blank)."""
    if el is None:
        return None
    value = "".join(el.itertext()).strip()
    return value or None


def child_text(el: Element, name: str) -> str | None:
    found = children(el, name)
    return text(found[0]) if found else None


def _stream_refs(el: Element) -> list[str]:
    """``<send>ID</send>`` or BroadWorks ``<send><id>ID</id></send>``."""
    ids = [text(c) for c in el if local(c.tag) == "id"]
    refs = [i for i in ids if i] if ids else [text(el)]
    return [r for r in refs if r]


def _participant(meta: RecordingMetadata, pid: str | None, el: Element) -> Participant | None:
    if not pid:
        meta.problems.append(f"<{local(el.tag)}> without a participant id")
        return None
    return meta.participants.setdefault(pid, Participant(pid))


def _add_refs(p: Participant, el: Element) -> None:
    for c in el:
        kind = local(c.tag)
        if kind in ("send", "recv"):
            target = p.sends if kind == "send" else p.recvs
            target.extend(r for r in _stream_refs(c) if r not in target)


def _times(obj: Participant | Stream, el: Element) -> None:
    obj.associated_at = child_text(el, "associate_time") or obj.associated_at
    obj.disassociated_at = child_text(el, "disassociate_time") or obj.disassociated_at


def _read_participant(meta: RecordingMetadata, el: Element) -> None:
    p = _participant(meta, attr(el, "participant_id", "id"), el)
    if p is None:
        return
    for name_id in children(el, "nameid"):
        aor = attr(name_id, "aor")
        name = child_text(name_id, "name")
        if aor and not p.aor:
            p.aor = aor
        if name and not p.name:
            p.name = name
    p.aor = p.aor or child_text(el, "aor")
    p.name = p.name or child_text(el, "name")
    _add_refs(p, el)
    _times(p, el)
    for ext in el:
        if local(ext.tag) not in ("nameid", "aor", "name", "send", "recv", "associate_time", "disassociate_time"):
            meta.extensions.append(_extension(meta, ext, p.participant_id))


def _read_stream(meta: RecordingMetadata, el: Element) -> None:
    sid = attr(el, "stream_id", "id")
    if not sid:
        meta.problems.append("<stream> without a stream id")
        return
    stream = meta.streams.setdefault(sid, Stream(sid))
    stream.label = child_text(el, "label") or stream.label
    mode = child_text(el, "mode")
    stream.mode = mode.lower() if mode else stream.mode
    _times(stream, el)


def _read_session(meta: RecordingMetadata, el: Element) -> None:
    meta.session_id = meta.session_id or attr(el, "session_id", "id")
    meta.group_id = meta.group_id or child_text(el, "group_ref") or attr(el, "group")
    meta.start_time = meta.start_time or child_text(el, "start_time") or child_text(el, "associate_time")
    meta.stop_time = child_text(el, "stop_time") or child_text(el, "end_time") or meta.stop_time
    for c in el:
        kind = local(c.tag)
        if kind == "sipsessionid" and text(c):
            meta.sip_session_ids.append(text(c) or "")
        elif kind not in ("group_ref", "start_time", "stop_time", "end_time", "associate_time", "reason"):
            meta.extensions.append(_extension(meta, c))


def _read_group(meta: RecordingMetadata, el: Element) -> None:
    meta.group_id = meta.group_id or attr(el, "group_id", "id")
    meta.initiator = meta.initiator or child_text(el, "initiator")
    for c in el:
        if local(c.tag) not in ("associate_time", "disassociate_time", "initiator"):
            meta.extensions.append(_extension(meta, c))


def _read_stream_assoc(meta: RecordingMetadata, el: Element) -> None:
    p = _participant(meta, attr(el, "participant_id", "id"), el)
    if p is not None:
        _add_refs(p, el)
        p.disassociated_at = child_text(el, "disassociate_time") or p.disassociated_at


def _read_session_assoc(meta: RecordingMetadata, el: Element) -> None:
    p = _participant(meta, attr(el, "participant_id", "id"), el)
    if p is not None:
        _times(p, el)


def _read_datamode(meta: RecordingMetadata, el: Element) -> None:
    meta.datamode = (text(el) or "complete").lower()


def _other(meta: RecordingMetadata, el: Element) -> None:
    if local(el.tag) not in ("sessionrecordingassoc", "recording"):
        meta.extensions.append(_extension(meta, el))


def _extension(meta: RecordingMetadata, el: Element, participant_id: str | None = None) -> Extension:
    text, spans = meta.source
    span = spans.get(id(el))
    return Extension(local(el.tag), el, participant_id, text[span[0] : span[1]] if span else None)


_READERS = {
    "datamode": _read_datamode,
    "group": _read_group,
    "session": _read_session,
    "participant": _read_participant,
    "stream": _read_stream,
    "participantstreamassoc": _read_stream_assoc,
    "participantsessionassoc": _read_session_assoc,
}


def _check(meta: RecordingMetadata) -> None:
    """Note what does not add up; an association may name a participant never described."""
    for p in list(meta.participants.values()):
        if p.aor is None and p.name is None and p.participant_id in meta.streams:
            meta.problems.append(f"association names stream {p.participant_id!r} as a participant")
            del meta.participants[p.participant_id]
        for stream_id in p.sends:
            if stream_id not in meta.streams:
                meta.problems.append(f"participant {p.participant_id!r} sends unknown stream {stream_id!r}")
