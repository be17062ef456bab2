"""WebRTC sessions per server core: `vcon-capture webrtc` against Janus, same clients, same run.

For each N, N aiortc sessions in one client process (bench/webrtc/clients.py: real ICE,
DTLS-SRTP and RTCP, the same pre-encoded Opus packets for every session) record into our
server, then the same N into Janus 1.1 (Record&Play plugin, see janus_server.py). The
clients run on one core and the server on the other (``taskset``), so the server's CPU is
its own. Reported per N and server:

- server CPU over the steady window (every session sending), % of one core, and per session;
  ``sessions_per_core`` = 100 / per-session %; the CPU-per-session ratio ours / Janus
- loss in (dropped by the clients on purpose, ``--drop``) against loss out: packets each
  server recorded, and audio: every recording decoded, aligned to the sent speech, silence
  runs and missing ends counted as lost, windowed correlation (ours: the vCon's channel;
  Janus: the .mjr's Opus placed by RTP timestamp)
- the client process's CPU and each core's busy %, so a saturated client core shows
- max RSS, DELETE -> vCon (ours), the load average before and after

Janus's ICE never uses a loopback interface, so as root the benchmark runs itself in a
private network namespace (``unshare --net``) with a veth pair carrying 198.18.0.1 (the
benchmarking range, RFC 2544): nothing leaves the namespace. ``--profile DIR`` runs py-spy on
our server over the window of each N (it perturbs: use it for the profile, not the figures).

    python bench/webrtc/load.py --sessions 50 100 150 --seconds 20
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path[:0] = [str(ROOT / "tests"), str(ROOT / "tests" / "webrtc"), str(HERE)]

import janus_server  # noqa: E402
import verify  # noqa: E402
from procstat import CpuWindow, max_rss_mb  # noqa: E402
from spyprofile import summarize as summarize_profile  # noqa: E402
from webrtc_harness import Server, write_speech  # noqa: E402

ADDRESS = "198.18.0.1"
CLIENT_CPU, SERVER_CPU = "0", "1"
LINGER_S = 0.5
PY_SPY = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
NETNS_SETUP = f"""ip link set lo up && ip link add vcb0 type veth peer name vcb1 &&
ip addr add {ADDRESS}/24 dev vcb0 && ip link set vcb0 up && ip link set vcb1 up && exec "$@" """


def in_private_netns(argv: list[str]) -> None:
    """Re-run this benchmark inside a new network namespace (root only; returns if not possible)."""
    if os.environ.get("VCB_NETNS") or os.geteuid() != 0 or not shutil.which("unshare"):
        return
    env = {**os.environ, "VCB_NETNS": "1"}
    cmd = ["unshare", "--net", "sh", "-c", NETNS_SETUP, "sh", sys.executable, *argv]
    sys.exit(subprocess.run(cmd, env=env, check=False).returncode)


def client_process(target: str, url: str, wav: Path, n: int, start_at: float, args: argparse.Namespace, out: Path):
    cmd = [
        "taskset", "-c", CLIENT_CPU, sys.executable, str(HERE / "clients.py"), target, url, str(wav),
        "--sessions", str(n), "--start-at", f"{start_at:.3f}", "--connect-rate", str(args.connect_rate),
        "--drop", str(args.drop), "--address", args.address,
    ]  # fmt: skip
    return subprocess.Popen(cmd, stdout=out.open("w"), stderr=subprocess.STDOUT, text=True)


def client_results(proc: subprocess.Popen[str], out: Path, timeout: float) -> list[dict[str, Any]]:
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    lines = [json.loads(line) for line in out.read_text().splitlines() if line.startswith('{"n"')]
    return sorted(lines, key=lambda r: r["n"])


def window(server_pid: int, clients_pid: int, start_at: float, seconds: float, profile: Path | None) -> dict[str, Any]:
    """CPU figures over [start + 3 s, end - 2 s] of the audio, optionally under py-spy."""
    time.sleep(max(0.0, start_at + 3 - time.time()))
    length = max(1.0, seconds - 5)
    spy = None
    if profile is not None:
        spy = subprocess.Popen(
            ["taskset", "-c", CLIENT_CPU, PY_SPY, "record", "--pid", str(server_pid), "--duration", str(int(length)),
             "--rate", "50", "--nonblocking", "--format", "raw", "-o", str(profile)],
            stdout=subprocess.DEVNULL, stderr=profile.with_suffix(".log").open("w"),
        )  # fmt: skip
    cpu = CpuWindow(server_pid, clients_pid)
    time.sleep(length)
    figures = cpu.stop()
    if spy is not None:
        spy.wait(60)
    return figures


def rates(figures: dict[str, Any], n: int, results: list[dict[str, Any]]) -> dict[str, Any]:
    per_session = figures["server_cpu_pct_of_one_core"] / n
    sent = sum(r["sent"] for r in results)
    dropped = sum(r["dropped"] for r in results)
    return {
        "sessions": n,
        "completed": sum(1 for r in results if "error" not in r),
        "errors": [r["error"] for r in results if "error" in r][:5],
        **figures,
        "per_session_cpu_pct": round(per_session, 3),
        "sessions_per_core": round(100 / per_session, 1) if per_session else None,
        "packets_sent": sent,
        "packets_dropped_by_clients": dropped,
        "loss_in_pct": round(100 * dropped / sent, 3) if sent else None,
        "others_on_server_core_pct": round(
            max(0.0, figures["core_busy_pct"].get(f"cpu{SERVER_CPU}", 0.0) - figures["server_cpu_pct_of_one_core"]), 1
        ),
    }


def judge(row: dict[str, Any]) -> dict[str, Any]:
    """Loss out against loss in (packets the clients dropped): every packet that arrived is in the
    recording, and no session's audio lost exceeds what its client dropped by over 0.5 points."""
    sent, recorded = row["packets_sent"], row["packets_recorded"]
    loss_out = 100 * (1 - recorded / sent) if sent else 100.0
    ok = (
        row["completed"] == row["sessions"]
        and row["recordings_missing"] == 0
        and abs(loss_out - row["loss_in_pct"]) < 0.01
        and row["audio_loss_over_loss_in_pct_max"] is not None
        and row["audio_loss_over_loss_in_pct_max"] <= 0.5
    )
    return {"loss_out_pct": round(loss_out, 3), "loss_out_equals_loss_in": ok}


