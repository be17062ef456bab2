"""Who a participant is: from the bearer token's configured identity, else the query string.

Token file format, one token a line (``#`` starts a comment)::

    s3cr3t-agent-7   name=Alice Agent; tel=+15551230007; mailto=alice@example.com
    s3cr3t-kiosk
"""

from __future__ import annotations

import hmac
import re
from collections.abc import Mapping
from dataclasses import dataclass, replace

from capture.errors import ConfigError, RemoteProtocolError

FIELDS = ("name", "tel", "mailto")
TEL = re.compile(r"\+?[0-9*#]{1,32}")
MAILTO = re.compile(r"[^@\s<>\"]{1,64}@[^@\s<>\"]{1,255}")
MAX_NAME = 200


@dataclass(frozen=True, slots=True)
class Identity:
    name: str | None = None
    tel: str | None = None
    mailto: str | None = None

    def filled_from(self, other: Identity) -> Identity:
        """This identity, with the fields it lacks taken from ``other``."""
        return replace(self, **{f: getattr(other, f) for f in FIELDS if getattr(self, f) is None})


def identity_from(fields: Mapping[str, str], where: str) -> Identity:
    """Validate ``name``/``tel``/``mailto``; RemoteProtocolError names the bad one."""
    values: dict[str, str] = {}
    for key in FIELDS:
        raw = fields.get(key, "")
        # An unencoded "+" in a query string arrives as a space: "?tel=+1555..." means "+1555...".
        value = "+" + raw.strip() if key == "tel" and raw.startswith(" ") and raw.strip() else raw.strip()
        if not value:
            continue
        if key == "name" and (len(value) > MAX_NAME or not value.isprintable()):
            raise RemoteProtocolError(f"{where} name must be printable and at most {MAX_NAME} characters")
        if key == "tel" and not TEL.fullmatch(value.replace(" ", "").replace("-", "")):
            raise RemoteProtocolError(f"{where} tel must be a phone number (digits, optional leading +)")
        if key == "mailto" and not MAILTO.fullmatch(value.removeprefix("mailto:")):
            raise RemoteProtocolError(f"{where} mailto must be an e-mail address")
        values[key] = value.replace(" ", "").replace("-", "") if key == "tel" else value.removeprefix("mailto:")
    return Identity(**values)


def parse_tokens(text: str, setting_name: str) -> dict[str, Identity]:
    """Tokens and their identities from the token file's text."""
    tokens: dict[str, Identity] = {}
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        token, _, rest = line.partition(" ")
        fields: dict[str, str] = {}
        for item in filter(None, (part.strip() for part in rest.split(";"))):
            key, sep, value = item.partition("=")
            if not sep or key.strip() not in FIELDS:
                raise ConfigError(setting_name, f"line {number}: expected name=, tel= or mailto=, got {item!r}")
            fields[key.strip()] = value
        try:
            tokens[token] = identity_from(fields, f"line {number}:")
        except RemoteProtocolError as exc:
            raise ConfigError(setting_name, str(exc)) from None
    if not tokens:
        raise ConfigError(setting_name, "no token in the file")
    return tokens


class TokenCheck:
    """RFC 9725 bearer-token authentication; with no tokens configured everyone is let in."""

    def __init__(self, tokens: Mapping[str, Identity] | None) -> None:
        self._tokens = dict(tokens or {})

    @property
    def required(self) -> bool:
        return bool(self._tokens)

    def identity(self, authorization: str | None) -> Identity:
        """The token's identity; RemoteProtocolError(401) for a missing or unknown token."""
        if not self._tokens:
            return Identity()
        scheme, _, presented = (authorization or "").partition(" ")
        if scheme.lower() != "bearer" or not presented.strip():
            raise RemoteProtocolError("a bearer token is required", status_hint=401)
        found = None
        for token, identity in self._tokens.items():
            if hmac.compare_digest(token.encode(), presented.strip().encode()):
                found = identity
        if found is None:
            raise RemoteProtocolError("the bearer token is not valid", status_hint=401)
        return found
