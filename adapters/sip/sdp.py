"""SDP (RFC 4566) offers and the recorder's answer (RFC 3264): receive-only, one codec per stream.

The recorder never sends audio, so every accepted audio stream is answered ``recvonly``
(or ``inactive`` when the offer is ``recvonly``/``inactive``), with the offerer's
``a=label`` echoed for SIPREC (RFC 7866).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from capture.errors import RemoteProtocolError
from capture.media.codecs import SDP_NAMES, STATIC, SUPPORTED, TELEPHONE_EVENT, Codec

DIRECTIONS = ("sendrecv", "sendonly", "recvonly", "inactive")


@dataclass
class MediaDescription:
    media: str
    port: int
    proto: str
    formats: list[int]
    address: str | None = None
    direction: str = "sendrecv"
    label: str | None = None
    codecs: dict[int, Codec] = field(default_factory=dict)
    crypto: list[str] = field(default_factory=list)
    "a=crypto values (SDES)."
    fmtp: dict[int, str] = field(default_factory=dict)
    "a=fmtp parameters by payload type (G.729 annexb, iLBC mode...), echoed for the codec taken."
    rtcp_mux: bool = False


@dataclass
class SessionDescription:
    address: str | None
    media: list[MediaDescription]
    origin: str = ""
    direction: str = "sendrecv"


def parse_sdp(data: bytes) -> SessionDescription:
    """RemoteProtocolError for anything that is not a usable SDP."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise RemoteProtocolError("SDP is not UTF-8", status_hint=400, excerpt=data) from None
    session = SessionDescription(address=None, media=[])
    current: MediaDescription | None = None
    saw_version = False
    for raw in text.replace("\r\n", "\n").split("\n"):
        line = raw.strip()
        if not line:
            continue
        if len(line) < 2 or line[1] != "=":
            raise RemoteProtocolError(f"bad SDP line {line[:60]!r}", excerpt=data)
        kind, value = line[0], line[2:]
        if kind == "v":
            saw_version = True
        elif kind == "o":
            session.origin = value
        elif kind == "c":
            address = _connection(value, data)
            if current is None:
                session.address = address
            else:
                current.address = address
        elif kind == "m":
            current = _media(value, data)
            current.direction = session.direction
            session.media.append(current)
        elif kind == "a":
            _attribute(session, current, value, data)
    if not saw_version or not session.media:
        raise RemoteProtocolError("SDP without v= or m= line", status_hint=400, excerpt=data)
    for m in session.media:
        if m.address is None:
            m.address = session.address
        for pt in m.formats:
            if pt not in m.codecs and pt in STATIC:
                m.codecs[pt] = Codec(pt, *STATIC[pt])
    return session


def _connection(value: str, data: bytes) -> str:
    parts = value.split()
    if len(parts) != 3 or parts[0] != "IN" or parts[1] not in ("IP4", "IP6"):
        raise RemoteProtocolError(f"bad SDP c= line {value[:60]!r}", excerpt=data)
    return parts[2].split("/", 1)[0]


def _media(value: str, data: bytes) -> MediaDescription:
    parts = value.split()
    if len(parts) < 4:
        raise RemoteProtocolError(f"bad SDP m= line {value[:60]!r}", excerpt=data)
    port = parts[1].split("/", 1)[0]
    if not (port.isascii() and port.isdigit()) or int(port) > 65535:
        raise RemoteProtocolError(f"bad SDP port {parts[1][:20]!r}", excerpt=data)
    formats = [int(f) for f in parts[3:] if f.isascii() and f.isdigit() and int(f) < 128]
    return MediaDescription(parts[0], int(port), parts[2], formats)


def _attribute(session: SessionDescription, m: MediaDescription | None, value: str, data: bytes) -> None:
    name, _, arg = value.partition(":")
    if name in DIRECTIONS:
        if m is None:
            session.direction = name
        else:
            m.direction = name
    elif m is None:
        return
    elif name == "rtpmap":
        codec = _rtpmap(arg)
        if codec is not None:
            m.codecs[codec.payload_type] = codec
    elif name == "fmtp":
        pt, _, params = arg.strip().partition(" ")
        if pt.isascii() and pt.isdigit() and params.strip():
            m.fmtp[int(pt)] = params.strip()
    elif name == "label":
        m.label = arg.strip()
    elif name == "crypto":
        m.crypto.append(arg.strip())
    elif name == "rtcp-mux":
        m.rtcp_mux = True


