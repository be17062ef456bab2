"""One SIP call (or SIPREC recording session) as capture events: parties, streams, hold,
DTMF, attachments, CDR, and its end."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from adapters.sip.dialogs import Dialog
from adapters.sip.message import SipMessage, params_of, parse_name_addr
from adapters.sip.parties import callee_fields, caller_fields, participant_fields
from adapters.sip.rtp import RtpStream
from adapters.sip.sdp import AnsweredStream, SessionDescription, build_answer, choose_codecs, parse_sdp
from adapters.sip.siprec import METADATA, SDP, RecordingMetadata, body_parts, parse_metadata
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
)
from capture.media.receiver import ReceiverStats
from capture.media.srtp import pick_crypto

CALLER, CALLEE = "caller", "callee"
NIL = "00000000-0000-0000-0000-000000000000"


@dataclass(frozen=True)
class Offer:
    sdp: SessionDescription
    metadata: RecordingMetadata | None
    metadata_xml: bytes | None


def parse_offer(msg: SipMessage) -> Offer:
    """The SDP (and SIPREC metadata) of an INVITE/UPDATE; RemoteProtocolError with a status hint."""
    content_type = msg.get("Content-Type") or ""
    if not msg.body:
        raise RemoteProtocolError("no SDP offer (offer in ACK is not supported)", status_hint=488)
    parts = body_parts(content_type, msg.body)
    if SDP not in parts:
        raise RemoteProtocolError(f"no application/sdp in {content_type!r}", status_hint=415)
    xml = parts.get(METADATA)
    return Offer(parse_sdp(parts[SDP]), parse_metadata(xml) if xml is not None else None, xml)


def session_id(msg: SipMessage) -> tuple[str, str] | None:
    """RFC 7989 Session-ID as dashed uuids (the nil uuid for an unknown side)."""
    value = msg.get("Session-ID")
    if not value:
        return None
    try:
        local = str(uuid.UUID(value.split(";", 1)[0].strip()))
        remote = params_of(value).get("remote")
        return local, str(uuid.UUID(remote)) if remote else NIL
    except ValueError:
        return None


class SipCall:
    """Translates one dialog into events; the adapter drives it."""

    def __init__(self, dialog: Dialog, capture: Capture, *, bind_rtp: Callable[[RtpStream], int], address: str,
                 reorder_depth: int) -> None:  # fmt: skip
        self.dialog = dialog
        self.capture = capture
        self.call_id = dialog.call_id
        self.invite = dialog.invite
        self.siprec = False
        self.streams: list[RtpStream | None] = []
        self.held: dict[str, bool] = {}
        self.answered_at: datetime | None = None
        self.ended = False
        self._bind_rtp = bind_rtp
        self._address = address
        self._reorder_depth = reorder_depth
        self._sdp_version = 0
        self._sdp_session = int(capture.now().timestamp())
        self._offer: Offer | None = None
        self._metadata: RecordingMetadata | None = None
        self._invite_at = capture.now()
        self._known: dict[str, dict[str, Any]] = {}
        self.reject_status = 400
        self.reject_reason = ""
        "Why start() found the INVITE unusable."

    # -- setup ----------------------------------------------------------------------

    def start(self) -> Offer | None:
        """Emit the call's opening events; the parsed offer, or None if the INVITE body is unusable."""
        self.capture.emit(CallStarted(call_id=self.call_id, at=self._invite_at, source="sip",
                                      session_id=session_id(self.invite)))  # fmt: skip
        self._emit(AttachmentAdded, purpose="sip-invite", mediatype="message/sip",
                   body=self.invite.to_bytes().decode("utf-8", "replace"))  # fmt: skip
        try:
            offer = parse_offer(self.invite)
        except RemoteProtocolError as exc:
            self._plain_parties()
            self.reject_status = exc.status_hint if exc.status_hint >= 400 else 400
            self.reject_reason = str(exc)
            return None
        self.siprec = offer.metadata is not None or "siprec" in self.invite.tokens("Require")
        if offer.metadata_xml is not None:
            self._emit(AttachmentAdded, purpose="rs-metadata", mediatype="application/rs-metadata+xml",
                       body=offer.metadata_xml.decode("utf-8", "replace"))  # fmt: skip
        if offer.metadata is not None:
            self._metadata_parties(offer.metadata)
        else:
            self._plain_parties()
        self._offer = offer
        return offer

    def _plain_parties(self) -> None:
        self._join(CALLER, caller_fields(self.invite))
        self._join(CALLEE, callee_fields(self.invite))

    def _metadata_parties(self, meta: RecordingMetadata) -> None:
        self._metadata = meta
        for pid, participant in meta.participants.items():
            self._join(pid, participant_fields(participant))

    def _join(self, key: str, fields: dict[str, Any]) -> None:
        if self._known.get(key) == fields:
            return
        self._known[key] = fields
        self._emit(PartyJoined, party=key, **fields)

    def _party_for(self, index: int, label: str | None) -> str:
        if self._metadata is not None:
            participant = self._metadata.participant_for_label(label)
            if participant is not None:
                return participant.participant_id
            key = f"label-{label}" if label else f"stream-{index}"
            self._join(key, {"name": key})
            return key
        if index < 2:
            return (CALLER, CALLEE)[index]
        key = f"stream-{index}"
        self._join(key, {"name": key})
        return key

    def negotiate(self, offer: Offer) -> bytes:
        """Streams for the offer (new ones bound, existing ones kept) and the answer SDP; 488 if nothing usable."""
        answered: list[AnsweredStream] = []
        usable = False
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
                answered.append(AnsweredStream(stream.port, audio, event, stream.answer_crypto))
                continue
            party = self._party_for(index, m.label)
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
        """A re-INVITE/UPDATE: the answer SDP (None for an UPDATE without offer)."""
        if not msg.body:
            return None
        offer = parse_offer(msg)
        if offer.metadata_xml is not None:
            self._emit(AttachmentAdded, purpose="rs-metadata", mediatype="application/rs-metadata+xml",
                       body=offer.metadata_xml.decode("utf-8", "replace"))  # fmt: skip
        if offer.metadata is not None:
            self._metadata_parties(offer.metadata)
        answer = self.negotiate(offer)
        self._offer = offer
        self._update_hold(offer.sdp, announce=True)
        return answer

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
