"""The SIP user-agent server, sans-IO: bytes and time in, bytes to send and call events out.

:class:`SipCore` keeps the transactions (response retransmission, 2xx retransmission until
ACK, CANCEL matching, BYE retransmission) and the dialogs; the asyncio shell feeds it
datagrams or framed TCP messages with ``receive`` and calls ``tick`` a few times a
second. Decisions that need the rest of the adapter (answer or reject an INVITE) come back
as events; the shell answers with ``respond``. Timers follow RFC 3261 (T1 0.5 s, T2 4 s).
"""

from __future__ import annotations

import logging
import secrets
from dataclasses import dataclass, field
from typing import Any

from adapters.sip.message import (
    SipMessage,
    params_of,
    parse_message,
    parse_name_addr,
    response_to,
    uri_hostport,
)
from capture.errors import RemoteProtocolError

log = logging.getLogger(__name__)

T1, T2 = 0.5, 4.0
TIMEOUT = 64 * T1
ALLOW = "INVITE, ACK, BYE, CANCEL, OPTIONS, UPDATE, INFO"
SUPPORTED = "siprec, replaces"
SUPPORTED_TAGS = {"siprec", "replaces", "timer", "norefersub"}
"Option tags a Require may name (timer: we never refresh, the peer does)."
KNOWN_METHODS = {"PRACK", "REFER", "NOTIFY", "SUBSCRIBE", "MESSAGE", "PUBLISH", "REGISTER"}
"Methods we know and refuse with 405; anything else is 501."
REASONS = {
    100: "Trying", 180: "Ringing", 200: "OK", 400: "Bad Request", 403: "Forbidden", 405: "Method Not Allowed",
    415: "Unsupported Media Type", 420: "Bad Extension", 481: "Call/Transaction Does Not Exist",
    487: "Request Terminated", 488: "Not Acceptable Here", 491: "Request Pending", 500: "Server Internal Error",
    501: "Not Implemented", 503: "Service Unavailable", 513: "Message Too Large",
}  # fmt: skip


@dataclass(frozen=True)
class Send:
    data: bytes
    conn: Any
    "The transport the shell gave with the message being answered (UDP socket or TCP connection)."
    addr: tuple[str, int]


@dataclass(eq=False)
class Dialog:
    call_id: str
    local_tag: str
    remote_tag: str
    invite: SipMessage
    conn: Any
    addr: tuple[str, int]
    transport: str
    remote_uri: str
    local_uri: str
    remote_target: str
    route_set: list[str]
    remote_cseq: int
    local_cseq: int = 0
    state: str = "early"
    "early (INVITE not answered), confirmed (2xx sent), terminated."
    acked: bool = False
    final_status: int | None = None
    pending: SipMessage | None = None
    "The INVITE/UPDATE awaiting our response."
    attached: Any = None
    "The shell's call object."


@dataclass(frozen=True)
class DialogEvent:
    dialog: Dialog
    request: SipMessage | None = None


class NewInvite(DialogEvent):
    """An initial INVITE: the shell must ``respond`` to it."""


class Reoffer(DialogEvent):
    """A re-INVITE or UPDATE inside a dialog: the shell must ``respond`` to it."""


class Confirmed(DialogEvent):
    """The ACK for our 2xx arrived."""


class RemoteBye(DialogEvent):
    """The peer hung up (we already answered 200)."""


class Cancelled(DialogEvent):
    """The peer cancelled before we answered (we already sent 487)."""


class InfoReceived(DialogEvent):
    """An INFO inside a dialog (we already answered 200)."""


class AckTimeout(DialogEvent):
    """Our 2xx was never ACKed; the core sent a BYE."""


@dataclass
class _Retransmit:
    data: bytes
    conn: Any
    addr: tuple[str, int]
    next_at: float
    interval: float
    give_up_at: float
    dialog: Dialog | None = None
    is_2xx: bool = False


