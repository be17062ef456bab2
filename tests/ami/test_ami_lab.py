"""Issue 12: the real Asterisk 22.10.1 lab traffic through the real CLI, one scene per scenario.

:class:`labreplay.LabServer` stands in for Asterisk (none can run here): it replays the lab's
events in real time (4x), answers the adapter's actions and writes the MixMonitor files the
way Asterisk does, each party's voice a tone of its own (alice 500 Hz, bob 1300 Hz, carol
2100 Hz), so the vCons' audio says whose voices each recording holds. Every vCon is checked
by both WG schemas (vconcheck).
"""

from __future__ import annotations

import base64
import json
import signal
import socket
import time
import urllib.request
from datetime import datetime
from functools import partial
from pathlib import Path

import numpy as np
import pytest
from audiocheck import read_audio
from labreplay import EARLIER, FINAL, RATE, VOICES, LabServer, scene
from test_ami_cli import by_linkedid, cdr, dialogs, parties, run_cli, stop, wait_for_vcons
from vconcheck import load_vcons

ALICE, BOB, CAROL = ("1001", "Alice Caller"), ("2000", "Bob Callee"), ("2003", "Carol Target")
LAB_FLAGS = ("--reconnect-min-s", "0.1", "--reconnect-max-s", "0.5", "--file-wait-s", "3")


def replay(tmp: Path, script: list[bytes], count: int, *flags: str, **server: object) -> dict[str, dict]:
    """Run the CLI against the scene until ``count`` vCons are out; the vCons by Linkedid."""
    return run_scene(tmp, script, count, *flags, **server)[0]


def run_scene(
    tmp: Path, script: list[bytes], count: int, *flags: str, **server: object
) -> tuple[dict[str, dict], LabServer]:
    monitor = tmp / "monitor"
    monitor.mkdir(exist_ok=True)
    lab = LabServer(script, monitor, **server)  # type: ignore[arg-type]
    with _threaded(lab) as port:
        proc = run_cli(tmp, port, *LAB_FLAGS, *flags)
        try:
            wait_for_vcons(proc, tmp / "out", count, timeout=60)
            time.sleep(0.3)  # a duplicate would land now
            stop(proc)
        finally:
            if proc.poll() is None:  # nothing left running when the test fails
                proc.kill()
                proc.wait(10)
    vcons = load_vcons(tmp / "out")
    assert len(vcons) == count, "exactly one vCon per call"
    return by_linkedid(vcons), lab


class _threaded:
    def __init__(self, server: LabServer) -> None:
        from amireplay import ThreadedReplay

        self.replay = ThreadedReplay(server)

    def __enter__(self) -> int:
        return self.replay.__enter__().port

    def __exit__(self, *exc: object) -> None:
        self.replay.__exit__(*exc)


def audio(dialog: dict) -> np.ndarray:
    data = base64.urlsafe_b64decode(dialog["body"] + "=" * (-len(dialog["body"]) % 4))
    samples, _ = read_audio(data, RATE)
    return samples


def voices(samples: np.ndarray, window_s: float = 0.25) -> list[set[str]]:
    """Per window: whose tones are in it (FFT magnitude well above the floor)."""
    if samples.ndim > 1:
        samples = samples.sum(axis=1)  # a stereo recording: both channels' voices
    n = int(window_s * RATE)
    out = []
    for i in range(0, len(samples) - n + 1, n):
        spectrum = np.abs(np.fft.rfft(samples[i : i + n] * np.hanning(n)))
        freqs = np.fft.rfftfreq(n, 1 / RATE)
        level = {who: spectrum[np.argmin(np.abs(freqs - f))] for who, f in VOICES.items()}
        out.append({who for who, v in level.items() if v > 0.05 * n * 0.2})
    return out


def heard_overall(samples: np.ndarray) -> set[str]:
    return set().union(*voices(samples))


def stretches(v: dict) -> list[tuple[set[str], np.ndarray]]:
    """(party names, audio) of every recorded channel that carries a mix of its own."""
    notes = next((a["body"] for a in v["attachments"] if a["purpose"] == "capture_notes"), {})
    out = []
    for i, d in enumerate(v["dialog"]):
        if d["type"] != "recording":
            continue
        samples = audio(d)
        per_channel = notes.get("channel_parties", {}).get(str(i))
        if per_channel:
            out += [(party_names(v, ch), samples[:, c]) for c, ch in enumerate(per_channel)]
        else:
            out.append((party_names(v, d["parties"]), samples))
    return out


