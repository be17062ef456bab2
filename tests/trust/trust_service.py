"""The whole service (``python -m capture run --config``) as a process, and the real peers the trust tests use.

Peers: sipp (the caller, RTP from a pcap), the aiortc WHIP client process
(tests/webrtc/whip_client.py), the AMI replay server (tests/ami/amireplay.py, standing in for
Asterisk, which cannot run here) and the conserver-shaped HTTP endpoint (tests/conserver.py).
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
from audiocheck import best_lag, voice_like, window_ncc
from conserver import Conserver
from sip.harness import free_port, g711_frames, write_rtp_pcap
from sip.scenarios import ack, await_bye, bye, invite, play, scenario, sdp
from webrtc_harness import CLIENT, write_speech
from webrtc_harness import free_port as free_tcp_port

ROOT = Path(__file__).resolve().parents[2]
SIP_RATE = 8000
WEBRTC_RATE = 48000


def toml_value(value: Any) -> str:
    return json.dumps(str(value) if isinstance(value, Path) else value)


@dataclass
class Service:
    """``python -m capture run --config CFG``: sip and webrtc on free loopback ports, json debug logs."""

    tmp: Path
    adapters: tuple[str, ...] = ("sip", "webrtc")
    core: dict[str, Any] = field(default_factory=dict)
    sections: dict[str, dict[str, Any]] = field(default_factory=dict)
    sip_port: int = 0
    webrtc_port: int = 0
    proc: subprocess.Popen[bytes] | None = None
    starts: int = 0

    def __post_init__(self) -> None:
        self.out = self.tmp / "out"
        self.state = self.tmp / "state"
        self.config = self.tmp / "config.toml"
        self.sip_port = free_port()
        self.webrtc_port = free_tcp_port()
        rtp_min = random.randrange(10000, 60000, 1000)
        defaults = {
            "sip": {"listen": f"127.0.0.1:{self.sip_port}", "rtp_port_min": rtp_min, "rtp_port_max": rtp_min + 998},
            "webrtc": {"listen": f"127.0.0.1:{self.webrtc_port}", "host_addresses": ["127.0.0.1"]},
        }
        lines = [f"adapters = {toml_value(list(self.adapters))}", 'domain = "trust.example"']
        lines += [f"{k} = {toml_value(v)}" for k, v in self.core.items()]
        for name in self.adapters:
            lines.append(f"[{name}]")
            table = {**defaults.get(name, {}), **self.sections.get(name, {})}
            lines += [f"{k} = {toml_value(v)}" for k, v in table.items()]
        self.config.write_text("\n".join(lines) + "\n")

    @property
    def log(self) -> Path:
        return self.tmp / f"service-{self.starts}.log"

    @property
    def whip_base(self) -> str:
        return f"http://127.0.0.1:{self.webrtc_port}"

    def start(self) -> Service:
        self.starts += 1
        args = [sys.executable, "-m", "capture", "run", "--config", str(self.config), "--out", str(self.out),
                "--state-dir", str(self.state), "--log-level", "debug", "--log-format", "json"]  # fmt: skip
        with self.log.open("wb") as log:
            self.proc = subprocess.Popen(args, stdout=log, stderr=log, cwd=ROOT)
        deadline = time.monotonic() + 30
        while '"message": "service.ready"' not in self.log.read_text(errors="replace"):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.kill()
                raise AssertionError(f"service did not start:\n{self.log.read_text()[-4000:]}")
            time.sleep(0.05)
        return self

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    def stop(self, timeout: float = 30) -> int:
        """SIGTERM; the exit code."""
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill()
        return self.proc.returncode

    def logs(self) -> str:
        return "".join(self.tmp.joinpath(f"service-{i}.log").read_text(errors="replace")
                       for i in range(1, self.starts + 1))  # fmt: skip

    def vcons(self, count: int, timeout: float = 20.0) -> list[Path]:
        deadline = time.monotonic() + timeout
        while len(files := sorted(self.out.glob("*.vcon")) if self.out.exists() else []) < count:
            if time.monotonic() > deadline:
                raise AssertionError(f"{len(files)} of {count} vCons:\n{self.logs()[-4000:]}")
            time.sleep(0.1)
        return files

    def journals(self) -> dict[str, list[dict[str, Any]]]:
        """{source: journal records} of the calls in flight."""
        found = {}
        calls = self.state / "calls"
        for path in calls.glob("*/journal.jsonl") if calls.exists() else []:
            records = [json.loads(line) for line in path.read_text().splitlines() if line.endswith("}")]
            if records:
                found[records[0]["source"]] = records
        return found

    def wait_recording(self, sources: tuple[str, ...], seconds: float, timeout: float = 20.0) -> dict[str, Path]:
        """Wait until each source's call has been recording for ``seconds`` (by its own started_at)."""
        deadline = time.monotonic() + timeout
        while True:
            starts = {}
            for source, records in self.journals().items():
                rec = [r for r in records if r.get("kind") == "recording_started"]
                if rec:
                    starts[source] = rec[0]
            if set(sources) <= set(starts) and all(
                time.time() - iso_ts(starts[s]["started_at"]) >= seconds for s in sources
            ):
                return {s: self.state / "calls" / self.journals()[s][0]["vcon_uuid"] / starts[s]["path"]
                        for s in sources}  # fmt: skip
            if time.monotonic() > deadline:
                raise AssertionError(f"no recordings of {sources} in flight:\n{self.logs()[-4000:]}")
            time.sleep(0.05)


