"""bench/report.py draws the figures and REPORT.md from the recorded results (no benchmark runs here)."""

import json
import shutil
import struct
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
FIGURES = ("sip", "webrtc", "ami")


def draw(results: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(ROOT / "bench" / "report.py"), "--results", str(results)],
        capture_output=True,
        text=True,
        timeout=120,
    )


def png_size(path: Path) -> tuple[int, int]:
    head = path.read_bytes()[:24]
    assert head[:8] == b"\x89PNG\r\n\x1a\n", path
    return struct.unpack(">II", head[16:24])


def test_report_draws_every_benchmark_with_its_command_and_machine(tmp_path):
    for name in (*FIGURES, "pipeline"):
        if (RESULTS / f"{name}.json").exists():
            shutil.copy(RESULTS / f"{name}.json", tmp_path)
    docs = {p.stem: json.loads(p.read_text()) for p in tmp_path.glob("*.json")}
    assert set(FIGURES) <= set(docs), "bench/results/ should hold sip, webrtc and ami results"

    done = draw(tmp_path)
    assert done.returncode == 0, done.stderr

    for name in FIGURES:
        width, height = png_size(tmp_path / f"{name}.png")
        assert width >= 600 and height >= 300, (name, width, height)
    report = (tmp_path / "REPORT.md").read_text()
    for name, doc in docs.items():
        machine = doc["machine"] if isinstance(doc["machine"], str) else f"{doc['machine']['cpus']} cores"
        assert doc["command"].strip() in report and machine in report, name
    assert str(docs["ami"]["events_per_s"]["parser_own"]) in report
    for run in docs["sip"]["runs"]:
        assert f"| {run['ours']['calls']} | {run['ours']['cpu_ms_per_call_second']} |" in report
    for run in docs["webrtc"]["runs"]:
        assert (
            f"| {run['sessions']} | {run['completed']}/{run['sessions']} | {run['server_cpu_pct_of_one_core']} |"
            in report
        )
    starved = [r for r in docs["webrtc"]["runs"] if r["machine_busy_pct_2_cores"] >= 95]
    assert report.count("(box-bound)") == len(starved)


def test_missing_results_are_left_out_with_a_note(tmp_path):
    shutil.copy(RESULTS / "ami.json", tmp_path)

    done = draw(tmp_path)

    assert done.returncode == 0, done.stderr
    assert sorted(p.name for p in tmp_path.glob("*.png")) == ["ami.png"]
    report = (tmp_path / "REPORT.md").read_text()
    assert "### AMI" in report and "### SIP" not in report
    assert "`sip.json`" in report and "`webrtc.json`" in report
    assert "no sip.json" in done.stderr
