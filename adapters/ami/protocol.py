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


_LOWER: dict[str, str] = {}
"Lower-case spelling of keys seen (AMI's vocabulary is small): one dict lookup instead of str.lower()."
_LOWER_LIMIT = 4096


def _lower(key: str) -> str:
    lowered = _LOWER.get(key)
    if lowered is None:
        lowered = key.lower()
        if len(_LOWER) < _LOWER_LIMIT:  # a peer inventing keys cannot grow it without bound
            _LOWER[key] = lowered
    return lowered


class Message:
    """One AMI message: ordered ``(key, value)`` pairs with case-insensitive lookup.

    From the wire (:func:`parse_message`) only the lookup index is built; the ordered pairs
    (``fields``, for repeated keys and whole-message copies such as a CDR) are cut from the
    kept text the first time they are asked for: most events are only looked into.
    """

    __slots__ = ("_fields", "_index", "_text")

    def __init__(self, fields: list[tuple[str, str]] | None = None, index: dict[str, str] | None = None,
                 text: str | None = None) -> None:  # fmt: skip
        self._fields = fields
        self._text = text
        if index is None:
            index = {}
            for key, value in fields or ():
                index.setdefault(_lower(key), value)  # the first value wins
        self._index = index

    @property
    def fields(self) -> list[tuple[str, str]]:
        if self._fields is None:
            self._fields = [_split_line(line) for line in (self._text or "").split("\r\n")]
        return self._fields

    def get(self, key: str, default: str | None = None) -> str | None:
        """The first value of ``key`` (any case)."""
        return self._index.get(_LOWER.get(key) or _lower(key), default)

    def __getitem__(self, key: str) -> str:
        return self._index[_lower(key)]

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and _lower(key) in self._index

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


def _split_line(line: str) -> tuple[str, str]:
    key, sep, value = line.partition(": ")
    if not sep:
        key, sep, value = line.partition(":")
        if not sep:
            # A bare line (old "Response: Follows" command output): kept under the empty key.
            return "", line
    return key, value


def _parse_text(text: str) -> Message:
    index: dict[str, str] = {}
    lowers = _LOWER
    for line in text.split("\r\n"):
        key, sep, value = line.partition(": ")
        if not sep:
            key, value = _split_line(line)
        lowered = lowers.get(key) or _lower(key)
        if lowered not in index:  # the first value wins
            index[lowered] = value
    return Message(None, index, text)


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
