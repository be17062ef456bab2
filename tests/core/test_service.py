"""The service as a process: kills, restarts, signals, and bad input at the command line."""

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from audiocheck import read_audio, window_ncc
from conserver import Conserver
from scripted import RATE, pcm
from vconcheck import assert_valid

from capture.vcon.content import b64url_decode

SCRIPTED = Path(__file__).resolve().parents[1] / "scripted.py"


def start(tmp_path: Path, *flags: str) -> subprocess.Popen:
    return subprocess.Popen(
        [
            sys.executable,
            str(SCRIPTED),
            f"--out={tmp_path / 'out'}",
            f"--state-dir={tmp_path / 'state'}",
            "--domain=test.example",
            "--retry-max-s=0.3",
            *flags,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


async def wait_for(predicate, within_s=20.0):
    deadline = time.monotonic() + within_s
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.05)


def stop(proc: subprocess.Popen) -> tuple[int, str]:
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=20)
    return proc.returncode, err


async def test_sigkill_between_spool_and_acknowledgement_loses_nothing(tmp_path):
    server = Conserver(hold=True)
    url = await server.start()
    proc = start(tmp_path, "--scenario=busy", f"--conserver-url={url}")
    outbox = tmp_path / "state" / "spool" / "outbox"
    await wait_for(lambda: server.requests >= 1)
    spooled = list(outbox.glob("*.vcon"))
    assert len(spooled) == 1, "the vCon is on disk before delivery is tried"
    proc.kill()
    proc.wait()
    server.release()
    proc = start(tmp_path, "--calls=0", f"--conserver-url={url}")
    await wait_for(lambda: server.received)
    code, err = stop(proc)
    await server.stop()
    assert code == 0, err
    uuid = spooled[0].stem
    assert dict(server.received) == {uuid: 1}
    assert not list(outbox.glob("*.vcon"))
    assert_valid(json.loads((tmp_path / "out" / f"{uuid}.vcon").read_bytes()))


async def test_sigkill_mid_call_is_recovered_with_audio_up_to_the_kill(tmp_path):
    proc = start(tmp_path, "--scenario=midcall")
    line = await asyncio.to_thread(proc.stdout.readline)
    assert line.startswith("call started")
    uuid = line.split()[-1]
    started = time.monotonic()
    await asyncio.sleep(2.5)
    proc.kill()
    lived = time.monotonic() - started
    proc.wait()
    assert not list((tmp_path / "out").glob("*.vcon"))
    proc = start(tmp_path, "--calls=0")
    await wait_for(lambda: (tmp_path / "out" / f"{uuid}.vcon").exists())
    code, err = stop(proc)
    assert code == 0, err
    doc = assert_valid(json.loads((tmp_path / "out" / f"{uuid}.vcon").read_bytes()))
    rec = doc["dialog"][0]
    assert rec["type"] == "recording"
    assert abs(rec["duration"] - lived) < 0.5 + 1.0, (rec["duration"], lived)  # + the unflushed second
    audio, rate = read_audio(b64url_decode(rec["body"]))
    sent = pcm(rec["duration"] + 1, 6) / 32768
    assert min(window_ncc(sent[: len(audio)], audio[:, 0], rate, max_lag_s=0.01)) > 0.99
    notes = [a for a in doc["attachments"] if a["purpose"] == "capture_notes"][0]["body"]
    assert notes == {"ended_by_restart": True}
    assert doc["attachments"][-2]["body"]["hangup_cause"] == "recorder restarted"
    assert not list((tmp_path / "state" / "calls").iterdir())


async def test_sigterm_finishes_active_calls_and_exits_zero(tmp_path):
    proc = start(tmp_path, "--scenario=midcall")
    line = await asyncio.to_thread(proc.stdout.readline)
    uuid = line.split()[-1]
    await asyncio.sleep(1.0)
    code, err = stop(proc)
    assert code == 0, err
    assert "Traceback" not in err
    assert (tmp_path / "out" / f"{uuid}.vcon").exists()


def cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "capture", *args], capture_output=True, text=True, cwd=cwd, timeout=60)


def assert_one_line_error(result: subprocess.CompletedProcess, code: int, *words: str) -> None:
    assert result.returncode == code, result
    assert "Traceback" not in result.stderr + result.stdout
    text = (result.stderr or result.stdout).strip()
    assert len(text.splitlines()) == 1, text
    for word in words:
        assert word in text


def test_broken_config_file_is_one_line_and_exit_2(tmp_path):
    config = tmp_path / "c.toml"
    config.write_text("out = [unclosed\n")
    assert_one_line_error(cli("run", "--config", str(config)), 2, str(config), "not valid TOML")


def test_unknown_and_malformed_settings_are_named(tmp_path):
    config = tmp_path / "c.toml"
    config.write_text('outt = "x"\n')
    assert_one_line_error(cli("run", "--config", str(config)), 2, "outt", "unknown setting")
    config.write_text('layout = "mono"\n')
    assert_one_line_error(cli("run", "--config", str(config)), 2, "layout", "mono")
    result = subprocess.run(
        [sys.executable, "-m", "capture", "run", "--config", str(config)],
        capture_output=True,
        text=True,
        env={**os.environ, "VCON_CAPTURE_LAYOUT": "files", "VCON_CAPTURE_RETRY_MAX_S": "soon"},
        timeout=60,
    )
    assert_one_line_error(result, 2, "VCON_CAPTURE_RETRY_MAX_S")
    assert_one_line_error(cli("run", "--media-url-base", "http://insecure"), 2, "media_url_base", "https")


def test_missing_config_file_is_exit_2(tmp_path):
    assert_one_line_error(cli("run", "--config", str(tmp_path / "nope.toml")), 2, "cannot read config file")


