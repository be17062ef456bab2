"""RTP injection: a second sender aims at a call's RTP port (issue 18, item 1).

The sans-IO tests feed the receiver datagrams from chosen addresses; the end-to-end test
has sipp place a real call with the real CLI while a sender of the test plays the caller
from the SDP's address and an attacker on the same host injects from another port, once
with the caller's SSRC, sequence numbers and timestamps each packet 10 ms ahead of the
real one, once with a fresh SSRC.
"""

from __future__ import annotations

import base64
import json
import os
import re
import socket
import subprocess
import time
from pathlib import Path

import numpy as np
import pylibsrtp
import pytest
from audiocheck import voice_like, window_ncc

from capture.media.codecs import Codec
from capture.media.g711 import decode_ulaw
from capture.media.receiver import AudioReceived, MediaEvent, RtpReceiver
from capture.media.rtp import build_rtp
from capture.media.srtp import SrtpReceiver

from .harness import Recorder, free_port, g711_frames, recording_channels
from .scenarios import ack, bye, invite, pause, scenario

PCMU = Codec(0, "PCMU", 8000)
CALLER = ("127.0.0.1", 40000)
SAME_HOST = ("127.0.0.1", 40002)
ELSEWHERE = ("192.0.2.66", 40000)


def tone(packets: int, seed: int) -> list[bytes]:
    rng = np.random.default_rng(seed)
    return [bytes(rng.integers(0, 256, 160, dtype=np.uint8)) for _ in range(packets)]


def recorded(receiver: RtpReceiver) -> np.ndarray:
    receiver.close()
    events: list[MediaEvent] = []
    while (event := receiver.next_event()) is not None:
        events.append(event)
    audio = [e for e in events if isinstance(e, AudioReceived)]
    out = np.zeros(max(e.position + len(e.pcm) for e in audio), dtype=np.int16)
    for e in audio:
        out[e.position : e.position + len(e.pcm)] = e.pcm
    return out


def strict(signalled: tuple[str, int] | None = CALLER, **context: str) -> RtpReceiver:
    receiver = RtpReceiver(PCMU)
    receiver.source.configure(mode="strict", relatch_s=0.5, **context)
    receiver.expect_source(signalled)
    return receiver


@pytest.mark.parametrize("copied_ssrc", [True, False], ids=["copied-ssrc", "fresh-ssrc"])
def test_an_injector_on_the_same_host_is_refused_and_counted(copied_ssrc: bool) -> None:
    real, fake = tone(100, 1), tone(100, 2)
    receiver = strict()
    for i in range(100):
        if i >= 30:  # 10 ms ahead of each real packet, with what the real stream is about to use
            ssrc, seq, ts = (7, i, 160 * i) if copied_ssrc else (0xBAD, 5000 + i, 99 + 160 * i)
            assert not receiver.receive(build_rtp(0, seq, ts, ssrc, fake[i]), SAME_HOST, i * 0.02 - 0.01)
        assert receiver.receive(build_rtp(0, i, 160 * i, 7, real[i]), CALLER, i * 0.02)
    assert np.array_equal(recorded(receiver), decode_ulaw(b"".join(real)))
    stats = receiver.stats
    assert (stats.refused, stats.received, stats.moves, stats.lost) == (70, 100, 0, 0)


def test_another_host_is_refused_even_before_the_caller_sends() -> None:
    receiver = strict()
    assert not receiver.receive(build_rtp(0, 1, 160, 9, bytes(160)), ELSEWHERE, 0.0)
    assert receiver.receive(build_rtp(0, 1, 160, 7, bytes(160)), CALLER, 0.01)
    assert receiver.stats.refused == 1


