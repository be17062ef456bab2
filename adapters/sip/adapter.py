"""The SIP adapter: a recording trunk and SIPREC recording server on asyncio.

Thin I/O around :class:`adapters.sip.core.SipCore`: one UDP endpoint and one TCP server on
the same port feed it, a ticker drives its timers and the media timeout, and each dialog
becomes a :class:`adapters.sip.call.SipCall` with one :class:`RtpStream` per received stream.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import random
import socket
import time
from typing import Any

from adapters.sip.call import SipCall
from adapters.sip.core import (
    AckTimeout,
    Cancelled,
    Confirmed,
    DialogEvent,
    InfoReceived,
    NewInvite,
    RemoteBye,
    Reoffer,
    Send,
    SipCore,
)
from adapters.sip.message import TcpFramer, parse_message, parse_name_addr, response_to
from adapters.sip.rtp import RtpStream
from adapters.sip.settings import SipSettings, split_hostport
from capture.adapter import Adapter, Capture
from capture.errors import RemoteProtocolError, StartupError
from capture.events import Disposition

log = logging.getLogger(__name__)

TICK_S = 0.1
LOG_EVERY_S = 60.0
RTP_RCVBUF = 1 << 20
"Per stream socket: absorbs event-loop stalls (a vCon being finalised) of seconds without loss."


class SipAdapter(Adapter):
    name = "sip"
    summary = "record SIP calls and SIPREC sessions (recording trunk / SRS) into vCons"
    settings_class = SipSettings

    def __init__(self, settings: SipSettings, capture: Capture) -> None:
        super().__init__(settings, capture)
        self.settings: SipSettings = settings
        self.host, self.port = split_hostport(settings.listen, "sip.listen")
        self.address = settings.advertise or _reachable_address(self.host)
        self.core = SipCore(self.address, self.port)
        self.calls: dict[Any, SipCall] = {}
        "By dialog."
        self.malformed = 0
        "Datagrams and messages that were not SIP, counted."
        self.refused = 0
        "Messages from sources outside the allow-list."
        self._networks = settings.networks()
        self._allowed: dict[str, bool] = {}
        self._last_logged: dict[str, float] = {}
        self._udp: asyncio.DatagramTransport | None = None
        self._tcp: asyncio.Server | None = None
        self._tls: asyncio.Server | None = None
        self._ticker: asyncio.Task[None] | None = None
        self._rtp_tasks: set[asyncio.Task[Any]] = set()

    def describe(self) -> str:
        tls = f" tls {self.settings.tls_listen}" if self.settings.tls_listen else ""
        return f"sip udp+tcp {self.host}:{self.port}{tls}"

    # -- lifecycle ------------------------------------------------------------------

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            self._udp, _ = await loop.create_datagram_endpoint(
                lambda: _UdpProtocol(self), local_addr=(self.host, self.port)
            )
            if self.port == 0:
                self.port = self._udp.get_extra_info("sockname")[1]
                self.core.port = self.port
            self._tcp = await loop.create_server(lambda: _TcpProtocol(self, "tcp"), self.host, self.port)
            tls = self.settings.tls_context()
            if tls is not None:
                assert self.settings.tls_listen is not None
                host, port = split_hostport(self.settings.tls_listen, "sip.tls_listen")
                self._tls = await loop.create_server(lambda: _TcpProtocol(self, "tls"), host, port, ssl=tls)
                self.core.tls_port = self._tls.sockets[0].getsockname()[1]
        except OSError as exc:
            for server in (self._udp, self._tcp):
                if server is not None:
                    server.close()
            raise StartupError(f"cannot listen on {self.host}:{self.port}: {exc.strerror}") from None
        self._ticker = asyncio.create_task(self._tick_forever())
        log.info("sip listening %s:%d (udp, tcp)", self.host, self.port)

    async def stop(self) -> None:
        now = time.monotonic()
        for call in list(self.calls.values()):
            self._send(self.core.hangup(call.dialog, now=now, reason='SIP;cause=503;text="recorder shutting down"'))
            self._finish(call, cause="recorder shutdown", hangup_by="recorder")

    async def close(self) -> None:
        if self._ticker is not None:
            self._ticker.cancel()
        for server in (self._tcp, self._tls):
            if server is not None:
                server.close()
        if self._udp is not None:
            self._udp.close()

    async def _tick_forever(self) -> None:
        while True:
            await asyncio.sleep(TICK_S)
            now = time.monotonic()
            sends, events = self.core.tick(now)
            self._send(sends)
            self._dispatch(events, now)
            for call in list(self.calls.values()):
                if (call.answered_at is not None and not call.on_hold
                        and now - call.last_media() > self.settings.media_timeout_s):  # fmt: skip
                    log.info("media timeout %s", call.call_id)
                    self._send(self.core.hangup(call.dialog, now=now, reason='SIP;cause=408;text="media timeout"'))
                    self._finish(call, cause="media timeout", hangup_by="recorder")

    # -- input ----------------------------------------------------------------------

    def allowed(self, host: str) -> bool:
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
        return ok

    def on_message(self, data: bytes, conn: Any, addr: tuple[str, int], transport: str) -> None:
        if not self.allowed(addr[0]):
            self.refused += 1
            self.log_once(addr[0], "sip refused source %s (not in sip.allow)", addr[0])
            return
        if not data.strip():
            return
        now = time.monotonic()
        try:
            if not self.capture.accepting and (refusal := self._draining_refusal(data)) is not None:
                self._send([Send(refusal, conn, addr)])
                return
            sends, events = self.core.receive(data, conn, addr, transport, now)
        except RemoteProtocolError as exc:
            self.malformed += 1
            self.log_once(addr[0], "sip malformed from %s: %s (%d so far)", addr[0], exc, self.malformed)
            return
        self._send(sends)
        self._dispatch(events, now)

    def _draining_refusal(self, data: bytes) -> bytes | None:
        """503 for an out-of-dialog OPTIONS while shutting down, so a dispatcher's pings take this node
        out of rotation; None for anything else (the core answers it)."""
        msg = parse_message(data)
        if msg.method != "OPTIONS" or parse_name_addr(msg.get("To") or "").params.get("tag"):
            return None
        resp = response_to(msg, 503, "Service Unavailable")
        resp.add("Retry-After", str(self.settings.retry_after_s))
        resp.add("Server", self.core.user_agent)
        return resp.to_bytes()

    def log_once(self, source: str, message: str, *args: Any) -> None:
        now = time.monotonic()
        if now - self._last_logged.get(source, -LOG_EVERY_S) >= LOG_EVERY_S:
            if len(self._last_logged) > 10000:
                self._last_logged.clear()
            self._last_logged[source] = now
            log.warning(message, *args)

    def _send(self, sends: list[Send]) -> None:
        for s in sends:
            if s.conn is self._udp:
                s.conn.sendto(s.data, s.addr)
            elif not s.conn.is_closing():
                s.conn.write(s.data)

    def _dispatch(self, events: list[DialogEvent], now: float) -> None:
        for event in events:
            dialog = event.dialog
            call = self.calls.get(dialog)
            try:
                if isinstance(event, NewInvite):
                    self._new_call(dialog, now)
                elif call is None:
                    if isinstance(event, Reoffer):
                        self._send(self.core.respond(dialog, 481, now=now))
                elif isinstance(event, Reoffer):
                    self._reoffer(call, event, now)
                elif isinstance(event, RemoteBye):
                    reason = event.request.get("Reason") if event.request else None
                    by = None if call.siprec else "caller"
                    self._finish(call, cause=reason or "BYE", hangup_by="remote", ended_by=by, reason=reason)
                elif isinstance(event, Cancelled):
                    reason = event.request.get("Reason") if event.request else None
                    self._finish(call, cause="CANCEL", hangup_by="remote", ended_by=None if call.siprec else "caller",
                                 disposition=Disposition.HUNG_UP, final_status=487, reason=reason)  # fmt: skip
                elif isinstance(event, InfoReceived) and event.request is not None:
                    call.info(event.request)
                elif isinstance(event, AckTimeout):
                    self._finish(call, cause="no ACK", hangup_by="recorder")
                elif isinstance(event, Confirmed):
                    log.debug("acked %s", call.call_id)
            except RemoteProtocolError as exc:
                log.warning("sip bad request in %s: %s", dialog.call_id, exc)
                status = exc.status_hint if exc.status_hint >= 400 else 400
                warning = ("Warning", f'399 vcon-capture "{str(exc)[:100]}"')
                self._send(self.core.respond(dialog, status, now=now, headers=(warning,)))

    # -- calls ----------------------------------------------------------------------

    def _new_call(self, dialog: Any, now: float) -> None:
        call = SipCall(dialog, self.capture, bind_rtp=self._bind_rtp, address=self.address,
                       reorder_depth=self.settings.reorder_depth)  # fmt: skip
        dialog.attached = call
        self.calls[dialog] = call
        offer = call.start()
        if offer is None:
            self._reject(call, call.reject_status, Disposition.FAILED, call.reject_reason, now)
            return
        if not self.capture.accepting or len(self.calls) > self.settings.max_calls:
            self._reject(call, 503, Disposition.CONGESTION, "over capacity" if self.capture.accepting else "shutdown",
                         now, headers=(("Retry-After", str(self.settings.retry_after_s)),))  # fmt: skip
            return
        try:
            answer = call.negotiate(offer)
        except RemoteProtocolError as exc:
            self._reject(call, exc.status_hint if exc.status_hint >= 400 else 488, Disposition.FAILED, str(exc), now)
            return
        if self.settings.answer_delay_s > 0:
            self._send(self.core.respond(dialog, 180, now=now))
            asyncio.get_running_loop().call_later(self.settings.answer_delay_s, self._answer, call, answer)
        else:
            self._answer(call, answer)

    def _answer(self, call: SipCall, answer: bytes) -> None:
        if call.ended:
            return
        self._send(self.core.respond(call.dialog, 200, now=time.monotonic(), body=answer))
        call.answered()
        log.info("call answered %s (%s, %d streams)", call.call_id, "siprec" if call.siprec else "plain",
                 sum(1 for s in call.streams if s))  # fmt: skip

    def _reject(self, call: SipCall, status: int, disposition: Disposition, reason: str, now: float,
                headers: tuple[tuple[str, str], ...] = ()) -> None:  # fmt: skip
        log.info("call rejected %s: %d %s", call.call_id, status, reason)
        self._send(self.core.respond(call.dialog, status, now=now, headers=headers))
        call.reject(status, disposition, reason)
        self._forget(call)

    def _reoffer(self, call: SipCall, event: Reoffer, now: float) -> None:
        assert event.request is not None
        try:
            answer = call.reoffer(event.request)
        except RemoteProtocolError as exc:
            log.warning("sip re-offer refused %s: %s", call.call_id, exc)
            self._send(self.core.respond(call.dialog, exc.status_hint if exc.status_hint >= 400 else 488, now=now))
            return
        self._send(self.core.respond(call.dialog, 200, now=now, body=answer or b""))

    def _finish(self, call: SipCall, *, cause: str, hangup_by: str, ended_by: str | None = None,
                disposition: Disposition | None = None, final_status: int | None = None,
                reason: str | None = None) -> None:  # fmt: skip
        call.end(disposition=disposition, cause=cause, ended_by=ended_by, hangup_by=hangup_by,
                 final_status=final_status, reason=reason)  # fmt: skip
        self._forget(call)
        log.info("call ended %s: %s", call.call_id, cause)

    def _forget(self, call: SipCall) -> None:
        self.calls.pop(call.dialog, None)
        self.core.forget(call.dialog)

    def _bind_rtp(self, stream: RtpStream) -> int:
        """Bind an even port from the range for ``stream`` and start receiving on it."""
        lo, hi = self.settings.rtp_port_min, self.settings.rtp_port_max
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        ports = range(lo + (lo & 1), hi + 1, 2)
        first = random.randrange(len(ports))
        for i in range(len(ports)):
            port = ports[(first + i) % len(ports)]
            sock = socket.socket(family, socket.SOCK_DGRAM)
            try:
                sock.bind((self.host, port))
            except OSError:
                sock.close()
                continue
            sock.setblocking(False)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RTP_RCVBUF)
            stream.sock = sock
            loop = asyncio.get_running_loop()
            task = loop.create_task(loop.create_datagram_endpoint(lambda: stream, sock=sock))
            self._rtp_tasks.add(task)
            task.add_done_callback(self._rtp_bound)
            return port
        raise RemoteProtocolError("no free RTP port", status_hint=503)

    def _rtp_bound(self, task: asyncio.Task[Any]) -> None:
        self._rtp_tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.debug("rtp endpoint not started (stream already closed): %s", task.exception())


def _reachable_address(host: str) -> str:
    """The listen host, or for a wildcard listen the address of the default route (for Contact and SDP)."""
    if host not in ("0.0.0.0", "::", ""):
        return host
    family = socket.AF_INET6 if host == "::" else socket.AF_INET
    with socket.socket(family, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(("2001:db8::1" if family == socket.AF_INET6 else "192.0.2.1", 9))
            return probe.getsockname()[0]
        except OSError:
            return "::1" if family == socket.AF_INET6 else "127.0.0.1"


class _UdpProtocol(asyncio.DatagramProtocol):
    def __init__(self, adapter: SipAdapter) -> None:
        self.adapter = adapter
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.adapter.on_message(data, self.transport, addr[:2], "udp")


class _TcpProtocol(asyncio.Protocol):
    """One TCP or TLS connection: a byte stream framed into messages."""

    def __init__(self, adapter: SipAdapter, transport: str) -> None:
        self.adapter = adapter
        self.kind = transport
        self.framer = TcpFramer()
        self.transport: asyncio.Transport | None = None
        self.peer: tuple[str, int] = ("", 0)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.peer = transport.get_extra_info("peername")[:2]
        if not self.adapter.allowed(self.peer[0]):
            self.adapter.refused += 1
            transport.close()

    def data_received(self, data: bytes) -> None:
        try:
            messages = self.framer.feed(data)
        except RemoteProtocolError as exc:
            self.adapter.malformed += 1
            self.adapter.log_once(self.peer[0], "sip tcp stream from %s closed: %s", self.peer[0], exc)
            assert self.transport is not None
            self.transport.close()
            return
        for message in messages:
            self.adapter.on_message(message, self.transport, self.peer, self.kind)
