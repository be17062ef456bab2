"""Live audio latency of SIP calls: packet sent -> its audio frame received by a WebSocket consumer.

N concurrent G.711 calls (sipp places them: INVITE, ACK, BYE; no media of its own) against the
recorder (``python -m capture sip --api-listen``). A paced sender process sends each call's RTP
(20 ms PCMU) to the port the recorder answered, and notes when it sent every packet
(``time.monotonic``: this host's CLOCK_MONOTONIC). The first two samples of every packet encode
the call's slot (mu-law codes 0..99, two base-100 digits), so a frame tells which call it is and
its position which packet. The consumer (this process, asyncio + aiohttp) listens on
``/api/live``: one listener for all calls (``--listeners all``), or an events-only listener that
opens one listener per call as each call starts (``--listeners per-call``, what a transcription
service does). Each packet's latency is the consumer's ``time.monotonic`` when the frame that
carries it arrived minus its send time. The recorder is pinned to one core and sipp, the sender
and the consumer to the other (``--no-pin`` to not), as bench/webrtc does.

Usage::

    python bench/sip/bench_live.py [--calls 100] [--seconds 20] [--listeners per-call,all]
                                   [--before DIR] [--out bench/results/live.json]

``--before DIR`` (a ``git worktree`` of an older commit) runs that checkout's recorder under the
same load in the same run (before this change a SIP call's audio reached listeners every 25 packets).
Goal: p99 < 100 ms at 100 calls.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import platform
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import numpy as np

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from bench_sip import _listening, cpu_s, describe, free_port  # noqa: E402

from adapters.sip.demo import two_voices  # noqa: E402
from capture.live import parse_audio_frame  # noqa: E402
from capture.media.g711 import ULAW, encode_ulaw  # noqa: E402
from capture.media.rtp import build_rtp  # noqa: E402

PACKET = 160
DIGIT_OF = {int(ULAW[code]): code for code in range(100)}
"mu-law codes 0..99 decode to 100 distinct samples: a sample -> its digit."


def scenario(seconds: float, ports_dir: Path) -> str:
    head = """      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      From: <sip:live@[local_ip]:[local_port]>;tag=[pid]L[call_number]
      To: <sip:rec@[remote_ip]:[remote_port]>{tag}
      Call-ID: [call_id]
      Contact: <sip:live@[local_ip]:[local_port]>
      Max-Forwards: 70"""
    return f"""<?xml version="1.0" encoding="ISO-8859-1" ?>
<scenario name="live">
  <send retrans="500"><![CDATA[
      INVITE sip:rec@[remote_ip]:[remote_port] SIP/2.0
{head.format(tag="")}
      CSeq: 1 INVITE
      Content-Type: application/sdp
      Content-Length: [len]

v=0
o=live 1 1 IN IP4 [media_ip]
s=-
c=IN IP4 [media_ip]
t=0 0
m=audio [media_port] RTP/AVP 0
a=rtpmap:0 PCMU/8000
a=sendonly
  ]]></send>
  <recv response="100" optional="true"/>
  <recv response="200" rtd="true"><action><ereg regexp="m=audio ([0-9]+)" search_in="body" check_it="true"
    assign_to="all,p1"/></action></recv>
  <Reference variables="all"/>
  <send><![CDATA[
      ACK sip:rec@[remote_ip]:[remote_port] SIP/2.0
{head.format(tag="[peer_tag_param]")}
      CSeq: 1 ACK
      Content-Length: 0

  ]]></send>
  <nop><action><exec command="touch {ports_dir}/[$p1]"/></action></nop>
  <pause milliseconds="{int(seconds * 1000) + 500}"/>
  <send retrans="500"><![CDATA[
      BYE sip:rec@[remote_ip]:[remote_port] SIP/2.0
{head.format(tag="[peer_tag_param]")}
      CSeq: 2 BYE
      Content-Length: 0

  ]]></send>
  <recv response="200"/>
