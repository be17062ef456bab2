"""The SIP adapter: a recording trunk and SIPREC recording server on asyncio.

The shell around :class:`adapters.sip.core.SipCore`, in the aioquic way: the sockets of
:mod:`adapters.sip.transport` hand every message to the core, the shell sends what the core
returns, runs the calls its events ask for (:class:`adapters.sip.call.SipCall`, one
:class:`adapters.sip.rtp.RtpStream` per received stream) and arms one timer at the core's
``next_deadline()``, re-armed after every input. It parses no SIP and decides no protocol
question; time comes from the capture's clock.
"""

from __future__ import annotations

import asyncio
import contextvars
import ipaddress
import logging
from functools import partial
from typing import Any

from adapters.sip.call import SipCall
from adapters.sip.core import SipCore
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
)
from adapters.sip.rtp import RtpEndpoint, RtpStream
from adapters.sip.settings import SipSettings
from adapters.sip.siprec_parties import RecordingGroups
from adapters.sip.transactions import Send
from adapters.sip.transport import TcpProtocol, UdpProtocol, bind_rtp_socket, reachable_address
from capture.adapter import Adapter, Capture
from capture.errors import ConfigError, RemoteProtocolError, StartupError
from capture.events import CaptureNoted, Disposition
from capture.logs import call_scope
from capture.media.source import MODES
from capture.settings import split_hostport

log = logging.getLogger(__name__)

LOG_EVERY_S = 60.0
"A misbehaving source is logged once per minute, however much it sends."
SHUTDOWN = 'SIP;cause=503;text="recorder shutting down"'


