"""Content encodings of the vCon format: unpadded base64url, content_hash, RFC 3339 dates."""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from datetime import UTC, datetime

CONTENT_HASH_RE = re.compile(r"^sha512-[A-Za-z0-9_-]{86}$")


def b64url(data: bytes) -> str:
    """Unpadded base64url, as the vCon examples use."""
    return base64.urlsafe_b64encode(data).decode("ascii").rstrip("=")


def b64url_decode(text: str) -> bytes:
    """Decodes base64url with or without padding; raises ValueError on bad input."""
    text = text.rstrip("=")
    if "+" in text or "/" in text:
        raise ValueError("not base64url")
    try:
        return base64.b64decode(text + "=" * (-len(text) % 4), altchars=b"-_", validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("not base64url") from None


def content_hash(data: bytes) -> str:
    """``sha512-`` plus the unpadded base64url SHA-512 of the exact bytes."""
    return "sha512-" + b64url(hashlib.sha512(data).digest())


def hash_matches(expected: str | list[str], data: bytes) -> bool:
    """Whether ``data`` has the given content_hash (any sha512 entry of a list)."""
    values = [expected] if isinstance(expected, str) else expected
    ours = content_hash(data)
    return any(v == ours for v in values if v.startswith("sha512-"))


def rfc3339(at: datetime) -> str:
    """UTC, uppercase T and Z, milliseconds only when non-zero."""
    at = at.astimezone(UTC)
    if at.microsecond:
        return at.strftime("%Y-%m-%dT%H:%M:%S.") + f"{at.microsecond // 1000:03d}Z"
    return at.strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_rfc3339(text: str) -> datetime:
    """Parses an RFC 3339 date-time (lenient about fraction and offset); raises ValueError."""
    if not re.fullmatch(r"\d{4}-\d\d-\d\d[Tt ]\d\d:\d\d:\d\d(\.\d+)?([Zz]|[+-]\d\d:\d\d)", text):
        raise ValueError(f"not an RFC 3339 date-time: {text!r}")
    value = datetime.fromisoformat(text.replace("z", "Z").replace("Z", "+00:00"))
    return value
