"""Many aiortc WebRTC senders in one process: the load for our WHIP server or for Janus.

Each session is a real RTCPeerConnection (ICE, DTLS-SRTP, RTCP) sending the same pre-encoded
Opus packets (tests/webrtc/whip_client.py's passthrough WavTrack: no encoding here), so both
servers get identical traffic. Signaling is WHIP (POST offer, DELETE) or Janus's HTTP API
(Record&Play ``record`` with the offer as JSEP, then ``stop``), see janus_api.py.

Sessions connect at ``--connect-rate`` per second, all start sending at ``--start-at`` (epoch
seconds) and stop after the WAV. Prints one JSON line per session, then ``{"done": ...}``.

    python bench/webrtc/clients.py whip http://127.0.0.1:8080 speech.wav --sessions 50 --start-at T
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(ROOT / "tests" / "webrtc"), str(Path(__file__).resolve().parent)]

import aioice.ice  # noqa: E402
import numpy as np  # noqa: E402
import soundfile as sf  # noqa: E402
from aiohttp import ClientSession, ClientTimeout  # noqa: E402
from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription  # noqa: E402
from aiortc.rtcdtlstransport import RTCDtlsTransport  # noqa: E402
from aiortc.rtp import is_rtcp  # noqa: E402
from janus_api import JanusRecording  # noqa: E402
from whip_client import WavTrack  # noqa: E402
from yarl import URL  # noqa: E402

SENT: dict[int, list[int]] = {}
"id(DTLS transport) -> [RTP packets sent, dropped on purpose]."
DROP = {"fraction": 0.0}
_rng = random.Random(1)


def count_rtp() -> None:
    """Count each DTLS transport's outgoing RTP packets (and drop ``DROP`` of them, seeded)."""
    send = RTCDtlsTransport._send_rtp

    async def _send_rtp(self: RTCDtlsTransport, data: bytes) -> None:
        if not is_rtcp(data):
            counts = SENT.setdefault(id(self), [0, 0])
            counts[0] += 1
            if DROP["fraction"] and _rng.random() < DROP["fraction"]:
                counts[1] += 1
                return
        await send(self, data)

    RTCDtlsTransport._send_rtp = _send_rtp  # type: ignore[method-assign]


class SharedTrack(WavTrack):
    """WavTrack over packets encoded once for every session, first frame at ``start_at``."""

    def __init__(self, packets: list[Any], start_at: float) -> None:
        super().__init__(np.zeros(0, dtype=np.int16), 48000)  # nothing to encode
        self.frames = packets
        self.start_at = start_at

    async def recv(self) -> Any:
        if self.started is None:
            await asyncio.sleep(max(0.0, self.start_at - time.time()))
        return await super().recv()


async def session(
    n: int, args: argparse.Namespace, packets: list[Any], http: ClientSession, results: list[dict[str, Any]]
) -> None:
    track = SharedTrack(packets, args.start_at)
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    sender = pc.addTransceiver(track, direction="sendonly").sender
    await pc.setLocalDescription(await pc.createOffer())
    result: dict[str, Any] = {"n": n}
    janus: JanusRecording | None = None
    location = ""
    try:
        if args.target == "whip":
            url = f"{args.url}/whip/{args.room_prefix}{n}"
            headers = {"Content-Type": "application/sdp"}
            async with http.post(url, data=pc.localDescription.sdp, headers=headers) as response:
                answer = await response.text()
                if response.status != 201:
                    raise RuntimeError(f"POST {url}: {response.status} {answer.strip()}")
                location = str(response.url.join(URL(response.headers["Location"])))
                result["vcon_uuid"] = response.headers.get("Vcon-Uuid")
        else:
            janus = JanusRecording(http, args.url)
            await janus.open()
            name = f"{args.room_prefix}{n}"
            answer = await janus.offer(pc.localDescription.sdp, name, name)
            result["recording_id"] = janus.recording_id
            result["filename"] = name
        await pc.setRemoteDescription(RTCSessionDescription(sdp=answer, type="answer"))
        result["answered_at"] = time.time()
        await asyncio.wait_for(track.finished.wait(), timeout=args.start_at - time.time() + len(packets) * 0.02 + 60)
        await asyncio.sleep(args.tail)
        result["deleted_at"] = time.time()
        if janus is not None:
            await janus.stop()
        else:
            async with http.delete(location) as response:
                result["delete_status"] = response.status
    except Exception as exc:  # a failed session is a result, not a crash of the other sessions
        result["error"] = f"{type(exc).__name__}: {exc}"
    finally:
        counts = SENT.get(id(sender.transport), [0, 0])
        result.update(first_frame_at=track.started, sent=counts[0], dropped=counts[1])
        await pc.close()
        results.append(result)
        print(json.dumps(result), flush=True)


async def main_async(args: argparse.Namespace) -> None:
    data, rate = sf.read(args.wav, dtype="int16", always_2d=True)
    packets = WavTrack(data[:, 0].copy(), rate, passthrough=True).frames
    results: list[dict[str, Any]] = []
    async with ClientSession(timeout=ClientTimeout(total=120)) as http:
        tasks = []
        for n in range(args.sessions):
            tasks.append(asyncio.create_task(session(n, args, packets, http, results)))
            await asyncio.sleep(1 / args.connect_rate)
        await asyncio.gather(*tasks)
    print(json.dumps({"done": len(results), "errors": sum(1 for r in results if "error" in r)}), flush=True)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("target", choices=["whip", "janus"])
    p.add_argument("url", help="WHIP server base (http://host:port) or Janus API base (http://host:port/janus)")
    p.add_argument("wav", help="mono 16-bit 48 kHz WAV every session sends")
    p.add_argument("--sessions", type=int, required=True)
    p.add_argument("--start-at", type=float, required=True, help="epoch seconds of every session's first frame")
    p.add_argument("--connect-rate", type=float, default=20.0, help="new sessions per second before the start")
    p.add_argument("--tail", type=float, default=0.3, help="seconds after the last frame before DELETE/stop")
    p.add_argument("--drop", type=float, default=0.0, help="fraction of RTP packets to drop (seeded)")
    p.add_argument("--room-prefix", default="load")
    p.add_argument("--address", default="127.0.0.1", help="the one address ICE host candidates are gathered on")
    args = p.parse_args()
    aioice.ice.get_host_addresses = lambda use_ipv4, use_ipv6: [args.address]
    DROP["fraction"] = args.drop
    count_rtp()
    asyncio.run(main_async(args))


if __name__ == "__main__":
    main()