def run_ours(n: int, args: argparse.Namespace, work: Path, wav: Path, source: Any, root: Path | None = None):
    """Our server; from the checkout at ``root`` (its capture/ and adapters/) when given."""
    work.mkdir(parents=True)
    ramp = n / args.connect_rate
    prefix: tuple[str, ...] = ("taskset", "-c", SERVER_CPU)
    if root is not None:
        prefix += ("env", "-C", str(root), f"PYTHONPATH={root}")
    server = Server(
        work, "--host-addresses", args.address, "--linger-s", str(LINGER_S), "--max-sessions", str(n + 5),
        "--setup-timeout-s", str(int(ramp + 60)), "--log-level", "info", "--log-format", "json",
        prefix=prefix,
    )  # fmt: skip
    try:
        start_at = time.time() + ramp + 5
        out = work / "clients.out"
        clients = client_process("whip", server.base, wav, n, start_at, args, out)
        profile = args.profile / f"{work.name}.txt" if args.profile else None
        figures = window(server.proc.pid, clients.pid, start_at, args.seconds, profile)
        results = client_results(clients, out, args.seconds + ramp + 180)
        deadline = time.monotonic() + 60 + n
        pending = [r for r in results if r.get("vcon_uuid")]
        while pending and time.monotonic() < deadline:
            pending = [r for r in pending if not (server.out / f"{r['vcon_uuid']}.vcon").exists()]
            time.sleep(0.2)
        latencies = [
            (server.out / f"{r['vcon_uuid']}.vcon").stat().st_mtime - r["deleted_at"] - LINGER_S
            for r in results
            if r.get("deleted_at") and (server.out / f"{r.get('vcon_uuid')}.vcon").exists()
        ]
        rss = max_rss_mb(server.proc.pid)
    finally:
        server.stop()
    row = rates(figures, n, results)
    row.update(verify.ours(server.out, server.log, results, source))
    row.update(judge(row))
    row["server_max_rss_mb"] = round(rss, 1)
    if profile is not None and profile.exists():
        row["profile"] = {"py_spy_raw": str(profile), **summarize_profile(profile)}
    row["delete_to_vcon_s_median"] = round(statistics.median(latencies), 3) if latencies else None
    row["delete_to_vcon_s_max"] = round(max(latencies), 3) if latencies else None
    return row


