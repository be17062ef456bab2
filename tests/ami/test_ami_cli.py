"""End to end: the real CLI (`python -m capture ami ...`) against the loopback replay server.

The replay server stands in for Asterisk (none can run here): it replays the real
transcripts and, for each MixMonitor action, writes a WAV into the recordings directory as
Asterisk would on the PBX host. The vCons are read from --out and validated.
"""

from __future__ import annotations

import base64
import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from amireplay import RATE, ReplayServer, ThreadedReplay, transcript
from audiocheck import read_audio, voice_like, window_ncc, write_wav
from vconcheck import load_vcons

REPO = Path(__file__).resolve().parents[2]
ADAPTER_MODE = [
    "cacofonisk_ab_success_a_hangup.ami",
    "cacofonisk_ab_reject.ami",
    "cacofonisk_ab_a_cancel.ami",
    "cacofonisk_xfer_blind_abbcac.ami",
    "cacofonisk_xfer_abbcac.ami",
]


def run_cli(tmp: Path, port: int, *extra: str) -> subprocess.Popen:
    secret = tmp / "secret"
    if not secret.exists():
        secret.write_text("s3cret\n")
    cmd = [
        sys.executable, "-m", "capture", "ami",
        "--connect", f"127.0.0.1:{port}", "--username", "vcon", "--secret-file", str(secret),
        "--out", str(tmp / "out"), "--state-dir", str(tmp / "state"), "--recordings-dir", str(tmp / "monitor"),
        "--domain", "capture.example.com", "--cdr-wait-s", "0.3", "--file-wait-s", "2", *extra,
    ]  # fmt: skip
    return subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wait_for_vcons(proc: subprocess.Popen, out: Path, count: int, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while len(list(out.glob("*.vcon"))) < count:
        if proc.poll() is not None:
            raise AssertionError(f"CLI exited early ({proc.returncode}): {proc.stderr.read()}")
        if time.monotonic() > deadline:
            proc.kill()
            try:
                err = proc.communicate(timeout=10)[1]
            except subprocess.TimeoutExpired:  # its vCon workers may hold stderr a while longer
                err = "(stderr still held open)"
            raise AssertionError(f"only {len(list(out.glob('*.vcon')))} of {count} vCons: {err[-3000:]}")
        time.sleep(0.1)


def stop(proc: subprocess.Popen) -> str:
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err[-3000:]
    assert "Traceback" not in err, err
    return err


def by_linkedid(vcons: list[dict]) -> dict[str, dict]:
    out = {}
    for v in vcons:
        (cdr,) = [a for a in v["attachments"] if a["purpose"] == "cdr"]
        out[cdr["body"]["linkedid"].rsplit("-", 1)[-1]] = v  # without the SystemName prefix
    return out


def dialogs(v: dict, kind: str) -> list[dict]:
    return [d for d in v["dialog"] if d["type"] == kind]


def cdr(v: dict) -> dict:
    return next(a["body"] for a in v["attachments"] if a["purpose"] == "cdr")


def number(party: dict) -> str | None:
    """The party's number: its tel, or the extension of a ``sip:EXT@pbx`` identity (what the core
    makes of numbers too short to be a tel)."""
    if "tel" in party:
        return party["tel"]
    sip = party.get("sip", "")
    return sip.removeprefix("sip:").split("@")[0] if sip else None


def parties(v: dict) -> list[tuple]:
    return [(number(p), p.get("name")) for p in v["parties"]]


def recorded_audio(dialog: dict):
    data = base64.urlsafe_b64decode(dialog["body"] + "=" * (-len(dialog["body"]) % 4))
    audio, rate = read_audio(data, RATE)
    return audio[:, 0]


def test_real_transcripts_become_these_vcons(tmp_path: Path) -> None:
    (tmp_path / "monitor").mkdir()
    server = ReplayServer(
        [b for name in ADAPTER_MODE for b in transcript(name)], delay_s=0.003, recordings_dir=tmp_path / "monitor"
    )
    with ThreadedReplay(server) as replay:
        proc = run_cli(tmp_path, replay.port)
        wait_for_vcons(proc, tmp_path / "out", 6)
        stop(proc)
    calls = by_linkedid(load_vcons(tmp_path / "out"))
    assert set(calls) == {
        "1529936170.42",
        "1529936241.98",
        "1529936141.21",
        "1529998959.65",
        "1529941338.663",
        "1529941342.690",
    }

    answered = calls["1529936170.42"]
    assert parties(answered) == [("201", "Andrew Garza"), ("202", None)]
    (rec,) = dialogs(answered, "recording")
    assert rec["parties"] == [0, 1] and not dialogs(answered, "incomplete")
    reference = server.written["vcon-195176c06ab8-1529936170.42.wav"]
    scores = window_ncc(reference, recorded_audio(rec), RATE)
    assert scores and min(scores) >= 0.9
    assert rec["duration"] == pytest.approx(1.5)
    assert cdr(answered)["disposition"] == "ANSWERED" and cdr(answered)["hangup_cause"] == "Normal Clearing"
    assert cdr(answered)["ended_by"] == "SIP/150010001"

    busy = calls["1529936241.98"]
    assert parties(busy) == [("201", "Andrew Garza"), ("202", None)]
    assert [d["disposition"] for d in dialogs(busy, "incomplete")] == ["busy"]
    assert not dialogs(busy, "recording")
    assert (cdr(busy)["disposition"], cdr(busy)["hangup_cause"], cdr(busy)["billsec"]) == ("BUSY", "User busy", 0)

    cancelled = calls["1529936141.21"]
    assert [d["disposition"] for d in dialogs(cancelled, "incomplete")] == ["no-answer"]
    assert cdr(cancelled)["disposition"] == "NO ANSWER"

    blind = calls["1529998959.65"]
    assert parties(blind) == [("201", "Andrew Garza"), ("202", None), ("203", None)]
    (xfer,) = dialogs(blind, "transfer")
    assert (xfer["transferee"], xfer["transferor"], xfer["transfer_target"]) == (0, 1, 2)
    (rec,) = dialogs(blind, "recording")
    assert rec["parties"] == [0, [1, 2]] or rec["parties"] == [0, 1, 2]

    attended = calls["1529941338.663"]
    assert parties(attended) == [("201", "Andrew Garza"), ("202", "Christina Arroyo"), ("203", None)]
    (xfer,) = dialogs(attended, "transfer")
    assert (xfer["transferee"], xfer["transferor"], xfer["transfer_target"]) == (0, 1, 2)
    consultation = calls["1529941342.690"]
    assert parties(consultation) == [("202", "Christina Arroyo"), ("203", None)]
    assert not dialogs(consultation, "transfer") and dialogs(consultation, "recording")
    assert [n for n, _ in server.actions].count("MixMonitor") == 4


def test_pjsip_capture_with_dialplan_mixmonitor_and_cdr(tmp_path: Path) -> None:
    (tmp_path / "monitor").mkdir()
    # The dialplan's MixMonitor wrote this file on the PBX (its name carries the Uniqueid, FreePBX-style).
    audio = voice_like(2.0, RATE, seed=11)
    write_wav(tmp_path / "monitor" / "in-888-000-20240729-152459-asterisk-1722255899.0.wav", audio, RATE)
    server = ReplayServer(transcript("jasterng_pjsip_real_events.ami"), delay_s=0.003)
    with ThreadedReplay(server) as replay:
        proc = run_cli(tmp_path, replay.port, "--mixmonitor", "dialplan")
        wait_for_vcons(proc, tmp_path / "out", 1)
        stop(proc)
    assert "MixMonitor" not in [n for n, _ in server.actions]
    calls = by_linkedid(load_vcons(tmp_path / "out"))
    # the finished call, plus the two call fragments still up at shutdown (never lost)
    assert set(calls) == {"1722255899.0", "1722860694.14", "1725887897.130"}
    call = calls["1722255899.0"]
    assert parties(call) == [("000", None)]
    (rec,) = dialogs(call, "recording")
    assert min(window_ncc(audio, recorded_audio(rec), RATE)) >= 0.9
    record = cdr(call)
    (raw,) = record["asterisk_cdr"]
    assert raw["Disposition"] == "ANSWERED" and raw["LastApplication"] == "Hangup" and raw["Duration"] == "3"
    assert record["disposition"] == "ANSWERED" and record["hangup_cause_code"] == 16
    # still up at shutdown: its vCon says why it has no recording
    interrupted = calls["1725887897.130"]
    assert not dialogs(interrupted, "recording")
    (notes,) = [a["body"] for a in interrupted["attachments"] if a["purpose"] == "capture_notes"]
    assert notes["missing_media"] == [{"stream": "mixmonitor", "reason": "no MixMonitor ran on this call"}]


def test_dropped_connection_mid_call_gives_exactly_one_vcon(tmp_path: Path) -> None:
    (tmp_path / "monitor").mkdir()
    server = ReplayServer(
        transcript("cacofonisk_xfer_blind_abbcac.ami"),
        delay_s=0.003,
        drop_after=45,  # right after the BlindTransfer: B's Hangup (event 46) is lost with the connection
        lost_on_drop=2,
        recordings_dir=tmp_path / "monitor",
    )
    with ThreadedReplay(server) as replay:
        proc = run_cli(tmp_path, replay.port, "--reconnect-min-s", "0.05")
        wait_for_vcons(proc, tmp_path / "out", 1)
        time.sleep(1.0)  # a duplicate would land now
        err = stop(proc)
    assert server.logins == 2
    (vcon,) = load_vcons(tmp_path / "out")
    assert parties(vcon) == [("201", "Andrew Garza"), ("202", None), ("203", None)]
    assert dialogs(vcon, "transfer") and dialogs(vcon, "recording")
    assert "ami.connection_lost" in err and "ami.resync channels=" in err


def test_wrong_secret_exits_3_with_one_line(tmp_path: Path) -> None:
    (tmp_path / "secret").write_text("not-it\n")
    server = ReplayServer([])
    with ThreadedReplay(server) as replay:
        proc = run_cli(tmp_path, replay.port)
        _, err = proc.communicate(timeout=30)
    assert proc.returncode == 3
    assert "Traceback" not in err
    (line,) = [x for x in err.splitlines() if "cannot start" in x]
    refused = f"AMI login refused for user 'vcon' at 127.0.0.1:{replay.port}: Authentication failed"
    assert line == f"vcon-capture: cannot start: {refused}"


def test_split_directions_give_one_channel_per_party(tmp_path: Path) -> None:
    """MixMonitor r()/t() files: the caller's voice and what the caller heard, each its own channel."""
    (tmp_path / "monitor").mkdir()
    server = ReplayServer(
        transcript("cacofonisk_ab_success_a_hangup.ami"), delay_s=0.003, recordings_dir=tmp_path / "monitor"
    )
    with ThreadedReplay(server) as replay:
        proc = run_cli(tmp_path, replay.port, "--split-directions")
        wait_for_vcons(proc, tmp_path / "out", 1)
        stop(proc)
    (vcon,) = load_vcons(tmp_path / "out")
    (rec,) = dialogs(vcon, "recording")
    assert rec["parties"] == [0, 1]
    data = base64.urlsafe_b64decode(rec["body"] + "=" * (-len(rec["body"]) % 4))
    audio, _ = read_audio(data, RATE)
    assert audio.shape[1] == 2
    base = "vcon-195176c06ab8-1529936170.42"
    caller, heard = server.written[f"{base}-rx.wav"], server.written[f"{base}-tx.wav"]
    assert min(window_ncc(caller, audio[:, 0], RATE)) >= 0.9
    assert min(window_ncc(heard, audio[:, 1], RATE)) >= 0.9
    # separation: the caller's channel does not carry what the caller heard
    assert max(window_ncc(heard, audio[:, 0], RATE)) < 0.5


def test_json_log_lines_about_a_call_carry_its_vcon_uuid(tmp_path: Path) -> None:
    """Issue 10: every log line about a call (adapter, tracker, pipeline) names the call's vCon."""
    (tmp_path / "monitor").mkdir()
    script = [b for name in ADAPTER_MODE[-2:] for b in transcript(name)]  # blind + attended: moves, transfers
    server = ReplayServer(script, delay_s=0.003, recordings_dir=tmp_path / "monitor")
    with ThreadedReplay(server) as replay:
        proc = run_cli(tmp_path, replay.port, "--log-format", "json", "--log-level", "debug")
        wait_for_vcons(proc, tmp_path / "out", 3)
        err = stop(proc)
    lines = [json.loads(line) for line in err.splitlines() if line.startswith("{")]
    uuids = {v["uuid"] for v in load_vcons(tmp_path / "out")}
    about_calls = [entry for entry in lines if "call_id" in entry]
    events = {entry["message"] for entry in about_calls}
    assert {"ami.call_started", "ami.channel_moved", "ami.call_finished", "pipeline.call_started"} <= events
    for entry in about_calls:
        assert entry.get("vcon_uuid") in uuids, entry