def iso_ts(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


# -- peers ---------------------------------------------------------------------------------


@dataclass
class SipCaller:
    """sipp calling the service, playing ``seconds`` of voice-like PCMU; the reference is what a
    perfect receiver decodes."""

    proc: subprocess.Popen[bytes]
    reference: np.ndarray

    @classmethod
    def start(cls, tmp: Path, port: int, seconds: float, *, seed: int = 5, hang_up: bool = False) -> SipCaller:
        """``hang_up``: send BYE after the audio; otherwise wait for the recorder's BYE."""
        payloads, reference = g711_frames(voice_like(seconds, SIP_RATE, seed), 0)
        pcap = write_rtp_pcap(tmp / f"caller-{seed}.pcap", payloads, 0)
        path = tmp / f"caller-{seed}.xml"
        end = (play(str(pcap), seconds + 0.2), bye(2)) if hang_up else (play(str(pcap), 0.2), await_bye())
        path.write_text(scenario("trust", invite(sdp(0)), ack(), *end))
        args = ["sipp", "-sf", str(path), "-s", "rec", f"127.0.0.1:{port}", "-i", "127.0.0.1",
                "-p", str(free_port()), "-mp", str(free_port() & ~1), "-m", "1", "-l", "1", "-t", "u1",
                "-nostdin", "-timeout", "60", "-timeout_error"]  # fmt: skip
        proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=tmp,
                                env={**os.environ, "TERM": "dumb"})  # fmt: skip
        return cls(proc, reference)

    def wait(self, timeout: float = 20.0) -> int:
        return self.proc.wait(timeout)

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)


@dataclass
class WhipCaller:
    """The aiortc WHIP client process sending ``seconds`` of band-limited speech (48 kHz Opus)."""

    proc: subprocess.Popen[str]
    reference: np.ndarray

    @classmethod
    def start(cls, tmp: Path, base: str, room: str, seconds: float, *extra: str, seed: int = 9) -> WhipCaller:
        wav = tmp / f"{room}.wav"
        reference = write_speech(wav, seconds, seed)
        args = [sys.executable, str(CLIENT), f"{base}/whip/{room}?name=Web", str(wav), "--pin-loopback", *extra]
        proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        return cls(proc, reference)

    def result(self, timeout: float = 30.0) -> dict[str, Any]:
        out, err = self.proc.communicate(timeout=timeout)
        lines = [line for line in out.splitlines() if line.startswith("{")]
        assert lines, f"WHIP client exited {self.proc.returncode} without a result: {err[-2000:]}"
        return json.loads(lines[-1])

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.communicate(timeout=5)


