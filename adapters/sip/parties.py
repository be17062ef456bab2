"""Who is on a SIP call: identities from From/To, P-Asserted-Identity, Remote-Party-ID and
Identity (plain calls), or from SIPREC rs-metadata participants."""

from __future__ import annotations

from typing import Any

from adapters.sip.message import SipMessage, parse_name_addr, split_commas
from adapters.sip.siprec import Participant
from capture.errors import RemoteProtocolError


def identity_fields(uri: str, display: str | None) -> dict[str, Any]:
    """PartyJoined fields (tel, sip, name) of one URI."""
    fields: dict[str, Any] = {}
    if display:
        fields["name"] = display
    scheme, _, rest = uri.partition(":")
    scheme = scheme.lower()
    if scheme == "tel":
        fields["tel"] = rest.split(";", 1)[0]
    elif scheme in ("sip", "sips"):
        fields["sip"] = uri.split(";", 1)[0]
        user = rest.split("@", 1)[0] if "@" in rest else ""
        digits = user.split(";", 1)[0]
        if digits.lstrip("+").isdigit() and len(digits.lstrip("+")) >= 3:
            fields["tel"] = digits
    return fields


def _name_addrs(msg: SipMessage, header: str) -> list[tuple[str, str | None]]:
    out = []
    for value in msg.get_all(header):
        try:
            na = parse_name_addr(value)
        except RemoteProtocolError:
            continue
        out.append((na.uri, na.display))
    return out


def caller_fields(invite: SipMessage) -> dict[str, Any]:
    """The calling party: From, overridden by Remote-Party-ID, then by P-Asserted-Identity (the
    network-asserted one wins); ``stir`` from the Identity header's PASSporT."""
    fields: dict[str, Any] = {}
    for header in ("From", "Remote-Party-ID", "P-Asserted-Identity"):
        for uri, display in _name_addrs(invite, header):
            fields.update(identity_fields(uri, display))
    identity = invite.get("Identity")
    if identity:
        token = split_commas(identity)[0].split(";", 1)[0].strip().strip("<>")
        if token.count(".") == 2:
            fields["stir"] = token
    return fields


def callee_fields(invite: SipMessage) -> dict[str, Any]:
    fields: dict[str, Any] = {}
    for uri, display in _name_addrs(invite, "To"):
        fields.update(identity_fields(uri, display))
    return fields


def participant_fields(p: Participant) -> dict[str, Any]:
    fields = identity_fields(p.aor, None) if p.aor else {}
    if p.name:
        fields["name"] = p.name
    return fields