@dataclass
class SipCore:
    host: str
    "Address put in Contact and Via (the advertised address)."
    port: int
    "UDP and TCP port."
    tls_port: int = 0
    "SIP over TLS port (0: none)."
    user_agent: str = "vcon-capture"
    dialogs: dict[tuple[str, str], Dialog] = field(default_factory=dict)
    _responses: dict[tuple[str, str, str], tuple[bytes, float]] = field(default_factory=dict)
    "(call_id, branch, method) -> (last response, forget time): answers retransmitted requests."
    _invites: dict[tuple[str, str], Dialog] = field(default_factory=dict)
    "(call_id, branch) of initial INVITEs -> dialog, for CANCEL and retransmissions."
    _retransmits: dict[str, _Retransmit] = field(default_factory=dict)
    "Keyed by branch (our BYEs) or 2xx:<call-id>:<cseq> (our 2xx to INVITE)."

    # -- input ----------------------------------------------------------------------

    def receive(
        self, data: bytes, conn: Any, addr: tuple[str, int], transport: str, now: float
    ) -> tuple[list[Send], list[DialogEvent]]:
        """One message. RemoteProtocolError if it is unparseable (the shell counts and drops it)."""
        msg = parse_message(data)
        sends: list[Send] = []
        events: list[DialogEvent] = []
        if msg.is_request:
            try:
                self._request(msg, conn, addr, transport, now, sends, events)
            except RemoteProtocolError as exc:
                if msg.method == "ACK":
                    raise
                resp = response_to(msg, 400, REASONS[400])
                resp.add("Warning", f'399 vcon-capture "{str(exc)[:100]}"')
                self._send_response(msg, resp, conn, addr, now, sends)
        else:
            self._response(msg)
        return sends, events

    def _request(self, msg: SipMessage, conn: Any, addr: tuple[str, int], transport: str, now: float,
                 sends: list[Send], events: list[DialogEvent]) -> None:  # fmt: skip
        method = msg.method
        assert method is not None
        key = (msg.call_id, msg.branch, method)
        cached = self._responses.get(key)
        if cached is not None and method != "ACK":
            sends.append(Send(cached[0], conn, addr))
            return
        if method == "ACK":
            self._ack(msg, events)
            return
        if method == "CANCEL":
            self._cancel(msg, conn, addr, now, sends, events)
            return

        def reply(status: int, *, tag: str | None = None, headers: tuple[tuple[str, str], ...] = ()) -> None:
            resp = self._response_for(msg, status, tag=tag, transport=transport)
            for name, value in headers:
                resp.add(name, value)
            self._send_response(msg, resp, conn, addr, now, sends)

        unsupported = sorted(msg.tokens("Require") - SUPPORTED_TAGS)
        if unsupported and method != "BYE":
            reply(420, headers=(("Unsupported", ", ".join(unsupported)),))
            return
        to_tag = _tag(msg.get("To") or "")
        if to_tag:
            dialog = self.dialogs.get((msg.call_id, to_tag))
            if dialog is None or dialog.state == "terminated":
                reply(481)
                return
            self._in_dialog(dialog, msg, now, reply, events)
            return
        if method == "INVITE":
            self._new_invite(msg, conn, addr, transport, now, sends, events)
        elif method == "OPTIONS":
            reply(200, headers=(("Allow", ALLOW), ("Accept", "application/sdp, multipart/mixed"),
                                ("Supported", SUPPORTED)))  # fmt: skip
        elif method in ("BYE", "INFO", "UPDATE"):
            reply(481)
        else:
            reply(405 if method in KNOWN_METHODS else 501, headers=(("Allow", ALLOW),))

    def _in_dialog(self, dialog: Dialog, msg: SipMessage, now: float, reply: Any, events: list[DialogEvent]) -> None:
        number, method = msg.cseq
        if number < dialog.remote_cseq or (number == dialog.remote_cseq and method != "ACK"):
            reply(500, tag=dialog.local_tag, headers=(("Retry-After", "1"),))
            return
        dialog.remote_cseq = number
        if method in ("INVITE", "UPDATE"):
            if dialog.pending is not None:
                reply(491 if method == "INVITE" else 500, tag=dialog.local_tag)
                return
            contact = msg.get("Contact")
            if contact:
                dialog.remote_target = parse_name_addr(contact).uri
            dialog.pending = msg
            events.append(Reoffer(dialog, msg))
        elif method == "BYE":
            reply(200, tag=dialog.local_tag)
            was_early = dialog.state == "early"
            dialog.state = "terminated"
            self._drop_2xx(dialog)
            if was_early:
                log.info("bye in early dialog %s", dialog.call_id)
            events.append(RemoteBye(dialog, msg))
        elif method == "INFO":
            reply(200, tag=dialog.local_tag)
            events.append(InfoReceived(dialog, msg))
        elif method == "OPTIONS":
            reply(200, tag=dialog.local_tag, headers=(("Allow", ALLOW), ("Supported", SUPPORTED)))
        else:
            reply(405 if method in KNOWN_METHODS else 501, tag=dialog.local_tag, headers=(("Allow", ALLOW),))

    def _new_invite(self, msg: SipMessage, conn: Any, addr: tuple[str, int], transport: str, now: float,
                    sends: list[Send], events: list[DialogEvent]) -> None:  # fmt: skip
        from_ = parse_name_addr(msg.get("From") or "")
        contact = msg.get("Contact")
        if not from_.params.get("tag"):
            raise RemoteProtocolError("INVITE without From tag")
        dialog = Dialog(
            call_id=msg.call_id,
            local_tag=secrets.token_hex(6),
            remote_tag=from_.params["tag"],
            invite=msg,
            conn=conn,
            addr=addr,
            transport=transport,
            remote_uri=msg.get("From") or "",
            local_uri="",
            remote_target=parse_name_addr(contact).uri if contact else from_.uri,
            route_set=msg.get_all("Record-Route"),
            remote_cseq=msg.cseq[0],
            pending=msg,
        )
        dialog.local_uri = f"{msg.get('To')};tag={dialog.local_tag}"
        self.dialogs[(dialog.call_id, dialog.local_tag)] = dialog
        self._invites[(msg.call_id, msg.branch)] = dialog
        trying = response_to(msg, 100, REASONS[100])
        self._send_response(msg, trying, conn, addr, now, sends)
        events.append(NewInvite(dialog, msg))

    def _ack(self, msg: SipMessage, events: list[DialogEvent]) -> None:
        dialog = self.dialogs.get((msg.call_id, _tag(msg.get("To") or "")))
        if dialog is None or dialog.acked:
            return
        self._drop_2xx(dialog)
        if dialog.final_status is not None and 200 <= dialog.final_status < 300:
            dialog.acked = True
            if dialog.state == "confirmed":
                events.append(Confirmed(dialog, msg))

    def _cancel(self, msg: SipMessage, conn: Any, addr: tuple[str, int], now: float, sends: list[Send],
                events: list[DialogEvent]) -> None:  # fmt: skip
        dialog = self._invites.get((msg.call_id, msg.branch))
        if dialog is None:
            self._send_response(msg, response_to(msg, 481, REASONS[481]), conn, addr, now, sends)
            return
        self._send_response(msg, response_to(msg, 200, REASONS[200], to_tag=dialog.local_tag), conn, addr, now, sends)
        if dialog.state == "early" and dialog.pending is dialog.invite:
            sends.extend(self.respond(dialog, 487, now=now))
            events.append(Cancelled(dialog, msg))

    def _response(self, msg: SipMessage) -> None:
        if msg.status is not None and msg.status >= 200:
            pending = self._retransmits.pop(msg.branch, None)
            if pending is not None and pending.dialog is not None:
                log.debug("bye answered %s %s", pending.dialog.call_id, msg.status)

    # -- output ---------------------------------------------------------------------

    def respond(self, dialog: Dialog, status: int, *, now: float, body: bytes = b"", content_type: str | None = None,
                headers: tuple[tuple[str, str], ...] = ()) -> list[Send]:  # fmt: skip
        """Answer the dialog's pending INVITE or UPDATE."""
        request = dialog.pending
        if request is None:
            return []
        if status >= 200:
            dialog.pending = None
        resp = self._response_for(request, status, tag=dialog.local_tag, transport=dialog.transport)
        for name, value in headers:
            resp.add(name, value)
        if body:
            resp.add("Content-Type", content_type or "application/sdp")
            resp.body = body
        sends: list[Send] = []
        if request is dialog.invite and status >= 200:
            dialog.final_status = status
            if 200 <= status < 300:
                dialog.state = "confirmed"
            elif status >= 300:
                dialog.state = "terminated"
        if 200 <= status < 300 and request.method == "INVITE":
            data = resp.to_bytes()
            sends.append(Send(data, dialog.conn, dialog.addr))
            self._responses[(request.call_id, request.branch, "INVITE")] = (data, now + TIMEOUT)
            if dialog.transport == "udp":
                self._retransmits[f"2xx:{dialog.call_id}:{request.cseq[0]}"] = _Retransmit(
                    data, dialog.conn, dialog.addr, now + T1, T1, now + TIMEOUT, dialog, is_2xx=True
                )
            dialog.acked = False
        else:
            self._send_response(request, resp, dialog.conn, dialog.addr, now, sends)
        return sends

    def hangup(self, dialog: Dialog, *, now: float, reason: str | None = None) -> list[Send]:
        """End a dialog from our side: BYE when answered, else a 480 to the pending INVITE."""
        if dialog.state == "terminated":
            return []
        if dialog.state == "early":
            return self.respond(dialog, 480, now=now, headers=(("Reason", reason),) if reason else ())
        dialog.state = "terminated"
        self._drop_2xx(dialog)
        dialog.local_cseq += 1
        branch = "z9hG4bK" + secrets.token_hex(8)
        bye = SipMessage(method="BYE", uri=dialog.remote_target)
        via = f"{_host(self.host)}:{self._port(dialog.transport)}"
        bye.add("Via", f"SIP/2.0/{dialog.transport.upper()} {via};branch={branch};rport")
        bye.add("Max-Forwards", "70")
        for route in reversed(dialog.route_set):
            bye.add("Route", route)
        bye.add("From", dialog.local_uri)
        bye.add("To", dialog.remote_uri)
        bye.add("Call-ID", dialog.call_id)
        bye.add("CSeq", f"{dialog.local_cseq} BYE")
        bye.add("User-Agent", self.user_agent)
        if reason:
            bye.add("Reason", reason)
        data = bye.to_bytes()
        addr = dialog.addr if dialog.transport != "udp" else uri_hostport(dialog.remote_target)
        if dialog.transport == "udp":
            self._retransmits[branch] = _Retransmit(data, dialog.conn, addr, now + T1, T1, now + TIMEOUT, dialog)
        return [Send(data, dialog.conn, addr)]

    def tick(self, now: float) -> tuple[list[Send], list[DialogEvent]]:
        """Retransmit what is due, time out what waited too long, forget old transactions."""
        sends: list[Send] = []
        events: list[DialogEvent] = []
        for key, r in list(self._retransmits.items()):
            if now >= r.give_up_at:
                del self._retransmits[key]
                if r.is_2xx and r.dialog is not None and r.dialog.state == "confirmed":
                    sends.extend(self.hangup(r.dialog, now=now, reason='SIP;cause=408;text="no ACK"'))
                    events.append(AckTimeout(r.dialog))
            elif now >= r.next_at:
                sends.append(Send(r.data, r.conn, r.addr))
                r.interval = min(r.interval * 2, T2)
                r.next_at = now + r.interval
        for key, (_, forget_at) in list(self._responses.items()):
            if now >= forget_at:
                del self._responses[key]
        for key, dialog in list(self._invites.items()):
            if dialog.state == "terminated" and (dialog.call_id, key[1], "INVITE") not in self._responses:
                del self._invites[key]
        for key, dialog in list(self.dialogs.items()):
            if dialog.state == "terminated" and dialog.attached is None:
                del self.dialogs[key]
        return sends, events

    def forget(self, dialog: Dialog) -> None:
        """The shell is done with a terminated dialog."""
        dialog.attached = None

    def _response_for(self, request: SipMessage, status: int, *, tag: str | None, transport: str) -> SipMessage:
        resp = response_to(request, status, REASONS.get(status, "Error"), to_tag=tag)
        if request.method in ("INVITE", "UPDATE") and 200 <= status < 300:
            resp.add("Contact", f"<sip:recorder@{_host(self.host)}:{self._port(transport)};transport={transport}>")
            resp.add("Allow", ALLOW)
            resp.add("Supported", SUPPORTED)
        resp.add("Server", self.user_agent)
        return resp

    def _send_response(self, request: SipMessage, resp: SipMessage, conn: Any, addr: tuple[str, int], now: float,
                       sends: list[Send]) -> None:  # fmt: skip
        data = resp.to_bytes()
        assert request.method is not None
        self._responses[(request.call_id, request.branch, request.method)] = (data, now + TIMEOUT)
        sends.append(Send(data, conn, addr))

    def _port(self, transport: str) -> int:
        return self.tls_port if transport == "tls" else self.port

    def _drop_2xx(self, dialog: Dialog) -> None:
        for key, r in list(self._retransmits.items()):
            if r.is_2xx and r.dialog is dialog:
                del self._retransmits[key]


def _tag(header: str) -> str:
    try:
        return parse_name_addr(header).params.get("tag", "")
    except RemoteProtocolError:
        return params_of(header).get("tag", "")


def _host(host: str) -> str:
    return f"[{host}]" if ":" in host else host
