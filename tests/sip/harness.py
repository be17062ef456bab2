"""Running the real CLI as a SIP recorder, and the media the test peers send to it.

Everything here talks to real processes over loopback: the recorder is
``python -m capture sip`` in a subprocess, the peers are sipp, baresip and pjsua2.
"""

from __future__ import annotations

import base64
import json
import os
import random
import signal
import socket
import struct
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from audiocheck import read_audio
from vconcheck import assert_valid

from capture.media.g711 import decode_alaw, decode_ulaw, encode_alaw, encode_ulaw
from capture.media.rtp import build_rtp

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    """A port free for both UDP and TCP right now."""
    for _ in range(50):
        port = random.randrange(30000, 60000)
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u, socket.socket() as t:
            try:
                u.bind(("127.0.0.1", port))
                t.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free port")


@dataclass
class Recorder:
    """``python -m capture sip`` on a free loopback port."""

    out: Path
    port: int
    proc: subprocess.Popen[bytes]
    log: Path

    @classmethod
    def start(cls, tmp: Path, **settings: Any) -> Recorder:
        port = free_port()
        out = tmp / "vcons"
        log = tmp / "recorder.log"
        rtp_min = random.randrange(10000, 60000, 1000)
        args = [sys.executable, "-m", "capture", "sip", "--listen", f"127.0.0.1:{port}", "--out", str(out),
                "--state-dir", str(tmp / "state"), "--domain", "test.example", "--log-level", "debug",
                "--rtp-port-min", str(rtp_min), "--rtp-port-max", str(rtp_min + 998)]  # fmt: skip
        for key, value in settings.items():
            args += ["--" + key.replace("_", "-"), str(value)]
        proc = subprocess.Popen(args, stdout=log.open("wb"), stderr=subprocess.STDOUT, cwd=ROOT)
        rec = cls(out, port, proc, log)
        deadline = time.monotonic() + 20
        while b"service.ready" not in log.read_bytes():
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"recorder did not start:\n{log.read_text()}")
            time.sleep(0.05)
        return rec

    def vcons(self, count: int, timeout: float = 15.0) -> list[dict[str, Any]]:
        """Wait for ``count`` vCons; each is validated."""
        deadline = time.monotonic() + timeout
        while True:
            files = sorted(self.out.glob("*.vcon")) if self.out.exists() else []
            if len(files) >= count or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        assert len(files) == count, f"expected {count} vCons, got {len(files)}\n{self.log.read_text()[-4000:]}"
        return [assert_valid(json.loads(f.read_bytes())) for f in files]

    def stop(self) -> str:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.log.read_text()


def recording_channels(vcon: dict[str, Any]) -> tuple[dict[int, np.ndarray], int, dict[str, Any]]:
    """{party index: samples} of the vCon's recording dialog (one WAV, a channel per party)."""
    dialogs = [d for d in vcon["dialog"] if d["type"] == "recording"]
    assert len(dialogs) == 1, [d["type"] for d in vcon["dialog"]]
    dialog = dialogs[0]
    data, rate = read_audio(base64.urlsafe_b64decode(dialog["body"] + "=" * (-len(dialog["body"]) % 4)))
    parties = dialog["parties"] if isinstance(dialog["parties"], list) else [dialog["parties"]]
    if data.shape[1] == 1:  # one channel holding everyone listed (a mixed stream): under the first
        return {parties[0]: data[:, 0]}, rate, dialog
    return {p if isinstance(p, int) else p[0]: data[:, i] for i, p in enumerate(parties)}, rate, dialog


def cdr(vcon: dict[str, Any]) -> dict[str, Any]:
    att = next(a for a in vcon["attachments"] if a.get("purpose") == "cdr")
    body = att["body"]
    return body if isinstance(body, dict) else json.loads(body)


# -- media -------------------------------------------------------------------------------

CODECS = {0: (encode_ulaw, decode_ulaw), 8: (encode_alaw, decode_alaw)}