def run_janus(n: int, args: argparse.Namespace, work: Path, wav: Path, source: Any) -> dict[str, Any]:
    work.mkdir(parents=True)
    ramp = n / args.connect_rate
    janus = janus_server.JanusServer(work, args.address, taskset=SERVER_CPU)
    try:
        start_at = time.time() + ramp + 5
        out = work / "clients.out"
        clients = client_process("janus", janus.base, wav, n, start_at, args, out)
        figures = window(janus.proc.pid, clients.pid, start_at, args.seconds, None)
        results = client_results(clients, out, args.seconds + ramp + 180)
        rss = max_rss_mb(janus.proc.pid)
    finally:
        janus.stop()
    row = rates(figures, n, results)
    row.update(verify.janus(janus.recordings, results, source))
    row.update(judge(row))
    row["server_max_rss_mb"] = round(rss, 1)
    return row


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sessions", type=int, nargs="+", default=[50, 100, 150])
    p.add_argument("--seconds", type=float, default=20.0, help="audio each session sends")
    p.add_argument("--connect-rate", type=float, default=10.0, help="sessions set up per second before the start")
    p.add_argument("--drop", type=float, default=0.0, help="fraction of RTP packets the clients drop (loss in)")
    p.add_argument("--servers", nargs="+", choices=["before", "ours", "janus"], default=["ours", "janus"])
    p.add_argument("--before-root", type=Path, help="a checkout whose capture/ and adapters/ the 'before' server runs")
    p.add_argument("--profile", type=Path, help="py-spy our server into this directory (perturbs the figures)")
    p.add_argument("--keep", type=Path, help="keep every run's logs, vCons and recordings under this directory")
    p.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "webrtc.json")
    args = p.parse_args()
    if "before" in args.servers and args.before_root is None:
        p.error("--servers before needs --before-root")
    in_private_netns(sys.argv)
    args.keep = args.keep.resolve() if args.keep else None
    args.before_root = args.before_root.resolve() if args.before_root else None
    args.address = ADDRESS if os.environ.get("VCB_NETNS") else "127.0.0.1"
    if "janus" in args.servers:
        why = janus_server.available()
        if why is None and not os.environ.get("VCB_NETNS"):
            why = "it needs its own network namespace (run as root, with unshare)"
        if why is not None:
            print(f"Janus skipped: {why}", file=sys.stderr)
            args.servers = [s for s in args.servers if s != "janus"]
    if args.profile:
        args.profile.mkdir(parents=True, exist_ok=True)
    load_before = os.getloadavg()
    runs = []
    with tempfile.TemporaryDirectory(prefix="bench-webrtc-") as tmp:
        base = args.keep or Path(tmp)
        wav = base / "speech.wav"
        base.mkdir(parents=True, exist_ok=True)
        source = write_speech(wav, args.seconds, seed=11)
        for n in args.sessions:
            row: dict[str, Any] = {"sessions": n, "load_average_before": os.getloadavg()}
            for name in args.servers:
                print(f"N={n} {name} ...", file=sys.stderr, flush=True)
                work = base / f"n{n}-{name}"
                if name == "janus":
                    row[name] = run_janus(n, args, work, wav, source)
                else:
                    row[name] = run_ours(n, args, work, wav, source, args.before_root if name == "before" else None)
                print(json.dumps(row[name]), file=sys.stderr, flush=True)
            head = row.get("ours") or row[args.servers[0]]
            busy = head["core_busy_pct"].values()
            row.update(
                completed=head["completed"],
                server_cpu_pct_of_one_core=head["server_cpu_pct_of_one_core"],
                machine_busy_pct_2_cores=round(sum(busy) / max(1, len(busy)), 1),
            )
            for name in ("before", "ours"):
                if name in row and "janus" in row and row["janus"]["per_session_cpu_pct"]:
                    row[f"cpu_per_session_ratio_{name}_to_janus"] = round(
                        row[name]["per_session_cpu_pct"] / row["janus"]["per_session_cpu_pct"], 2
                    )
            if "before" in row and row["before"]["per_session_cpu_pct"]:
                row["cpu_per_session_ratio_ours_to_before"] = round(
                    row["ours"]["per_session_cpu_pct"] / row["before"]["per_session_cpu_pct"], 2
                )
            row["load_average_after"] = os.getloadavg()
            runs.append(row)
    report = {
        "command": "python " + shlex.join([os.path.relpath(__file__, ROOT), *sys.argv[1:]]),
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {
            "cpus": os.cpu_count(),
            "cpu_model": cpu_model(),
            "python": platform.python_version(),
            "kernel": platform.release(),
            "load_average_before": load_before,
            "load_average_after": os.getloadavg(),
        },
        "setup": {
            "pinning": f"clients on CPU {CLIENT_CPU}, server on CPU {SERVER_CPU} (taskset)",
            "clients": "one process, N aiortc RTCPeerConnections sending pre-encoded 20 ms Opus packets "
            "(bench/webrtc/clients.py)",
            "network": f"media on {args.address}"
            + (" in a private network namespace" if args.address == ADDRESS else ""),
            "ours": "python -m capture webrtc (WHIP), one room per session, vCon per room",
            "before": f"the same from {args.before_root} (the adapter before this round)" if args.before_root else None,
            "janus": f"Janus {janus_server.version() if 'janus' in args.servers else '-'}: "
            + janus_server.JanusServer.config_summary(args.address),
        },
        "runs": runs,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(args.out)
    return 0


def cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.machine()


if __name__ == "__main__":
    sys.exit(main())
