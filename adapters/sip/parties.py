"""Who is on a SIP call: identities from From/To, P-Asserted-Identity, Remote-Party-ID and
Identity (plain calls), or from SIPREC rs-metadata participants (and the vendor blocks that
complete them)."""

from __future__ import annotations

import re
from typing import Any

from adapters.sip.message import SipMessage, parse_name_addr, split_commas, uri_hostport
from adapters.sip.metadata import Participant
from capture.errors import RemoteProtocolError

_VISUAL = re.compile(r"[\s().\-]")
_NUMBER = re.compile(r"^\+?[0-9]{3,}$")
_LEAKED_PARAMS = re.compile(r"(;\s*[\w.\-]+=[^;]*)+$")
SHORT_EXTENSION = 6
"Digits up to which a number is taken for a PBX extension (a vendor block's full number wins)."
_IPV4 = re.compile(r"^[0-9]{1,3}(\.[0-9]{1,3}){3}(:|;|$)")


def clean_name(display: str | None) -> str | None:
    """A display name as people read it: no SIP quotes, no leaked ``;param=value`` tail."""
    if not display:
        return None
    name = display.strip()
    if len(name) >= 2 and name[0] == name[-1] == '"':
        name = name[1:-1].replace('\\"', '"').strip()
    if ";" in name and _LEAKED_PARAMS.search(name):
        name = _LEAKED_PARAMS.sub("", name).strip()
    return name or None


def number_of(user: str) -> str | None:
    """Digits of a telephone-number user part (visual separators dropped), else None."""
    digits = _VISUAL.sub("", user.split(";", 1)[0])
    return digits if _NUMBER.match(digits) else None


def identity_fields(uri: str | None, display: str | None) -> dict[str, Any]:
    """PartyJoined fields (tel, sip, name) of one URI or AOR, as SRCs write them: ``sip:``,
    ``tel:``, no scheme (``2249888500@host``), bare digits (with a port), no host."""
    fields: dict[str, Any] = {}
    name = clean_name(display)
    if name:
        fields["name"] = name
    value = (uri or "").strip().strip("<>").strip()
    if not value:
        return fields
    scheme, sep, rest = value.partition(":")
    scheme = scheme.lower()
    if sep and scheme == "tel":
        number = number_of(rest) or rest.split(";", 1)[0]
        if number:
            fields["tel"] = number
        return fields
    if not (sep and scheme in ("sip", "sips")):
        scheme, rest = "sip", value
    user, at, host = rest.partition("@")
    if not at:
        bare = None if _IPV4.match(rest) else number_of(rest.split(":", 1)[0])
        if bare:
            fields["tel"] = bare
        elif "." in rest or rest.startswith("["):
            fields["sip"] = f"{scheme}:{rest.split(';', 1)[0]}"
        return fields
    fields["sip"] = f"{scheme}:{user}@{host.split(';', 1)[0].split('?', 1)[0]}"
    tel = number_of(user)
    if tel:
        fields["tel"] = tel
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
    """PartyJoined fields of a metadata participant: its own AOR and name, completed (or, for
    a placeholder, replaced) by what a vendor block says (whose full number also beats a short
    extension); a name that only repeats the number is dropped; ``role`` when known."""
    hint = identity_fields(p.hints.get("uri"), p.hints.get("name"))
    replace = p.placeholder and bool(hint)
    fields = {} if replace else identity_fields(p.aor, p.name)
    for key in ("tel", "name", "sip"):
        if key in hint and key not in fields and (key != "sip" or replace):
            fields[key] = hint[key]
    if "tel" in hint and len(fields.get("tel", "").lstrip("+")) <= SHORT_EXTENSION < len(hint["tel"].lstrip("+")):
        fields["tel"] = hint["tel"]
    repeated = number_of(fields.get("name") or "")
    if repeated and fields.get("tel", "").lstrip("+").endswith(repeated.lstrip("+")):
        del fields["name"]
    if p.role:
        fields["role"] = p.role
    return fields


def plain_parties(invite: SipMessage) -> tuple[dict[str, Any], dict[str, Any]]:
    """Caller and callee of a call dialled to the recorder, with the sip-signaling details
    (the caller's Contact, User-Agent and display name as SIP claimed them)."""
    caller = caller_fields(invite)
    contact = invite.get("Contact")
    try:
        caller["sip_contact"] = parse_name_addr(contact).uri.split(";", 1)[0] if contact else None
        display = parse_name_addr(invite.get("From") or "").display
        callee_display = parse_name_addr(invite.get("To") or "").display
    except RemoteProtocolError:
        display = callee_display = None
    caller.update(sip_user_agent=invite.get("User-Agent"), sip_display_name=display)
    callee = callee_fields(invite)
    callee["sip_display_name"] = callee_display
    return {k: v for k, v in caller.items() if v}, {k: v for k, v in callee.items() if v}


def domain_of(invite: SipMessage, own_hosts: frozenset[str]) -> str | None:
    """The PBX's / SRC's SIP domain: the request URI's host, else To's, else From's, never ours."""
    for uri in (invite.uri, invite.get("To"), invite.get("From")):
        try:
            host = uri_hostport(parse_name_addr(uri).uri)[0] if uri else ""
        except RemoteProtocolError:
            continue
        if host and host not in own_hosts and not host.startswith("127."):
            return host
    return None
