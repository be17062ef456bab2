"""Runs the real CLI (`python -m capture webrtc`) and real WHIP clients as processes, reads their vCons."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
from audiocheck import read_audio, voice_like, write_wav
from vconcheck import assert_valid

from capture.vcon.content import b64url_decode

HERE = Path(__file__).resolve().parent
CLIENT = HERE / "whip_client.py"
RATE = 48000
AGENT_TOKEN = "tok-agent-7"
PLAIN_TOKEN = "tok-plain"


def speech_band(seconds: float, seed: int) -> np.ndarray:
    """voice_like() band-limited to telephone speech (300-3400 Hz).

    Opus in VoIP mode high-passes and reshapes the phase of the 120-180 Hz fundamentals of the
    raw voice_like() signal, which caps its waveform correlation near 0.9 even on a perfect
    link; real speech (and this band) comes through at 0.99.
    """
    v = voice_like(seconds, RATE, seed)
    spectrum = np.fft.rfft(v)
    freqs = np.fft.rfftfreq(len(v), 1 / RATE)
    spectrum[(freqs < 300) | (freqs > 3400)] = 0
    band = np.fft.irfft(spectrum, len(v))
    return band * (0.3 / np.max(np.abs(band)))


def write_speech(path: Path, seconds: float, seed: int) -> np.ndarray:
    """Write speech followed by 0.1 s of silence, so that the encoder's look-ahead (Opus:
    6.5 ms that never leave the sender) does not cut into the last compared window."""
    sent = np.concatenate((speech_band(seconds, seed), np.zeros(int(0.1 * RATE))))
    write_wav(path, sent, RATE)
    return read_audio(path)[0][:, 0]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """``python -m capture webrtc`` on a free port, writing vCons to ``out``; ``prefix`` goes
    before the command (the benchmark's ``taskset -c 1``)."""

    def __init__(self, tmp: Path, *extra: str, prefix: tuple[str, ...] = ()) -> None:
        self.port = free_port()
        self.out = tmp / "out"
        self.log = tmp / "server.log"
        self.base = f"http://127.0.0.1:{self.port}"
        args = [
            *prefix, sys.executable, "-m", "capture", "webrtc",
            "--listen", f"127.0.0.1:{self.port}",
            "--out", str(self.out),
            "--state-dir", str(tmp / "state"),
            "--domain", "test.invalid",
            "--host-addresses", "127.0.0.1",
            *extra,
        ]  # fmt: skip
        self._log_file = self.log.open("wb")
        self.proc = subprocess.Popen(args, stdout=self._log_file, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited {self.proc.returncode}:\n{self.log.read_text()}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return
            except OSError:
                time.sleep(0.1)
        raise RuntimeError("server did not start within 30 s")

    def client(self, room: str, wav: Path, *args: str, query: str = "") -> subprocess.Popen[str]:
        url = f"{self.base}/whip/{room}" + (f"?{query}" if query else "")
        return subprocess.Popen(
            [sys.executable, str(CLIENT), url, str(wav), "--pin-loopback", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    def wait_vcon(self, vcon_uuid: str, timeout: float = 20.0) -> dict[str, Any]:
        path = self.out / f"{vcon_uuid}.vcon"
        deadline = time.monotonic() + timeout
        while not path.exists():
            if time.monotonic() > deadline:
                raise AssertionError(f"no vCon {vcon_uuid} within {timeout} s; log:\n{self.log.read_text()[-3000:]}")
            time.sleep(0.05)
        return assert_valid(json.loads(path.read_bytes()))

    def stop(self) -> str:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self._log_file.close()
        return self.log.read_text()


def client_result(proc: subprocess.Popen[str], timeout: float = 40.0) -> dict[str, Any]:
    out, err = proc.communicate(timeout=timeout)
    lines = [line for line in out.splitlines() if line.startswith("{")]
    assert lines, f"client exited {proc.returncode} without a result: {err[-2000:]}"
    return json.loads(lines[-1])


def recording(doc: dict[str, Any]) -> tuple[np.ndarray, int, datetime]:
    """The vCon's one recording dialog: (samples (n, channels), rate, start)."""
    dialogs = [d for d in doc["dialog"] if d["type"] == "recording"]
    assert len(dialogs) == 1, doc["dialog"]
    dialog = dialogs[0]
    data, rate = read_audio(b64url_decode(dialog["body"]))
    return data, rate, datetime.fromisoformat(dialog["start"].replace("Z", "+00:00"))


def lost_fraction(recorded: np.ndarray, source: np.ndarray, lag: int, min_run: int = 240) -> float:
    """Share of the sent (non-silent) audio missing from the recording, aligned at ``lag``:
    runs of exact zeros (gaps are filled with silence) and whatever is cut off at either end."""
    aligned = np.zeros(len(source))
    first = max(0, -lag)
    count = max(0, min(len(source) - first, len(recorded) - (first + lag)))
    aligned[first : first + count] = recorded[first + lag : first + lag + count]
    silent = np.concatenate(([False], aligned == 0, [False]))
    edges = np.flatnonzero(np.diff(silent.astype(np.int8)))
    missing = np.zeros(len(source), dtype=bool)
    for start, end in zip(edges[::2], edges[1::2], strict=True):
        if end - start >= min_run:
            missing[start:end] = True
    audible = source != 0
    return float(np.count_nonzero(missing & audible) / np.count_nonzero(audible))
