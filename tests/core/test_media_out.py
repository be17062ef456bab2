"""Media out (issue "Media out"): object storage that fails closed, live audio and events, PCI pause.

The service runs as a real process (tests/scripted.py plays calls into the real core, as the
RTP adapters do); object storage is moto's S3 served over HTTPS (tests/core/s3server.py); the
live consumers are real WebSocket clients and servers (aiohttp).
"""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

import aiohttp
import boto3
import numpy as np
from aiohttp import web
from audiocheck import read_audio, window_ncc
from conserver import Conserver
from s3server import S3Server
from scripted import RATE, pcm
from tlsfiles import tls_files
from vconcheck import assert_valid

from capture.cli import main as cli
from capture.clock import ManualClock
from capture.live import LiveHub, parse_audio_frame
from capture.metrics import Metrics
from capture.vcon.content import b64url_decode, hash_matches

SCRIPTED = Path(__file__).resolve().parents[1] / "scripted.py"


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(tmp: Path, *flags: str, log: str = "service.log") -> subprocess.Popen:
    args = [
        sys.executable, str(SCRIPTED), f"--out={tmp / 'out'}", f"--state-dir={tmp / 'state'}",
        "--domain=test.example", "--log-format=json", "--retry-max-s=0.5", *flags,
    ]  # fmt: skip
    return subprocess.Popen(args, stdout=subprocess.PIPE, stderr=(tmp / log).open("ab"), text=True)


async def until(predicate, within_s: float, what: str) -> None:
    deadline = time.monotonic() + within_s
    while not predicate():
        assert time.monotonic() < deadline, what
        await asyncio.sleep(0.1)


