"""SIPREC bodies (RFC 7866): multipart/mixed with an SDP and RFC 7865 rs-metadata XML.

The metadata names the participants and says which stream (by ``a=label``) carries whom.
XML goes through defusedxml, so entity tricks are refused rather than expanded.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from email.parser import BytesParser
from email.policy import compat32
from xml.etree.ElementTree import Element

from defusedxml import ElementTree
from defusedxml.common import DefusedXmlException

from capture.errors import RemoteProtocolError

SDP = "application/sdp"
METADATA = "application/rs-metadata+xml"


def body_parts(content_type: str, body: bytes) -> dict[str, bytes]:
    """Parts of a message body by media type (the first of each type); a non-multipart body is one part."""
    main = content_type.split(";", 1)[0].strip().lower()
    if not main.startswith("multipart/"):
        return {main: body} if main else {}
    if "boundary" not in content_type.lower():
        raise RemoteProtocolError("multipart body without boundary", excerpt=body)
    head = f"Content-Type: {content_type}\r\nMIME-Version: 1.0\r\n\r\n".encode()
    try:
        message = BytesParser(policy=compat32).parsebytes(head + body)
    except (ValueError, TypeError, LookupError) as exc:
        raise RemoteProtocolError(f"bad multipart body: {exc}", excerpt=body) from None
    parts: dict[str, bytes] = {}
    if not message.is_multipart():
        raise RemoteProtocolError("multipart body has no parts", excerpt=body)
    for part in message.get_payload():
        if isinstance(part, str):
            continue
        payload = part.get_payload(decode=True)
        if isinstance(payload, bytes):
            parts.setdefault(part.get_content_type().lower(), payload)
    if not parts:
        raise RemoteProtocolError("multipart body has no parts", excerpt=body)
    return parts


@dataclass
class Participant:
    participant_id: str
    name: str | None = None
    aor: str | None = None


@dataclass
class RecordingMetadata:
    participants: dict[str, Participant] = field(default_factory=dict)
    "By participant_id, in document order."
    stream_labels: dict[str, str] = field(default_factory=dict)
    "stream_id -> label."
    sends: dict[str, str] = field(default_factory=dict)
    "stream_id -> participant_id that sends it."

    def participant_for_label(self, label: str | None) -> Participant | None:
        for stream_id, stream_label in self.stream_labels.items():
            if stream_label == label and stream_id in self.sends:
                return self.participants.get(self.sends[stream_id])
        return None


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def _child(el: Element, name: str) -> Element | None:
    return next((c for c in el if _local(c.tag) == name), None)


def _id(el: Element, name: str) -> str:
    return next((v for k, v in el.attrib.items() if _local(k) == name), "")


def parse_metadata(xml: bytes) -> RecordingMetadata:
    """RFC 7865 ``<recording>``; RemoteProtocolError if it is not well-formed or not one."""
    try:
        root = ElementTree.fromstring(xml)
    except (ElementTree.ParseError, DefusedXmlException, ValueError) as exc:
        raise RemoteProtocolError(f"bad rs-metadata XML: {exc}", excerpt=xml) from None
    if _local(root.tag) != "recording":
        raise RemoteProtocolError("rs-metadata root is not <recording>", excerpt=xml)
    meta = RecordingMetadata()
    for el in root:
        kind = _local(el.tag)
        if kind == "participant":
            pid = _id(el, "participant_id")
            p = meta.participants.setdefault(pid, Participant(pid))
            aor = _child(el, "nameID")
            if aor is not None:
                p.aor = _id(aor, "aor") or p.aor
                name = _child(aor, "name")
                if name is not None and name.text:
                    p.name = name.text.strip()
        elif kind == "stream":
            label = _child(el, "label")
            if label is not None and label.text:
                meta.stream_labels[_id(el, "stream_id")] = label.text.strip()
        elif kind == "participantstreamassoc":
            pid = _id(el, "participant_id")
            for send in el:
                if _local(send.tag) == "send" and send.text:
                    meta.sends[send.text.strip()] = pid
    return meta
