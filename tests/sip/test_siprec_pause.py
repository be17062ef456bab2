"""A SIPREC client pauses the recording (issue 15, PCI DSS: a card number is being read): a
re-INVITE putting every stream ``a=inactive``, or metadata in which nobody sends any stream. The
recorder keeps none of the paused audio anywhere (it is silence in the recording, legs aligned),
lists the pause in ``recording_pauses``, and does not also call it a hold.

The SRC here keeps sending RTP through its pause (an SRC whose media lags its signalling, or one
that ignores its own a=inactive): the recorder must still keep none of it."""

from __future__ import annotations

import base64
import io
import socket
import sys
import threading
import time
import wave
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
from audiocheck import read_audio, voice_like, window_ncc

from capture.events import HoldChanged, RecordingPaused, RecordingResumed
from capture.media.g711 import decode_ulaw

from .harness import Recorder, g711_frames, run_sipp, write_rtp_pcap
from .scenarios import ack, bye, invite, pause, play, scenario
from .test_adapter import exchange, start, udp  # noqa: F401  (fixture)
from .test_siprec import BODY, METADATA, RTPSEND, SIPREC_HEADERS
from .test_siprec_signalling import _tag, in_dialog

SECONDS = 9.0
MULTIPART = "multipart/mixed;boundary=boundary1"


