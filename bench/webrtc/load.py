"""WebRTC load: N concurrent aiortc WHIP client processes against one `vcon-capture webrtc`.

For each N the adapter runs as the real CLI; every client is its own process (Opus packets
encoded once up front, so clients cost ~1 % of a core), posts to its own room at a common
start time, streams the same speech for ``--seconds`` and DELETEs. Reported per N:

- server CPU (% of one core) over the steady window, and per session
- the server's max RSS (VmHWM)
- audio loss per session: silence-filled gaps plus missing tail, against the sent audio
- close -> vCon latency: DELETE to the vCon file, minus the configured linger
- machine busy % over the same window, and what that leaves per client process (this box is
  shared, and the clients run on it too: when busy nears 100 % the server is starved and the
  row measures the box, not the adapter)

Before each N it waits (up to 3 min) for the machine to be under 20 % busy, as the lab's driver
did, and reports that reading. The lab's measurements (lab-webrtc.md §5, same VM class) are
the baseline, side by side.

    python bench/webrtc/load.py --sessions 10 25 50 100 --seconds 20
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(ROOT / "tests"), str(ROOT / "tests" / "webrtc")]

from audiocheck import best_lag  # noqa: E402
from webrtc_harness import Server, client_result, lost_fraction, recording, write_speech  # noqa: E402

LINGER_S = 0.5
CLK = os.sysconf("SC_CLK_TCK")
LAB_BASELINE = {
    "source": "shared/notes/lab-webrtc.md section 5 (aiortc 1.16, WAV writer, passthrough clients)",
    "per_session_cpu_pct": {"1": 4.5, "5": 3.0, "10": 2.5, "25": 2.25, "40": 1.9, "50": 1.8},
    "frames_lost_pct": {"10": 0.0, "25": 0.0, "40": 0.0, "50": 0.05},
}


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK


def machine_busy() -> tuple[float, float]:
    values = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = values[3] + values[4]
    return sum(values) - idle, sum(values)


def wait_for_quiet(threshold_pct: float = 20.0, limit_s: float = 180.0) -> float:
    """Wait (at most ``limit_s``) for the machine to be under ``threshold_pct`` busy over 2 s; the last reading."""
    deadline = time.monotonic() + limit_s
    while True:
        before = machine_busy()
        time.sleep(2)
        after = machine_busy()
        busy = 100 * (after[0] - before[0]) / max(1, after[1] - before[1])
        if busy < threshold_pct or time.monotonic() > deadline:
            return busy


def max_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def run(n: int, seconds: float, work: Path, log_level: str) -> dict[str, object]:
    work.mkdir(parents=True)
    wav = work / "speech.wav"
    source = write_speech(wav, seconds, seed=11)
    quiet = wait_for_quiet()
    server = Server(work, "--linger-s", str(LINGER_S), "--max-sessions", str(n + 5), "--log-level", log_level)
    try:
        start_at = time.time() + 8 + 0.6 * n  # every client process starts (0.8 s CPU) before anyone sends
        clients = [
            server.client(f"load{i}", wav, "--passthrough", "--start-at", str(start_at), "--tail", "0.3")
            for i in range(n)
        ]
        time.sleep(max(0.0, start_at + 3 - time.time()))
        cpu0, busy0, t0 = cpu_seconds(server.proc.pid), machine_busy(), time.monotonic()
        time.sleep(max(1.0, seconds - 5))
        cpu1, busy1, t1 = cpu_seconds(server.proc.pid), machine_busy(), time.monotonic()
        results, failures = [], []
        for proc in clients:
            try:
                results.append(client_result(proc, timeout=seconds + 120))
            except (AssertionError, subprocess.TimeoutExpired) as exc:
                proc.kill()
                failures.append(str(exc)[-300:])
        losses, latencies = [], []
        no_audio = 0
        for result in results:
            doc = server.wait_vcon(result["vcon_uuid"], timeout=60)
            if not any(d["type"] == "recording" for d in doc["dialog"]):
                no_audio += 1  # an incomplete ("failed") vCon: the session never got media through
                losses.append(1.0)
                continue
            audio, rate, _ = recording(doc)
            lag = best_lag(source, audio[:, 0], rate)
            losses.append(lost_fraction(audio[:, 0], source, lag))
            written = (server.out / f"{result['vcon_uuid']}.vcon").stat().st_mtime
            latencies.append(written - result["deleted_at"] - LINGER_S)
        rss = max_rss_mb(server.proc.pid)
    finally:
        server.stop()
    server_cpu = 100 * (cpu1 - cpu0) / (t1 - t0)
    busy_pct = 100 * (busy1[0] - busy0[0]) / (busy1[1] - busy0[1])
    return {
        "sessions": n,
        "completed": len(results),
        "failures": failures,
        "sessions_without_audio": no_audio,
        "server_cpu_pct_of_one_core": round(server_cpu, 1),
        "per_session_cpu_pct": round(server_cpu / n, 2),
        "server_max_rss_mb": round(rss, 1),
        "audio_loss_pct_mean": round(100 * statistics.fmean(losses), 3) if losses else None,
        "audio_loss_pct_max": round(100 * max(losses), 3) if losses else None,
        "close_to_vcon_s_median": round(statistics.median(latencies), 3) if latencies else None,
        "close_to_vcon_s_max": round(max(latencies), 3) if latencies else None,
        "machine_busy_pct_before_run": round(quiet, 1),
        "machine_busy_pct_2_cores": round(busy_pct, 1),
        "clients_cpu_pct_per_process": round((busy_pct * (os.cpu_count() or 1) - server_cpu) / n, 2),
        "lab_per_session_cpu_pct": LAB_BASELINE["per_session_cpu_pct"].get(str(n)),
    }


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sessions", type=int, nargs="+", default=[10, 25, 50, 100])
    p.add_argument("--seconds", type=float, default=20.0, help="audio each client sends")
    p.add_argument("--log-level", default="warning", help="the server's log level")
    p.add_argument("--keep", type=Path, help="keep each run's server log, vCons and WAVs under this directory")
    p.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "webrtc.json")
    args = p.parse_args()
    runs = []
    with tempfile.TemporaryDirectory(prefix="bench-webrtc-") as tmp:
        for n in args.sessions:
            print(f"N={n} ...", file=sys.stderr, flush=True)
            row = run(n, args.seconds, (args.keep or Path(tmp)) / f"n{n}", args.log_level)
            if lab := row["lab_per_session_cpu_pct"]:
                row["per_session_cpu_ratio_to_lab"] = round(row["per_session_cpu_pct"] / lab, 2)
            print(json.dumps(row), file=sys.stderr, flush=True)
            runs.append(row)
    report = {
        "command": "python " + shlex.join([os.path.relpath(__file__, ROOT), *sys.argv[1:]]),
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "load_at_end": os.getloadavg()},
        "baseline": LAB_BASELINE,
        "runs": runs,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