def test_a_peer_sending_from_another_port_is_taken_and_the_sdp_port_wins() -> None:
    """Some peers send from another port than they receive on: the first source of the SDP's
    host is taken; the SDP's exact address and port takes the stream whenever it sends."""
    receiver = strict()
    assert receiver.receive(build_rtp(0, 1, 160, 5, bytes(160)), SAME_HOST, 0.0)
    assert receiver.receive(build_rtp(0, 2, 320, 5, bytes(160)), CALLER, 0.02)
    assert not receiver.receive(build_rtp(0, 3, 480, 5, bytes(160)), SAME_HOST, 0.03)
    assert receiver.source.current == CALLER and receiver.stats.moves == 1


def test_a_media_server_switch_without_reinvite_goes_on_after_a_quiet_time() -> None:
    """Same peer, new port and SSRC: taken once the old sender has been quiet for relatch_s."""
    first, second = tone(50, 1), tone(50, 2)
    receiver = strict()
    for i in range(50):
        receiver.receive(build_rtp(0, i, 160 * i, 7, first[i]), CALLER, i * 0.02)
    assert not receiver.receive(build_rtp(0, 900, 4242, 8, second[0]), SAME_HOST, 1.2), "quiet 0.22 s only"
    for i in range(50):
        assert receiver.receive(build_rtp(0, 900 + i, 4242 + 160 * i, 8, second[i]), SAME_HOST, 1.5 + i * 0.02)
    audio = recorded(receiver)
    assert np.array_equal(audio[:8000], decode_ulaw(b"".join(first)))
    assert np.array_equal(audio[12000:20000], decode_ulaw(b"".join(second))), "at its time, 0.5 s after the first"
    assert (receiver.stats.moves, receiver.stats.refused) == (1, 1)


def test_the_first_sender_takes_its_stream_back_from_whoever_used_its_pause() -> None:
    receiver = strict(None)  # no usable SDP address: latching
    receiver.receive(build_rtp(0, 1, 160, 7, bytes(160)), CALLER, 0.0)
    assert receiver.receive(build_rtp(0, 1, 160, 66, bytes(160)), ELSEWHERE, 1.0), "caller quiet 1 s: taken"
    assert receiver.receive(build_rtp(0, 2, 320, 7, bytes(160)), CALLER, 1.01), "the first source comes back"
    assert not receiver.receive(build_rtp(0, 2, 320, 66, bytes(160)), ELSEWHERE, 1.02)
    assert receiver.stats.moves == 2


@pytest.mark.parametrize(
    ("sdp", "peer", "local", "latches"),
    [
        (("10.0.0.7", 4000), "203.0.113.9", "192.0.2.1", True),  # NAT: a private address from a public peer
        (("10.0.0.7", 4000), "10.0.0.7", "10.0.0.1", False),  # a LAN: believed
        (("198.51.100.4", 4000), "203.0.113.9", "192.0.2.1", False),  # a media gateway apart from signalling
        (("10.0.0.7", 4000), "127.0.0.1", "127.0.0.1", True),  # a loopback listener: the sender is on this host
        (("pbx.example", 4000), None, None, True),  # a host name is no source address
        (None, None, None, True),  # 0.0.0.0 or nothing
    ],
)
def test_an_sdp_address_that_cannot_be_the_source_latches(
    sdp: tuple[str, int] | None, peer: str | None, local: str | None, latches: bool
) -> None:
    receiver = strict(sdp, **{k: v for k, v in (("peer_host", peer), ("local_host", local)) if v})
    assert (receiver.source.signalled is None) is latches
    if latches:
        assert receiver.receive(build_rtp(0, 1, 160, 7, bytes(160)), ("198.51.100.200", 50000), 0.0)
        assert not receiver.receive(build_rtp(0, 2, 320, 7, bytes(160)), ELSEWHERE, 0.01)