def when(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


# -- object storage ---------------------------------------------------------------------


async def test_recorder_killed_mid_upload_delivers_once_with_the_object_complete_and_hashed(tmp_path):
    cert, key = tls_files(tmp_path / "tls")
    s3 = S3Server(cert, key, part_delay_s=1.0).start()
    client = boto3.client(
        "s3", endpoint_url=s3.url, region_name="us-east-1", verify=str(cert),
        aws_access_key_id="AKIATEST", aws_secret_access_key="secret",
    )  # fmt: skip
    client.create_bucket(Bucket="recordings")
    (tmp_path / "ak").write_text("AKIATEST\n")
    (tmp_path / "sk").write_text("secret\n")
    conserver = Conserver()
    url = await conserver.start()
    storage = (
        "--s3-bucket=recordings", f"--s3-endpoint={s3.url}", "--s3-region=us-east-1", f"--s3-ca-file={cert}",
        f"--s3-access-key-file={tmp_path / 'ak'}", f"--s3-secret-key-file={tmp_path / 'sk'}", "--s3-prefix=site-a/",
        f"--conserver-url={url}",
    )  # fmt: skip
    try:
        proc = start(tmp_path, "--scenario=bulk", "--call-seconds=1200", *storage)
        line = await asyncio.to_thread(proc.stdout.readline)
        assert line.startswith("call started"), line
        vcon_uuid = line.split()[-1]
        assert await asyncio.to_thread(s3.parts_started.wait, 60), "the upload never began"
        proc.send_signal(signal.SIGKILL)  # in the middle of a 5-part upload (each part takes 1 s)
        proc.wait(10)
        out = tmp_path / "out"
        assert not out.exists() or not list(out.glob("*.vcon")), "killed before its vCon was written"
        again = start(tmp_path, "--calls=0", *storage)
        await until(lambda: (out / f"{vcon_uuid}.vcon").exists(), 120, "no vCon after the restart")
        await until(lambda: conserver.received[vcon_uuid] == 1, 20, "not delivered to the conserver")
        again.terminate()
        assert again.wait(30) == 0
        doc = assert_valid(json.loads((out / f"{vcon_uuid}.vcon").read_bytes()))
        (rec,) = [d for d in doc["dialog"] if d["type"] == "recording"]
        assert rec["url"].startswith(s3.url + "/recordings/site-a/") and "X-Amz-Signature=" in rec["url"]
        object_key = rec["url"].split("/recordings/", 1)[1].split("?", 1)[0]
        day = doc["created_at"][:10].replace("-", "/")
        assert object_key == f"site-a/{day}/{vcon_uuid}/{vcon_uuid}.wav", "deterministic key"
        stored = client.get_object(Bucket="recordings", Key=object_key)["Body"].read()
        assert hash_matches(rec["content_hash"], stored), "the object is complete and its hash right"
        audio, rate = read_audio(stored)
        assert rate == RATE and audio.shape == (1200 * RATE, 2)
        assert cli(["validate", "--fetch", "--ca-file", str(cert), str(out / f"{vcon_uuid}.vcon")]) == 0
        unfinished = client.list_multipart_uploads(Bucket="recordings").get("Uploads", [])
    finally:
        s3.stop()
        await conserver.stop()
    assert dict(conserver.received) == {vcon_uuid: 1}, "delivered once"
    assert len(unfinished) <= 1, "at most the upload the kill interrupted is left (a lifecycle rule clears it)"
    log = (tmp_path / "service.log").read_text()
    assert "Traceback" not in log


# -- pause and live audio ---------------------------------------------------------------


def files_under(*roots: Path) -> list[Path]:
    return [p for root in roots if root.exists() for p in root.rglob("*") if p.is_file()]


def contains(data: bytes, needle: bytes) -> bool:
    return needle in data


def decoded_bodies(doc: dict) -> list[bytes]:
    return [b64url_decode(d["body"]) for d in doc.get("dialog", []) if d.get("encoding") == "base64url"]


async def test_pause_by_api_keeps_the_paused_audio_out_of_every_file_and_every_live_stream(tmp_path):
    port = free_port()
    proc = start(tmp_path, "--scenario=timed", "--calls=1", "--call-seconds=9", f"--api-listen=127.0.0.1:{port}")
    api = f"http://127.0.0.1:{port}/api"
    frames: list[tuple[int, int, np.ndarray]] = []
    events: list[dict] = []
    snapshots_during: dict[str, bytes] = {}
    try:
        line = await asyncio.to_thread(proc.stdout.readline)
        assert line.startswith("call started"), line
        vcon_uuid = line.split()[-1]
        async with aiohttp.ClientSession() as session:
            async with session.ws_connect(f"{api}/live?call={vcon_uuid}") as ws:

                async def listen() -> None:
                    async for msg in ws:
                        if msg.type == aiohttp.WSMsgType.BINARY:
                            frames.append(parse_audio_frame(msg.data)[1:])
                        elif msg.type == aiohttp.WSMsgType.TEXT:
                            events.append(json.loads(msg.data))
                            if events[-1]["type"] == "call_ended":
                                return

                listener = asyncio.create_task(listen())
                await asyncio.sleep(2.5)
                async with session.post(f"{api}/calls/{vcon_uuid}/pause", json={"reason": "card number"}) as resp:
                    assert resp.status == 200 and (await resp.json())["changed"] is True
                await asyncio.sleep(3.0)
                # While paused (and a second after, for the flush): what the recorder holds on disk now.
                snapshots_during = {str(p): p.read_bytes() for p in files_under(tmp_path / "state")}
                async with session.post(f"{api}/calls/{vcon_uuid}/resume") as resp:
                    assert resp.status == 200
                async with session.post(f"{api}/calls/{vcon_uuid}/resume") as resp:
                    assert (await resp.json())["changed"] is False, "resuming twice changes nothing"
                await asyncio.wait_for(listener, 20)
            async with session.post(f"{api}/calls/{vcon_uuid}/pause") as resp:
                assert resp.status == 404, "the call is over"
        await until(lambda: (tmp_path / "out" / f"{vcon_uuid}.vcon").exists(), 20, "no vCon")
        proc.terminate()
        assert proc.wait(20) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
    doc = assert_valid(json.loads((tmp_path / "out" / f"{vcon_uuid}.vcon").read_bytes()))
    (pause,) = [a for a in doc["attachments"] if a["purpose"] == "recording_pauses"][0]["body"]
    assert pause["by"] == "api" and pause["reason"] == "card number" and pause["resumed_by"] == "api"
    (rec,) = [d for d in doc["dialog"] if d["type"] == "recording"]
    audio, rate = read_audio(b64url_decode(rec["body"]))
    audio = np.round(audio * 32768).astype(np.int16)
    start_at = when(rec["start"])
    p0 = round((when(pause["start"]) - start_at).total_seconds() * rate)
    p1 = round((when(pause["end"]) - start_at).total_seconds() * rate)
    assert 2.0 <= p0 / rate <= 3.5 and 2.5 <= (p1 - p0) / rate <= 4.0, (p0 / rate, p1 / rate)
    sent = pcm(9.0, 1)
    # The frame being spoken when the request arrived was already kept: at most 20 ms at the start.
    assert not audio[p0 + 160 : p1, 0].any(), "the paused stretch is silence in the recording"
    before, after = sent[: p0 - rate // 10], sent[p1 + rate // 10 :]
    assert min(window_ncc(before / 32768, audio[: len(before), 0] / 32768, rate, max_lag_s=0.01)) > 0.99
    assert np.array_equal(audio[p1 + rate // 10 : p1 + rate // 10 + rate, 0], after[:rate]), "kept in place after"

    secret = sent[p0 + rate // 2 : p0 + rate // 2 + 64].astype("<i2").tobytes()  # 8 ms of the paused speech
    control = sent[rate : rate + 64].astype("<i2").tobytes()  # 8 ms before the pause: must be found
    everything = list(snapshots_during.values())
    everything += [p.read_bytes() for p in files_under(tmp_path / "out", tmp_path / "state")]
    everything += decoded_bodies(doc)
    live_audio = b"".join(pcm_.astype("<i2").tobytes() for _, _, pcm_ in sorted(frames, key=lambda f: f[1]))
    assert any(contains(blob, control) for blob in everything) and contains(live_audio, control), "the search works"
    assert not any(contains(blob, secret) for blob in everything), "paused audio was written somewhere"
    assert not contains(live_audio, secret), "paused audio was streamed live"
    assert not [pos for _, pos, chunk in frames if p0 + 160 <= pos < p1 and chunk.any()], "nothing live while paused"
    kinds = [e["type"] for e in events]
    for kind in ("call", "recording_paused", "recording_resumed", "call_ended"):
        assert kind in kinds, kinds
    announced = [e for e in events if e["type"] == "stream"] + [
        s for e in events if e["type"] == "call" for s in e["streams"]
    ]
    assert [(s["party"], s["sample_rate"]) for s in announced] == [(0, RATE)], "a listener learns each stream's rate"
    heard = np.zeros(len(sent), dtype=np.int16)
    for _, pos, chunk in frames:
        heard[pos : pos + len(chunk)] = chunk[: max(0, len(sent) - pos)]
    assert min(window_ncc(before / 32768, heard[: len(before)] / 32768, rate, max_lag_s=0.01)) >= 0.9


async def test_each_call_is_pushed_live_to_a_wss_consumer_that_receives_its_audio(tmp_path):
    cert, key = tls_files(tmp_path / "tls")
    received: dict[str, list] = {}
    seen_auth: list[str] = []

    async def ingest(request: web.Request) -> web.WebSocketResponse:
        seen_auth.append(request.headers.get("Authorization", ""))
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        messages = received.setdefault(request.query["vcon_uuid"], [])
        async for msg in ws:
            messages.append(msg.data)
        return ws

    import ssl

    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    app = web.Application()
    app.router.add_get("/ingest", ingest)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=context)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    (tmp_path / "push.token").write_text("push-secret\n")
    proc = start(
        tmp_path, "--scenario=timed", "--calls=1", "--call-seconds=4",
        f"--live-push-url=wss://127.0.0.1:{port}/ingest", f"--live-push-ca-file={cert}",
        f"--live-push-token-file={tmp_path / 'push.token'}",
    )  # fmt: skip
    try:
        line = await asyncio.to_thread(proc.stdout.readline)
        vcon_uuid = line.split()[-1]
        await until(lambda: (tmp_path / "out" / f"{vcon_uuid}.vcon").exists(), 20, "no vCon")
        await until(lambda: any('"call_ended"' in m for m in received.get(vcon_uuid, []) if isinstance(m, str)), 5, "")
        proc.terminate()
        assert proc.wait(20) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
        await runner.cleanup()
    assert seen_auth == ["Bearer push-secret"]
    messages = received[vcon_uuid]
    texts = [json.loads(m) for m in messages if isinstance(m, str)]
    assert [t["type"] for t in texts][:2] == ["call", "call_started"] and texts[-1]["type"] == "call_ended"
    (stream,) = [t for t in texts if t["type"] == "stream"]
    assert stream["sample_rate"] == RATE and stream["encoding"] == "pcm_s16le" and stream["party"] == 0
    heard = np.zeros(4 * RATE, dtype=np.int16)
    for m in messages:
        if isinstance(m, bytes):
            party, _, pos, chunk = parse_audio_frame(m)
            heard[pos : pos + len(chunk)] = chunk[: max(0, len(heard) - pos)]
    sent = pcm(4.0, 1)
    assert min(window_ncc(sent / 32768, heard / 32768, RATE, max_lag_s=0.01)) >= 0.9


async def test_a_listener_that_falls_behind_is_dropped_and_counted_and_never_waited_for():
    metrics = Metrics()
    clock = ManualClock()
    hub = LiveHub(metrics, clock.monotonic)
    hub.call_started("u1", {"call_id": "c1"})
    slow, fast = hub.listen("u1"), hub.listen("u1")
    chunk = np.ones(160, dtype=np.int16)
    started = time.perf_counter()
    for n in range(1000):  # 20 s of one stream, 20 ms a frame
        hub.audio("u1", 0, 0, n * 160, chunk)
        clock.advance(0.02)
        while not fast.queue.empty():
            await fast.get()
        if n == 400:
            assert not slow.dropped, "8 s behind is still within the bound"
    assert time.perf_counter() - started < 5.0, "publishing never blocks"
    assert slow.dropped and not fast.dropped
    assert metrics.live_dropped._value.get() == 1
    last = [slow.queue.get_nowait() for _ in range(slow.queue.qsize())]
    assert json.loads(last[0])["type"] == "dropped" and last[-1] is None
