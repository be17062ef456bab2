"""The SIP user-agent server of the recorder, sans-IO: bytes and time in, bytes to send and
dialog events out.

Theory of operation. :class:`SipCore` owns every protocol decision; its asyncio shell
only moves bytes, runs the calls and arms one timer:

- ``receive(data, conn, addr, transport, now)`` takes one datagram or framed TCP
  message and returns what to send and what happened (:mod:`adapters.sip.dialogs`).
  Retransmitted requests are answered from the transaction layer
  (:mod:`adapters.sip.transactions`); in-dialog requests are checked (CSeq order,
  glare) and answered; an initial INVITE is admitted or refused here: while the service
  drains (``accepting`` False) or at ``max_calls``, it gets 503 with Retry-After
  (:class:`InviteRefused`, so the shell still records the attempt), and an out-of-dialog
  OPTIONS gets 503 too, so a dispatcher's pings take this node out of rotation.
  Refusals are cheap under a flood: at most ``refusals_per_s`` a second (bursts of ten
  times that) become calls the shell records; past it, and whenever the capture cannot
  take a call at all (``can_record`` False: its disk is below the free-space floor), an
  INVITE gets a stateless 503 (no dialog, no transaction kept, nothing recorded) and is
  only counted (``refused_quietly``); a retransmission gets another.
- Decisions that need the call (answer an INVITE, accept a re-offer) come back as
  events; the shell answers with ``respond``, ends a dialog with ``hangup``, and tells
  the core about media (``media_received``, ``media_held``).
- ``next_deadline()`` is the monotonic time ``handle_timer(now)`` next has work:
  retransmitting a 2xx until the ACK or a BYE until answered (RFC 3261 T1 0.5 s, T2
  4 s), ending a dialog whose 2xx was never acknowledged (:class:`AckTimeout`), ending an
  answered call not on hold whose media stopped for ``media_timeout_s``
  (:class:`MediaTimeout`; both with a BYE carrying a Reason), and forgetting old
  transactions. ``media_received`` only ever postpones a deadline, so the shell re-arms
  its timer after SIP input and timer runs, not after every RTP packet.
- Tags and branches come from the injected ``token`` (``secrets.token_hex`` by default).
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from typing import Any

from adapters.sip.admission import RefusalBudget
from adapters.sip.dialogs import (
    AckTimeout,
    Cancelled,
    Confirmed,
    Dialog,
    DialogEvent,
    DialogKey,
    InfoReceived,
    InviteRefused,
    MediaTimeout,
    NewInvite,
    RemoteBye,
    Reoffer,
    bye_for,
)
from adapters.sip.media_timeout import MediaTimeouts
from adapters.sip.message import SipMessage, params_of, parse_message, parse_name_addr, response_to, uri_hostport
from adapters.sip.transactions import REASONS, Send, Transactions
from capture.errors import RemoteProtocolError

ALLOW = "INVITE, ACK, BYE, CANCEL, OPTIONS, UPDATE, INFO"
SUPPORTED = "siprec, replaces"
SUPPORTED_TAGS = {"siprec", "replaces", "timer", "norefersub"}
"Option tags a Require may name (timer: we never refresh, the peer does)."
KNOWN_METHODS = {"PRACK", "REFER", "NOTIFY", "SUBSCRIBE", "MESSAGE", "PUBLISH", "REGISTER"}
"Methods we know and refuse with 405; anything else is 501."
NO_ACK = 'SIP;cause=408;text="no ACK"'
MEDIA_TIMEOUT = 'SIP;cause=408;text="media timeout"'

Headers = tuple[tuple[str, str], ...]
Reply = Callable[..., None]


class SipCore:
    """Transactions and dialogs of the recorder's UAS, plus admission and media timeouts."""

    def __init__(
        self,
        host: str,
        port: int,
        *,
        tls_port: int = 0,
        user_agent: str = "vcon-capture",
        max_calls: int | None = None,
        retry_after_s: int = 5,
        media_timeout_s: float | None = None,
        refusals_per_s: float | None = None,
        token: Callable[[int], str] = secrets.token_hex,
    ) -> None:
        self.host = host
        "Address put in Contact and Via (the advertised address)."
        self.port = port
        "UDP and TCP port."
        self.tls_port = tls_port
        "SIP over TLS port (0: none)."
        self.user_agent = user_agent
        self.max_calls = max_calls
        "Dialogs in progress beyond which an INVITE gets 503 (None: no limit)."
        self.retry_after_s = retry_after_s
        self.accepting = True
        "False while the service drains: new INVITEs and out-of-dialog OPTIONS get 503."
        self.can_record = True
        "False while the capture cannot take a call at all (disk below its floor): INVITEs get a stateless 503."
        self.refused_quietly = 0
        """INVITE requests refused with a stateless 503 and nothing recorded (over the rate, or nothing
        can be recorded); nothing is kept, so a retransmission is refused and counted again."""
        self._refusals = RefusalBudget(refusals_per_s)
        "Refused INVITEs that become recorded (refused) calls, per second; None: all of them."
        self.dialogs: dict[DialogKey, Dialog] = {}
        self._token = token
        self._tx = Transactions()
        self._invites: dict[tuple[str, str], Dialog] = {}
        "(Call-ID, branch) of initial INVITEs -> dialog, for CANCEL."
        self._active = 0
        "Dialogs counted against max_calls."
        self._media = MediaTimeouts(media_timeout_s)

    @property
    def active_calls(self) -> int:
        return self._active

    # -- input ----------------------------------------------------------------------

    def receive(
        self, data: bytes, conn: Any, addr: tuple[str, int], transport: str, now: float
    ) -> tuple[list[Send], list[DialogEvent]]:
        """One message. RemoteProtocolError if it is unparseable (the shell counts and drops it)."""
        msg = parse_message(data, datagram=transport == "udp")
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
        elif msg.status is not None and msg.status >= 200:
            self._tx.answered(msg.branch)
        return sends, events

    def media_received(self, dialog: Dialog, now: float) -> None:
        """Media of this dialog arrived at ``now`` (postpones its media timeout)."""
        dialog.media_at = now

    def media_held(self, dialog: Dialog, held: bool, now: float) -> None:
        """The call went on hold (no media expected) or came back (the media timeout starts afresh)."""
        if dialog.held and not held:
            self._media.watch(dialog, now)
        dialog.held = held

    def _request(self, msg: SipMessage, conn: Any, addr: tuple[str, int], transport: str, now: float,
                 sends: list[Send], events: list[DialogEvent]) -> None:  # fmt: skip
        method = msg.method
        assert method is not None
        if method == "ACK":
            self._ack(msg, events)
            return
        cached = self._tx.cached((msg.call_id, msg.branch, method))
        if cached is not None:
            sends.append(Send(cached, conn, addr))
            return
        if method == "CANCEL":
            self._cancel(msg, conn, addr, now, sends, events)
            return

        def reply(status: int, *, tag: str | None = None, headers: Headers = ()) -> None:
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
        elif method == "OPTIONS" and not self.accepting:
            reply(503, headers=(("Retry-After", str(self.retry_after_s)),))
        elif method == "OPTIONS":
            reply(200, headers=(("Allow", ALLOW), ("Accept", "application/sdp, multipart/mixed"),
                                ("Supported", SUPPORTED)))  # fmt: skip
        elif method in ("BYE", "INFO", "UPDATE"):
            reply(481)
        else:
            reply(405 if method in KNOWN_METHODS else 501, headers=(("Allow", ALLOW),))

    def _in_dialog(self, dialog: Dialog, msg: SipMessage, now: float, reply: Reply, events: list[DialogEvent]) -> None:
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
            self._terminate(dialog)
            self._tx.drop_2xx(dialog)
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
        again = self._invites.get((msg.call_id, f"{from_.params['tag']}:{msg.cseq[0]}"))
        cached = self._tx.cached((again.call_id, again.invite.branch, "INVITE")) if again is not None else None
        if again is not None and (cached is not None or again.state != "terminated"):
            # The same INVITE sent again under a new branch (an SRC that retried on another
            # connection or after a failover): the same dialog answered as before, never a second call.
            sends.append(Send(cached or response_to(msg, 100, REASONS[100]).to_bytes(), conn, addr))
            return
        full = self.max_calls is not None and self._active >= self.max_calls
        if not self.can_record or ((full or not self.accepting) and not self._refusals.take(now)):
            self.refused_quietly += 1
            resp = self._response_for(msg, 503, tag=self._token(6), transport=transport)
            resp.add("Retry-After", str(self.retry_after_s))
            sends.append(Send(resp.to_bytes(), conn, addr))
            return
        dialog = Dialog(
            call_id=msg.call_id,
            local_tag=self._token(6),
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
        self.dialogs[dialog.key] = dialog
        self._invites[(msg.call_id, msg.branch)] = dialog
        self._invites[(msg.call_id, f"{dialog.remote_tag}:{dialog.remote_cseq}")] = dialog
        self._send_response(msg, response_to(msg, 100, REASONS[100]), conn, addr, now, sends)
        if not self.accepting or full:
            retry = (("Retry-After", str(self.retry_after_s)),)
            sends.extend(self.respond(dialog, 503, now=now, headers=retry))
            events.append(InviteRefused(dialog, msg, 503, "over capacity" if self.accepting else "shutdown"))
            return
        dialog.counted = True
        self._active += 1
        events.append(NewInvite(dialog, msg))

    def _ack(self, msg: SipMessage, events: list[DialogEvent]) -> None:
        dialog = self.dialogs.get((msg.call_id, _tag(msg.get("To") or "")))
        if dialog is None or dialog.acked:
            return
        self._tx.drop_2xx(dialog)
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

    # -- output ---------------------------------------------------------------------

    def respond(self, dialog: Dialog, status: int, *, now: float, body: bytes = b"", content_type: str | None = None,
                headers: Headers = ()) -> list[Send]:  # fmt: skip
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
                self._media.watch(dialog, now)
            else:
                self._terminate(dialog)
        if 200 <= status < 300 and request.method == "INVITE":
            send = Send(resp.to_bytes(), dialog.conn, dialog.addr)
            sends.append(send)
            self._tx.remember(request, send.data, now)
            if dialog.transport == "udp":
                self._tx.retransmit(f"2xx:{dialog.call_id}:{request.cseq[0]}", send, now, dialog, is_2xx=True)
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
        self._terminate(dialog)
        self._tx.drop_2xx(dialog)
        branch = "z9hG4bK" + self._token(8)
        via = f"{_host(self.host)}:{self._port(dialog.transport)}"
        bye = bye_for(dialog, via=via, branch=branch, user_agent=self.user_agent, reason=reason)
        addr = dialog.addr if dialog.transport != "udp" else uri_hostport(dialog.remote_target)
        send = Send(bye.to_bytes(), dialog.conn, addr)
        if dialog.transport == "udp":
            self._tx.retransmit(branch, send, now, dialog)
        return [send]

    def forget(self, dialog: Dialog) -> None:
        """The shell is done with this dialog (it ends it first if it has not ended)."""
        self._terminate(dialog)
        self.dialogs.pop(dialog.key, None)

    # -- timers ---------------------------------------------------------------------

    def next_deadline(self) -> float | None:
        """When :meth:`handle_timer` next has work (monotonic seconds), None if never."""
        deadline = self._tx.next_deadline()
        media = self._media.check_at
        if media is not None and (deadline is None or media < deadline):
            return media
        return deadline

    def handle_timer(self, now: float) -> tuple[list[Send], list[DialogEvent]]:
        """Retransmit what is due, end dialogs that timed out, forget old transactions."""
        sends, unacked = self._tx.due(now)
        events: list[DialogEvent] = []
        for dialog in unacked:
            if dialog.state == "confirmed":
                sends.extend(self.hangup(dialog, now=now, reason=NO_ACK))
                events.append(AckTimeout(dialog))
        for dialog in self._media.expired(self.dialogs.values(), now):
            sends.extend(self.hangup(dialog, now=now, reason=MEDIA_TIMEOUT))
            events.append(MediaTimeout(dialog))
        if self._tx.sweep(now):
            for key, dialog in list(self._invites.items()):
                if dialog.state == "terminated" and self._tx.cached((dialog.call_id, key[1], "INVITE")) is None:
                    del self._invites[key]
        return sends, events

    # -- helpers --------------------------------------------------------------------

    def _terminate(self, dialog: Dialog) -> None:
        if dialog.state == "terminated":
            return
        dialog.state = "terminated"
        if dialog.counted:
            dialog.counted = False
            self._active -= 1

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
        self._tx.remember(request, data, now)
        sends.append(Send(data, conn, addr))

    def _port(self, transport: str) -> int:
        return self.tls_port if transport == "tls" else self.port


def _tag(header: str) -> str:
    try:
        return parse_name_addr(header).params.get("tag", "")
    except RemoteProtocolError:
        return params_of(header).get("tag", "")


def _host(host: str) -> str:
    return f"[{host}]" if ":" in host else host
