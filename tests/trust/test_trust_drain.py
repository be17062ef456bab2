"""SIGTERM drains: no new calls (503 to INVITE, WHIP POST and a dispatcher's OPTIONS), the active
SIP call and WebRTC session end into vCons, exit 0 within shutdown_grace_s."""

from __future__ import annotations

import asyncio
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
PROBES = ("ping-0", "ping-1", "late-invite", "late-ping", "ping-4", "ping-5")


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


def wait_stopped(pid: int) -> None:
    """SIGSTOP takes effect when the process is next scheduled; wait for it (state T)."""
    deadline = time.monotonic() + 5
    while Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "T":
        assert time.monotonic() < deadline, "the service did not stop"
        time.sleep(0.001)


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


def test_sigterm_refuses_new_calls_ends_active_ones_and_exits_zero(tmp_path: Path, udp_socket: socket.socket) -> None:
    service = Service(tmp_path, core={"shutdown_grace_s": GRACE_S}).start()
    sip = SipCaller.start(tmp_path, service.sip_port, 8.0)
    web = WhipCaller.start(tmp_path, service.whip_base, "drainroom", 8.0)
    me = udp_socket.getsockname()[1]
    posted: list[int] = []
    try:
        service.wait_recording(("sip", "webrtc"), 2.0)
        assert service.proc is not None
        # Freeze the service so that the SIGTERM and the new requests all wait for it when it resumes.
        # Its loop then takes one datagram per turn: turn 1 reads the signal (and ping-0), turn 2 runs
        # the handler (ping-1), turn 3 starts the drain (stop accepting, end the calls, ~50 ms before
        # the SIP sockets close), so the INVITE and the ping after it meet the drain, not a race.
        os.kill(service.proc.pid, signal.SIGSTOP)
        try:
            wait_stopped(service.proc.pid)
            os.kill(service.proc.pid, signal.SIGTERM)
            target = ("127.0.0.1", service.sip_port)
            for call_id in PROBES:
                body = PROBE_SDP if call_id == "late-invite" else ""
                udp_socket.sendto(sip_request("INVITE" if body else "OPTIONS", call_id, me, body=body), target)
            post = threading.Thread(target=whip_post, args=(f"{service.whip_base}/whip/lateroom", posted))
            post.start()
            time.sleep(0.3)
        finally:
            resumed = time.monotonic()
            os.kill(service.proc.pid, signal.SIGCONT)
        statuses = final_statuses(udp_socket, 1.5)
        post.join(15)
        service.proc.wait(GRACE_S + 5)
        exited_after = time.monotonic() - resumed
        assert sip.wait(10) == 0, "sipp got the recorder's BYE and answered it"
    finally:
        sip.close()
        web.close()
        service.kill()
    log = service.logs()
    assert service.proc.returncode == 0, log[-3000:]
    assert exited_after < GRACE_S, exited_after
    assert "Traceback" not in log
    print(f"exit {exited_after:.2f} s after SIGTERM; SIP answers {statuses}; WHIP POST {posted}")

    assert statuses["late-invite"] == 503 and statuses["late-ping"] == 503, statuses
    answers = [statuses.get(call_id) for call_id in PROBES]
    first = answers.index(503)
    assert set(answers[first:]) <= {503, None}, f"no new call or 200 after the drain began: {answers}"
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
