"""A full disk loses nothing and moves nothing in time (on a real, small tmpfs the tests fill).

Unit level: a recording whose writes fail keeps the audio (bounded) and writes it at its true
place once space returns; past the bound the oldest audio becomes silence at its place, and
says how much. End to end: the real service (scripted calls) on a 4 MB filesystem filled
mid-call: /readyz goes 503 and back by itself, the calls in flight (and one started while the
disk was full) end as exactly one vCon each when space returns, aligned in time.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import soundfile as sf
from audiocheck import read_audio, window_ncc
from scripted import pcm
from smallfs import fill, free_bytes, small_fs
from vconcheck import assert_valid

from capture.journal import CallJournal, read_journal
from capture.recording import StreamRecording
from capture.vcon.content import b64url_decode

from capture import events as ev  # isort: skip

RATE = 8000
FRAME = 160
SCRIPTED = Path(__file__).resolve().parents[1] / "scripted.py"


def tone(seconds: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (rng.standard_normal(int(seconds * RATE)) * 4000).astype(np.int16)


def play(rec: StreamRecording, audio: np.ndarray, frames: range) -> None:
    for i in frames:
        rec.write_at(i * FRAME, audio[i * FRAME : (i + 1) * FRAME])


def test_refused_writes_are_held_and_land_at_their_true_place(tmp_path):
    audio = tone(6.0, 1)
    with small_fs(tmp_path / "fs", "256k") as fs:
        rec = StreamRecording(fs / "calls" / "a.wav", RATE, call_id="c", stream_id="a", party="a")
        second = RATE // FRAME
        play(rec, audio, range(0, 2 * second))  # 0-2 s written
        filler = fill(fs)
        play(rec, audio, range(2 * second, 4 * second))  # 2-4 s: the disk refuses
        assert rec.write_errors and not rec.settled
        filler.unlink()
        play(rec, audio, range(4 * second, 6 * second))
        rec.close()
        assert rec.settled and rec.lost_samples == 0
        data, rate = sf.read(fs / "calls" / "a.wav", dtype="int16")
    assert rate == RATE and len(data) == len(audio)
    assert np.array_equal(data, audio), "every second in its place, nothing lost"


def test_past_the_bound_the_oldest_audio_becomes_silence_in_its_place(tmp_path):
    audio = tone(8.0, 2)
    second = RATE // FRAME
    with small_fs(tmp_path / "fs", "256k") as fs:
        rec = StreamRecording(fs / "a.wav", RATE, call_id="c", stream_id="a", party="a", backlog_s=2.0)
        play(rec, audio, range(0, 2 * second))
        filler = fill(fs)
        play(rec, audio, range(2 * second, 6 * second))  # 4 s refused, 2 s may be held
        filler.unlink()
        play(rec, audio, range(6 * second, 8 * second))
        rec.close()
        data, _ = sf.read(fs / "a.wav", dtype="int16")
    assert len(data) == len(audio), "the timeline keeps its length"
    assert abs(rec.lost_s - 2.0) <= 0.05, rec.lost_s
    # The filesystem may take a frame or two more before it refuses: those are real audio in place.
    window = slice(2 * RATE, 4 * RATE)
    silent = data[window] == 0
    assert np.array_equal(data[window][~silent], audio[window][~silent]), "audio, or silence, never shifted"
    assert abs(silent.sum() - rec.lost_samples) <= 2, (silent.sum(), rec.lost_samples)
    assert np.array_equal(data[4 * RATE :], audio[4 * RATE :]), "what was held lands at its own place"
    assert np.array_equal(data[: 2 * RATE], audio[: 2 * RATE])


def test_journal_lines_wait_for_space_and_never_raise(tmp_path):
    from datetime import UTC, datetime

    at = datetime.now(UTC)
    with small_fs(tmp_path / "fs", "256k") as fs:
        filler = fill(fs)
        journal = CallJournal(fs / "calls" / "u1")
        journal.started("u1", ev.CallStarted(call_id="c", at=at, source="test"))
        journal.event(ev.PartyJoined(call_id="c", at=at, party="a", tel="+15551230001"))
        assert not journal.complete and journal.last_error
        filler.unlink()
        journal.event(ev.CallAnswered(call_id="c", at=at))
        journal.close()
        contents = read_journal(fs / "calls" / "u1")
    assert journal.complete
    assert contents is not None and [e.kind for e in contents.events] == ["party_joined", "call_answered"]


# -- the real service -------------------------------------------------------------------


def start(tmp: Path, fs: Path, port: int, *flags: str) -> subprocess.Popen:
    args = [
        sys.executable, str(SCRIPTED),
        f"--out={fs / 'out'}", f"--state-dir={fs / 'state'}", "--domain=test.example",
        f"--metrics-listen=127.0.0.1:{port}", "--min-free-mb=1", "--log-format=json", *flags,
    ]  # fmt: skip
    log = (tmp / "service.log").open("ab")
    return subprocess.Popen(args, stdout=subprocess.PIPE, stderr=log, text=True)


def ready(port: int) -> int:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2) as resp:
            return resp.status
    except urllib.error.HTTPError as exc:
        return exc.code
    except OSError:
        return 0


async def until(predicate, within_s: float, what: str) -> None:
    deadline = time.monotonic() + within_s
    while not predicate():
        assert time.monotonic() < deadline, what
        await asyncio.sleep(0.1)


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def test_disk_full_mid_call_the_service_refuses_new_calls_then_recovers_losing_nothing(tmp_path):
    port = free_port()
    with small_fs(tmp_path / "fs", "4m") as fs:
        proc = start(tmp_path, fs, port, "--scenario=timed", "--calls=2", "--call-seconds=10", "--gap-s=4")
        first = proc.stdout.readline()
        assert first.startswith("call started"), first
        await until(lambda: ready(port) == 200, 10, "never ready")
        await asyncio.sleep(2.0)
        filler = fill(fs)  # full: below the 1 MB floor, and every write refused
        await until(lambda: ready(port) == 503, 5, "/readyz did not report the full disk")
        second = await asyncio.to_thread(proc.stdout.readline)  # started while the disk is full
        assert second.startswith("call started"), second
        await asyncio.sleep(3.0)
        filler.unlink()
        await until(lambda: ready(port) == 200, 5, "/readyz did not recover by itself")
        await until(lambda: len(list((fs / "out").glob("*.vcon"))) == 2, 30, "both calls end as vCons")
        outbox = list((fs / "state" / "spool" / "outbox").iterdir())
        proc.terminate()
        assert proc.wait(20) == 0
        docs = [assert_valid(json.loads(p.read_bytes())) for p in sorted((fs / "out").glob("*.vcon"))]
        assert free_bytes(fs) > 0
    assert not [p for p in outbox if p.name.endswith(".tmp")], "no half-written spool entry"
    log = (tmp_path / "service.log").read_text()
    assert "Traceback" not in log, log[-3000:]
    events = [json.loads(line)["message"] for line in log.splitlines() if line.startswith("{")]
    for seen in ("disk.low_refusing_calls", "recording.write_failed", "disk.space_back_accepting_calls"):
        assert seen in events, f"{seen} not logged: the disk was not really full"
    for doc in docs:
        (rec,) = [d for d in doc["dialog"] if d["type"] == "recording"]
        audio, rate = read_audio(b64url_decode(rec["body"]))
        assert abs(len(audio) / rate - 10.0) < 0.3, len(audio) / rate
        seed = int(doc["parties"][0]["tel"][-1])
        sent = pcm(10.0, seed) / 32768
        scores = window_ncc(sent[: len(audio)], audio[:, 0], rate, max_lag_s=0.01)
        assert min(scores) > 0.99, scores  # every second in its place, the outage included
        notes = [a["body"] for a in doc["attachments"] if a["purpose"] == "capture_notes"]
        assert not notes or "audio_lost_disk_full" not in notes[0], "held in memory, nothing lost"
