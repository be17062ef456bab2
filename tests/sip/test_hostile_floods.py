"""Floods (issue 18, item 4, SIP side): INVITEs beyond max_calls, RTP sprayed at every port.

A refusal must be cheap: at most ``refused_vcons_per_s`` refused INVITEs a second become
(incomplete, congestion) vCons, bursts of ten times that; the rest get a stateless 503 and
are only counted. Spray at the RTP range: unbound ports are the kernel's, a call's port
refuses every source but its own. CPU and memory under these floods are measured by
bench/sip/bench_floods.py, not asserted here.
"""

from __future__ import annotations

import json
import random
import re
import socket
import threading
import time
from pathlib import Path

from audiocheck import voice_like, window_ncc

from adapters.sip.admission import RefusalBudget
from adapters.sip.core import SipCore
from adapters.sip.dialogs import InviteRefused, NewInvite
from adapters.sip.message import parse_message
from capture.media.rtp import build_rtp

from .harness import Recorder, g711_frames, recording_channels, run_sipp, write_rtp_pcap
from .scenarios import ack, bye, invite, play, scenario, sdp

PEER = ("127.0.0.1", 5080)


def request(method: str, *, branch: str = "z9hG4bK1", call_id: str = "c1") -> bytes:
    return (
        f"{method} sip:rec@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5080;branch={branch}\r\n"
        f"From: <sip:alice@127.0.0.1>;tag=a1\r\nTo: <sip:rec@127.0.0.1>\r\nCall-ID: {call_id}\r\n"
        f"CSeq: 1 {method}\r\nContact: <sip:alice@127.0.0.1:5080>\r\nContent-Length: 0\r\n\r\n"
    ).encode()


def test_the_refusal_budget_is_a_token_bucket() -> None:
    budget = RefusalBudget(2.0)
    assert [budget.take(0.0) for _ in range(21)] == [True] * 20 + [False], "bursts of ten times the rate"
    assert budget.take(0.4) is False and budget.take(0.5) is True, "then two a second"
    assert all(RefusalBudget(None).take(0.0) for _ in range(1000))


def test_refusals_past_the_budget_are_stateless_and_keep_nothing() -> None:
    core = SipCore("127.0.0.1", 5060, max_calls=1, refusals_per_s=0.5, retry_after_s=3)
    sends, events = core.receive(request("INVITE", branch="z9hG4bKa"), "udp", PEER, "udp", 0.0)
    assert isinstance(events[0], NewInvite)
    kinds = []
    for i in range(1000):
        data = request("INVITE", branch=f"z9hG4bKf{i}", call_id=f"flood{i}")
        sends, events = core.receive(data, "udp", PEER, "udp", 1.0)
        final = parse_message(sends[-1].data)
        assert (final.status, final.get("Retry-After")) == (503, "3")
        kinds.append("recorded" if events and isinstance(events[0], InviteRefused) else "quiet")
        if kinds[-1] == "quiet":
            assert len(sends) == 1 and "tag=" in (final.get("To") or ""), "one stateless 503, with a To tag"
    assert kinds.count("recorded") == 5 and core.refused_quietly == 995
    assert len(core.dialogs) == 6, "only the answered call and the recorded refusals have dialogs"
    # A retransmission of a quietly refused INVITE gets another 503, nothing more.
    again = request("INVITE", branch="z9hG4bKf999", call_id="flood999")
    sends, events = core.receive(again, "udp", PEER, "udp", 1.1)
    assert parse_message(sends[0].data).status == 503 and events == [] and core.refused_quietly == 996


def test_nothing_is_recorded_while_the_capture_cannot_take_a_call() -> None:
    core = SipCore("127.0.0.1", 5060, refusals_per_s=100)
    core.can_record = False  # the disk below its free-space floor
    sends, events = core.receive(request("INVITE"), "udp", PEER, "udp", 0.0)
    assert [parse_message(s.data).status for s in sends] == [503] and events == []
    assert core.dialogs == {} and core.active_calls == 0 and core.refused_quietly == 1


# -- the real thing ------------------------------------------------------------------------------


def refused_call() -> str:
    return scenario("flood", invite(sdp(0), expect="503"), ack())


def wait_for_vcons(out: Path, settle_s: float = 2.0, timeout: float = 60.0) -> list[dict]:  # type: ignore[type-arg]
    """Every vCon once their number stopped growing for ``settle_s``."""
    deadline, last, stable_since = time.monotonic() + timeout, -1, time.monotonic()
    while time.monotonic() < deadline:
        files = sorted(out.glob("*.vcon")) if out.exists() else []
        if len(files) != last:
            last, stable_since = len(files), time.monotonic()
        elif time.monotonic() - stable_since >= settle_s:
            break
        time.sleep(0.1)
    return [json.loads(f.read_bytes()) for f in sorted(out.glob("*.vcon"))]