</scenario>
"""


def tagged(payloads: list[bytes], slot: int) -> list[bytes]:
    """Each packet's first two bytes name the call's slot (two base-100 digits, mu-law codes 0..99)."""
    tag = bytes((slot // 100, slot % 100))
    return [tag + p[2:] for p in payloads]


def send_rtp(ports_dir: str, seconds: float, calls: int, out: str, pin: int | None) -> None:
    """The paced sender (its own process): every port sipp names gets ``seconds`` of tagged PCMU, 20 ms apart."""
    if pin is not None:
        os.sched_setaffinity(0, {pin})
    pcm = (two_voices(seconds) * 32767).astype("int16")
    coded = encode_ulaw(pcm)
    base = [coded[i : i + PACKET] for i in range(0, len(coded) - PACKET + 1, PACKET)]
    sent = np.full((calls, len(base)), np.nan)
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1 << 22)
    streams: list[tuple[int, float, list[bytes]]] = []
    following: list[int] = []
    "Per slot, the next packet to send."
    seen: set[str] = set()
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline and (len(streams) < calls or any(n < len(base) for n in following)):
        now = time.monotonic()
        for name in sorted({p.name for p in Path(ports_dir).iterdir()} - seen):
            seen.add(name)
            if len(streams) < calls:
                streams.append((int(name), now, tagged(base, len(streams))))
                following.append(0)
        for slot, (port, start, packets) in enumerate(streams):
            due = min(int((now - start) / 0.02), len(packets) - 1)
            for i in range(following[slot], due + 1):
                sock.sendto(build_rtp(0, i, i * PACKET, 0x5EED0000 + slot, packets[i]), ("127.0.0.1", port))
                sent[slot, i] = time.monotonic()
            following[slot] = max(following[slot], due + 1)
        time.sleep(0.002)
    np.save(out, sent)


class Consumer:
    """The WebSocket side: notes when each packet's audio arrived."""

    def __init__(self, api: str, mode: str) -> None:
        self.api = api
        self.mode = mode
        self.arrivals: list[tuple[int, int, float]] = []
        "(slot, packet index, time.monotonic() at arrival)."
        self.frames = 0
        self.dropped = 0
        self.listeners = 0
        self.ended = 0
        self._tasks: set[asyncio.Task[None]] = set()

    def frame(self, data: bytes, at: float) -> None:
        _, _, position, pcm = parse_audio_frame(data)
        self.frames += 1
        for offset in range(0, len(pcm) - PACKET + 1, PACKET):
            high, low = DIGIT_OF.get(int(pcm[offset])), DIGIT_OF.get(int(pcm[offset + 1]))
            if high is None or low is None or (position + offset) % PACKET:
                continue
            self.arrivals.append((high * 100 + low, (position + offset) // PACKET, at))

    async def listen(self, http: aiohttp.ClientSession, query: str, until_calls: int) -> None:
        async with http.ws_connect(f"{self.api}/live{query}", max_msg_size=0) as ws:
            self.listeners += 1
            async for msg in ws:
                at = time.monotonic()
                if msg.type == aiohttp.WSMsgType.BINARY:
                    self.frame(msg.data, at)
                elif msg.type == aiohttp.WSMsgType.TEXT:
                    event = json.loads(msg.data)
                    kind = event["type"]
                    if kind == "dropped":
                        self.dropped += 1
                    elif kind == "call_started" and self.mode == "per-call" and query.startswith("?audio=0"):
                        task = asyncio.create_task(self.listen(http, f"?call={event['vcon_uuid']}", 1))
                        self._tasks.add(task)
                    elif kind == "call_ended":
                        self.ended += 1
                        if self.ended >= until_calls:
                            return

    async def run(self, calls: int, started: asyncio.Event, stop: asyncio.Event) -> None:
        async with aiohttp.ClientSession() as http:
            query = "?audio=0" if self.mode == "per-call" else ""
            main = asyncio.create_task(self.listen(http, query, calls))
            await asyncio.sleep(0.5)
            started.set()
            await asyncio.wait({main, asyncio.create_task(stop.wait())}, return_when=asyncio.FIRST_COMPLETED)
            await asyncio.sleep(1.0)
            for task in [main, *self._tasks]:
                task.cancel()
            await asyncio.gather(main, *self._tasks, return_exceptions=True)


def percentile(values: np.ndarray, q: float) -> float:
    return round(float(np.percentile(values, q)) * 1000, 1)


def start_recorder(
    name: str, calls: int, work: Path, repo: Path, pin: bool
) -> tuple[subprocess.Popen[bytes], int, int]:
    """The recorder of the checkout ``repo`` with its API, ready; (process, SIP port, API port)."""
    port, api_port = free_port(), free_port()
    lo = random.randrange(10000, 20000, 2)
    log = work / f"{name}.log"
    proc = subprocess.Popen(
        [sys.executable, "-m", "capture", "sip", "--listen", f"127.0.0.1:{port}", "--out", str(work / name),
         "--state-dir", str(work / f"state-{name}"), "--max-calls", str(calls + 10), "--log-level", "warning",
         "--api-listen", f"127.0.0.1:{api_port}", "--rtp-port-min", str(lo),
         "--rtp-port-max", str(lo + 4 * calls + 100), "--domain", "bench.localhost"],
        stdout=log.open("wb"), stderr=subprocess.STDOUT, cwd=repo,
    )  # fmt: skip
    if pin:
        os.sched_setaffinity(proc.pid, {1})
    deadline = time.monotonic() + 30
    while not _listening(api_port):
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            proc.wait()
            raise RuntimeError(f"recorder did not start: {log.read_text()[-2000:]}")
        time.sleep(0.1)
    return proc, port, api_port


async def load(calls: int, seconds: float, ramp: float, consumer: Consumer, port: int, work: Path, name: str,
               pin: bool) -> tuple[int, Path]:  # fmt: skip
    """The consumer listening, then sipp's calls and the sender's RTP; (sipp's exit code, the send times file)."""
    ports_dir = Path(tempfile.mkdtemp(prefix="ports-", dir=work))
    sent_file = work / f"{name}-sent.npy"
    sender = multiprocessing.get_context("spawn").Process(
        target=send_rtp, args=(str(ports_dir), seconds, calls, str(sent_file), 0 if pin else None)
    )
    started, stop = asyncio.Event(), asyncio.Event()
    listening = asyncio.create_task(consumer.run(calls, started, stop))
    await started.wait()
    sender.start()
    sf = work / f"{name}.xml"
    sf.write_text(scenario(seconds, ports_dir))
    sipp = await asyncio.create_subprocess_exec(
        "sipp", "-sf", str(sf), "-s", "rec", f"127.0.0.1:{port}", "-i", "127.0.0.1", "-p", str(free_port()),
        "-m", str(calls), "-l", str(calls), "-r", str(max(1, int(calls / ramp))), "-nostdin",
        "-timeout", str(int(seconds + ramp + 60)), "-trace_err", "-error_file", str(work / f"{name}-sipp.err"),
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL, cwd=work,
    )  # fmt: skip
    rc = await sipp.wait()
    stop.set()
    await listening
    await asyncio.to_thread(sender.join, 60)
    return rc, sent_file


def bench(calls: int, seconds: float, ramp: float, mode: str, work: Path, repo: Path, pin: bool) -> dict[str, Any]:
    name = f"live-{mode}-{calls}-{random.randrange(1 << 30)}"
    proc, port, api_port = start_recorder(name, calls, work, repo, pin)
    consumer = Consumer(f"http://127.0.0.1:{api_port}/api", mode)
    cpu0, load0 = cpu_s(proc.pid), os.getloadavg()[0]
    if os.environ.get("BENCH_LIVE_PYSPY"):  # "START:SECONDS:FILE": profile the recorder for a while
        at, length, where = os.environ["BENCH_LIVE_PYSPY"].split(":")
        subprocess.Popen(
            [
                "sh",
                "-c",
                f"sleep {at}; exec {Path(sys.executable).parent}/py-spy record --pid "
                f"{proc.pid} --duration {length} --rate 250 --format raw --output {where} --nonblocking",
            ]
        )
    try:
        rc, sent_file = asyncio.run(load(calls, seconds, ramp, consumer, port, work, name, pin))
        cpu = cpu_s(proc.pid) - cpu0
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(60)
    sent = np.load(sent_file)
    arrivals = np.array(consumer.arrivals, dtype=float).reshape(-1, 3)
    slots, packets = arrivals[:, 0].astype(int), arrivals[:, 1].astype(int)
    ok = (slots < sent.shape[0]) & (packets < sent.shape[1])
    sent_at = sent[slots[ok], packets[ok]]
    latency = arrivals[ok, 2] - sent_at
    if os.environ.get("BENCH_LIVE_DUMP"):
        np.save(Path(os.environ["BENCH_LIVE_DUMP"]) / f"{name}-arrivals.npy", arrivals)
        shutil.copy(sent_file, Path(os.environ["BENCH_LIVE_DUMP"]) / f"{name}-sent.npy")
    # Phases, by when the packet was sent: every call running and none starting or ending (steady), and
    # while calls end (BYEs, their vCons built).
    first, last = np.nanmin(sent), np.nanmax(sent)
    steady = (sent_at > first + ramp + 1) & (sent_at < first + seconds - 0.5)
    ending = sent_at >= first + seconds - 0.5
    phases = {
        phase: {"packets": int(np.count_nonzero(mask & ~np.isnan(latency))),
               "latency_ms_p50": percentile(latency[mask & ~np.isnan(latency)], 50),
               "latency_ms_p99": percentile(latency[mask & ~np.isnan(latency)], 99)}
        for phase, mask in (("steady", steady), ("calls_ending", ending)) if np.any(mask & ~np.isnan(latency))
    }  # fmt: skip
    latency = latency[~np.isnan(latency)]
    return {
        "calls": calls,
        "listeners": mode,
        "sipp_exit": rc,
        "packets_sent": int(np.count_nonzero(~np.isnan(sent))),
        "packets_measured": int(len(latency)),
        "frames_received": consumer.frames,
        "listeners_opened": consumer.listeners,
        "listeners_dropped": consumer.dropped,
        "latency_ms_p50": percentile(latency, 50) if len(latency) else None,
        "latency_ms_p99": percentile(latency, 99) if len(latency) else None,
        "latency_ms_max": percentile(latency, 100) if len(latency) else None,
        "phases": phases,
        "send_span_s": round(float(last - first), 1),
        "recorder_cpu_s": round(cpu, 2),
        "machine_load_1m": [round(load0, 2), round(os.getloadavg()[0], 2)],
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--calls", type=int, default=100)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--ramp", type=float, default=5.0)
    parser.add_argument("--listeners", default="per-call,all", help="per-call, all, or both (comma-separated)")
    parser.add_argument("--before", type=Path, help="checkout of an older commit to compare with, in the same run")
    parser.add_argument("--no-pin", action="store_true", help="do not pin the recorder and the load to a core each")
    parser.add_argument("--keep", action="store_true", help="keep the work directory (logs, vCons)")
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "live.json")
    args = parser.parse_args()
    pin = not args.no_pin and (os.cpu_count() or 1) >= 2
    if pin:
        os.sched_setaffinity(0, {0})
    work = Path(tempfile.mkdtemp(prefix="bench-live-"))
    runs = []
    for mode in args.listeners.split(","):
        for label, repo in ([("before", args.before)] if args.before else []) + [("after", REPO)]:
            row = bench(args.calls, args.seconds, args.ramp, mode, work, repo, pin)
            row["checkout"] = label
            print(json.dumps(row), flush=True)
            runs.append(row)
    result = {
        "command": "python bench/sip/bench_live.py " + " ".join(sys.argv[1:]),
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, "
        f"{platform.platform()}",
        "note": "latency = the consumer's time.monotonic when the frame carrying a packet arrived minus the "
        "sender's time.monotonic when it sent the packet (one host: CLOCK_MONOTONIC); recorder pinned to "
        f"core 1, sipp/sender/consumer to core 0: {pin}; other helpers' processes share the machine",
        "goal": "p99 < 100 ms at 100 calls",
        "commit": describe(REPO),
        "before_commit": describe(args.before) if args.before else None,
        "runs": runs,
    }
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
