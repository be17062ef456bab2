"""SIGTERM drains: no new calls (503 to INVITE, WHIP POST and a dispatcher's OPTIONS), the active
SIP call and WebRTC session end into vCons, exit 0 within shutdown_grace_s."""

from __future__ import annotations

import asyncio
import http.server
import os
import signal
import socket
import threading
import time
import urllib.error
import urllib.request
from datetime import datetime
from pathlib import Path

from sip.harness import cdr, recording_channels
from trust_service import (
    PROBE_SDP,
    SIP_RATE,
    WEBRTC_RATE,
    Service,
    SipCaller,
    WhipCaller,
    final_statuses,
    matching_windows,
    sip_request,
)
from vconcheck import load_vcons
from webrtc_harness import recording

from adapters.sip.adapter import SipAdapter
from adapters.sip.message import parse_message
from adapters.sip.settings import SipSettings
from capture.clock import SYSTEM

GRACE_S = 10.0


class Draining:
    """Just enough Capture for OPTIONS: the service's accepting flag."""

    accepting = True
    can_record = True

    def now(self) -> datetime:
        return SYSTEM.now()

    def monotonic(self) -> float:
        return SYSTEM.monotonic()


async def test_options_answer_503_while_the_service_is_shutting_down(udp_socket: socket.socket) -> None:
    capture = Draining()
    adapter = SipAdapter(SipSettings(listen="127.0.0.1:0", retry_after_s=7), capture)  # type: ignore[arg-type]
    await adapter.start()
    me = udp_socket.getsockname()[1]
    try:
        udp_socket.sendto(sip_request("OPTIONS", "up", me), ("127.0.0.1", adapter.port))
        assert await asyncio.to_thread(final_statuses, udp_socket, 0.5) == {"up": 200}
        capture.accepting = False
        udp_socket.sendto(sip_request("OPTIONS", "down", me), ("127.0.0.1", adapter.port))
        udp_socket.settimeout(2)
        reply = parse_message(await asyncio.to_thread(udp_socket.recv, 65535))
        assert (reply.status, reply.get("Retry-After"), reply.call_id) == (503, "7", "down")
        assert reply.get("CSeq") == "1 OPTIONS" and "z9hG4bK-down" in (reply.get("Via") or "")
    finally:
        await adapter.stop()
        await adapter.close()


def whip_post(url: str, results: list[int]) -> None:
    request = urllib.request.Request(url, data=PROBE_SDP.encode(), method="POST",
                                     headers={"Content-Type": "application/sdp"})  # fmt: skip
    try:
        with urllib.request.urlopen(request, timeout=15) as response:
            results.append(response.status)
    except urllib.error.HTTPError as exc:
        results.append(exc.code)
    except OSError:
        results.append(0)


class SlowIngest(http.server.ThreadingHTTPServer):
    """A conserver-shaped endpoint that takes DELAY_S per vCon: the drain waits for it, so the
    service keeps answering (503) for seconds after SIGTERM, whatever order its event loop
    (asyncio's or uvloop) reads the signal and the datagrams in."""

    DELAY_S = 1.0

    def __init__(self) -> None:
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                time.sleep(server.DELAY_S)
                self.send_response(201)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"{}")

            def log_message(self, *args: object) -> None:
                pass

        super().__init__(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


def ping(sock: socket.socket, call_id: str, port: int, *, body: str = "") -> int | None:
    """One OPTIONS (or INVITE with ``body``); its final status, None if none within 2 s."""
    sock.sendto(sip_request("INVITE" if body else "OPTIONS", call_id, sock.getsockname()[1], body=body),
                ("127.0.0.1", port))  # fmt: skip
    deadline = time.monotonic() + 2.0
    while (left := deadline - time.monotonic()) > 0:
        sock.settimeout(left)
        try:
            reply = parse_message(sock.recv(65535))
        except (TimeoutError, ConnectionRefusedError):
            continue
        if reply.status is not None and reply.status >= 200 and reply.call_id == call_id:
            return reply.status
    return None


def test_sigterm_refuses_new_calls_ends_active_ones_and_exits_zero(tmp_path: Path, udp_socket: socket.socket) -> None:
    ingest = SlowIngest()
    service = Service(tmp_path, core={"shutdown_grace_s": GRACE_S, "conserver_url": ingest.url}).start()
    sip = SipCaller.start(tmp_path, service.sip_port, 8.0)
    web = WhipCaller.start(tmp_path, service.whip_base, "drainroom", 8.0)
    posted: list[int] = []
    answers: list[int | None] = []
    try:
        service.wait_recording(("sip", "webrtc"), 2.0)
        assert service.proc is not None
        assert ping(udp_socket, "before", service.sip_port) == 200
        # Pings until the service answers 503: from then on it drains (no new call), and the slow
        # ingest keeps it answering while the INVITE, the ping and the WHIP POST after it arrive.
        os.kill(service.proc.pid, signal.SIGTERM)
        signalled = time.monotonic()
        while 503 not in answers and time.monotonic() - signalled < 5:
            answers.append(ping(udp_socket, f"ping-{len(answers)}", service.sip_port))
        late_invite = ping(udp_socket, "late-invite", service.sip_port, body=PROBE_SDP)
        late_ping = ping(udp_socket, "late-ping", service.sip_port)
        whip_post(f"{service.whip_base}/whip/lateroom", posted)
        service.proc.wait(GRACE_S + 5)
        exited_after = time.monotonic() - signalled
        assert sip.wait(10) == 0, "sipp got the recorder's BYE and answered it"
    finally:
        sip.close()
        web.close()
        service.kill()
        ingest.shutdown()
    log = service.logs()
    assert service.proc.returncode == 0, log[-3000:]
    assert exited_after < GRACE_S, exited_after
    assert "Traceback" not in log
    print(f"exit {exited_after:.2f} s after SIGTERM; pings {answers}, INVITE {late_invite}, WHIP POST {posted}")

    # None: no answer within 2 s (a loaded machine); never a 200 once a 503 was seen.
    assert answers[-1] == 503 and set(answers[:-1]) <= {200, None}, f"200 until the drain began, then 503: {answers}"
    assert (late_invite, late_ping) == (503, 503)
    assert posted == [503]

    docs = load_vcons(service.out)
    by_source: dict[str, list[dict]] = {}
    for doc in docs:
        source = "webrtc" if any(p.get("name") == "Web" for p in doc["parties"]) else "sip"
        by_source.setdefault(source, []).append(doc)
    assert len(by_source["webrtc"]) == 1 and len(by_source["sip"]) == 2, [d["parties"] for d in docs]
    refused = [d for d in by_source["sip"] if cdr(d).get("sip_call_id") == "late-invite"]
    (call,) = [d for d in by_source["sip"] if d not in refused]
    assert [d["disposition"] for d in refused[0]["dialog"] if d["type"] == "incomplete"] == ["congestion"]
    assert cdr(call)["hangup_by"] == "recorder"

    channels, rate, dialog = recording_channels(call)
    assert rate == SIP_RATE and dialog["duration"] >= 2.0
    scores = matching_windows(sip.reference, channels[0], rate)
    assert len(scores) >= 2 and min(scores) >= 0.9, scores
    audio, rate, _ = recording(by_source["webrtc"][0])
    assert rate == WEBRTC_RATE and len(audio) / rate >= 2.0
    scores = matching_windows(web.reference, audio[:, 0], rate)
    assert len(scores) >= 2 and min(scores) >= 0.9, scores
    assert not list((service.state / "spool" / "outbox").glob("*.vcon")), "the spool was flushed"
