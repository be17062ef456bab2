"""SIP messages (RFC 3261 section 7): parse and serialize, no I/O.

Header names are kept in their canonical long form (compact forms expanded), values are
unfolded, and a header that appears several times or carries comma-separated values can
be read as a list. Only :class:`RemoteProtocolError` leaves the parser.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import NamedTuple

from capture.errors import RemoteProtocolError

MAX_MESSAGE_BYTES = 64 * 1024

COMPACT = {
    "a": "Accept-Contact", "b": "Referred-By", "c": "Content-Type", "d": "Request-Disposition",
    "e": "Content-Encoding", "f": "From", "i": "Call-ID", "j": "Reject-Contact", "k": "Supported",
    "l": "Content-Length", "m": "Contact", "o": "Event", "r": "Refer-To", "s": "Subject",
    "t": "To", "u": "Allow-Events", "v": "Via", "x": "Session-Expires", "y": "Identity",
}  # fmt: skip
_CANONICAL = {
    name.lower(): name
    for name in (
        *COMPACT.values(),
        "Call-ID",
        "CSeq",
        "Max-Forwards",
        "Record-Route",
        "Route",
        "Require",
        "Proxy-Require",
        "Unsupported",
        "Allow",
        "Accept",
        "User-Agent",
        "Server",
        "Reason",
        "Retry-After",
        "Session-ID",
        "P-Asserted-Identity",
        "Remote-Party-ID",
        "Content-Disposition",
        "WWW-Authenticate",
        "Warning",
        "MIME-Version",
        "RSeq",
        "RAck",
        "Expires",
        "Date",
    )
}
_SINGLE = {"Call-ID", "CSeq", "From", "To", "Content-Length", "Content-Type", "Max-Forwards", "Identity",
           "Reason", "Session-ID", "Retry-After", "Subject", "Date", "User-Agent", "Server"}  # fmt: skip
"Headers never split on commas (their values may contain them)."
_TOKEN = re.compile(rb"^[A-Za-z0-9.!%*_+`'~-]+$")
_STATUS = re.compile(r"^SIP/2\.0 ([1-6][0-9][0-9]) ?(.*)$")
_REQUEST = re.compile(r"^([A-Za-z0-9.!%*_+`'~-]+) (\S+) SIP/2\.0$")


def canonical(name: str) -> str:
    lower = name.lower()
    if lower in COMPACT:
        return COMPACT[lower]
    return _CANONICAL.get(lower) or "-".join(part.capitalize() for part in name.split("-"))


def split_commas(value: str) -> list[str]:
    """Split a header value on commas outside quotes and angle brackets."""
    parts, depth, quoted, start, i = [], 0, False, 0, 0
    while i < len(value):
        ch = value[i]
        if quoted:
            if ch == "\\":
                i += 1
            elif ch == '"':
                quoted = False
        elif ch == '"':
            quoted = True
        elif ch == "<":
            depth += 1
        elif ch == ">":
            depth = max(depth - 1, 0)
        elif ch == "," and depth == 0:
            parts.append(value[start:i].strip())
            start = i + 1
        i += 1
    parts.append(value[start:].strip())
    return [p for p in parts if p]


@dataclass
class SipMessage:
    """A request (``method`` and ``uri`` set) or a response (``status`` set)."""

    method: str | None = None
    uri: str | None = None
    status: int | None = None
    reason: str = ""
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes = b""
    length_mismatch: tuple[int, int] | None = None
    "(Content-Length, bytes received) when a datagram's Content-Length was wrong."
    latin1_headers: bool = False
    "The headers were not UTF-8 (an older PBX's display name) and were read as Windows-1252."

    @property
    def oddities(self) -> list[str]:
        """What was wrong with the message but did not stop us reading it (for capture_notes)."""
        odd = []
        if self.length_mismatch is not None:
            declared, received = self.length_mismatch
            odd.append(
                f"{self.method or self.status}: Content-Length {declared}, body {received} bytes; kept the whole body"
            )
        if self.latin1_headers:
            odd.append(
                f"{self.method or self.status}: SIP headers not UTF-8 (RFC 3261 requires it); read as Windows-1252"
            )
        return odd

    @property
    def is_request(self) -> bool:
        return self.method is not None

    def get(self, name: str) -> str | None:
        """First value of a header (the whole line for single-valued headers)."""
        values = self.get_all(name)
        return values[0] if values else None

    def get_all(self, name: str) -> list[str]:
        name = canonical(name)
        out: list[str] = []
        for key, value in self.headers:
            if key == name:
                out.extend([value] if name in _SINGLE else split_commas(value))
        return out

    def get_line(self, name: str) -> str | None:
        """The first value of a header exactly as received, never split on commas (a PBX's
        ``X-`` header carrying a name like ``O'Brien, Pat``)."""
        name = canonical(name)
        return next((value for key, value in self.headers if key == name), None)

    def tokens(self, name: str) -> set[str]:
        """Option tags or methods of a list header (Require, Supported, Allow), lower-cased."""
        return {v.strip().lower() for v in self.get_all(name) if v.strip()}

    def add(self, name: str, value: str) -> SipMessage:
        self.headers.append((canonical(name), value))
        return self

    def set(self, name: str, value: str) -> SipMessage:
        name = canonical(name)
        self.headers = [(k, v) for k, v in self.headers if k != name]
        self.headers.append((name, value))
        return self

    def remove(self, name: str) -> None:
        name = canonical(name)
        self.headers = [(k, v) for k, v in self.headers if k != name]

    @property
    def call_id(self) -> str:
        return self.get("Call-ID") or ""

    @property
    def cseq(self) -> tuple[int, str]:
        """(number, method); RemoteProtocolError if missing or malformed."""
        raw = (self.get("CSeq") or "").split()
        if len(raw) != 2 or not (raw[0].isascii() and raw[0].isdigit()) or len(raw[0]) > 10:
            raise RemoteProtocolError(f"bad CSeq {self.get('CSeq')!r}")
        return int(raw[0]), raw[1].upper()

    @property
    def branch(self) -> str:
        via = self.get("Via") or ""
        return params_of(via).get("branch", "")

    def to_bytes(self) -> bytes:
        if self.method is not None:
            start = f"{self.method} {self.uri} SIP/2.0"
        else:
            start = f"SIP/2.0 {self.status} {self.reason}"
        lines = [start]
        lines.extend(f"{k}: {v}" for k, v in self.headers if k != "Content-Length")
        lines.append(f"Content-Length: {len(self.body)}")
        return ("\r\n".join(lines) + "\r\n\r\n").encode("utf-8") + self.body

    def summary(self) -> str:
        """One line for logs."""
        return f"{self.method} {self.uri}" if self.method else f"{self.status} {self.reason}"


def parse_message(data: bytes, *, datagram: bool = False) -> SipMessage:
    """A whole message (as one UDP datagram or one framed TCP message).

    With ``datagram`` the packet's end is the message's end: a Content-Length that does not
    match the body (an SRC that miscounted, common after editing multipart bodies) is noted
    in ``length_mismatch`` and the whole body kept; only padding after the declared length
    is dropped, as RFC 3261 section 18.3 says.
    """
    if len(data) > MAX_MESSAGE_BYTES:
        raise RemoteProtocolError("SIP message over 64 KiB", status_hint=513, excerpt=data)
    end, sep = end_of_headers(data)
    if end < 0:
        raise RemoteProtocolError("SIP message without end of headers", excerpt=data)
    head, body = data[:end], data[end + sep :]
    latin1 = False
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError:
        # Older PBXs put Windows-1252/ISO-8859-1 display names in From/To/PAI (as SRCs do in
        # their metadata): read the call, say so. Latin-1 maps every byte, so this never fails.
        try:
            text = head.decode("cp1252")
        except UnicodeDecodeError:
            text = head.decode("latin-1")
        latin1 = True
    lines = text.replace("\r\n", "\n").split("\n")
    while lines and not lines[0]:
        lines.pop(0)
    if not lines:
        raise RemoteProtocolError("empty SIP message", excerpt=data)
    msg = _start_line(lines[0], data)
    msg.headers = list(_headers(lines[1:], data))
    msg.latin1_headers = latin1
    length = msg.get("Content-Length")
    if length is not None:
        digits = length.strip()  # what is checked is what is read (strip() takes \x1c-\x1f, int() does not)
        if not (digits.isascii() and digits.isdigit()):
            raise RemoteProtocolError(f"bad Content-Length {length!r}", excerpt=data)
        n = int(digits)
        if n > len(body) and not datagram:
            raise RemoteProtocolError("body shorter than Content-Length", excerpt=data)
        if datagram and (n > len(body) or body[n:].strip(b"\r\n\t \x00")):
            msg.length_mismatch = (n, len(body))
        else:
            body = body[:n]
    msg.body = body
    for required in ("Call-ID", "CSeq", "From", "To", "Via"):
        if not msg.get(required):
            raise RemoteProtocolError(f"missing {required} header", excerpt=data)
    number, method = msg.cseq
    if msg.method is not None and method != msg.method and not (msg.method == "ACK" and method == "ACK"):
        raise RemoteProtocolError("CSeq method does not match the request", excerpt=data)
    return msg


def _start_line(line: str, data: bytes) -> SipMessage:
    if m := _STATUS.match(line):
        return SipMessage(status=int(m.group(1)), reason=m.group(2))
    if m := _REQUEST.match(line):
        return SipMessage(method=m.group(1).upper(), uri=m.group(2))
    raise RemoteProtocolError(f"bad SIP start line {line[:80]!r}", excerpt=data)


def _headers(lines: list[str], data: bytes) -> Iterable[tuple[str, str]]:
    name: str | None = None
    value = ""
    for line in lines:
        if line[:1] in (" ", "\t"):
            if name is None:
                raise RemoteProtocolError("folded line before any header", excerpt=data)
            value += " " + line.strip()
            continue
        if name is not None:
            yield name, value
        raw_name, colon, raw_value = line.partition(":")
        raw_name = raw_name.strip()
        if not colon or not _TOKEN.match(raw_name.encode()):
            raise RemoteProtocolError(f"bad SIP header line {line[:80]!r}", excerpt=data)
        name, value = canonical(raw_name), raw_value.strip()
    if name is not None:
        yield name, value


def end_of_headers(buffer: bytes | bytearray) -> tuple[int, int]:
    """(offset, separator length) of the blank line ending the headers; (-1, 0) if none yet."""
    crlf, lf = buffer.find(b"\r\n\r\n"), buffer.find(b"\n\n")
    if lf >= 0 and (crlf < 0 or lf < crlf):
        return lf, 2
    return (crlf, 4) if crlf >= 0 else (-1, 0)


class NameAddr(NamedTuple):
    """``"Display" <uri>;params`` (From, To, Contact, P-Asserted-Identity...)."""

    display: str | None
    uri: str
    params: dict[str, str]


def params_of(value: str) -> dict[str, str]:
    """``;key=value`` parameters after the first ';' (lower-cased keys, quotes removed)."""
    out: dict[str, str] = {}
    for part in value.split(";")[1:]:
        key, _, val = part.partition("=")
        if key.strip():
            out[key.strip().lower()] = val.strip().strip('"')
    return out


def parse_name_addr(value: str) -> NameAddr:
    """A name-addr or addr-spec; a quoted display name may hold anything (``<``, ``,``, ``;``) and
    its quoted-pairs (``\\"``) are undone: ``"\\"Big\\" Tom" <sip:2000@pbx>`` is ``"Big" Tom``."""
    value = value.strip()
    display: str | None = None
    rest = value
    if value.startswith('"'):
        chars, i = [], 1
        while i < len(value) and value[i] != '"':
            if value[i] == "\\" and i + 1 < len(value):
                i += 1
            chars.append(value[i])
            i += 1
        if i >= len(value):
            raise RemoteProtocolError(f"unclosed quote in {value[:80]!r}")
        display, rest = "".join(chars).strip() or None, value[i + 1 :]
        if "<" not in rest:
            raise RemoteProtocolError(f"quoted display name without <uri> in {value[:80]!r}")
    if "<" in rest:
        before, _, inner = rest.partition("<")
        uri, close, after = inner.partition(">")
        if not close:
            raise RemoteProtocolError(f"unclosed < in {value[:80]!r}")
        if display is None:
            display = before.strip().strip('"').strip() or None
        return NameAddr(display, uri.strip(), params_of(after))
    uri, _, after = value.partition(";")
    return NameAddr(None, uri.strip(), params_of(";" + after))


def uri_hostport(uri: str) -> tuple[str, int]:
    """(host, port) of a sip: URI (port 5060 when absent)."""
    rest = uri.split(":", 1)[1] if ":" in uri else uri
    rest = rest.split("@", 1)[-1].split(";", 1)[0].split("?", 1)[0]
    if rest.startswith("["):
        host, _, tail = rest[1:].partition("]")
        port = tail.lstrip(":")
    else:
        host, _, port = rest.partition(":")
    return host, int(port) if port.isascii() and port.isdigit() else 5060


def response_to(request: SipMessage, status: int, reason: str, *, to_tag: str | None = None) -> SipMessage:
    """A response copying Via, From, To (adding ``to_tag``), Call-ID and CSeq from the request."""
    resp = SipMessage(status=status, reason=reason)
    for name in ("Via", "Record-Route") if 100 < status < 300 else ("Via",):
        for value in request.get_all(name):
            resp.add(name, value)
    resp.add("From", request.get("From") or "")
    to = request.get("To") or ""
    if to_tag and "tag" not in params_of(to.rpartition(">")[2] if ">" in to else to):
        to += f";tag={to_tag}"
    resp.add("To", to)
    resp.add("Call-ID", request.call_id)
    resp.add("CSeq", request.get("CSeq") or "")
    return resp


def dtmf_relay(msg: SipMessage) -> tuple[str, float] | None:
    """The key of an INFO ``application/dtmf-relay`` (``Signal=5``, ``Duration=160`` in ms) and
    its duration in seconds; None for any other INFO."""
    if (msg.get("Content-Type") or "").split(";")[0].strip().lower() != "application/dtmf-relay":
        return None
    values = {}
    for line in msg.body.decode("utf-8", "replace").splitlines():
        key, _, value = line.partition("=")
        values[key.strip().lower()] = value.strip()
    digit = values.get("signal", "").upper()
    if len(digit) != 1 or digit not in "0123456789*#ABCD":
        return None
    duration = values.get("duration", "")
    return digit, float(duration) / 1000 if duration.isascii() and duration.isdigit() else 0.0