def party_names(v: dict, indices: list) -> set[str]:
    flat = [i for x in indices for i in (x if isinstance(x, list) else [x])]
    return {v["parties"][i].get("name", "") for i in flat}


# -- everyday calls ---------------------------------------------------------------------------


def test_answered_call_both_voices_pbx_times(tmp_path: Path) -> None:
    calls = replay(tmp_path, scene(FINAL, "1795929777.0"), 1)
    v = calls["1795929777.0"]
    assert parties(v) == [ALICE, BOB]
    (rec,) = dialogs(v, "recording")
    assert party_names(v, rec["parties"]) == {"Alice Caller", "Bob Callee"}
    assert rec["duration"] == pytest.approx(8.0 / 4, abs=0.1)  # bridged 58.610 -> 06.617, at 4x
    assert all(w == {"alice", "bob"} for w in voices(audio(rec)))
    record = cdr(v)
    assert (record["disposition"], record["billsec"]) == ("ANSWERED", 2)
    assert record["asterisk_cdr"][0]["BillableSeconds"] == "8"


@pytest.mark.parametrize(
    ("linkedid", "disposition", "cause", "callee"),
    [
        ("1795929791.3", "busy", "User busy", ("2486", "Busy Line")),
        ("1795929796.7", "busy", "User busy", None),
        ("1795929802.9", "no-answer", "Normal Clearing", ("2480", "Ringing Line")),
        ("1795929813.13", "no-answer", "Interworking, unspecified", ("2480", "Ringing Line")),
    ],
    ids=["busy-486", "busy-app", "no-answer", "cancel"],
)
def test_unanswered_calls(tmp_path: Path, linkedid: str, disposition: str, cause: str, callee: tuple | None) -> None:
    v = replay(tmp_path, scene(FINAL, linkedid), 1)[linkedid]
    assert parties(v) == [ALICE] + ([callee] if callee else [])
    assert [d["disposition"] for d in dialogs(v, "incomplete")] == [disposition]
    assert not dialogs(v, "recording")
    assert cdr(v)["hangup_cause"] == cause


def test_overlapping_calls_keep_their_own_state(tmp_path: Path) -> None:
    ids = ("1795929950.68", "1795929950.70", "1795929950.72")
    calls = replay(tmp_path, scene(FINAL, *ids), 3)
    for linkedid in ids:
        v = calls[linkedid]
        assert parties(v) == [ALICE, BOB]
        (rec,) = dialogs(v, "recording")
        assert rec["duration"] == pytest.approx(8.0 / 4, abs=0.1)
        assert heard_overall(audio(rec)) == {"alice", "bob"}


# -- transfers ----------------------------------------------------------------------------------


def roles(v: dict) -> tuple[str, str, str]:
    (xfer,) = dialogs(v, "transfer")
    names = [p.get("name") for p in v["parties"]]
    return names[xfer["transferee"]], names[xfer["transferor"]], names[xfer["transfer_target"]]


def test_blind_transfer_by_ami(tmp_path: Path) -> None:
    v = replay(tmp_path, scene(FINAL, "1795929822.16"), 1)["1795929822.16"]
    assert roles(v) == ("Alice Caller", "Bob Callee", "Carol Target")
    assert not [e for e in v["dialog"] if e["type"] == "text"] and "hold" not in str(v.get("analysis", ""))
    history = [h for d in v["dialog"] for h in d.get("party_history", [])]
    assert not [h for h in history if h.get("event") in ("hold", "unhold")], "an Unhold without a Hold is no event"
    (rec,) = dialogs(v, "recording")  # on alice: bob, then carol
    assert party_names(v, rec["parties"]) == {"Alice Caller", "Bob Callee", "Carol Target"}
    heard = voices(audio(rec))
    assert heard[0] == {"alice", "bob"} and heard[-1] == {"alice", "carol"}
    assert not any({"bob", "carol"} <= w for w in heard)
    # option b left out the second alice spent ringing carol: put back as silence, the audio stays on
    # the call's timeline (bridged 43.297 .. hangup 59.304, at 4x)
    assert rec["duration"] == pytest.approx((59.304 - 43.297) / 4, abs=0.05)
    assert set() in voices(audio(rec), window_s=0.1)