def test_invite_flood_beyond_max_calls_is_answered_503_without_a_vcon_each(tmp_path: Path) -> None:
    """A call in progress at max_calls=1; 2000 INVITEs at 400/s get 503 each; the call is recorded
    whole, and at most the budget's worth of refused INVITEs became vCons."""
    payloads, reference = g711_frames(voice_like(7.0, 8000, seed=41), 0)
    pcap = write_rtp_pcap(tmp_path / "a.pcap", payloads, 0)
    recorder = Recorder.start(tmp_path, max_calls=1, refused_vcons_per_s=5)
    call_dir, flood_dir = tmp_path / "call", tmp_path / "flood"
    call_dir.mkdir()
    flood_dir.mkdir()
    results = {}

    def the_call() -> None:
        results["call"] = run_sipp(call_dir, scenario("live", invite(sdp(0)), ack(), play(str(pcap), 7.3), bye(2)),
                                   recorder)  # fmt: skip

    caller = threading.Thread(target=the_call)
    try:
        caller.start()
        deadline = time.monotonic() + 20
        while b"sip.call_answered" not in recorder.log.read_bytes() and time.monotonic() < deadline:
            time.sleep(0.02)
        started = time.monotonic()
        flood = run_sipp(flood_dir, refused_call(), recorder, calls=2000, rate=400, timeout=60)
        elapsed = time.monotonic() - started
        caller.join()
        vcons = wait_for_vcons(recorder.out)
    finally:
        log = recorder.stop()
    assert results["call"].returncode == 0, results["call"].stdout[-2000:]
    assert flood.returncode == 0, flood.stdout[-3000:]
    assert re.search(rb"Successful call\s*\|\s*\d+\s*\|\s*2000", flood.stdout), flood.stdout[-3000:]
    answered = [v for v in vcons if not any(d["type"] == "incomplete" for d in v["dialog"])]
    refused = [v for v in vcons if v not in answered]
    (call,) = answered
    channels, rate, _ = recording_channels(call)
    assert min(window_ncc(reference, channels[0], rate)) >= 0.9, "the call in progress lost nothing"
    assert 50 <= len(refused) <= 50 + 5 * (elapsed + 1), (len(refused), elapsed)
    quiet = sum(int(n) for n in re.findall(r"sip\.invites_refused_unrecorded count=(\d+)", log))
    # A stateless 503 keeps nothing: an INVITE sipp sent again (no 503 within 500 ms, under
    # load) is refused and counted again; one whose refusal was recorded is answered from the
    # transaction's memory.
    sent_again = int(re.search(rb"INVITE -+>\s+\d+\s+(\d+)", flood.stdout).group(1))  # type: ignore[union-attr]
    assert 2000 <= quiet + len(refused) <= 2000 + sent_again, ("every refusal counted", quiet, sent_again)


def test_rtp_sprayed_at_every_port_of_the_range_changes_no_recording(tmp_path: Path) -> None:
    payloads, reference = g711_frames(voice_like(4.0, 8000, seed=42), 0)
    pcap = write_rtp_pcap(tmp_path / "a.pcap", payloads, 0)
    recorder = Recorder.start(tmp_path)
    low = int(re.search(r"--rtp-port-min', '(\d+)'", str(recorder.proc.args)).group(1))  # type: ignore[union-attr]
    stop = threading.Event()
    sent = {"packets": 0}

    def spray() -> None:
        time.sleep(1.0)
        rng = random.Random(7)
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            while not stop.is_set():
                for port in range(low, low + 999):
                    payload = rng.randbytes(160)
                    try:
                        s.sendto(build_rtp(0, rng.randrange(65536), rng.randrange(1 << 32), 0x5EED, payload),
                                 ("127.0.0.1", port))  # fmt: skip
                    except ConnectionRefusedError:  # an ICMP port unreachable from an earlier datagram
                        pass
                    sent["packets"] += 1
                time.sleep(0.05)

    sprayer = threading.Thread(target=spray)
    try:
        sprayer.start()
        result = run_sipp(tmp_path, scenario("spray", invite(sdp(0)), ack(), play(str(pcap), 4.4), bye(2)),
                          recorder)  # fmt: skip
        stop.set()
        sprayer.join()
        assert result.returncode == 0, result.stdout[-2000:]
        (vcon,) = recorder.vcons(1)
    finally:
        stop.set()
        recorder.stop()
    channels, rate, dialog = recording_channels(vcon)
    assert min(window_ncc(reference, channels[0], rate)) >= 0.9
    assert abs(dialog["duration"] - 4.0) < 0.1
    notes = next(a for a in vcon["attachments"] if a.get("purpose") == "capture_notes")
    body = notes["body"] if isinstance(notes["body"], dict) else json.loads(notes["body"])
    (counts,) = body["rtp_refused"].values()
    assert counts["refused"] >= 20 and sent["packets"] >= 999 * 20, (counts, sent)
