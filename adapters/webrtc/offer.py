"""Checks a WHIP offer before aiortc sees it (aiortc answers even a bare ``v=0``).

Pure functions over the request's bytes and headers; every refusal is a
RemoteProtocolError whose ``status_hint`` is the HTTP status to answer with.
"""

from __future__ import annotations

from capture.errors import RemoteProtocolError

SDP_TYPE = "application/sdp"
SENDING = ("sendonly", "sendrecv")
DIRECTIONS = ("sendonly", "sendrecv", "recvonly", "inactive")


def check_content_type(content_type: str | None) -> None:
    mediatype = (content_type or "").split(";", 1)[0].strip().lower()
    if mediatype != SDP_TYPE:
        raise RemoteProtocolError(f"Content-Type must be {SDP_TYPE}, got {mediatype or 'none'}", status_hint=415)


def check_offer(body: bytes, max_bytes: int) -> str:
    """The offer as text, if it is an SDP that sends audio; else RemoteProtocolError."""
    if len(body) > max_bytes:
        raise RemoteProtocolError(f"offer larger than {max_bytes} bytes", status_hint=413)
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise RemoteProtocolError("offer is not UTF-8 text", excerpt=body) from None
    lines = [line.rstrip("\r") for line in text.split("\n") if line.strip()]
    if not lines or lines[0] != "v=0":
        raise RemoteProtocolError("offer is not SDP (must start with v=0)", excerpt=body)
    session_direction = "sendrecv"
    sections: list[tuple[list[str], str]] = []
    for line in lines[1:]:
        if line.startswith("m="):
            sections.append((line[2:].split(), session_direction))
        elif line.startswith("a=") and line[2:] in DIRECTIONS:
            if sections:
                sections[-1] = (sections[-1][0], line[2:])
            else:
                session_direction = line[2:]
    audio = [(fields, direction) for fields, direction in sections if fields and fields[0] == "audio"]
    if not audio:
        raise RemoteProtocolError("offer has no audio m-line", excerpt=body)
    if not any(len(f) >= 4 and f[1] != "0" and d in SENDING for f, d in audio):
        raise RemoteProtocolError("offer sends no audio (all audio m-lines are rejected or receive-only)")
    if not any(line.startswith("a=fingerprint:") for line in lines):
        raise RemoteProtocolError("offer has no a=fingerprint (WebRTC requires DTLS-SRTP)")
    return text