def test_blind_transfer_by_the_caller(tmp_path: Path) -> None:
    v = replay(tmp_path, scene(FINAL, "1795929881.44"), 1)["1795929881.44"]
    assert roles(v) == ("Bob Callee", "Alice Caller", "Carol Target")
    # each recording lists the parties whose audio it holds: alice+bob, then carol+bob (two dialogs,
    # or one file with a channel each when the core's layout puts them together)
    found = sorted((sorted(names), sorted(heard_overall(samples))) for names, samples in stretches(v))
    assert found == [
        (["Alice Caller", "Bob Callee"], ["alice", "bob"]),
        (["Bob Callee", "Carol Target"], ["bob", "carol"]),
    ]


@pytest.mark.parametrize(("name", "linkedid"), [(FINAL, "1795929899.49"), (EARLIER, "1795929497.116")])
def test_attended_transfer_by_atxfer_through_a_local_channel(tmp_path: Path, name: str, linkedid: str) -> None:
    """AMI Atxfer = the DTMF feature code (*2): both legs share one Linkedid, carol sits behind Local/2003;1."""
    v = replay(tmp_path, scene(name, linkedid), 1)[linkedid]
    assert parties(v) == [ALICE, BOB, CAROL]
    assert roles(v) == ("Alice Caller", "Bob Callee", "Carol Target")
    (xfer,) = dialogs(v, "transfer")
    assert xfer["transferee"] != xfer["transfer_target"]
    (rec,) = dialogs(v, "recording")
    assert party_names(v, rec["parties"]) == {"Alice Caller", "Bob Callee", "Carol Target"}
    heard = voices(audio(rec))
    assert heard[0] == {"alice", "bob"} and heard[-1] == {"alice", "carol"}
    # the queued feature-code digits are not key presses of bob's
    history = [h for d in v["dialog"] for h in d.get("party_history", [])]
    assert not [h for h in history if h.get("event") in ("keydown", "keyup")]


def test_dtmf_and_a_real_hold_stay(tmp_path: Path) -> None:
    """The lab's "feature code" run: RFC 4733 digits 5 and #, then a SIP re-INVITE hold and its unhold."""
    v = replay(tmp_path, scene(FINAL, "1795929923.60"), 1)["1795929923.60"]
    assert not dialogs(v, "transfer")
    history = [h for d in v["dialog"] for h in d.get("party_history", [])]
    assert [h["event"] for h in history if h["event"] in ("hold", "unhold")] == ["hold", "unhold"]
    assert [h.get("button") for h in history if h["event"] == "keydown"] == ["5", "#"]


# -- Local channels -------------------------------------------------------------------------------


def test_local_only_originate_has_both_ends_and_is_recorded(tmp_path: Path) -> None:
    """Originate Local/3000@lab-local-caller -> Playback: two Local pairs, no endpoint; MixMonitor on a bridged half."""
    v = replay(tmp_path, scene(FINAL, "1795929844.21"), 1)["1795929844.21"]
    assert parties(v) == [("1001", "Alice Local"), ("3000", None)]
    (rec,) = dialogs(v, "recording")
    assert rec["duration"] == pytest.approx(8.0 / 4, abs=0.1)
    assert all(w == {"alice", "bob"} for w in voices(audio(rec)))  # tone-alice and tone-bob, the two ends
    assert party_names(v, rec["parties"]) == {"Alice Local", ""}


@pytest.mark.parametrize(
    ("linkedid", "disposition", "cause"),
    [("1795929858.28", "busy", "User busy"), ("1795929866.36", "no-answer", "Normal Clearing")],
    ids=["busy", "no-answer"],
)
def test_local_only_unanswered(tmp_path: Path, linkedid: str, disposition: str, cause: str) -> None:
    v = replay(tmp_path, scene(FINAL, linkedid), 1)[linkedid]
    exten = "3017" if disposition == "busy" else "3480"
    assert parties(v) == [("1001", "Alice Local"), (exten, None)]
    assert [d["disposition"] for d in dialogs(v, "incomplete")] == [disposition]
    assert cdr(v)["hangup_cause"] == cause


def test_click_to_call(tmp_path: Path) -> None:
    """Originate Local/2000@lab -> Playback: the originator (1001) and bob, recorded on bob's channel."""
    v = replay(tmp_path, scene(FINAL, "1795929937.63"), 1)["1795929937.63"]
    assert parties(v) == [("1001", "Alice Local"), BOB]
    (rec,) = dialogs(v, "recording")
    assert party_names(v, rec["parties"]) == {"Alice Local", "Bob Callee"}
    assert all(w == {"alice", "bob"} for w in voices(audio(rec)))


# -- MixMonitor in the dialplan -------------------------------------------------------------------