def test_hold_keeps_the_source_and_a_reinvite_moves_it() -> None:
    receiver = strict()
    receiver.receive(build_rtp(0, 1, 160, 7, bytes(160)), CALLER, 0.0)
    receiver.expect_source(None)  # c=0.0.0.0: hold, not a move
    assert not receiver.receive(build_rtp(0, 1, 160, 9, bytes(160)), ELSEWHERE, 5.0)
    receiver.expect_source(("192.0.2.66", 40000))  # the re-INVITE moved the media
    assert receiver.receive(build_rtp(0, 1, 160, 9, bytes(160)), ELSEWHERE, 6.0)
    assert not receiver.receive(build_rtp(0, 2, 320, 7, bytes(160)), CALLER, 6.01), "the old source is gone"


def test_any_takes_every_source() -> None:
    receiver = RtpReceiver(PCMU)
    receiver.source.configure(mode="any")
    receiver.expect_source(CALLER)
    assert receiver.receive(build_rtp(0, 1, 160, 7, bytes(160)), CALLER, 0.0)
    assert receiver.receive(build_rtp(0, 2, 320, 7, bytes(160)), ELSEWHERE, 0.01)
    assert receiver.stats.refused == 0


def test_a_forgery_never_takes_a_keyed_stream_and_srtp_failures_are_counted() -> None:
    key = bytes(range(30))
    sender = pylibsrtp.Session(
        policy=pylibsrtp.Policy(key=key, ssrc_type=pylibsrtp.Policy.SSRC_ANY_OUTBOUND,
                                srtp_profile=pylibsrtp.Policy.SRTP_PROFILE_AES128_CM_SHA1_80)
    )  # fmt: skip
    receiver = RtpReceiver(
        PCMU, srtp=SrtpReceiver(f"1 AES_CM_128_HMAC_SHA1_80 inline:{base64.b64encode(key).decode()}")
    )
    receiver.source.configure(mode="latch")
    forged = build_rtp(0, 1, 160, 7, bytes(160)) + bytes(10)  # right length, no key
    assert not receiver.receive(forged, ELSEWHERE, 0.0), "an attacker first: not taken without the key"
    assert receiver.receive(sender.protect(build_rtp(0, 1, 160, 7, bytes(160))), CALLER, 0.01)
    assert not receiver.receive(forged, ELSEWHERE, 0.02)
    assert receiver.source.current == CALLER
    assert (receiver.stats.srtp_failed, receiver.stats.refused) == (1, 1)


# -- the real thing: sipp calls the CLI, the test plays caller and attacker --------------------------


def caller_scenario(sdp_port: int, seconds: float) -> str:
    """INVITE whose SDP names the test's caller socket, ACK, a pause while the test sends, BYE."""
    sdp = f"""v=0
o=alice 1 1 IN IP4 127.0.0.1
s=-
c=IN IP4 127.0.0.1
t=0 0
m=audio {sdp_port} RTP/AVP 0
a=rtpmap:0 PCMU/8000
a=sendrecv"""
    return scenario("inject", invite(sdp), ack(), pause(seconds), bye(2))


