"""Sans-IO AMI wire format: bytes in, messages out; actions out as bytes.

The Asterisk Manager Interface sends one banner line (``Asterisk Call Manager/9.0.0``), then
messages: ``Key: Value`` lines ended by CRLF, a blank line after each message. Messages are
cut on their byte boundaries *before* decoding, so a UTF-8 character split across two TCP
reads is never lost; undecodable bytes show up as visible ``\\xNN`` escapes instead of
silently vanishing. Keys are case-insensitive and repeated keys (``ChanVariable``, ``Output``)
are all kept, in order. A message larger than ``max_message`` bytes is skipped and reported as
:class:`Oversized` rather than buffered without bound.
"""

from __future__ import annotations

from dataclasses import dataclass

from capture.errors import LocalProtocolError, RemoteProtocolError

TERMINATOR = b"\r\n\r\n"
MAX_MESSAGE = 1 << 20
MAX_BANNER = 1024
BANNER_PREFIX = "Asterisk Call Manager"


class Message:
    """One AMI message: ordered ``(key, value)`` pairs with case-insensitive lookup."""

    __slots__ = ("fields", "_index")

    def __init__(self, fields: list[tuple[str, str]]) -> None:
        self.fields = fields
        self._index = {key.lower(): value for key, value in reversed(fields)}  # the first value wins

    def get(self, key: str, default: str | None = None) -> str | None:
        """The first value of ``key`` (any case)."""
        return self._index.get(key.lower(), default)

    def __getitem__(self, key: str) -> str:
        return self._index[key.lower()]

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and key.lower() in self._index

    def getall(self, key: str) -> list[str]:
        """Every value of ``key``, in order."""
        wanted = key.lower()
        return [v for k, v in self.fields if k.lower() == wanted]

    @property
    def event(self) -> str | None:
        """The event name, or None for a response."""
        return self._index.get("event")

    @property
    def response(self) -> str | None:
        """``Success``/``Error``/``Follows``/``Goodbye``, or None for an event."""
        return self._index.get("response")

    @property
    def action_id(self) -> str | None:
        return self._index.get("actionid")

    def __repr__(self) -> str:
        return f"Message({self.fields!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Message) and self.fields == other.fields

    __hash__ = None  # type: ignore[assignment]


@dataclass(frozen=True, slots=True)
class Banner:
    """The greeting line: ``Asterisk Call Manager/<version>``."""

    version: str


@dataclass(frozen=True, slots=True)
class Oversized:
    """A message over the size cap was skipped; ``size`` is how many bytes it had."""

    size: int
    cap: int


Item = Message | Banner | Oversized


def parse_message(raw: bytes) -> Message:
    """One message's bytes (no terminating blank line) as a :class:`Message`."""
    return _parse_text(raw.decode("utf-8", "backslashreplace"))


def _parse_text(text: str) -> Message:
    fields: list[tuple[str, str]] = []
    append = fields.append
    for line in text.split("\r\n"):
        key, sep, value = line.partition(": ")
        if not sep:
            key, sep, value = line.partition(":")
            if not sep:
                # A bare line (old "Response: Follows" command output): kept under the empty key.
                key, value = "", line
        append((key, value))
    return Message(fields)


class AmiParser:
    """Feed bytes as they arrive; get banners, messages and oversize notices back."""

    def __init__(self, *, max_message: int = MAX_MESSAGE, expect_banner: bool = True) -> None:
        if max_message < 16:
            raise ValueError("max_message too small")
        self.max_message = max_message
        self._buffer = b""
        self._need_banner = expect_banner
        self._skipped = 0
        "Bytes already dropped of an oversized message still in flight (0 = not skipping)."

    def feed(self, data: bytes) -> list[Item]:
        """Take in received bytes; return every complete item, in order."""
        out: list[Item] = []
        buffer = self._buffer + data if self._buffer else bytes(data)
        if self._need_banner:
            end = buffer.find(b"\r\n")
            if end < 0:
                if len(buffer) > MAX_BANNER:
                    raise RemoteProtocolError("AMI banner line too long", excerpt=buffer[:80])
                self._buffer = buffer
                return out
            out.append(_banner(buffer[:end]))
            buffer = buffer[end + 2 :]
            self._need_banner = False
        parts = buffer.split(TERMINATOR)
        rest = parts.pop()
        cap = self.max_message
        for part in parts:
            if self._skipped:
                out.append(Oversized(self._skipped + len(part), cap))
                self._skipped = 0
            elif len(part) > cap:
                out.append(Oversized(len(part), cap))
            else:
                if part[:2] == b"\r\n":
                    part = part.lstrip(b"\r\n")  # stray blank lines between messages
                if part:
                    out.append(_parse_text(part.decode("utf-8", "backslashreplace")))
        if len(rest) > cap or (self._skipped and len(rest) > 3):
            # Keep 3 bytes: the terminator may straddle this read and the next.
            self._skipped += len(rest) - 3
            rest = rest[-3:]
        self._buffer = rest
        return out

    @property
    def buffered(self) -> int:
        """Bytes held waiting for the end of a message."""
        return len(self._buffer)


def _banner(line: bytes) -> Banner:
    text = line.decode("utf-8", "backslashreplace")
    name, _, version = text.partition("/")
    if not name.startswith(BANNER_PREFIX):
        raise RemoteProtocolError("not an AMI server (bad banner)", excerpt=line[:80])
    return Banner(version.strip())


def encode_action(name: str, fields: list[tuple[str, str]] | dict[str, str]) -> bytes:
    """An action's wire bytes; a value may not contain CR or LF."""
    pairs = list(fields.items()) if isinstance(fields, dict) else list(fields)
    lines = [f"Action: {name}"]
    for key, value in pairs:
        text = str(value)
        if "\r" in text or "\n" in text or "\r" in key or "\n" in key or ":" in key:
            raise LocalProtocolError(f"AMI action {name}: {key} contains a line break or colon")
        lines.append(f"{key}: {text}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("utf-8")