def when(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def channels_of(blob: bytes) -> list[bytes]:
    """What to search in one file: its bytes, and each channel's samples on their own if it is a
    multi-channel WAV (interleaved samples of one channel are not contiguous bytes)."""
    out = [blob]
    if blob[:4] == b"RIFF":
        try:
            with wave.open(io.BytesIO(blob)) as w:
                n, frames = w.getnchannels(), w.readframes(w.getnframes())
        except (wave.Error, EOFError):
            return out
        if n > 1:
            samples = np.frombuffer(frames[: len(frames) // (2 * n) * 2 * n], dtype="<i2").reshape(-1, n)
            out += [samples[:, c].tobytes() for c in range(n)]
    return out


def json_body(dialog: dict[str, Any]) -> bytes:
    return base64.urlsafe_b64decode(dialog["body"] + "=" * (-len(dialog["body"]) % 4))


def files_under(*roots: Path) -> list[Path]:
    return [p for root in roots if root.exists() for p in root.rglob("*") if p.is_file()]


def test_siprec_pause_by_inactive_streams_keeps_the_paused_audio_out_of_every_file(tmp_path: Path) -> None:
    alice_payloads, _ = g711_frames(voice_like(SECONDS, 8000, seed=1), 0)
    bob_payloads, _ = g711_frames(voice_like(SECONDS, 8000, seed=2), 0)
    sent = {"alice": decode_ulaw(b"".join(alice_payloads)), "bob": decode_ulaw(b"".join(bob_payloads))}
    (tmp_path / "alice.ulaw").write_bytes(b"".join(alice_payloads))
    pcap = write_rtp_pcap(tmp_path / "bob.pcap", bob_payloads, 0)
    start_alice = f"""  <nop><action>
    <exec command="{sys.executable} {RTPSEND} {tmp_path / "alice.ulaw"} 127.0.0.1 [$p2] 0 &amp;"/>
  </action></nop>
"""
    answer = invite(BODY, content_type=MULTIPART, extra=SIPREC_HEADERS).replace(
        '<recv response="200" rtd="true"/>',
        '<recv response="200" rtd="true"><action><ereg regexp="m=audio ([0-9]+).*m=audio ([0-9]+)" '
        'search_in="body" check_it="true" assign_to="all,p1,p2"/></action></recv>\n'
        '  <Reference variables="all,p1"/>',
    )
    inactive = BODY.replace("a=sendonly", "a=inactive")
    steps = scenario(
        "siprec-pause",
        answer,
        ack(),
        start_alice,
        play(str(pcap), 2.5),
        invite(inactive, cseq=2, content_type=MULTIPART, extra=SIPREC_HEADERS, in_dialog=True),
        ack(2),
        pause(3.0),
        invite(BODY, cseq=3, content_type=MULTIPART, extra=SIPREC_HEADERS, in_dialog=True),
        ack(3),
        pause(SECONDS - 5.5 + 1.5),
        bye(4),
    )
    recorder = Recorder.start(tmp_path)
    during: dict[str, bytes] = {}
    try:
        result: list[Any] = []
        sipp = threading.Thread(target=lambda: result.append(run_sipp(tmp_path, steps, recorder, timeout=40)))
        sipp.start()
        time.sleep(5.0)  # inside the pause (2.5 s to 5.5 s), a second after a flush: what the recorder holds now
        during = {str(p): p.read_bytes() for p in files_under(tmp_path / "state")}
        sipp.join()
        assert result[0].returncode == 0, result[0].stdout[-3000:]
        (vcon,) = recorder.vcons(1)
    finally:
        recorder.stop()
    (paused,) = next(a for a in vcon["attachments"] if a["purpose"] == "recording_pauses")["body"]
    assert (paused["by"], paused["reason"], paused["resumed_by"]) == ("src", "every stream inactive (re-INVITE)", "src")
    events = [h["event"] for d in vcon["dialog"] for h in d.get("party_history", [])]
    assert "hold" not in events and "unhold" not in events, "a pause is not a hold"
    (dialog,) = [d for d in vcon["dialog"] if d["type"] == "recording"]
    audio, rate = read_audio(json_body(dialog))
    pcm = np.round(audio * 32768).astype(np.int16)
    start_at = when(dialog["start"])
    p0 = round((when(paused["start"]) - start_at).total_seconds() * rate)
    p1 = round((when(paused["end"]) - start_at).total_seconds() * rate)
    assert 2.0 <= p0 / rate <= 3.5 and 2.5 <= (p1 - p0) / rate <= 4.0, (p0 / rate, p1 / rate)
    # The pause starts when the re-INVITE is handled: audio the SRC sent before it may still be on its
    # way then (kept, rightly), and the RTP clock places packets to within a few tens of ms of their
    # arrival. Well inside the pause, nothing at all.
    margin = rate // 4
    assert not pcm[p0 + margin : p1 - margin].any(), "the paused stretch is silence on both channels"
    names = [p["name"] for p in vcon["parties"]]
    for who, column in (("alice", names.index("Alice Agent")), ("bob", names.index("Bob Customer"))):
        before = sent[who][: 8000 * 2] / 32768
        assert min(window_ncc(before, pcm[:, column] / 32768, rate)) >= 0.9, who
        assert pcm[p1 + 800 : p1 + 8800, column].any(), f"{who}: kept again after the resume"

    everything = [b for blob in during.values() for b in channels_of(blob)]
    everything += [b for p in files_under(tmp_path / "vcons", tmp_path / "state") for b in channels_of(p.read_bytes())]
    everything += channels_of(json_body(dialog))
    middle = (p0 + p1) // 2
    for who in ("alice", "bob"):
        control = sent[who][rate : rate + 64].astype("<i2").tobytes()  # 1 s in, before the pause: found
        secret = sent[who][middle : middle + 64].astype("<i2").tobytes()  # 8 ms from the middle of the pause
        assert any(control in blob for blob in everything), f"{who}: the search works"
        assert not any(secret in blob for blob in everything), f"{who}: paused audio was written somewhere"


# -- a pause the metadata signals, in-process --------------------------------------------------


async def test_metadata_with_nobody_sending_pauses_and_a_sender_resumes(
    tmp_path: Path,
    udp: socket.socket,  # noqa: F811
) -> None:
    adapter, capture = await start(tmp_path)
    me = udp.getsockname()[1]
    body = BODY.replace("[media_ip]", "127.0.0.1").replace("[media_port+2]", "40002").replace("[media_port]", "40000")
    head = (f"INVITE sip:rec@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:{me};branch=z9hG4bKm1\r\n"
            "From: <sip:src@src.example.test>;tag=src1\r\nTo: <sip:rec@127.0.0.1>\r\nCall-ID: m1\r\n"
            f"CSeq: 1 INVITE\r\nContact: <sip:src@127.0.0.1:{me}>;+sip.src\r\nRequire: siprec\r\n"
            f"Content-Type: {MULTIPART}\r\n")  # fmt: skip
    data = body.replace("\n", "\r\n").encode()
    silent = METADATA.replace("<send>sA</send>", "").replace("<send>sB</send>", "").encode()
    metadata = "Content-Disposition: recording-session\r\n"
    try:
        ok = (await exchange(udp, f"{head}Content-Length: {len(data)}\r\n\r\n".encode() + data, adapter.port))[-1]
        tag = _tag(ok)
        udp.sendto(in_dialog("ACK", "m1", me, tag, 1), ("127.0.0.1", adapter.port))
        for cseq, xml in ((2, silent), (3, silent), (4, METADATA.encode())):
            update = in_dialog("UPDATE", "m1", me, tag, cseq, xml, "application/rs-metadata+xml", metadata)
            assert (await exchange(udp, update, adapter.port))[-1].startswith(b"SIP/2.0 200")
        assert (await exchange(udp, in_dialog("BYE", "m1", me, tag, 5), adapter.port))[-1].startswith(b"SIP/2.0 200")
    finally:
        await adapter.stop()
        await adapter.close()
    changes = [e for e in capture.events if isinstance(e, RecordingPaused | RecordingResumed | HoldChanged)]
    assert [type(e) for e in changes] == [RecordingPaused, RecordingResumed], "once, then back; never a hold"
    paused = changes[0]
    assert isinstance(paused, RecordingPaused) and paused.by == "src"
    assert paused.reason == "the rs-metadata in UPDATE has nobody sending any stream"