def _rtpmap(arg: str) -> Codec | None:
    """``96 opus/48000/2``; None when unreadable (the line is ignored: a static payload type
    keeps its RFC 3551 meaning, a dynamic one stays unknown). Lenient with what SRCs send:
    lower-case names, junk glued to the rate (``pcmu/8000a``)."""
    pt, _, spec = arg.strip().partition(" ")
    pieces = spec.strip().split("/")
    rate = re.match(r"[0-9]+", pieces[1].strip()) if len(pieces) >= 2 else None
    if not (pt.isascii() and pt.isdigit()) or int(pt) > 127 or not pieces[0].strip() or rate is None:
        return None
    count = pieces[2].strip() if len(pieces) > 2 else ""
    # The stripped text is what is read: str.strip() also takes characters int() refuses (\x1c-\x1f).
    channels = int(count) if count.isascii() and count.isdigit() else 1
    return Codec(int(pt), pieces[0].strip().upper(), int(rate.group(0)), max(channels, 1))


def choose_codecs(m: MediaDescription) -> tuple[Codec | None, Codec | None]:
    """(audio codec, telephone-event codec) the recorder takes from an offered stream (the offer's
    order decides between the codecs there is a decoder for)."""
    audio = next(
        (m.codecs[pt] for pt in m.formats if pt in m.codecs and m.codecs[pt].name in SUPPORTED),
        None,
    )
    event = next(
        (m.codecs[pt] for pt in m.formats if pt in m.codecs and m.codecs[pt].name == TELEPHONE_EVENT
         and m.codecs[pt].clock_rate == (audio.clock_rate if audio else 8000)),
        None,
    )  # fmt: skip
    return audio, event


def answer_direction(offered: str) -> str:
    return "recvonly" if offered in ("sendrecv", "sendonly") else "inactive"


@dataclass(frozen=True)
class AnsweredStream:
    """What the recorder answers for one offered m= line (port 0 = rejected)."""

    port: int
    codec: Codec | None = None
    event: Codec | None = None
    crypto: str | None = None


def build_answer(offer: SessionDescription, streams: list[AnsweredStream], *, address: str, session_id: int,
                 version: int) -> bytes:  # fmt: skip
    """The answer SDP: one m= line per offered one, in order."""
    ip = "IP6" if ":" in address else "IP4"
    lines = [
        "v=0",
        f"o=vcon-capture {session_id} {version} IN {ip} {address}",
        "s=vcon-capture",
        f"c=IN {ip} {address}",
        "t=0 0",
    ]
    for m, s in zip(offer.media, streams, strict=True):
        if s.port == 0 or s.codec is None:
            lines.append(f"m={m.media} 0 {m.proto} {m.formats[0] if m.formats else 0}")
            if m.label is not None:
                lines.append(f"a=label:{m.label}")
            continue
        codecs = [s.codec] + ([s.event] if s.event else [])
        lines.append(f"m={m.media} {s.port} {m.proto} {' '.join(str(c.payload_type) for c in codecs)}")
        for c in codecs:
            name = SDP_NAMES.get(c.name, c.name)
            lines.append(
                f"a=rtpmap:{c.payload_type} {name}/{c.clock_rate}" + (f"/{c.channels}" if c.channels > 1 else "")
            )
        if s.codec.payload_type in m.fmtp:
            lines.append(f"a=fmtp:{s.codec.payload_type} {m.fmtp[s.codec.payload_type]}")
        if s.event:
            lines.append(f"a=fmtp:{s.event.payload_type} 0-16")
        if s.crypto:
            lines.append(f"a=crypto:{s.crypto}")
        if m.label is not None:
            lines.append(f"a=label:{m.label}")
        if m.rtcp_mux:
            lines.append("a=rtcp-mux")
        lines.append(f"a={answer_direction(m.direction)}")
    return ("\r\n".join(lines) + "\r\n").encode()
