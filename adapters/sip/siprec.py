"""SIPREC bodies (RFC 7866) as SRCs send them: multipart/mixed with an SDP and rs-metadata.

The metadata part may come first or last, typed ``application/rs-metadata+xml`` or the
RFC's own ``application/rs-metadata`` (or only marked ``Content-Disposition:
recording-session``); other parts (``application/gtd``...) are kept, never fatal. A body
may also be the metadata alone (a metadata-only UPDATE or re-INVITE). The metadata itself
is read by :mod:`adapters.sip.metadata` and :mod:`adapters.sip.vendor`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from email.parser import BytesParser
from email.policy import compat32

from adapters.sip.message import SipMessage, params_of
from adapters.sip.metadata import Participant, RecordingMetadata, read_metadata
from adapters.sip.vendor import apply_extensions
from capture.errors import RemoteProtocolError

__all__ = ["Participant", "RecordingMetadata", "parse_metadata", "body_parts", "split_body", "BodyPart"]

SDP = "application/sdp"
METADATA = "application/rs-metadata+xml"
METADATA_TYPES = (METADATA, "application/rs-metadata")
_BOUNDARY_LINE = re.compile(rb"^\s*--([^\s]+?)[ \t]*\r?$", re.M)


@dataclass(frozen=True)
class BodyPart:
    content_type: str
    "Lower-case media type without parameters."
    disposition: str
    "Lower-case disposition type (session, recording-session, signal...), or ''."
    payload: bytes

    @property
    def is_metadata(self) -> bool:
        return self.content_type in METADATA_TYPES or (
            self.disposition == "recording-session" and "request" not in self.content_type
        )


def parse_metadata(xml: bytes) -> RecordingMetadata:
    """Recording metadata in any dialect, vendor blocks read; RemoteProtocolError if unreadable."""
    meta = read_metadata(xml)
    apply_extensions(meta)
    return meta


def split_body(content_type: str, body: bytes, disposition: str = "") -> list[BodyPart]:
    """The parts of a message body in order; a non-multipart body is one part."""
    main = content_type.split(";", 1)[0].strip().lower()
    if not main.startswith("multipart/"):
        return [BodyPart(main, disposition.split(";", 1)[0].strip().lower(), body)] if main or body else []
    boundary = params_of(content_type).get("boundary")
    if not boundary:
        found = _BOUNDARY_LINE.search(body)
        if found is None:
            raise RemoteProtocolError("multipart body without boundary", excerpt=body)
        boundary = found.group(1).decode("latin-1")
    head = f'Content-Type: {main}; boundary="{boundary}"\r\nMIME-Version: 1.0\r\n\r\n'.encode()
    try:
        message = BytesParser(policy=compat32).parsebytes(head + body)
        payloads = message.get_payload() if message.is_multipart() else []
    except (ValueError, TypeError, LookupError) as exc:
        raise RemoteProtocolError(f"bad multipart body: {exc}", excerpt=body) from None
    parts: list[BodyPart] = []
    for part in payloads:
        if isinstance(part, str):
            continue
        payload = part.get_payload(decode=True)
        if isinstance(payload, bytes):
            kind = str(part.get("Content-Type") or "").split(";", 1)[0].strip().lower()
            disp = str(part.get("Content-Disposition") or "").split(";", 1)[0].strip().lower()
            parts.append(BodyPart(kind, disp, payload))
    if not parts:
        raise RemoteProtocolError("multipart body has no parts", excerpt=body)
    return parts


def body_parts(content_type: str, body: bytes) -> dict[str, bytes]:
    """Parts by media type (the first of each); the metadata part, whatever its type, under
    :data:`METADATA`."""
    out: dict[str, bytes] = {}
    for part in split_body(content_type, body):
        out.setdefault(METADATA if part.is_metadata else part.content_type, part.payload)
    return out


def wants_siprec(msg: SipMessage) -> bool:
    """Is this INVITE from a recording client? ``Require: siprec``, or the ``+sip.src`` feature
    tag (RFC 7866; some put it inside the URI) or BroadWorks' ``;src`` in Contact."""
    if "siprec" in msg.tokens("Require"):
        return True
    for contact in msg.get_all("Contact"):
        for piece in re.split(r"[;>]", contact.lower())[1:]:
            if piece.strip().split("=", 1)[0] in ("+sip.src", "src"):
                return True
    return False


def metadata_part(msg: SipMessage) -> BodyPart | None:
    """The rs-metadata part of a request body, if any (RemoteProtocolError for a broken multipart)."""
    parts = split_body(msg.get("Content-Type") or "", msg.body, msg.get("Content-Disposition") or "")
    return next((p for p in parts if p.is_metadata), None)