class ThreadedConserver:
    """tests/conserver.py's endpoint on its own event loop in a thread (the service is a subprocess)."""

    def __init__(self, **kwargs: Any) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self._kwargs = kwargs
        self.server: Conserver | None = None
        self.url = ""

    def __enter__(self) -> ThreadedConserver:
        self._thread.start()

        async def make() -> str:
            self.server = Conserver(**self._kwargs)
            return await self.server.start()

        self.url = asyncio.run_coroutine_threadsafe(make(), self.loop).result(5)
        return self

    def release(self) -> None:
        assert self.server is not None
        self.loop.call_soon_threadsafe(self.server.release)

    def __exit__(self, *exc: object) -> None:
        assert self.server is not None
        self.loop.call_soon_threadsafe(self.server.release)
        asyncio.run_coroutine_threadsafe(self.server.stop(), self.loop).result(5)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(5)
        self.loop.close()


# -- checks --------------------------------------------------------------------------------


def matching_windows(reference: np.ndarray, recorded: np.ndarray, rate: int) -> list[float]:
    """window_ncc over the whole seconds the recording holds (it may stop early, e.g. at a kill)."""
    lag = max(0, best_lag(reference, recorded, rate))
    usable = min(len(reference), len(recorded) - lag) // rate * rate
    assert usable >= rate, f"only {len(recorded) / rate:.2f} s recorded"
    return window_ncc(reference[:usable], recorded, rate)


def tree(*roots: Path) -> Iterator[Path]:
    """Every directory and file under the roots, roots included."""
    for root in roots:
        if not root.exists():
            continue
        yield root
        for folder, dirs, files in os.walk(root):
            for name in dirs + files:
                yield Path(folder) / name


def wrong_modes(*roots: Path) -> list[str]:
    """Paths whose mode is not 0700 (directories) or 0600 (files)."""
    bad = []
    for path in tree(*roots):
        try:
            st = path.lstat()
        except FileNotFoundError:
            continue  # a temporary file renamed or a call directory removed meanwhile
        want = 0o700 if path.is_dir() else 0o600
        if st.st_mode & 0o7777 != want:
            bad.append(f"{path}: {oct(st.st_mode & 0o7777)} (want {oct(want)})")
    return bad


def sip_request(method: str, call_id: str, local_port: int, *, body: str = "") -> bytes:
    return (
        f"{method} sip:rec@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:{local_port};branch=z9hG4bK-{call_id}\r\n"
        f"From: <sip:probe@127.0.0.1>;tag=p-{call_id}\r\nTo: <sip:rec@127.0.0.1>\r\nCall-ID: {call_id}\r\n"
        f"CSeq: 1 {method}\r\nContact: <sip:probe@127.0.0.1:{local_port}>\r\nMax-Forwards: 70\r\n"
        + ("Content-Type: application/sdp\r\n" if body else "")
        + f"Content-Length: {len(body)}\r\n\r\n{body}"
    ).encode()


PROBE_SDP = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\n"


def final_statuses(sock: socket.socket, within_s: float) -> dict[str, int]:
    """{Call-ID: last final status} of the SIP responses arriving on ``sock`` within the time."""
    found: dict[str, int] = {}
    deadline = time.monotonic() + within_s
    while (left := deadline - time.monotonic()) > 0:
        sock.settimeout(left)
        try:
            data = sock.recv(65535)
        except (TimeoutError, ConnectionRefusedError):
            continue
        head = data.split(b"\r\n\r\n", 1)[0].decode(errors="replace").split("\r\n")
        if not head[0].startswith("SIP/2.0 "):
            continue  # a request (the recorder's BYE of a call it should not have taken shows up as a 200)
        status = int(head[0].split()[1])
        call_id = next(h.split(":", 1)[1].strip() for h in head if h.lower().startswith("call-id:"))
        if status >= 200:
            found[call_id] = status
    return found