def test_unusable_output_directory_is_exit_2(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    assert_one_line_error(
        cli("run", "--adapters=", "--out", str(blocker / "sub"), "--state-dir", str(tmp_path / "s")), 2, "out"
    )


def test_validate_reports_non_json_and_missing_files(tmp_path):
    bad = tmp_path / "bad.vcon"
    bad.write_text("{not json")
    assert_one_line_error(cli("validate", str(bad)), 1, "not JSON")
    assert_one_line_error(cli("validate", str(tmp_path / "missing.vcon")), 1, "cannot read")


def test_validate_exit_codes_and_paths(tmp_path):
    good = {
        "vcon": "0.4.0",
        "uuid": "01a20a70-582c-807b-8305-1e11b6ccbc27",
        "created_at": "2026-01-01T00:00:00Z",
        "parties": [{}],
        "dialog": [{"type": "incomplete", "start": "2026-01-01T00:00:00Z", "parties": [0], "disposition": "busy"}],
    }
    (tmp_path / "good.vcon").write_text(json.dumps(good))
    good["dialog"][0]["parties"] = [3]
    (tmp_path / "bad.vcon").write_text(json.dumps(good))
    result = cli("validate", str(tmp_path / "good.vcon"))
    assert result.returncode == 0 and "valid" in result.stdout
    result = cli("validate", str(tmp_path / "good.vcon"), str(tmp_path / "bad.vcon"))
    assert result.returncode == 1
    assert "$.dialog[0].parties[0]: party index 3 out of range" in result.stdout


def test_recovered_wav_header_after_a_killed_writer(tmp_path):
    script = (
        "import sys, time, numpy as np\n"
        "from pathlib import Path\n"
        "from capture.recording import StreamRecording\n"
        "r = StreamRecording(Path(sys.argv[1]), 8000, call_id='c', stream_id='s', party='p')\n"
        "r.append(np.full(8000 * 3, 1000, dtype=np.int16))\n"
        "r.flush()\n"
        "print('written', flush=True)\n"
        "time.sleep(60)\n"
    )
    path = tmp_path / "killed.wav"
    proc = subprocess.Popen([sys.executable, "-c", script, str(path)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "written"
    proc.kill()
    proc.wait()
    from capture.recording import repair_wav

    assert repair_wav(path) == 8000 * 3
    audio, rate = read_audio(path)
    assert rate == RATE and len(audio) == 8000 * 3 and np.all(audio[:, 0] > 0)


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def test_metrics_health_and_readiness(tmp_path):
    import aiohttp

    port = free_port()
    proc = start(tmp_path, "--scenario=busy", "--calls=3", f"--metrics-listen=127.0.0.1:{port}")
    base = f"http://127.0.0.1:{port}"
    async with aiohttp.ClientSession() as http:

        async def get(path):
            try:
                async with http.get(base + path) as resp:
                    return resp.status, await resp.text()
            except aiohttp.ClientConnectionError:
                return None, ""

        await wait_for(lambda: len(list((tmp_path / "out").glob("*.vcon"))) == 3)
        for _ in range(100):
            status, text = await get("/metrics")
            if status == 200 and 'vcon_capture_vcons_delivered_total{sink="dir"} 3.0' in text:
                break
            await asyncio.sleep(0.1)
        assert 'vcon_capture_calls_started_total{adapter="scripted"} 3.0' in text
        assert 'vcon_capture_calls_ended_total{adapter="scripted",outcome="busy"} 3.0' in text
        assert 'vcon_capture_vcons_emitted_total{adapter="scripted"} 3.0' in text
        assert 'vcon_capture_end_to_vcon_seconds_count{adapter="scripted"} 3.0' in text
        assert "vcon_capture_spool_depth 0.0" in text
        assert (await get("/healthz"))[0] == 200
        assert (await get("/readyz"))[0] == 200
    code, err = stop(proc)
    assert code == 0, err


def test_metrics_port_in_use_is_exit_3(tmp_path):
    import socket

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = cli(
            "run",
            "--adapters=",
            f"--out={tmp_path / 'o'}",
            f"--state-dir={tmp_path / 's'}",
            f"--metrics-listen=127.0.0.1:{port}",
        )
    assert_one_line_error(result, 3, "metrics_listen")


async def test_conserver_down_during_calls_and_up_30s_later_gets_each_vcon_once(tmp_path):
    port = free_port()
    proc = start(tmp_path, "--scenario=answered", "--calls=3", f"--conserver-url=http://127.0.0.1:{port}")
    outbox = tmp_path / "state" / "spool" / "outbox"
    await wait_for(lambda: len(list((tmp_path / "out").glob("*.vcon"))) == 3)
    assert len(list(outbox.glob("*.vcon"))) == 3, "kept in the spool while the conserver is down"
    await asyncio.sleep(30)
    server = Conserver()
    await server.start(port)
    await wait_for(lambda: len(server.received) == 3, within_s=30)
    await wait_for(lambda: not list(outbox.glob("*.vcon")))
    code, err = stop(proc)
    await server.stop()
    assert code == 0, err
    assert set(server.received.values()) == {1}
    assert set(server.received) == {p.stem for p in (tmp_path / "out").glob("*.vcon")}


async def test_no_secret_in_logs_or_vcons(tmp_path):
    token = "tok-9f8e7d6c5b4a"
    (tmp_path / "token").write_text(token + "\n")
    server = Conserver(token=token)
    url = await server.start()
    proc = start(
        tmp_path,
        "--scenario=answered",
        f"--conserver-url={url}",
        f"--conserver-token-file={tmp_path / 'token'}",
        "--log-level=debug",
        "--log-format=json",
    )
    await wait_for(lambda: server.received)
    code, err = stop(proc)
    await server.stop()
    assert code == 0, err
    assert token not in err
    for path in (tmp_path / "out").glob("*"):
        assert token.encode() not in path.read_bytes()
    lines = [json.loads(line) for line in err.splitlines() if line.startswith("{")]
    assert lines and all("level" in entry for entry in lines)
    assert any(entry.get("vcon_uuid") for entry in lines if entry["message"] == "delivery.delivered")