def g711_frames(signal_: np.ndarray, payload_type: int, ptime_ms: int = 20) -> tuple[list[bytes], np.ndarray]:
    """(payload per packet, what a perfect receiver decodes) for float audio at 8 kHz."""
    encode, decode = CODECS[payload_type]
    pcm = np.asarray(np.clip(signal_, -1, 1) * 32767, dtype=np.int16)
    step = 8 * ptime_ms
    pcm = pcm[: len(pcm) // step * step]
    coded = encode(pcm)
    return [coded[i : i + step] for i in range(0, len(coded), step)], decode(coded).astype(float) / 32768


def write_rtp_pcap(path: Path, payloads: list[bytes], payload_type: int, *, ssrc: int = 0x5EED,
                   ptime_ms: int = 20, dtmf: tuple[int, float] | None = None, dtmf_lag_s: float = 0.0,
                   ticks: int | None = None, first: tuple[int, int] = (0, 0)) -> Path:  # fmt: skip
    """An Ethernet/IPv4/UDP/RTP capture sipp's play_pcap_audio can replay.

    ``dtmf`` = (event, at seconds) adds an RFC 4733 key press (PT 101) whose timestamp says ``at``,
    sent ``dtmf_lag_s`` later than that. ``ticks``: RTP timestamp step per packet (8 per ms by
    default); ``first``: the first packet's (sequence number, timestamp).
    """
    packets: list[tuple[float, bytes]] = []
    step = ticks if ticks is not None else 8 * ptime_ms
    seq0, ts0 = first
    for i, payload in enumerate(payloads):
        packets.append((i * ptime_ms / 1000, build_rtp(payload_type, seq0 + i, ts0 + i * step, ssrc, payload,
                                                       marker=i == 0)))  # fmt: skip
    if dtmf is not None:
        event, at = dtmf
        seq, ts = seq0 + len(payloads), ts0 + int(at * 8000)
        for k in range(1, 9):
            end = k >= 6
            body = bytes([event, (0x80 if end else 0) | 10]) + (min(k, 6) * 160).to_bytes(2, "big")
            sent_at = at + dtmf_lag_s + min(k, 6) * 0.02 + (k - 6) * 0.001 * end
            packets.append((sent_at, build_rtp(101, seq, ts, ssrc, body)))
            seq += 1
    return write_pcap(path, sorted(packets, key=lambda p: p[0]))


def write_pcap(path: Path, packets: list[tuple[float, bytes]]) -> Path:
    """(send time in seconds, RTP packet) as a capture sipp plays in this order at these times."""
    out = [struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1)]
    for t, rtp in packets:
        udp = struct.pack("!HHHH", 40000, 40000, 8 + len(rtp), 0) + rtp
        ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), 0, 0, 64, 17, 0, bytes([127, 0, 0, 1]),
                         bytes([127, 0, 0, 1])) + udp  # fmt: skip
        frame = b"\x00" * 12 + b"\x08\x00" + ip
        out.append(struct.pack("<IIII", int(t), int((t % 1) * 1e6), len(frame), len(frame)) + frame)
    path.write_bytes(b"".join(out))
    return path


def run_sipp(tmp: Path, scenario: str, recorder: Recorder, *, calls: int = 1, rate: int = 10, timeout: int = 40,
             transport: str = "u1") -> subprocess.CompletedProcess[bytes]:  # fmt: skip
    """sipp as the caller (``transport`` u1 = UDP, t1 = one TCP connection)."""
    path = tmp / f"scenario-{random.randrange(1 << 30)}.xml"
    path.write_text(scenario)
    local = free_port()
    args = ["sipp", "-sf", str(path), "-s", "rec", f"127.0.0.1:{recorder.port}", "-i", "127.0.0.1",
            "-p", str(local), "-mp", str(free_port() & ~1), "-m", str(calls), "-l", str(calls),
            "-r", str(rate), "-t", transport, "-nostdin", "-timeout", str(timeout), "-timeout_error", "-trace_err",
            "-error_file", str(tmp / "sipp_errors.log")]  # fmt: skip
    return subprocess.run(args, capture_output=True, cwd=tmp, timeout=timeout + 15, env={**os.environ, "TERM": "dumb"})
