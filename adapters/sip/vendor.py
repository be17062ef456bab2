"""Vendor extension blocks in SIPREC metadata: who called whom, and the vendors' call ids.

Standard metadata often names parties badly: an opaque AOR (Webex), a placeholder
(Avaya SBCE ``sip:ASBCE@asbce.com``), bare digits, a blank name. SRCs add blocks that say
more, and this module reads the ones seen in the field:

- Oracle/Acme ``apkt:`` (in ``<participant>``): ``callingParty`` true/false,
  ``header label="P-Asserted-Identity"``; session-level ``ucid`` (Avaya UCID);
- AudioCodes ``ac:AvayaUCID`` / ``ac:GenesysUUID``;
- Ribbon/Sonus ``callData``: ``fromhdr``/``tohdr`` (the recorded call's From/To), ``callid``, ``gcid``;
- BroadWorks ``broadWorksRecordingMetadata``: ``userID`` (the recorded user),
  ``callType/origCall|termCall`` with calling/called numbers, ``extTrackingID``;
- Metaswitch ``metaswitchRecordingMetadata``: ``callType``, ``recordedParty``,
  ``callingPartyNumber``, ``dialedDigits``;
- NetSapiens ``netsapiensExtension``: ``callingParty``/``calledParty`` by participant id,
  ``user userID= callType``, flat calling/called numbers (1.0);
- jambonz ``jb:callsid``.

The result lands on the participants (``role``, ``hints``) and in ``vendor_ids``; the blocks
themselves stay in ``extensions`` to be kept verbatim.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from xml.etree.ElementTree import Element

from adapters.sip.message import parse_name_addr
from adapters.sip.metadata import Participant, RecordingMetadata, attr, child_text, children, text
from adapters.sip.xmlsafe import local
from capture.errors import RemoteProtocolError

CALLER, CALLEE = "caller", "callee"
_OTHER = {CALLER: CALLEE, CALLEE: CALLER}
_IDS = {
    "ucid": "avaya_ucid",
    "avayaucid": "avaya_ucid",
    "genesysuuid": "genesys_uuid",
    "gcid": "ribbon_gcid",
    "callsid": "jambonz_call_sid",
}


@dataclass
class _Claim:
    """Something a vendor block says about one party."""

    role: str | None = None
    uri: str | None = None
    name: str | None = None
    participant_id: str | None = None


@dataclass
class _Recorded:
    """The recorded user (BroadWorks, Metaswitch, NetSapiens): who it is, and its side."""

    keys: list[str]
    role: str | None


def apply_extensions(meta: RecordingMetadata) -> None:
    claims: list[_Claim] = []
    recorded: list[_Recorded] = []
    for ext in meta.extensions:
        _read_block(ext.element, ext.participant_id, meta, claims, recorded)
    for r in recorded:
        target = next((p for p in meta.participants.values() if any(same_party(p.aor, k) for k in r.keys)), None)
        if target is None:
            target = next((p for p in meta.participants.values() if p.participant_id in r.keys), None)
        if target is not None and r.role and target.role is None:
            target.role = r.role
    for claim in claims:
        if claim.participant_id and claim.role and claim.participant_id in meta.participants:
            meta.participants[claim.participant_id].role = claim.role
    _complement_roles(meta)
    for claim in claims:
        target = _claimed(meta, claim)
        if target is None:
            continue
        if claim.role and target.role is None:
            target.role = claim.role
            _complement_roles(meta)
        if claim.uri and "uri" not in target.hints:
            target.hints["uri"] = claim.uri
        if claim.name and "name" not in target.hints:
            target.hints["name"] = claim.name


def _claimed(meta: RecordingMetadata, claim: _Claim) -> Participant | None:
    if claim.participant_id:
        return meta.participants.get(claim.participant_id)
    if claim.uri:
        found = [p for p in meta.participants.values() if same_party(p.aor, claim.uri)]
        if len(found) == 1:
            return found[0]
    if claim.role:
        found = [p for p in meta.participants.values() if p.role == claim.role]
        if len(found) == 1:
            return found[0]
    return None


def _complement_roles(meta: RecordingMetadata) -> None:
    """Two parties, one side known: the other one is the other side."""
    present = [p for p in meta.participants.values() if not p.left]
    if len(present) == 2:
        known = [p for p in present if p.role]
        if len(known) == 1:
            other = next(p for p in present if not p.role)
            other.role = _OTHER.get(known[0].role or "", None)


def _read_block(el: Element, owner: str | None, meta: RecordingMetadata, claims: list[_Claim],
                recorded: list[_Recorded]) -> None:  # fmt: skip
    for node in el.iter():
        kind = local(node.tag)
        if kind in _IDS and text(node):
            meta.vendor_ids.setdefault(_IDS[kind], (text(node) or "").split(";", 1)[0])
        elif kind == "broadworksrecordingmetadata":
            _broadworks(node, meta, claims, recorded)
        elif kind == "metaswitchrecordingmetadata":
            _metaswitch(node, claims, recorded)
        elif kind == "netsapiensextension":
            _netsapiens(node, claims, recorded)
        elif kind == "calldata":
            _call_data(node, meta, claims)
        elif kind == "callingparty" and owner and (text(node) or "").lower() in ("true", "false"):
            claims.append(_Claim(CALLER if (text(node) or "").lower() == "true" else CALLEE, participant_id=owner))
        elif kind == "header" and owner and (attr(node, "label") or "").lower() == "p-asserted-identity":
            claims.append(_identity_claim(child_text(node, "value") or text(node), None, owner))


def _broadworks(node: Element, meta: RecordingMetadata, claims: list[_Claim], recorded: list[_Recorded]) -> None:
    for key, name in (("broadworks_ext_tracking_id", "exttrackingid"), ("broadworks_call_id", "callid")):
        value = child_text(node, name)
        if value:
            meta.vendor_ids.setdefault(key, value)
    call_type = next(iter(children(node, "calltype")), None)
    direction = next((c for c in call_type or [] if local(c.tag) in ("origcall", "termcall")), None)
    user_role = None if direction is None else (CALLER if local(direction.tag) == "origcall" else CALLEE)
    keys = [k for k in (child_text(node, "userid"), meta.initiator) if k]
    if keys:
        recorded.append(_Recorded(keys, user_role))
    if direction is not None:
        calling = child_text(direction, "callingpartynumber")
        called = child_text(direction, "calledpartynumber") or child_text(direction, "dialeddigits")
        claims.extend(_Claim(role, uri) for role, uri in ((CALLER, calling), (CALLEE, called)) if uri)


def _metaswitch(node: Element, claims: list[_Claim], recorded: list[_Recorded]) -> None:
    call_type = (child_text(node, "calltype") or "").lower()
    role = CALLER if call_type.startswith("orig") else CALLEE if call_type.startswith("term") else None
    party = child_text(node, "recordedparty")
    if party:
        recorded.append(_Recorded([party], role))
    for claim_role, name in ((CALLER, "callingpartynumber"), (CALLEE, "dialeddigits")):
        value = child_text(node, name)
        if value:
            claims.append(_Claim(claim_role, value))


def _netsapiens(node: Element, claims: list[_Claim], recorded: list[_Recorded]) -> None:
    for user in children(node, "user"):
        call_type = (child_text(user, "calltype") or "").lower()
        role = CALLER if call_type == "origcall" else CALLEE if call_type == "termcall" else None
        if attr(user, "userid"):
            recorded.append(_Recorded([attr(user, "userid") or ""], role))
    for role, name in ((CALLER, "callingparty"), (CALLEE, "calledparty")):
        for party in children(node, name):
            name_id = next(iter(children(party, "nameid")), None)
            claims.append(_Claim(role, child_text(party, "number") or (attr(name_id, "aor") if name_id is not None
                                 else None), child_text(name_id, "name") if name_id is not None else None,
                                 attr(party, "participant_id")))  # fmt: skip
    for name in ("callingpartynumber", "calledpartynumber"):
        value = child_text(node, name)
        if value:  # 1.0: a number that may be a trunk's or a DID, not the party's: only by equality
            claims.append(_Claim(None, value))


def _call_data(node: Element, meta: RecordingMetadata, claims: list[_Claim]) -> None:
    if child_text(node, "callid"):
        meta.vendor_ids.setdefault("cs_call_id", child_text(node, "callid") or "")
    for role, name in ((CALLER, "fromhdr"), (CALLEE, "tohdr")):
        value = child_text(node, name)
        if value:
            claims.append(_identity_claim(value, role, None))


def _identity_claim(header: str | None, role: str | None, owner: str | None) -> _Claim:
    """A From / To / P-Asserted-Identity value as a claim."""
    if not header:
        return _Claim(role, participant_id=owner)
    try:
        na = parse_name_addr(header.strip())
    except RemoteProtocolError:
        return _Claim(role, participant_id=owner)
    return _Claim(role, na.uri or None, na.display, owner)


_DIGITS = re.compile(r"[\s().\-]")


def user_part(uri: str | None) -> str:
    """The user of a URI, AOR or bare number, lower-cased (``sip:+1555@h;user=phone`` -> ``+1555``)."""
    if not uri:
        return ""
    value = uri.strip().strip("<>")
    if re.match(r"^(sips?|tel):", value, re.I):
        value = value.split(":", 1)[1]
    if "@" in value:
        value = value.split("@", 1)[0]
    else:
        value = value.split(";", 1)[0].split(":", 1)[0]
    return value.split(";", 1)[0].strip().lower()


def same_party(a: str | None, b: str | None) -> bool:
    """Do two URIs / numbers name the same party? Users equal, or numbers equal up to a
    national/international prefix (``02077705371`` ~ ``+442077705371``)."""
    ua, ub = user_part(a), user_part(b)
    if not ua or not ub:
        return False
    if ua == ub:
        return True
    da, db = _DIGITS.sub("", ua).lstrip("+").lstrip("0"), _DIGITS.sub("", ub).lstrip("+").lstrip("0")
    if not (da.isascii() and da.isdigit() and db.isascii() and db.isdigit()):
        return False
    short, long_ = sorted((da, db), key=len)
    return len(short) >= 6 and long_.endswith(short)
