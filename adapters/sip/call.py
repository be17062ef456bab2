"""One SIP call (a SIPREC recording session, or a PBX's forked copy) as capture events:
parties, streams, hold, a SIPREC pause, DTMF, attachments, CDR, and its end."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from adapters.sip.dialogs import Dialog
from adapters.sip.fork import Fork, bye_values, read_fork
from adapters.sip.holds import MediaDirections
from adapters.sip.message import SipMessage, dtmf_relay, parse_name_addr
from adapters.sip.offer import Offer, parse_offer, parse_session_id, session_id
from adapters.sip.parties import callee_fields, caller_fields, domain_of, plain_parties
from adapters.sip.rtp import RtpStream
from adapters.sip.sdp import AnsweredStream, MediaDescription, SessionDescription, build_answer, choose_codecs
from adapters.sip.siprec import wants_siprec
from adapters.sip.siprec_parties import PartyChanges, SessionParties
from adapters.sip.stream import CallStream
from adapters.sip.transactions import REASONS
from capture.adapter import Capture
from capture.errors import RemoteProtocolError
from capture.events import (
    AttachmentAdded,
    CallAnswered,
    CallEnded,
    CallStarted,
    CaptureNoted,
    CdrFields,
    Disposition,
    DtmfReceived,
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
        self.fork: Fork | None = None
        "What the PBX says about the call it copied to us (a forked copy or a report), else None."
        self.continues: dict[str, str] | None = None
        "The earlier recording session this one continues (same group), set by the adapter."
        self.streams: list[RtpStream | None] = []
        self.media = MediaDirections()
        "Who is on hold, whether the SRC paused the recording."
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
        self._started_at = self._invite_at
        self._known: dict[str, dict[str, Any]] = {}
        self._extensions: set[str] = set()
        self._noted = 0
        self._bye: dict[str, str] = {}
        self.reject_status = 400
        self.reject_reason = ""
        "Why start() found the INVITE unusable."

    # -- setup ----------------------------------------------------------------------

    def start(self) -> Offer | None:
        """Emit the call's opening events; the parsed offer, or None if the INVITE body is unusable
        (or the INVITE is a PBX's report of a call without audio: answered 603).

        A SIPREC session is never refused for its metadata: unreadable or empty metadata leaves
        the parties to the SIP headers and says so in capture_notes."""
        offer: Offer | None = None
        try:
            offer = parse_offer(self.invite)
        except RemoteProtocolError as exc:
            self.reject_status = exc.status_hint if exc.status_hint >= 400 else 400
            self.reject_reason = str(exc)
        self.siprec = wants_siprec(self.invite) or (offer is not None and offer.metadata_xml is not None)
        self.fork = None if self.siprec else read_fork(self.invite)
        changes = PartyChanges()
        if self.siprec and offer is not None and offer.metadata_xml is not None:
            changes = self.parties.read(offer.metadata_xml, where="INVITE")
        elif self.siprec and offer is not None:
            self.parties.notes.append("SIPREC INVITE without rs-metadata; parties from the SIP headers")
        if self.fork is not None and self.fork.is_report:
            self._started_at = self.fork.time("created") or self._invite_at
        self.capture.emit(CallStarted(call_id=self.call_id, at=self._started_at, source="sip",
                                      session_id=session_id(self.invite) or self._metadata_session_id(),
                                      domain=self._domain(), sip_call_id=self.call_id,
                                      sip_from_tag=self.dialog.remote_tag, sip_to_tag=self.dialog.local_tag,
                                      sip_cseq=self.invite.cseq[0],
                                      # A trunk/fork call's caller placed it; SIPREC metadata does not say.
                                      originator=None if self.siprec else CALLER))  # fmt: skip
        self._emit(AttachmentAdded, purpose="sip-invite", mediatype="message/sip",
                   body=self.invite.to_bytes().decode("utf-8", "replace"))  # fmt: skip
        if self.invite.oddities:
            self._emit(CaptureNoted, key="sip_message", value=self.invite.oddities)
        if offer is not None and offer.metadata_xml is not None:
            self._metadata_attachments(offer)
        if offer is not None and offer.sdp is None:
            offer, self.reject_status, self.reject_reason = None, 488, "INVITE without SDP (no late offer)"
        if self.siprec and self.parties.metadata is not None:
            self._apply(changes)
        elif self.siprec:
            self._join(CALLER, caller_fields(self.invite))
        elif self.fork is not None:
            self._join(CALLER, self.fork.caller(self.invite))
            self._join(CALLEE, self.fork.callee(self.invite, self._own_hosts))
            if self.fork.is_report:
                offer, self.reject_status = None, 603
                self.reject_reason = f"the PBX reports a call without audio ({self.fork.get('disposition')})"
        else:
            self._plain_parties()
        self._offer = offer
        self._note()
        return offer

    def _plain_parties(self) -> None:
        caller, callee = plain_parties(self.invite)
        self._join(CALLER, caller)
        self._join(CALLEE, callee)

    def _domain(self) -> str | None:
        """The PBX's / SRC's SIP domain, never ours (a fork's Request-URI and To are ours: the PBX's
        host is in its P-Asserted-Identity/From)."""
        return self.fork.domain(self.invite) if self.fork is not None else domain_of(self.invite, self._own_hosts)

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
        # A PBX's report speaks of a call that is over: its parties were there from its start.
        report = self.fork is not None and self.fork.is_report
        self.capture.emit(PartyJoined(call_id=self.call_id, at=self._started_at if report else self.capture.now(),
                                      party=key, **fields))  # fmt: skip

    def _note(self) -> None:
        """What capture_notes must say about this call, emitted each time it grew."""
        notes = self.parties.notes + (self.fork.notes if self.fork is not None else [])
        if len(notes) > self._noted:
            self._noted = len(notes)
            key = "siprec_metadata" if self.siprec else "pbx_headers"
            self._emit(CaptureNoted, key=key, value=list(notes))

    def _party_for(self, index: int, label: str | None, heard: list[tuple[str, ...]] | None) -> tuple[str, ...]:
        """Who is heard on the offer's m-line ``index``: the sender first, then whoever else a mixed stream carries."""
        if heard is not None:
            keys = heard[index] if index < len(heard) else ()
            if keys:
                return keys
            key = f"unattributed-{label or index}"
            self._join(key, {"name": f"unidentified (stream {label or index})"})
            return (key,)
        if self.fork is not None and index == 0:
            return (CALLER, CALLEE)  # the PBX's copy mixes both sides of the call
        if index == 0:
            return (CALLER,)
        if index == 1 and self.fork is None:
            if CALLEE not in self._known:
                self._join(CALLEE, callee_fields(self.invite) if not self.siprec else {"name": "unidentified"})
            return (CALLEE,)
        key = f"stream-{index}"
        self._join(key, {"name": key})
        return (key,)

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
            keys = self._party_for(index, m.label, heard)
            stream = CallStream(call_id=self.call_id, stream_id=f"{keys[0]}-m{index}", party=keys[0], heard=keys,
                                codec=audio, event=event, open_recording=self.capture.open_recording,
                                wall_time=self._wall_time, on_dtmf=self._on_dtmf,
                                reorder_depth=self._reorder_depth)  # fmt: skip
            if crypto:
                stream.rekey(crypto)
            stream.receiver.expect_source(_source(m))
            stream.port = self._bind_rtp(stream)
            while len(self.streams) <= index:
                self.streams.append(None)
            self.streams[index] = stream
            answered.append(AnsweredStream(stream.port, audio, event, stream.answer_crypto))
        self._note()
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
        where = "re-INVITE" if msg.method == "INVITE" else msg.method or "UPDATE"
        if offer.metadata_xml is not None:
            self.siprec = True
            silent_before = self.parties.silent
            changes = self.parties.read(offer.metadata_xml, where=where)
            self._metadata_attachments(offer)
            self._apply(changes)
            self._emit_all(self.media.metadata(silent_before, self.parties.silent, where))
            self._rehear(offer.sdp or (self._offer.sdp if self._offer else None))
            self._note()
        if offer.sdp is None:
            return None if msg.method == "UPDATE" or self._offer is None else self.negotiate(self._offer)
        answer = self.negotiate(offer)
        self._offer = offer
        self._update_hold(offer.sdp, announce=True, where=where)
        return answer

    def _rehear(self, sdp: SessionDescription | None) -> None:
        """Someone who joined a mixed stream (new metadata) is heard on its channel too."""
        if sdp is not None and self.parties.metadata is not None:
            for stream, keys in zip(self.streams, self.parties.heard([m.label for m in sdp.media]), strict=False):
                if isinstance(stream, CallStream) and len(keys) > 1:
                    stream.hear(keys)

    def bye(self, msg: SipMessage) -> None:
        """A BYE may carry the last metadata (CUBE, Ribbon), or who ended the call (a PBX's copy)."""
        if self.fork is not None:
            self._bye = bye_values(msg)
        if not msg.body:
            return
        try:
            offer = parse_offer(msg)
        except RemoteProtocolError as exc:
            self.parties.notes.append(f"BYE body unusable: {exc}")
            self._note()
            return
        if offer.metadata_xml is not None:
            changes = self.parties.read(offer.metadata_xml, where="BYE")
            self._metadata_attachments(offer)
            self._apply(changes)
        self._note()

    def _update_hold(self, sdp: SessionDescription | None, *, announce: bool, where: str = "INVITE") -> None:
        if sdp is not None:
            streams = [
                (s.party if self.siprec else CALLER, m) for s, m in zip(self.streams, sdp.media, strict=False) if s
            ]
            self._emit_all(self.media.offer(streams, siprec=self.siprec, announce=announce, where=where))

    @property
    def on_hold(self) -> bool:
        """No media is expected (a hold, or the SRC paused): the media timeout does not run."""
        return self.media.idle

    def info(self, msg: SipMessage) -> None:
        """INFO application/dtmf-relay: a key press of the caller (or the first stream's sender)."""
        key = dtmf_relay(msg)
        if key is not None:
            party = self.streams[0].party if self.streams and self.streams[0] else CALLER
            self._emit(DtmfReceived, party=party, digit=key[0], duration_s=key[1])

    def _on_dtmf(self, stream: RtpStream, digit: str, at: datetime, duration_s: float) -> None:
        self.capture.emit(DtmfReceived(call_id=self.call_id, at=at, party=stream.party, digit=digit,
                                       duration_s=duration_s))  # fmt: skip

    def _wall_time(self, monotonic: float) -> datetime:
        return self.capture.now() - timedelta(seconds=self.capture.monotonic() - monotonic)

    # -- end ------------------------------------------------------------------------

    def end(self, *, disposition: Disposition | None = None, cause: str | None = None, ended_by: str | None = None,
            hangup_by: str, final_status: int | None = None, reason: str | None = None) -> None:  # fmt: skip
        """Close the streams and emit the CDR and CallEnded (once).

        A PBX's copy ends as the PBX says (its BYE's X-Vcon-Ended-By, else nobody is named); a
        PBX's report ends as reported, at the time it gives."""
        if self.ended:
            return
        self.ended = True
        at = self.capture.now()
        fork = self.fork
        if fork is not None:
            ended_by = fork.ended_by(self._bye)
            cause = self._bye.get("hangup-cause") or fork.get("hangup-cause") or cause
            if fork.is_report:
                at, events = fork.report_end(self.call_id, self._started_at, at)
                disposition = fork.disposition()
                for event in events:
                    self.capture.emit(event)
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
            **(fork.cdr(self.invite, self._bye) if fork is not None else {}),
        }
        fields = {k: v for k, v in fields.items() if v is not None}
        if self.siprec:
            self._emit(AttachmentAdded, purpose="siprec-session", mediatype="application/json",
                       body=json.dumps(self.parties.record(self.continues), sort_keys=True))  # fmt: skip
        self._note()
        for c in counts.values():
            self.capture.metrics.rtp_packets("sip", c.received, c.lost)
        self.capture.emit(CdrFields(call_id=self.call_id, at=at, fields=fields))
        self.capture.emit(CallEnded(call_id=self.call_id, at=at, disposition=disposition, cause=cause,
                                    ended_by=ended_by))  # fmt: skip

    def reject(self, status: int, disposition: Disposition, reason: str) -> None:
        self.end(disposition=disposition, cause=f"{status} {REASONS.get(status, '')}".strip(),
                 hangup_by="recorder", final_status=status, reason=reason)  # fmt: skip

    def _emit(self, cls: type, **fields: Any) -> None:
        self.capture.emit(cls(call_id=self.call_id, at=self.capture.now(), **fields))

    def _emit_all(self, events: list[tuple[type, dict[str, Any]]]) -> None:
        for cls, fields in events:
            self._emit(cls, **fields)


def _source(m: MediaDescription) -> tuple[str, int] | None:
    """Where an m= line says its packets come from; None when the SDP does not say (no or null address)."""
    if not m.address or m.address in ("0.0.0.0", "::") or not m.port:
        return None
    return m.address, m.port
