"""A WHIP POST flood past ``max_sessions`` (issue 18, item 4): 503 with Retry-After for each,
decided before the offer is read, one log line a minute, and room again once a participant
leaves. The real CLI serves; offers come from aiortc. CPU and memory under the flood are
bench/sip/bench_floods.py's business."""

from __future__ import annotations

import asyncio
from pathlib import Path

import aiohttp
from aiortc import RTCPeerConnection
from webrtc_harness import Server


async def offer_sdp() -> str:
    pc = RTCPeerConnection()
    pc.addTransceiver("audio", direction="sendonly")
    await pc.setLocalDescription(await pc.createOffer())
    sdp = pc.localDescription.sdp
    await pc.close()
    return sdp


async def post(http: aiohttp.ClientSession, url: str, body: str) -> tuple[int, str | None, str | None]:
    async with http.post(url, data=body, headers={"Content-Type": "application/sdp"}) as resp:
        await resp.read()
        return resp.status, resp.headers.get("Retry-After"), resp.headers.get("Location")


def test_whip_post_flood_past_max_sessions_gets_503(tmp_path: Path) -> None:
    server = Server(tmp_path, "--max-sessions", "2", "--setup-timeout-s", "60")

    async def scenario() -> tuple[list[int], list[tuple[int, str | None, str | None]], int]:
        sdp = await offer_sdp()
        url = f"{server.base}/whip/flood"
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=50)) as http:
            first = [await post(http, url, sdp) for _ in range(2)]
            flood = await asyncio.gather(*(post(http, url, "not even an offer") for _ in range(500)))
            async with http.delete(server.base + str(first[0][2])) as resp:
                left = resp.status
            again = await post(http, url, sdp)
        return [s for s, _, _ in first] + [left, again[0]], list(flood), again[0]

    try:
        statuses, flood, _ = asyncio.run(scenario())
    finally:
        log = server.stop()
    assert statuses == [201, 201, 200, 201], statuses
    assert {(status, retry) for status, retry, _ in flood} == {(503, "5")}, "refused before the body is read"
    assert log.count("webrtc.sessions_refused") == 1, "one log line a minute, not one per POST"
    assert "webrtc.request_refused" not in log and "Traceback" not in log
