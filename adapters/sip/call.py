"""One SIP call (or SIPREC recording session) as capture events: parties, streams, hold,
DTMF, attachments, CDR, and its end."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from adapters.sip.dialogs import Dialog
from adapters.sip.message import SipMessage, parse_name_addr, uri_hostport
from adapters.sip.offer import Offer, parse_offer, parse_session_id, session_id
from adapters.sip.parties import callee_fields, caller_fields
from adapters.sip.rtp import RtpStream
from adapters.sip.sdp import AnsweredStream, MediaDescription, SessionDescription, build_answer, choose_codecs
from adapters.sip.siprec import wants_siprec
from adapters.sip.siprec_parties import PartyChanges, SessionParties
from adapters.sip.transactions import REASONS
from capture.adapter import Capture
from capture.errors import RemoteProtocolError
from capture.events import (
    AttachmentAdded,
    CallAnswered,
    CallEnded,
    CallStarted,
    CdrFields,
    Disposition,
    DtmfReceived,
    HoldChanged,
    MediaUnavailable,
    PartyJoined,
    PartyLeft,
)
from capture.media.receiver import ReceiverStats
from capture.media.srtp import pick_crypto

CALLER, CALLEE = "caller", "callee"


class SipCall:
    """Translates one dialog into events; the adapter drives it."""

    def __init__(self, dialog: Dialog, capture: Capture, *, bind_rtp: Callable[[RtpStream], int], address: str,
                 reorder_depth: int, own_hosts: frozenset[str] = frozenset()) -> None:  # fmt: skip
        self.dialog = dialog
        self.capture = capture
        self.call_id = dialog.call_id
        self.invite = dialog.invite
        self.siprec = False
        self.parties = SessionParties()
        "The SIPREC participants as the metadata documents tell them."
        self.continues: dict[str, str] | None = None
        "The earlier recording session this one continues (same group), set by the adapter."
        self.streams: list[RtpStream | None] = []
        self.held: dict[str, bool] = {}
        self.answered_at: datetime | None = None
        self.ended = False
        self._bind_rtp = bind_rtp
        self._address = address
        self._own_hosts = own_hosts | {address}
        self._reorder_depth = reorder_depth
        self._sdp_version = 0
        self._sdp_session = int(capture.now().timestamp())
        self._offer: Offer | None = None
        self._invite_at = capture.now()
        self._known: dict[str, dict[str, Any]] = {}
        self._extensions: set[str] = set()
        self.reject_status = 400
        self.reject_reason = ""
        "Why start() found the INVITE unusable."

    # -- setup ----------------------------------------------------------------------

    def start(self) -> Offer | None:
        """Emit the call's opening events; the parsed offer, or None if the INVITE body is unusable.

        A SIPREC session is never refused for its metadata: unreadable or empty metadata leaves
        the parties to the SIP headers and says so in the session's notes."""
        offer: Offer | None = None
        try:
            offer = parse_offer(self.invite)
        except RemoteProtocolError as exc:
            self.reject_status = exc.status_hint if exc.status_hint >= 400 else 400
            self.reject_reason = str(exc)
        self.siprec = wants_siprec(self.invite) or (offer is not None and offer.metadata_xml is not None)
        changes = PartyChanges()
        if self.siprec and offer is not None and offer.metadata_xml is not None:
            changes = self.parties.read(offer.metadata_xml, where="INVITE")
        elif self.siprec and offer is not None:
            self.parties.notes.append("SIPREC INVITE without rs-metadata; parties from the SIP headers")
        self.capture.emit(CallStarted(call_id=self.call_id, at=self._invite_at, source="sip",
                                      session_id=session_id(self.invite) or self._metadata_session_id(),
                                      domain=self._domain(), sip_call_id=self.call_id,
                                      sip_from_tag=self.dialog.remote_tag, sip_to_tag=self.dialog.local_tag,
                                      sip_cseq=self.invite.cseq[0]))  # fmt: skip
        self._emit(AttachmentAdded, purpose="sip-invite", mediatype="message/sip",
                   body=self.invite.to_bytes().decode("utf-8", "replace"))  # fmt: skip
        if offer is not None and offer.metadata_xml is not None:
            self._metadata_attachments(offer)
        if offer is not None and offer.sdp is None:
            offer, self.reject_status, self.reject_reason = None, 488, "INVITE without SDP (no late offer)"
        if self.siprec and self.parties.metadata is not None:
            self._apply(changes)
        elif self.siprec:
            self._join(CALLER, caller_fields(self.invite))
        else:
            self._plain_parties()
        self._offer = offer
        return offer

    def _plain_parties(self) -> None:
        caller = caller_fields(self.invite)
        contact = self.invite.get("Contact")
        try:
            caller["sip_contact"] = parse_name_addr(contact).uri.split(";", 1)[0] if contact else None
            display = parse_name_addr(self.invite.get("From") or "").display
            callee_display = parse_name_addr(self.invite.get("To") or "").display
        except RemoteProtocolError:
            display = callee_display = None
        caller.update(sip_user_agent=self.invite.get("User-Agent"), sip_display_name=display)
        callee = callee_fields(self.invite)
        callee["sip_display_name"] = callee_display
        self._join(CALLER, {k: v for k, v in caller.items() if v})
        self._join(CALLEE, {k: v for k, v in callee.items() if v})

    def _domain(self) -> str | None:
        """The PBX's / SRC's SIP domain: the request URI's host, else To's, else From's, never ours."""
        for uri in (self.invite.uri, self.invite.get("To"), self.invite.get("From")):
            try:
                host = uri_hostport(parse_name_addr(uri).uri)[0] if uri else ""
            except RemoteProtocolError:
                continue
            if host and host not in self._own_hosts and not host.startswith("127."):
                return host
        return None

    def _metadata_session_id(self) -> tuple[str, str] | None:
        """The communication session's RFC 7989 Session-ID as the metadata gives it (sipSessionID)."""
        meta = self.parties.metadata
        ids = meta.sip_session_ids if meta is not None else []
        return next((sid for sid in map(parse_session_id, ids) if sid is not None), None)

    def _metadata_attachments(self, offer: Offer) -> None:
        assert offer.metadata_xml is not None
        self._emit(AttachmentAdded, purpose="rs-metadata", mediatype=offer.metadata_type,
                   body=offer.metadata_xml.decode("utf-8", "replace"))  # fmt: skip
        meta = self.parties.metadata
        blocks = [e.xml for e in meta.extensions if e.xml not in self._extensions] if meta is not None else []
        if blocks:
            self._extensions.update(blocks)
            self._emit(AttachmentAdded, purpose="siprec-extensions", mediatype="application/xml",
                       body="\n".join(blocks))  # fmt: skip
        for part in offer.others:
            kind = part.content_type or "application/octet-stream"
            self._emit(AttachmentAdded, purpose="sip-body-part", mediatype=kind,
                       body=part.payload.decode("utf-8", "replace"))  # fmt: skip

    def _apply(self, changes: PartyChanges) -> None:
        """Joins and leaves a metadata document brought, as events now."""
        for key, fields in changes.joined:
            self._join(key, fields)
        for key, reason in changes.left:
            self._emit(PartyLeft, party=key, reason=reason)

    def _join(self, key: str, fields: dict[str, Any]) -> None:
        if self._known.get(key) == fields:
            return
        self._known[key] = fields
        self._emit(PartyJoined, party=key, **fields)

    def _party_for(self, index: int, label: str | None, heard: list[tuple[str, ...]] | None) -> str:
        if heard is not None:
            keys = heard[index] if index < len(heard) else ()
            if len(keys) > 1:
                self.parties.notes.append(f"stream {label!r} is one mixed stream of {', '.join(keys)}: "
                                          f"recorded on the channel of {keys[0]!r}")  # fmt: skip
            if keys:
                return keys[0]
            key = f"unattributed-{label or index}"
            self._join(key, {"name": f"unidentified (stream {label or index})"})
            return key
        if index == 0:
            return CALLER
        if index == 1:
            if CALLEE not in self._known:
                self._join(CALLEE, callee_fields(self.invite) if not self.siprec else {"name": "unidentified"})
            return CALLEE
        key = f"stream-{index}"
        self._join(key, {"name": key})
        return key

    def negotiate(self, offer: Offer) -> bytes:
        """Streams for the offer (new ones bound, existing ones kept) and the answer SDP; 488 if nothing usable."""
        assert offer.sdp is not None
        answered: list[AnsweredStream] = []
        usable = False
        labels = [m.label for m in offer.sdp.media]
        heard = self.parties.heard(labels) if self.siprec and self.parties.metadata is not None else None
        for index, m in enumerate(offer.sdp.media):
            audio, event = choose_codecs(m) if m.media == "audio" and m.port else (None, None)
            crypto = pick_crypto(m.crypto) if audio and "SAVP" in m.proto else None
            if audio is None or ("SAVP" in m.proto and crypto is None) or m.proto.startswith("UDP/TLS"):
                answered.append(AnsweredStream(0))
                if index >= len(self.streams):
                    self.streams.append(None)
                continue
            usable = True
            if index < len(self.streams) and self.streams[index] is not None:
                stream = self.streams[index]
                assert stream is not None
                stream.set_codecs(audio, event)
                if crypto and crypto != stream.offered_crypto:
                    stream.rekey(crypto)
                stream.receiver.expect_source(_source(m))
                answered.append(AnsweredStream(stream.port, audio, event, stream.answer_crypto))
                continue
            party = self._party_for(index, m.label, heard)
            stream = RtpStream(
                call_id=self.call_id,
                stream_id=f"{party}-m{index}",
                party=party,
                codec=audio,
                event=event,
                open_recording=self.capture.open_recording,
                wall_time=self._wall_time,
                on_dtmf=self._on_dtmf,
                reorder_depth=self._reorder_depth,
            )
            if crypto:
                stream.rekey(crypto)
            stream.receiver.expect_source(_source(m))
            stream.port = self._bind_rtp(stream)
            while len(self.streams) <= index:
                self.streams.append(None)
            self.streams[index] = stream
            answered.append(AnsweredStream(stream.port, audio, event, stream.answer_crypto))
        if not usable:
            raise RemoteProtocolError("no supported audio codec offered", status_hint=488)
        self._sdp_version += 1
        return build_answer(offer.sdp, answered, address=self._address, session_id=self._sdp_session,
                            version=self._sdp_version)  # fmt: skip

    def answered(self) -> None:
        self.answered_at = self.capture.now()
        self._emit(CallAnswered)
        self._update_hold(self._offer.sdp if self._offer else None, announce=False)

    # -- mid-call -------------------------------------------------------------------

    def reoffer(self, msg: SipMessage) -> bytes | None:
        """A re-INVITE/UPDATE: the answer SDP; None for an UPDATE without SDP (metadata only, or
        empty). A re-INVITE without SDP gets the current session as our offer."""
        offer = parse_offer(msg) if msg.body else Offer(None)
        if offer.metadata_xml is not None:
            self.siprec = True
            changes = self.parties.read(offer.metadata_xml, where=msg.method or "re-INVITE")
            self._metadata_attachments(offer)
            self._apply(changes)
        if offer.sdp is None:
            return None if msg.method == "UPDATE" or self._offer is None else self.negotiate(self._offer)
        answer = self.negotiate(offer)
        self._offer = offer
        self._update_hold(offer.sdp, announce=True)
        return answer

    def bye(self, msg: SipMessage) -> None:
        """A BYE may carry the last metadata (CUBE, Ribbon): who left, and when."""
        if not msg.body:
            return
        try:
            offer = parse_offer(msg)
        except RemoteProtocolError as exc:
            self.parties.notes.append(f"BYE body unusable: {exc}")
            return
        if offer.metadata_xml is not None:
            changes = self.parties.read(offer.metadata_xml, where="BYE")
            self._metadata_attachments(offer)
            self._apply(changes)

    def _update_hold(self, sdp: SessionDescription | None, *, announce: bool) -> None:
        """Hold is a stream the offerer stopped sending on (SIPREC streams are always sendonly)."""
        if sdp is None:
            return
        stopped = ("inactive", "recvonly") if self.siprec else ("inactive", "recvonly", "sendonly")
        held_now: dict[str, bool] = {}
        for stream, m in zip(self.streams, sdp.media, strict=False):
            if stream is None:
                continue
            paused = m.direction in stopped or m.address in ("0.0.0.0", "::") or m.port == 0
            party = stream.party if self.siprec else CALLER
            held_now[party] = held_now.get(party, True) and paused
        for party, held in held_now.items():
            if self.held.get(party, False) != held and (announce or held):
                self._emit(HoldChanged, party=party, held=held)
            self.held[party] = held

    @property
    def on_hold(self) -> bool:
        return any(self.held.values())

    def info(self, msg: SipMessage) -> None:
        """INFO application/dtmf-relay: ``Signal=5`` / ``Duration=160`` (ms)."""
        if (msg.get("Content-Type") or "").split(";")[0].strip().lower() != "application/dtmf-relay":
            return
        values = {}
        for line in msg.body.decode("utf-8", "replace").splitlines():
            key, _, value = line.partition("=")
            values[key.strip().lower()] = value.strip()
        digit = values.get("signal", "")
        if len(digit) == 1 and digit.upper() in "0123456789*#ABCD":
            duration = float(values["duration"]) / 1000 if values.get("duration", "").isdigit() else 0.0
            party = self.streams[0].party if self.streams and self.streams[0] else CALLER
            self._emit(DtmfReceived, party=party, digit=digit.upper(), duration_s=duration)

    def _on_dtmf(self, stream: RtpStream, digit: str, at: datetime, duration_s: float) -> None:
        self.capture.emit(DtmfReceived(call_id=self.call_id, at=at, party=stream.party, digit=digit,
                                       duration_s=duration_s))  # fmt: skip

    def _wall_time(self, monotonic: float) -> datetime:
        return self.capture.now() - timedelta(seconds=self.capture.monotonic() - monotonic)

    # -- end ------------------------------------------------------------------------

    def end(self, *, disposition: Disposition | None = None, cause: str | None = None, ended_by: str | None = None,
            hangup_by: str, final_status: int | None = None, reason: str | None = None) -> None:  # fmt: skip
        """Close the streams and emit the CDR and CallEnded (once)."""
        if self.ended:
            return
        self.ended = True
        at = self.capture.now()
        counts: dict[str, ReceiverStats] = {}
        for stream in self.streams:
            if stream is None:
                continue
            counts[stream.stream_id] = stream.close(at)
            if stream.recording is None and disposition is None:
                self._emit(MediaUnavailable, stream_id=stream.stream_id, reason="no RTP received")
        invite_to = parse_name_addr(self.invite.get("To") or "")
        fields = {
            "sip_call_id": self.call_id,
            "from_tag": self.dialog.remote_tag,
            "to_tag": self.dialog.local_tag,
            "to_tag_in_invite": invite_to.params.get("tag"),
            "invite_time": self._invite_at.isoformat(),
            "answer_time": self.answered_at.isoformat() if self.answered_at else None,
            "end_time": at.isoformat(),
            "hangup_by": hangup_by,
            "reason": reason,
            "final_status": final_status if final_status is not None else self.dialog.final_status,
            "sip_source": f"{self.dialog.addr[0]}:{self.dialog.addr[1]}",
            "transport": self.dialog.transport,
            "siprec": self.siprec,
            "rtp": {sid: {"packets": c.received, "lost": c.lost, "dropped": c.dropped} for sid, c in counts.items()},
        }
        fields = {k: v for k, v in fields.items() if v is not None}
        if self.siprec:
            self._session_attachment()
        for c in counts.values():
            self.capture.metrics.rtp_packets("sip", c.received, c.lost)
        self.capture.emit(CdrFields(call_id=self.call_id, at=at, fields=fields))
        self.capture.emit(CallEnded(call_id=self.call_id, at=at, disposition=disposition, cause=cause,
                                    ended_by=ended_by))  # fmt: skip

    def _session_attachment(self) -> None:
        """What ties this recording session to the call it recorded (and to its other forks and
        continuations), and the notes on how its metadata was read."""
        meta = self.parties.metadata
        body: dict[str, Any] = {"communication_session_id": self.parties.communication_session_id}
        if meta is not None:
            body.update(metadata_session_id=meta.session_id, group_id=meta.group_id, dialect=meta.dialect,
                        sip_session_ids=meta.sip_session_ids or None, vendor_ids=meta.vendor_ids or None)  # fmt: skip
        body.update(continues=self.continues, notes=self.parties.notes or None)
        body = {k: v for k, v in body.items() if v is not None}
        self._emit(AttachmentAdded, purpose="siprec-session", mediatype="application/json",
                   body=json.dumps(body, sort_keys=True))  # fmt: skip

    def reject(self, status: int, disposition: Disposition, reason: str) -> None:
        self.end(disposition=disposition, cause=f"{status} {REASONS.get(status, '')}".strip(),
                 hangup_by="recorder", final_status=status, reason=reason)  # fmt: skip

    def _emit(self, cls: type, **fields: Any) -> None:
        self.capture.emit(cls(call_id=self.call_id, at=self.capture.now(), **fields))


def _source(m: MediaDescription) -> tuple[str, int] | None:
    """Where an m= line says its packets come from; None when the SDP does not say (no or null address)."""
    if not m.address or m.address in ("0.0.0.0", "::") or not m.port:
        return None
    return m.address, m.port