class SipAdapter(Adapter):
    name = "sip"
    summary = "record SIP calls and SIPREC sessions (recording trunk / SRS) into vCons"
    settings_class = SipSettings

    def __init__(self, settings: SipSettings, capture: Capture) -> None:
        super().__init__(settings, capture)
        self.settings: SipSettings = settings
        self.host, self.port = split_hostport(settings.listen, "sip.listen")
        self.address = settings.advertise or reachable_address(self.host)
        _check(settings)
        self.core = SipCore(self.address, self.port, max_calls=settings.max_calls,
                            retry_after_s=settings.retry_after_s, media_timeout_s=settings.media_timeout_s,
                            refusals_per_s=settings.refused_vcons_per_s)  # fmt: skip
        self.calls: dict[DialogKey, SipCall] = {}
        self.malformed = 0
        "Datagrams and messages that were not SIP, counted."
        self.refused = 0
        "Messages and connections from sources outside the allow-list."
        self._networks = settings.networks()
        self._allowed: dict[str, bool] = {}
        self._last_logged: dict[str, float] = {}
        self._udp: asyncio.DatagramTransport | None = None
        self._tcp: asyncio.Server | None = None
        self._tls: asyncio.Server | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at: float | None = None
        self._stopped = False
        self._closed = False
        self._rtp_tasks: set[asyncio.Task[Any]] = set()
        self._recordings = RecordingGroups()
        self._quiet_logged = 0
        "Quiet refusals (stateless 503s, nothing recorded) already reported in the log."

    def describe(self) -> str:
        tls = f" tls {self.settings.tls_listen}" if self.settings.tls_listen else ""
        return f"sip udp+tcp {self.host}:{self.port}{tls}"

    # -- lifecycle ------------------------------------------------------------------

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            self._udp, _ = await loop.create_datagram_endpoint(
                lambda: UdpProtocol(self), local_addr=(self.host, self.port)
            )
            if self.port == 0:
                self.port = self._udp.get_extra_info("sockname")[1]
                self.core.port = self.port
            self._tcp = await loop.create_server(lambda: TcpProtocol(self, "tcp"), self.host, self.port)
            tls = self.settings.tls_context()
            if tls is not None:
                assert self.settings.tls_listen is not None
                host, port = split_hostport(self.settings.tls_listen, "sip.tls_listen")
                self._tls = await loop.create_server(lambda: TcpProtocol(self, "tls"), host, port, ssl=tls)
                self.core.tls_port = self._tls.sockets[0].getsockname()[1]
        except OSError as exc:
            for server in (self._udp, self._tcp):
                if server is not None:
                    server.close()
            raise StartupError(f"cannot listen on {self.host}:{self.port}: {exc.strerror}") from None
        log.info("sip.listening", extra={"host": self.host, "port": self.port, "tls_port": self.core.tls_port or None})

    async def stop(self) -> None:
        self._stopped = True
        self.core.accepting = False
        if self.core.refused_quietly != self._quiet_logged:
            self._log_quiet_refusals()
        now = self.capture.monotonic()
        for call in list(self.calls.values()):
            with call_scope(self.capture.vcon_uuid(call.call_id)):
                self._send(self.core.hangup(call.dialog, now=now, reason=SHUTDOWN))
                self._finish(call, cause="recorder shutdown", hangup_by="recorder")
        self._arm()

    async def close(self) -> None:
        self._closed = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        for server in (self._tcp, self._tls):
            if server is not None:
                server.close()
        if self._udp is not None:
            self._udp.close()

    # -- input ----------------------------------------------------------------------

    def admit(self, host: str) -> bool:
        """Whether ``host`` may talk SIP to us (sip.allow); refusals are counted and logged."""
        ok = self._allowed.get(host)
        if ok is None:
            try:
                ip = ipaddress.ip_address(host.split("%", 1)[0])
                ok = any(ip in net for net in self._networks)
            except ValueError:
                ok = False
            if len(self._allowed) > 10000:
                self._allowed.clear()
            self._allowed[host] = ok
        if not ok:
            self.refused += 1
            if self._first_in_a_while(host):
                log.warning("sip.source_refused", extra={"source": host, "why": "not in sip.allow"})
        return ok

    def on_message(self, data: bytes, conn: Any, addr: tuple[str, int], transport: str) -> None:
        """One SIP message from a socket of :mod:`adapters.sip.transport`."""
        if transport == "udp" and not self.admit(addr[0]):
            return
        if not data.strip():
            return
        now = self.capture.monotonic()
        # The capture stops accepting while its disk is low (and resumes by itself) or as the service
        # shuts down. Disk low (can_record False): INVITEs get a stateless 503 and become no call,
        # there is nothing to write them to. Shutting down: the core refuses them ("shutdown"),
        # recorded as refused calls (within the refusal budget).
        self.core.accepting = self.capture.accepting and not self._stopped
        self.core.can_record = self.capture.can_record
        try:
            sends, events = self.core.receive(data, conn, addr, transport, now)
        except RemoteProtocolError as exc:
            self.malformed += 1
            if self._first_in_a_while(addr[0]):
                log.warning("sip.malformed", extra={"source": addr[0], "error": str(exc), "so_far": self.malformed})
            return
        if self.core.refused_quietly != self._quiet_logged and self._first_in_a_while("~refusals"):
            self._log_quiet_refusals()
        self._send(sends)
        self._dispatch(events, now)
        self._arm()

    def on_bad_stream(self, host: str, error: RemoteProtocolError) -> None:
        """A TCP/TLS byte stream that cannot be framed into SIP (it is closed)."""
        self.malformed += 1
        if self._first_in_a_while(host):
            log.warning("sip.tcp_stream_closed", extra={"source": host, "error": str(error)})

    def _log_quiet_refusals(self) -> None:
        """INVITEs refused without a trace of their own (a flood, or no disk to record on), summed up."""
        total = self.core.refused_quietly
        log.warning("sip.invites_refused_unrecorded",
                    extra={"count": total - self._quiet_logged, "total": total, "active_calls": self.core.active_calls,
                           "accepting": self.capture.accepting})  # fmt: skip
        self._quiet_logged = total

    def _first_in_a_while(self, source: str) -> bool:
        now = self.capture.monotonic()
        if now - self._last_logged.get(source, -LOG_EVERY_S) < LOG_EVERY_S:
            return False
        if len(self._last_logged) > 10000:
            self._last_logged.clear()
        self._last_logged[source] = now
        return True

    def _send(self, sends: list[Send]) -> None:
        udp = self._udp
        for s in sends:
            if udp is not None and s.conn is udp:
                udp.sendto(s.data, s.addr)
            elif not s.conn.is_closing():
                s.conn.write(s.data)

    # -- timer ----------------------------------------------------------------------

    def _arm(self) -> None:
        """One timer, at the core's next deadline."""
        deadline = None if self._closed else self.core.next_deadline()
        if deadline == self._timer_at:
            return
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._timer_at = deadline
        if deadline is not None:
            delay = max(deadline - self.capture.monotonic(), 0.0)
            # A fresh context: the timer serves every call, it must not inherit one call's log scope.
            loop = asyncio.get_running_loop()
            self._timer = loop.call_later(delay, self._on_timer, context=contextvars.Context())

    def _on_timer(self) -> None:
        self._timer, self._timer_at = None, None
        now = self.capture.monotonic()
        sends, events = self.core.handle_timer(now)
        self._send(sends)
        self._dispatch(events, now)
        self._arm()

    # -- calls ----------------------------------------------------------------------

    def _dispatch(self, events: list[DialogEvent], now: float) -> None:
        for event in events:
            dialog = event.dialog
            if isinstance(event, NewInvite | InviteRefused):
                self._new_call(event, now)
                continue
            call = self.calls.get(dialog.key)
            if call is None:
                if isinstance(event, Reoffer):
                    self._send(self.core.respond(dialog, 481, now=now))
                continue
            with call_scope(self.capture.vcon_uuid(call.call_id)):
                try:
                    self._call_event(call, event, now)
                except RemoteProtocolError as exc:
                    log.warning("sip.bad_request", extra={"call_id": call.call_id, "error": str(exc)})
                    status = exc.status_hint if exc.status_hint >= 400 else 400
                    warning = ("Warning", f'399 vcon-capture "{str(exc)[:100]}"')
                    self._send(self.core.respond(dialog, status, now=now, headers=(warning,)))

    def _call_event(self, call: SipCall, event: DialogEvent, now: float) -> None:
        reason = event.request.get("Reason") if event.request else None
        by = None if call.siprec else "caller"
        if isinstance(event, Reoffer):
            self._reoffer(call, event, now)
        elif isinstance(event, RemoteBye):
            if event.request is not None:
                call.bye(event.request)
            if call.answered_at is None:
                log.info("sip.bye_before_answer", extra={"call_id": call.call_id})
            self._finish(call, cause=reason or "BYE", hangup_by="remote", ended_by=by, reason=reason)
        elif isinstance(event, Cancelled):
            self._finish(call, cause="CANCEL", hangup_by="remote", ended_by=by, disposition=Disposition.HUNG_UP,
                         final_status=487, reason=reason)  # fmt: skip
        elif isinstance(event, InfoReceived) and event.request is not None:
            call.info(event.request)
        elif isinstance(event, AckTimeout):
            self._finish(call, cause="no ACK", hangup_by="recorder")
        elif isinstance(event, MediaTimeout):
            self._finish(call, cause="media timeout", hangup_by="recorder")
        elif isinstance(event, Confirmed):
            log.debug("sip.call_confirmed", extra={"call_id": call.call_id})

    def _new_call(self, event: NewInvite | InviteRefused, now: float) -> None:
        dialog = event.dialog
        call = SipCall(dialog, self.capture, bind_rtp=partial(self._bind_rtp, dialog), address=self.address,
                       reorder_depth=self.settings.reorder_depth, own_hosts=frozenset({self.host}))  # fmt: skip
        self.calls[dialog.key] = call
        offer = call.start()
        if call.parties.metadata is not None:
            call.continues = self._recordings.seen(call.parties.metadata, call.call_id,
                                                   self.capture.vcon_uuid(call.call_id))  # fmt: skip
        with call_scope(self.capture.vcon_uuid(call.call_id)):
            source = f"{dialog.addr[0]}:{dialog.addr[1]}"
            log.debug("sip.call_offered", extra={"call_id": call.call_id, "source": source,
                                                 "transport": dialog.transport, "siprec": call.siprec})  # fmt: skip
            if isinstance(event, InviteRefused):
                log.info("sip.call_refused", extra={"call_id": call.call_id, "status": event.status,
                                                    "why": event.reason})  # fmt: skip
                call.reject(event.status, Disposition.CONGESTION, event.reason)
                self._forget(call)
            elif offer is None:
                self._reject(call, call.reject_status, call.reject_reason, now)
            else:
                try:
                    answer = call.negotiate(offer)
                except RemoteProtocolError as exc:
                    self._reject(call, exc.status_hint if exc.status_hint >= 400 else 488, str(exc), now)
                    return
                if self.settings.answer_delay_s > 0:
                    self._send(self.core.respond(dialog, 180, now=now))
                    asyncio.get_running_loop().call_later(self.settings.answer_delay_s, self._answer, call, answer)
                else:
                    self._answer(call, answer)

    def _answer(self, call: SipCall, answer: bytes) -> None:
        if call.ended:
            return
        now = self.capture.monotonic()
        self._send(self.core.respond(call.dialog, 200, now=now, body=answer))
        call.answered()
        self.core.media_held(call.dialog, call.on_hold, now)
        log.info("sip.call_answered", extra={"call_id": call.call_id, "siprec": call.siprec,
                                             "streams": sum(1 for s in call.streams if s)})  # fmt: skip
        self._arm()

    def _reject(self, call: SipCall, status: int, reason: str, now: float) -> None:
        log.info("sip.call_rejected", extra={"call_id": call.call_id, "status": status, "why": reason})
        self._send(self.core.respond(call.dialog, status, now=now))
        call.reject(status, Disposition.FAILED, reason)
        self._forget(call)

    def _reoffer(self, call: SipCall, event: Reoffer, now: float) -> None:
        assert event.request is not None
        try:
            answer = call.reoffer(event.request)
        except RemoteProtocolError as exc:
            log.warning("sip.reoffer_refused", extra={"call_id": call.call_id, "error": str(exc)})
            self._send(self.core.respond(call.dialog, exc.status_hint if exc.status_hint >= 400 else 488, now=now))
            return
        self._send(self.core.respond(call.dialog, 200, now=now, body=answer or b""))
        self.core.media_held(call.dialog, call.on_hold, now)

    def _finish(self, call: SipCall, *, cause: str, hangup_by: str, ended_by: str | None = None,
                disposition: Disposition | None = None, final_status: int | None = None,
                reason: str | None = None) -> None:  # fmt: skip
        self._note_refused(call)
        call.end(disposition=disposition, cause=cause, ended_by=ended_by, hangup_by=hangup_by,
                 final_status=final_status, reason=reason)  # fmt: skip
        self._forget(call)
        log.info("sip.call_ended", extra={"call_id": call.call_id, "cause": cause, "hangup_by": hangup_by})

    def _note_refused(self, call: SipCall) -> None:
        """Packets a stream refused (other sources, failed SRTP) go into the vCon's capture_notes."""
        notes = {}
        for stream in call.streams:
            if stream is None:
                continue
            if stream.endpoint is not None:
                stream.endpoint.close()  # what already reached the socket first: the counts are final
            stats, policy = stream.receiver.stats, stream.receiver.source
            if stats.refused or stats.srtp_failed:
                notes[stream.stream_id] = {"refused": stats.refused, "srtp_failed": stats.srtp_failed,
                                           "source_mode": policy.mode, "taken_from": _text(policy.current),
                                           "moves": stats.moves}  # fmt: skip
        if notes:
            self.capture.emit(CaptureNoted(call_id=call.call_id, at=self.capture.now(), key="rtp_refused",
                                           value=notes))  # fmt: skip

    def _forget(self, call: SipCall) -> None:
        self.calls.pop(call.dialog.key, None)
        self.core.forget(call.dialog)

    def _bind_rtp(self, dialog: Dialog, stream: RtpStream) -> int:
        """Bind an even port from the range for ``stream`` and start receiving on it."""
        sock, port = bind_rtp_socket(self.host, self.settings.rtp_port_min, self.settings.rtp_port_max)
        stream.receiver.source.configure(mode=self.settings.rtp_source, relatch_s=self.settings.rtp_relatch_s,
                                         peer_host=dialog.addr[0], local_host=self.host)  # fmt: skip
        endpoint = RtpEndpoint(stream, sock, self.capture.monotonic, partial(self.core.media_received, dialog))
        stream.endpoint = endpoint
        loop = asyncio.get_running_loop()
        task = loop.create_task(loop.create_datagram_endpoint(lambda: endpoint, sock=sock))
        self._rtp_tasks.add(task)
        task.add_done_callback(self._rtp_bound)
        return port

    def _rtp_bound(self, task: asyncio.Task[Any]) -> None:
        self._rtp_tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.debug("sip.rtp_endpoint_not_started", extra={"why": str(task.exception())})


def _check(settings: SipSettings) -> None:
    """The RTP source policy and the refusal budget (checked here: the settings class checks the rest)."""
    if settings.rtp_source not in MODES:
        raise ConfigError("sip.rtp_source", f"must be one of {', '.join(MODES)}")
    if settings.rtp_relatch_s < 0:
        raise ConfigError("sip.rtp_relatch_s", "must not be negative")
    if settings.refused_vcons_per_s < 0:
        raise ConfigError("sip.refused_vcons_per_s", "must not be negative")


def _text(addr: tuple[str, int] | None) -> str | None:
    return None if addr is None else f"[{addr[0]}]:{addr[1]}" if ":" in addr[0] else f"{addr[0]}:{addr[1]}"
