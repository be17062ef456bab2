"""Writing a vCon whose bodies are too large to hold: the JSON around them, the bodies streamed in.

A two-hour call is ~230 MB of WAV; inlined, that is ~310 MB of base64url inside the JSON, and
building it as one string (then a JSON string of it, then bytes of that) would take a gigabyte
for one call. Instead the document is laid out with a short placeholder token as each large
body, serialised, and written to the file piece by piece: the JSON text up to a token, the
body's base64url produced chunk by chunk from its source, the text after it. Memory stays at
one chunk, whatever the call's length.

Tokens use only base64url characters (the validator sees a well-formed body) and carry a random
nonce, so they cannot collide with anything else in the document.
"""

from __future__ import annotations

import base64
import secrets
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import BinaryIO

CHUNK = 3 * 64 * 1024
"Raw bytes per base64 step: a multiple of 3, so only the last chunk can need padding."


@dataclass(frozen=True, slots=True)
class StreamedBody:
    """A body produced at write time: its raw bytes, in chunks, base64url-encoded into the file."""

    token: str
    "What stands in the document's ``body`` until the file is written."
    chunks: Callable[[], Iterator[bytes]]
    size: int
    "Raw bytes (before base64)."


class BodyTokens:
    """Mints the placeholder tokens of one document."""

    def __init__(self) -> None:
        self._nonce = secrets.token_hex(8)
        self._n = 0

    def next(self) -> str:
        self._n += 1
        return f"VconBody{self._nonce}x{self._n:014d}Z"  # 40 base64url characters (decodable: 40 % 4 == 0)


def b64url_chunks(chunks: Iterator[bytes]) -> Iterator[bytes]:
    """Unpadded base64url of the concatenated chunks, in pieces (any chunk sizes)."""
    carry = b""
    for chunk in chunks:
        data = carry + chunk
        cut = len(data) - len(data) % 3
        carry = data[cut:]
        if cut:
            yield base64.urlsafe_b64encode(data[:cut])
    if carry:
        yield base64.urlsafe_b64encode(carry).rstrip(b"=")


def write_document(text: bytes, bodies: list[StreamedBody], out: BinaryIO) -> int:
    """Write the serialised document with every token replaced by its body's base64url; returns bytes written."""
    written = 0
    position = 0
    for body in sorted(bodies, key=lambda b: text.index(b.token.encode("ascii"))):
        at = text.index(body.token.encode("ascii"), position)
        out.write(text[position:at])
        written += at - position
        for piece in b64url_chunks(body.chunks()):
            out.write(piece)
            written += len(piece)
        position = at + len(body.token)
    out.write(text[position:])
    return written + len(text) - position
