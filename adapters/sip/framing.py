"""SIP over a byte stream (TCP, TLS): where one message ends and the next begins, no I/O."""

from __future__ import annotations

import re

from adapters.sip.message import MAX_MESSAGE_BYTES, end_of_headers
from capture.errors import RemoteProtocolError

_CONTENT_LENGTH = re.compile(rb"(?im)^(?:content-length|l)[ \t]*:[ \t]*([0-9]+)[ \t]*\r?$")


class TcpFramer:
    """Cuts a TCP byte stream into messages by Content-Length (RFC 3261 section 18.3), wherever
    that header sits among the others and in either form (``Content-Length`` / ``l``)."""

    def __init__(self) -> None:
        self._buffer = bytearray()

    def feed(self, data: bytes) -> list[bytes]:
        """Complete messages so far; RemoteProtocolError if the stream is unusable."""
        self._buffer += data
        out: list[bytes] = []
        while True:
            while self._buffer[:2] == b"\r\n" or self._buffer[:1] == b"\n":
                del self._buffer[: 2 if self._buffer[:1] == b"\r" else 1]
            end, sep = end_of_headers(self._buffer)
            if end < 0:
                if len(self._buffer) > MAX_MESSAGE_BYTES:
                    raise RemoteProtocolError("SIP headers over 64 KiB on TCP", status_hint=513)
                return out
            m = _CONTENT_LENGTH.search(bytes(self._buffer[:end]))
            if m is None:
                raise RemoteProtocolError("SIP message on TCP without Content-Length")
            total = end + sep + int(m.group(1))
            if total > MAX_MESSAGE_BYTES:
                raise RemoteProtocolError("SIP message over 64 KiB on TCP", status_hint=513)
            if len(self._buffer) < total:
                return out
            out.append(bytes(self._buffer[:total]))
            del self._buffer[:total]
