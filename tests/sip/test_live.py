"""A SIP call while it runs (issue 15 live audio, issue 16 console): a live listener gets the
stream's audio packet by packet (not in half-second batches), and the running call shows its
stream's packets, loss and jitter. Real CLI recorder with its API, sipp as the caller, aiohttp as
the WebSocket consumer."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import aiohttp
import numpy as np
from audiocheck import voice_like, window_ncc

from capture.live import parse_audio_frame

from .harness import Recorder, free_port, g711_frames, run_sipp, write_rtp_pcap
from .scenarios import ack, bye, invite, play, scenario, sdp

SECONDS = 4.0


async def test_a_live_listener_gets_each_packet_as_it_comes_and_the_call_shows_its_counters(tmp_path: Path) -> None:
    payloads, reference = g711_frames(voice_like(SECONDS, 8000, seed=5), 0)
    pcap = write_rtp_pcap(tmp_path / "a.pcap", payloads, 0)
    api_port = free_port()
    recorder = Recorder.start(tmp_path, api_listen=f"127.0.0.1:{api_port}")
    api = f"http://127.0.0.1:{api_port}/api"
    frames: list[tuple[int, np.ndarray]] = []
    running: list[dict[str, Any]] = []
    try:
        async with aiohttp.ClientSession() as http, http.ws_connect(f"{api}/live") as ws:
            call = asyncio.create_task(asyncio.to_thread(
                run_sipp, tmp_path, scenario("live", invite(sdp(0)), ack(), play(str(pcap), SECONDS + 0.5), bye(2)),
                recorder))  # fmt: skip

            async def listen() -> None:
                async for msg in ws:
                    if msg.type == aiohttp.WSMsgType.BINARY:
                        _, _, position, pcm = parse_audio_frame(msg.data)
                        frames.append((position, pcm))
                    elif msg.type == aiohttp.WSMsgType.TEXT and json.loads(msg.data)["type"] == "call_ended":
                        return

            async def watch() -> None:
                """The running call as the console sees it, until its stream has counted a second of packets."""
                while not call.done():
                    async with http.get(f"{api}/calls") as resp:
                        calls = await resp.json()
                    streams = [s for c in calls for s in c.get("streams", [])]
                    if streams and streams[0].get("packets", 0) >= 50:
                        running.extend(streams)
                        return
                    await asyncio.sleep(0.2)

            await asyncio.wait_for(asyncio.gather(listen(), watch()), 30)
            result = await call
        assert result.returncode == 0, result.stdout[-2000:]
        recorder.vcons(1)
    finally:
        recorder.stop()
    sizes = {len(pcm) for _, pcm in frames}
    assert sizes == {160}, f"one 20 ms packet per frame, not batches: {sorted(sizes)}"
    assert len(frames) == len(payloads)
    heard = np.zeros(len(reference), dtype=np.int16)
    for position, pcm in frames:
        heard[position : position + len(pcm)] = pcm[: max(0, len(heard) - position)]
    assert min(window_ncc(reference, heard / 32768, 8000)) >= 0.9
    (stream,) = running
    assert stream["packets"] >= 50 and stream["lost"] == 0 and stream["dropped"] == 0
    assert isinstance(stream["jitter_ms"], int) and stream["jitter_ms"] < 1000