def test_dialplan_mixmonitor_is_not_doubled_in_adapter_mode(tmp_path: Path) -> None:
    lab_monitor = tmp_path / "monitor"
    v = replay(tmp_path, scene(FINAL, "1795929964.77"), 1)["1795929964.77"]
    (rec,) = dialogs(v, "recording")  # the dialplan's; the adapter started none
    assert [p.name for p in lab_monitor.iterdir()] == ["vcon-1795929964.77-1795929964.77.wav"]
    assert rec["duration"] == pytest.approx(8.0 / 4, abs=0.1)
    bridged = cdr(v)["answer"]
    assert rec["start"].replace("+00:00", "Z")[:21] == bridged[:21]  # first audio = the bridge, not MixMonitorStart


def test_dialplan_mode_starts_at_the_bridge(tmp_path: Path) -> None:
    v = replay(tmp_path, scene(EARLIER, "1795929308.88"), 1, "--mixmonitor", "dialplan")["1795929308.88"]
    (rec,) = dialogs(v, "recording")
    assert rec["start"].replace("+00:00", "Z")[:21] == cdr(v)["answer"][:21]
    assert heard_overall(audio(rec)) == {"alice", "bob"}


def test_split_directions_leave_no_mixed_file(tmp_path: Path) -> None:
    v = replay(tmp_path, scene(FINAL, "1795929777.0"), 1, "--split-directions")["1795929777.0"]
    assert sorted(p.name for p in (tmp_path / "monitor").iterdir()) == [
        "vcon-1795929777.0-rx.wav",
        "vcon-1795929777.0-tx.wav",
    ]
    recs = dialogs(v, "recording")
    channels = [audio(r)[:, c] for r in recs for c in range(audio(r).shape[1])]
    assert sorted(sorted(heard_overall(c)) for c in channels) == [["alice"], ["bob"]]  # one voice per channel


def test_monitor_files_deleted_once_the_vcon_is_on_disk(tmp_path: Path) -> None:
    calls = replay(tmp_path, scene(FINAL, "1795929777.0"), 1, "--delete-recordings")
    assert dialogs(calls["1795929777.0"], "recording")
    assert not list((tmp_path / "monitor").iterdir())


# -- the SIP fork beside the AMI path ------------------------------------------------------------


def test_the_recorders_own_fork_leg_is_no_call(tmp_path: Path) -> None:
    """Exten 2100 forks the call to PJSIP/vcon-recorder (its own Linkedid): one vCon, not two."""
    calls = replay(tmp_path, scene(EARLIER, "1795929349.94", "1795929350.96"), 1)
    assert set(calls) == {"1795929349.94"}


# -- restarts and crashes ---------------------------------------------------------------------


def test_recorder_sigkilled_mid_call_gives_one_vcon_one_mixmonitor(tmp_path: Path) -> None:
    """20 s call (10 s at 2x); the real vcon-capture process is SIGKILLed 3 s in and started again."""
    script = scene(EARLIER, "1795929538.127")
    hangup_request = next(i for i, b in enumerate(script) if b"HangupRequest" in b or b"Event: Cdr" in b)
    monitor = tmp_path / "monitor"
    monitor.mkdir()
    lab = LabServer(script, monitor, speed=2.0, hold={hangup_request: 2})
    started = []
    with _threaded(lab) as port:
        try:
            started.append(first := run_cli(tmp_path, port, *LAB_FLAGS))
            deadline = time.monotonic() + 30
            while not (lab.monitors and lab.monitors[0].written > 2 * RATE):
                assert time.monotonic() < deadline and first.poll() is None
                time.sleep(0.05)
            first.send_signal(signal.SIGKILL)
            first.wait(10)
            started.append(second := run_cli(tmp_path, port, *LAB_FLAGS))
            wait_for_vcons(second, tmp_path / "out", 1, timeout=60)
            time.sleep(0.3)
            err = stop(second)
        finally:
            for proc in started:  # nothing left running when the test fails
                if proc.poll() is None:
                    proc.kill()
                    proc.wait(10)
    (v,) = load_vcons(tmp_path / "out")
    assert "ami.call_resumed" in err
    assert [n for n, _ in lab.actions].count("MixMonitor") == 1, "never a second MixMonitor on the file"
    assert "Getvar" in [n for n, _ in lab.actions]
    assert parties(v) == [ALICE, BOB]
    (rec,) = dialogs(v, "recording")
    assert rec["duration"] == pytest.approx(lab.monitors[0].written / RATE, abs=0.01)
    assert rec["duration"] == pytest.approx(20.0 / 2, abs=0.15)  # the whole call once, no duplicated stretch
    assert all(w == {"alice", "bob"} for w in voices(audio(rec)))
    answer = lab.answered["1795929538.127"]
    assert cdr(v)["answer"].startswith(time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(answer)))
    assert not [a for a in v["attachments"] if a["purpose"] == "capture_notes" and "restart" in str(a["body"])]


