"""A real WHIP client on aiortc, run as its own process by the tests and the benchmark.

It POSTs an offer, plays a WAV in real time (encoded by aiortc, Opus by default), then
DELETEs its session and prints one JSON line: where its session was, when its first frame
left (wall clock), how many RTP packets it sent and how many it dropped on purpose.

``--drop P`` drops that fraction of outgoing RTP packets (seeded) just before they reach the
DTLS transport, which is exactly what a lossy network looks like to the server.
``--vanish-after S`` SIGKILLs the process S seconds into the audio: no DELETE, no close.
"""

from __future__ import annotations

import argparse
import asyncio
import fractions
import json
import os
import random
import signal
import time

import aioice.ice
import numpy as np
import soundfile as sf
from aiohttp import ClientSession
from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription
from aiortc.codecs.opus import OpusEncoder
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack
from aiortc.rtcdtlstransport import RTCDtlsTransport
from aiortc.rtp import is_rtcp
from av import AudioFrame, Packet
from yarl import URL

FRAME_S = 0.02


class WavTrack(MediaStreamTrack):
    """Plays mono 16-bit samples in real time, 20 ms a frame; then ends (the sender stops sending).

    With ``passthrough`` the audio is Opus-encoded once up front and the track hands aiortc
    ready packets, so a load test's clients do not spend a core on encoding.
    """

    kind = "audio"

    def __init__(self, samples: np.ndarray, rate: int, *, passthrough: bool = False) -> None:
        super().__init__()
        self.rate = rate
        self.step = int(rate * FRAME_S)
        padded = np.pad(samples, (0, -len(samples) % self.step))
        self.frames = [self._frame(padded[i : i + self.step], i) for i in range(0, len(padded), self.step)]
        if passthrough:
            self.frames = self._encoded(self.frames)
        self.index = 0
        self.started: float | None = None
        self.finished = asyncio.Event()

    def _frame(self, chunk: np.ndarray, position: int) -> AudioFrame:
        frame = AudioFrame.from_ndarray(chunk.reshape(1, -1), format="s16", layout="mono")
        frame.sample_rate = self.rate
        frame.pts = position
        frame.time_base = fractions.Fraction(1, self.rate)
        return frame

    @staticmethod
    def _encoded(frames: list[AudioFrame]) -> list[Packet]:
        encoder = OpusEncoder()
        packets = []
        for frame in frames:
            payloads, timestamp = encoder.encode(frame)
            for payload in payloads:
                packet = Packet(payload)
                packet.pts = timestamp
                packet.time_base = fractions.Fraction(1, 48000)
                packets.append(packet)
        return packets

    async def recv(self) -> AudioFrame | Packet:
        if self.readyState != "live":
            raise MediaStreamError
        if self.started is None:
            self.started = time.time()
        else:
            await asyncio.sleep(max(0.0, self.started + self.index * FRAME_S - time.time()))
        if self.index >= len(self.frames):
            self.finished.set()
            self.stop()
            raise MediaStreamError
        self.index += 1
        return self.frames[self.index - 1]


def lossy_transport(drop: float, seed: int) -> dict[str, int]:
    """Make every DTLS transport of this process drop ``drop`` of its outgoing RTP packets."""
    counts = {"sent": 0, "dropped": 0}
    rng = random.Random(seed)
    send = RTCDtlsTransport._send_rtp

    async def _send_rtp(self: RTCDtlsTransport, data: bytes) -> None:
        if not is_rtcp(data):
            counts["sent"] += 1
            if rng.random() < drop:
                counts["dropped"] += 1
                return
        await send(self, data)

    RTCDtlsTransport._send_rtp = _send_rtp  # type: ignore[method-assign]
    return counts


async def run(args: argparse.Namespace) -> dict[str, object]:
    data, rate = sf.read(args.wav, dtype="int16", always_2d=True)
    track = WavTrack(data[:, 0].copy(), rate, passthrough=args.passthrough)
    if args.start_at:
        await asyncio.sleep(max(0.0, args.start_at - time.time()))
    counts = lossy_transport(args.drop, args.seed)
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    transceiver = pc.addTransceiver(track, direction="sendonly")
    if args.codec:
        from aiortc.rtcrtpsender import RTCRtpSender

        codecs = [c for c in RTCRtpSender.getCapabilities("audio").codecs if c.name == args.codec]
        transceiver.setCodecPreferences(codecs)
    await pc.setLocalDescription(await pc.createOffer())
    headers = {"Content-Type": "application/sdp"}
    if args.token:
        headers["Authorization"] = f"Bearer {args.token}"
    result: dict[str, object] = {}
    async with ClientSession() as http:
        async with http.post(args.url, data=pc.localDescription.sdp, headers=headers) as response:
            body = await response.text()
            if response.status != 201:
                raise SystemExit(f"POST {args.url}: {response.status} {body.strip()}")
            location = response.headers["Location"]
            result["vcon_uuid"] = response.headers.get("Vcon-Uuid")
        await pc.setRemoteDescription(RTCSessionDescription(sdp=body, type="answer"))
        result["location"] = location
        if args.vanish_after is not None:
            await asyncio.sleep(args.vanish_after)
            print(json.dumps({**result, "first_frame_at": track.started, "killed_at": time.time()}), flush=True)
            os.kill(os.getpid(), signal.SIGKILL)
        await asyncio.wait_for(track.finished.wait(), timeout=len(data) / rate + 30)
        await asyncio.sleep(args.tail)
        session_url = str(response.url.join(URL(location)))
        result["deleted_at"] = time.time()
        async with http.delete(session_url, headers={k: v for k, v in headers.items() if k == "Authorization"}) as r:
            result["delete_status"] = r.status
    await pc.close()
    result.update(first_frame_at=track.started, **counts)
    return result


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("url", help="WHIP endpoint, e.g. http://127.0.0.1:8080/whip/room1?name=Alice")
    p.add_argument("wav", help="mono 16-bit WAV to send (48 kHz for Opus)")
    p.add_argument("--token")
    p.add_argument("--codec", help="force a codec: opus, PCMU, PCMA, G722")
    p.add_argument("--drop", type=float, default=0.0, help="fraction of RTP packets to drop")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--tail", type=float, default=0.2, help="seconds to wait after the last frame before DELETE")
    p.add_argument("--vanish-after", type=float, help="SIGKILL self this many seconds after the answer")
    p.add_argument("--passthrough", action="store_true", help="encode to Opus once up front (load tests)")
    p.add_argument("--start-at", type=float, help="wait until this wall-clock time (epoch s) before the offer")
    p.add_argument("--pin-loopback", action="store_true", help="offer 127.0.0.1 host candidates only")
    args = p.parse_args()
    if args.pin_loopback:
        aioice.ice.get_host_addresses = lambda use_ipv4, use_ipv6: ["127.0.0.1"]
    print(json.dumps(asyncio.run(run(args))), flush=True)


if __name__ == "__main__":
    main()
