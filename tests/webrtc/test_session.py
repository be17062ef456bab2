"""Session watchdogs with real aiortc peers in-process; the pipeline is a small fake Capture
that records events and hands out real StreamRecordings."""

from __future__ import annotations

import asyncio
import fractions
import time

import aioice.ice
import numpy as np
import pytest
import soundfile as sf
from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import MediaStreamTrack
from av import AudioFrame
from fakecapture import FakeCapture

from adapters.webrtc.identity import Identity
from adapters.webrtc.session import Session
from capture.events import MediaRecorded, MediaUnavailable, PartyLeft


@pytest.fixture(autouse=True)
def loopback_ice(monkeypatch):
    """Host candidates on 127.0.0.1 only, for this test's peers (works in a loopback-only netns too)."""
    monkeypatch.setattr(aioice.ice, "get_host_addresses", lambda use_ipv4, use_ipv6: ["127.0.0.1"])


class StallingTone(MediaStreamTrack):
    """A 440 Hz tone for ``seconds``, then recv() never returns (a frozen sender)."""

    kind = "audio"

    def __init__(self, seconds: float) -> None:
        super().__init__()
        self.frames = int(seconds / 0.02)
        self.sent = 0
        self.start = time.monotonic()

    async def recv(self) -> AudioFrame:
        if self.sent >= self.frames:
            await asyncio.Event().wait()
        await asyncio.sleep(max(0.0, self.start + self.sent * 0.02 - time.monotonic()))
        t = (np.arange(960) + self.sent * 960) / 48000
        frame = AudioFrame.from_ndarray(
            (np.sin(2 * np.pi * 440 * t) * 8000).astype(np.int16).reshape(1, -1), format="s16", layout="mono"
        )
        frame.sample_rate, frame.pts, frame.time_base = 48000, self.sent * 960, fractions.Fraction(1, 48000)
        self.sent += 1
        return frame


async def open_session(capture: FakeCapture, track: MediaStreamTrack, *, apply_answer: bool):
    closed = asyncio.Event()

    async def on_closed(session: Session) -> None:
        closed.set()

    client = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    client.addTransceiver(track, direction="sendonly")
    await client.setLocalDescription(await client.createOffer())
    session = Session(
        "p1", "room", Identity(name="P"), capture,
        configuration=RTCConfiguration(iceServers=[]),
        reorder_depth=3, setup_timeout_s=1.0, media_timeout_s=1.0,
        on_audio=lambda s: None, on_closed=on_closed,
    )  # fmt: skip
    answer = await session.negotiate(client.localDescription.sdp)
    session.start("call-1")
    if apply_answer:
        await client.setRemoteDescription(RTCSessionDescription(sdp=answer, type="answer"))
    return client, session, closed


async def test_no_media_after_the_answer_closes_the_session(tmp_path):
    capture = FakeCapture(tmp_path)
    started = time.monotonic()
    client, session, closed = await open_session(capture, StallingTone(1.0), apply_answer=False)
    await asyncio.wait_for(closed.wait(), 5)
    assert time.monotonic() - started < 3
    kinds = [type(e) for e in capture.events]
    assert kinds == [MediaUnavailable, PartyLeft]
    assert "no audio within 1 s" in capture.events[0].reason
    await client.close()


async def test_audio_that_stops_closes_the_session_and_keeps_what_was_heard(tmp_path):
    capture = FakeCapture(tmp_path)
    client, session, closed = await open_session(capture, StallingTone(1.5), apply_answer=True)
    await asyncio.wait_for(closed.wait(), 10)
    recorded = [e for e in capture.events if isinstance(e, MediaRecorded)]
    assert len(recorded) == 1 and isinstance(capture.events[-1], PartyLeft)
    assert "no audio for 1 s" in capture.events[-1].reason
    pcm, rate = sf.read(recorded[0].path, dtype="int16")
    assert rate == 48000
    assert abs(len(pcm) / rate - 1.5) <= 0.1
    await client.close()


async def test_video_in_the_offer_is_declined_audio_is_received(tmp_path):
    client = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    client.addTransceiver("audio", direction="sendonly")
    client.addTransceiver("video", direction="sendonly")
    await client.setLocalDescription(await client.createOffer())

    async def on_closed(session: Session) -> None:
        pass

    session = Session(
        "p2", "room", Identity(), FakeCapture(tmp_path),
        configuration=RTCConfiguration(iceServers=[]),
        reorder_depth=3, setup_timeout_s=1.0, media_timeout_s=1.0,
        on_audio=lambda s: None, on_closed=on_closed,
    )  # fmt: skip
    answer = await session.negotiate(client.localDescription.sdp)
    sections = answer.split("m=")[1:]
    assert sections[0].startswith("audio") and "a=recvonly" in sections[0]
    assert sections[1].startswith("video") and "a=inactive" in sections[1]
    await session.close("test")
    await client.close()
