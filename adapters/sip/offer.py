"""What a request body offers: the SDP and, for SIPREC, the recording metadata (either may be
alone: an INVITE with SDP only, a metadata-only UPDATE); and the RFC 7989 Session-ID."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from adapters.sip.message import SipMessage, params_of
from adapters.sip.sdp import SessionDescription, parse_sdp
from adapters.sip.siprec import METADATA, SDP, BodyPart, split_body
from capture.errors import RemoteProtocolError

NIL = "00000000-0000-0000-0000-000000000000"


@dataclass(frozen=True)
class Offer:
    sdp: SessionDescription | None
    "None for a metadata-only body (a SIPREC UPDATE, re-INVITE or BYE)."
    metadata_xml: bytes | None = None
    metadata_type: str = METADATA
    others: tuple[BodyPart, ...] = ()
    "Parts that are neither SDP nor rs-metadata (kept, never fatal)."


def parse_offer(msg: SipMessage) -> Offer:
    """The SDP and SIPREC metadata of a request body; RemoteProtocolError with a status hint."""
    content_type = msg.get("Content-Type") or ""
    if not msg.body:
        raise RemoteProtocolError("no SDP offer (offer in ACK is not supported)", status_hint=488)
    parts = split_body(content_type, msg.body, msg.get("Content-Disposition") or "")
    sdp = next((p for p in parts if p.content_type == SDP), None)
    meta = next((p for p in parts if p.is_metadata), None)
    if sdp is None and meta is None:
        raise RemoteProtocolError(f"no application/sdp in {content_type!r}", status_hint=415)
    others = tuple(p for p in parts if p is not sdp and p is not meta)
    return Offer(parse_sdp(sdp.payload) if sdp else None, meta.payload if meta else None,
                 meta.content_type if meta and meta.content_type.startswith("application/") else METADATA,
                 others)  # fmt: skip


def session_id(msg: SipMessage) -> tuple[str, str] | None:
    """RFC 7989 Session-ID as dashed uuids (the nil uuid for an unknown side)."""
    return parse_session_id(msg.get("Session-ID"))


def parse_session_id(value: str | None) -> tuple[str, str] | None:
    """``local;remote=remote`` (RFC 7989) as dashed uuids; None unless they are uuids."""
    if not value:
        return None
    try:
        local = str(uuid.UUID(value.split(";", 1)[0].strip()))
        remote = params_of(value).get("remote")
        return local, str(uuid.UUID(remote)) if remote else NIL
    except ValueError:
        return None