def answered_port(messages: Path, timeout: float = 10.0) -> int:
    """The recorder's RTP port, from the 200 OK in sipp's message trace."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        text = messages.read_text(errors="replace") if messages.exists() else ""
        found = re.search(r"SIP/2\.0 200 OK.*?m=audio (\d+)", text, re.S)
        if found:
            return int(found.group(1))
        time.sleep(0.02)
    raise AssertionError(f"no 200 OK with SDP in {messages}")


def play_with_attacker(caller: socket.socket, attacker: socket.socket, port: int, real: list[bytes],
                       fake: list[bytes], *, attack_from: int, copied_ssrc: bool) -> None:  # fmt: skip
    """Paced 20 ms packets from the caller; from ``attack_from`` on, each one preceded 10 ms
    earlier by the attacker's (the caller's SSRC, sequence number and timestamp, or its own)."""
    start = time.monotonic() + 0.05
    for i, payload in enumerate(real):
        if i >= attack_from:
            ssrc, seq, ts = (0x5EED, i, 160 * i) if copied_ssrc else (0xBAD, 7000 + i, 12345 + 160 * i)
            time.sleep(max(start + i * 0.02 - 0.01 - time.monotonic(), 0))
            attacker.sendto(build_rtp(0, seq, ts, ssrc, fake[i]), ("127.0.0.1", port))
        time.sleep(max(start + i * 0.02 - time.monotonic(), 0))
        caller.sendto(build_rtp(0, i, 160 * i, 0x5EED, payload, i == 0), ("127.0.0.1", port))


@pytest.mark.parametrize(
    ("mode", "copied_ssrc"),
    [("strict", True), ("strict", False), ("latch", True), ("any", True)],
    ids=["strict-copied-ssrc", "strict-fresh-ssrc", "latch-copied-ssrc", "any-copied-ssrc"],
)
def test_rtp_injected_mid_call_from_a_second_source(tmp_path: Path, mode: str, copied_ssrc: bool) -> None:
    """The recording holds only the caller; without a source check ("any") the attacker wins."""
    real_payloads, real = g711_frames(voice_like(4.0, 8000, seed=21), 0)
    fake_payloads, fake = g711_frames(voice_like(4.0, 8000, seed=22), 0)
    caller, attacker = (socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(2))
    caller.bind(("127.0.0.1", 0))
    attacker.bind(("127.0.0.1", 0))
    caller_port = caller.getsockname()[1]
    recorder = Recorder.start(tmp_path, rtp_source=mode)
    messages = tmp_path / "sipp-messages.log"
    path = tmp_path / "inject.xml"
    path.write_text(caller_scenario(caller_port, 4.8))
    args = ["sipp", "-sf", str(path), "-s", "rec", f"127.0.0.1:{recorder.port}", "-i", "127.0.0.1",
            "-p", str(free_port()), "-mp", str(free_port() & ~1), "-m", "1", "-l", "1", "-nostdin",
            "-timeout", "30", "-timeout_error", "-trace_msg", "-message_file", str(messages)]  # fmt: skip
    sipp = subprocess.Popen(args, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            env={**os.environ, "TERM": "dumb"})  # fmt: skip
    try:
        port = answered_port(messages)
        play_with_attacker(caller, attacker, port, real_payloads, fake_payloads, attack_from=50,
                           copied_ssrc=copied_ssrc)  # fmt: skip
        output, _ = sipp.communicate(timeout=30)
        assert sipp.returncode == 0, output[-2000:]
        (vcon,) = recorder.vcons(1)
    finally:
        if sipp.poll() is None:
            sipp.kill()
        log = recorder.stop()
        caller.close()
        attacker.close()
    channels, rate, _ = recording_channels(vcon)
    with_caller, with_attacker = window_ncc(real, channels[0], rate), window_ncc(fake, channels[0], rate)
    notes = next((a for a in vcon["attachments"] if a.get("purpose") == "capture_notes"), None)
    if mode == "any":  # the attack works without the check: the test can tell
        assert min(with_caller[1:]) < 0.3 and max(with_attacker[1:]) >= 0.9, (with_caller, with_attacker)
        return
    assert len(with_caller) == 4 and min(with_caller) >= 0.9, with_caller
    assert max(with_attacker) <= 0.3, with_attacker
    assert notes is not None, "refusals are noted in the vCon"
    body = notes["body"] if isinstance(notes["body"], dict) else json.loads(notes["body"])
    (counts,) = body["rtp_refused"].values()
    # Every attacker packet refused; should this sender stall past rtp_relatch_s (load), the packet
    # that fills the silence is taken and the caller takes its stream back with its next one.
    assert counts["refused"] + counts["moves"] // 2 == 150 and counts["moves"] % 2 == 0, counts
    assert counts["taken_from"] == f"127.0.0.1:{caller_port}", counts
    assert log.count("media.source_refused") == 1, "logged once a minute, not per packet"