def test_pbx_crash_ends_the_call_when_the_connection_dropped_and_repairs_the_wav(tmp_path: Path) -> None:
    """Asterisk SIGKILLed ~2 s into the call: the WAV it leaves says 0 frames; the call ends at the drop."""
    script = scene(EARLIER, "1795929624.133")
    calls, lab = run_scene(tmp_path, script, 1, crash_after_s=2.0, down_s=2.0)
    v = calls["1795929624.133"]
    (mon,) = lab.monitors
    assert mon.torn and lab.crashed_at is not None
    (rec,) = dialogs(v, "recording")
    assert rec["duration"] == pytest.approx(mon.written / RATE, abs=0.01)  # repaired from its length: never 0 s
    assert rec["duration"] > 1.5
    assert all(w == {"alice", "bob"} for w in voices(audio(rec)))
    end = datetime.fromisoformat(cdr(v)["end"].replace("Z", "+00:00")).timestamp()
    assert abs(end - lab.crashed_at) < 0.5  # when the connection dropped, not the reconnect 2 s later
    assert cdr(v)["hangup_cause"] == "hung up while AMI was disconnected"


# -- pause for PCI (issue 15) -------------------------------------------------------------------


def test_api_pause_mutes_the_mixmonitor_and_the_paused_audio_is_in_no_file(tmp_path: Path) -> None:
    """The recorder's API pauses an Asterisk call mid-call: the adapter mutes the MixMonitor
    (MixMonitorMute, as Asterisk's app_mixmonitor takes it: silence in place of the audio), the
    PBX's echo of it is not a second pause, and neither the PBX's file nor the vCon holds the
    voices of the paused stretch. The scene runs in real time (speed 1) so the call lasts 8 s."""
    monitor = tmp_path / "monitor"
    monitor.mkdir()
    lab = LabServer(scene(FINAL, "1795929777.0"), monitor, speed=1.0)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        api = f"http://127.0.0.1:{s.getsockname()[1]}"
    with _threaded(lab) as port:
        proc = run_cli(tmp_path, port, *LAB_FLAGS, "--api-listen", api.removeprefix("http://"))
        try:
            deadline = time.monotonic() + 30
            while not any(m.written > RATE for m in lab.monitors):  # a second of the call recorded
                assert time.monotonic() < deadline and proc.poll() is None, "no recording started"
                time.sleep(0.05)
            with urllib.request.urlopen(f"{api}/api/calls", timeout=10) as reply:
                (call,) = json.loads(reply.read())
            post = partial(urllib.request.urlopen, timeout=10)
            post(urllib.request.Request(f"{api}/api/calls/{call['vcon_uuid']}/pause", data=b'{"reason": "card"}'))
            time.sleep(2.0)
            post(urllib.request.Request(f"{api}/api/calls/{call['vcon_uuid']}/resume", data=b""))
            wait_for_vcons(proc, tmp_path / "out", 1, timeout=60)
            stop(proc)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait(10)
    mutes = [(f["Channel"], f["State"]) for name, f in lab.actions if name == "MixMonitorMute"]
    (mon,) = lab.monitors
    assert mutes == [(mon.channel, "1"), (mon.channel, "0")]
    (v,) = load_vcons(tmp_path / "out")
    (pause,) = next(a for a in v["attachments"] if a["purpose"] == "recording_pauses")["body"]
    assert (pause["by"], pause["reason"]) == ("api", "card")
    (rec,) = dialogs(v, "recording")
    for where, samples in (("vCon", audio(rec)), ("PBX file", read_audio(mon.paths["mix"].read_bytes(), RATE)[0])):
        heard = voices(samples)
        silent = [i for i, w in enumerate(heard) if not w]
        assert silent, f"{where}: the paused stretch still holds voices: {heard}"
        run = silent[-1] - silent[0] + 1
        assert run == len(silent) and 1.5 <= run * 0.25 <= 2.75, f"{where}: one silent stretch of ~2 s: {heard}"
        assert heard[0] == heard[-1] == {"alice", "bob"}, f"{where}: the voices before and after the pause"
