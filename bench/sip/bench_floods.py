"""The recorder under floods: CPU and memory, against its own figures at rest in the same run.

Three floods, each against a fresh recorder (``python -m capture sip|webrtc``) on loopback:

- **INVITE flood**: ``max_calls = 1`` and one call in progress (signalling only, held for
  the run), then sipp sends INVITEs at each ``--invite-rates`` for ``--seconds``; each gets
  503. Reported: the rate sipp reached, 503s answered, refused INVITEs that became vCons
  (the refusal budget, ``refused_vcons_per_s``), the recorder's CPU (% of one core, its
  process tree: vCons are built in workers) and RSS (MiB, the tree, at the end of the
  flood and 5 s after), against the same recorder at rest with that one call just before.
- **WHIP POST flood**: ``max_sessions = 2`` with two sessions set up (aiortc offers, never
  connected), then POSTs at each ``--whip-rates`` (aiohttp, up to 100 in flight); each gets
  503 before its body is read. Same figures, plus the 503's latency p50/p99.
- **RTP spray**: one call in progress (sipp playing G.711), and datagrams at
  ``--spray-pps`` packets a second spread over every port of the RTP range (1000 ports:
  unbound ports are the kernel's, the call's port refuses every source but its caller).
  Same figures, plus the packets the call's stream refused (its capture_notes) and whether
  its recording is still the caller's (per-second NCC). Then the same aimed at the call's
  own port only (``--aimed-pps``): every datagram reaches the recorder and is refused.

The load generators run in this process and sipp, on the same two cores as the recorder:
read the CPU figures as the recorder's share of a shared machine (the 1-minute load average
is reported at the start and end).

Usage: python bench/sip/bench_floods.py [--seconds 10] [--invite-rates 100,300,1000]
       [--whip-rates 200,500] [--spray-pps 5000,20000] [--aimed-pps 2000,10000]
       [--out bench/results/floods.json]
       [--before DIR [--before-rates 100,300]]   (a ``git worktree`` of an older commit: its INVITE
       flood at those rates in the same run; before issue 18 every refusal became a vCon)
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import random
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))
sys.path.insert(0, str(REPO / "bench" / "sip"))

from bench_sip import cpu_s, process_tree  # noqa: E402

from capture.media.rtp import build_rtp  # noqa: E402

REST_S = 5.0
SETTLE_S = 5.0


def free_port() -> int:
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


def rss_mib(pid: int, field: str = "VmRSS") -> float:
    """``field`` of /proc/PID/status (VmRSS now, VmHWM peak) summed over the process tree."""
    total = 0
    for member in process_tree(pid):
        try:
            lines = Path(f"/proc/{member}/status").read_text().splitlines()
        except OSError:
            continue
        total += next((int(line.split()[1]) for line in lines if line.startswith(field + ":")), 0)
    return round(total / 1024, 1)


def main_rss_mib(pid: int, field: str = "VmRSS") -> float:
    lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    return round(next(int(line.split()[1]) for line in lines if line.startswith(field + ":")) / 1024, 1)


def measure(pid: int, seconds: float, during: Callable[[], Any] | None = None) -> tuple[dict[str, float], Any]:
    """CPU (% of one core) of the process tree over ``seconds`` (or while ``during`` runs), and
    RSS at the end: the tree's (vCon-building workers included) and the main process's, now and peak."""
    cpu0, t0 = cpu_s(pid), time.monotonic()
    result = during() if during is not None else time.sleep(seconds)
    cpu1, t1 = cpu_s(pid), time.monotonic()
    figures = {
        "cpu_pct_of_one_core": round(100 * (cpu1 - cpu0) / (t1 - t0), 1),
        "rss_mib": rss_mib(pid),
        "main_rss_mib": main_rss_mib(pid),
        "main_peak_rss_mib": main_rss_mib(pid, "VmHWM"),
        "seconds": round(t1 - t0, 1),
    }
    return figures, result


class Service:
    """``python -m capture <adapter>`` from checkout ``root``, its log in ``work``; ready once it logs service.ready."""

    def __init__(self, work: Path, adapter: str, *args: str, root: Path = REPO) -> None:
        self.out = work / "out"
        self.log = work / "service.log"
        cmd = [sys.executable, "-m", "capture", adapter, "--out", str(self.out), "--state-dir", str(work / "state"),
               "--domain", "bench.invalid", *args]  # fmt: skip
        self.proc = subprocess.Popen(cmd, stdout=self.log.open("wb"), stderr=subprocess.STDOUT, cwd=root)
        deadline = time.monotonic() + 30
        while b"service.ready" not in self.log.read_bytes():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"{adapter} did not start:\n{self.log.read_text()[-3000:]}")
            time.sleep(0.05)

    @property
    def sip_port(self) -> int:
        found = re.search(rb"sip\.listening host=\S+ port=(\d+)", self.log.read_bytes())
        assert found is not None
        return int(found.group(1))

    def vcons(self) -> list[Path]:
        return sorted(self.out.glob("*.vcon")) if self.out.exists() else []

    def stop(self) -> str:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(120)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.log.read_text()


def sip_service(work: Path, *args: str, root: Path = REPO) -> Service:
    low = random.randrange(10000, 50000, 1000)
    return Service(work, "sip", "--listen", f"127.0.0.1:{free_port()}", "--rtp-port-min", str(low),
                   "--rtp-port-max", str(low + 998), *args, root=root)  # fmt: skip


def sipp(work: Path, xml: str, port: int, *extra: str, name: str = "s") -> subprocess.Popen[bytes]:
    path = work / f"{name}.xml"
    path.write_text(xml)
    args = ["sipp", "-sf", str(path), "-s", "rec", f"127.0.0.1:{port}", "-i", "127.0.0.1", "-p", str(free_port()),
            "-mp", str(free_port() & ~1), "-nostdin", "-timeout", "600", *extra]  # fmt: skip
    return subprocess.Popen(args, cwd=work, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            env={**os.environ, "TERM": "dumb"})  # fmt: skip


def held_call(seconds: float, pcap: Path | None = None) -> str:
    from sip.scenarios import ack, bye, invite, pause, play, scenario, sdp

    body = play(str(pcap), seconds) if pcap is not None else pause(seconds)
    return scenario("held", invite(sdp(0)), ack(), body, bye(2))


def refused_invite() -> str:
    from sip.scenarios import ack, invite, scenario, sdp

    return scenario("flood", invite(sdp(0), expect="503"), ack())


def finish(proc: subprocess.Popen[bytes], timeout: float) -> tuple[bytes, float]:
    """sipp's output once it is done, and how long that took."""
    started = time.monotonic()
    out, _ = proc.communicate(timeout=timeout)
    return out, time.monotonic() - started


def wait_log(service: Service, needle: bytes, within_s: float = 20.0) -> None:
    deadline = time.monotonic() + within_s
    while needle not in service.log.read_bytes():
        if time.monotonic() > deadline:
            raise RuntimeError(f"{needle!r} not logged:\n{service.log.read_text()[-2000:]}")
        time.sleep(0.05)


# -- INVITE flood ----------------------------------------------------------------------------------


def invite_flood(
    rates: list[int], seconds: float, work: Path, roots: dict[str, tuple[Path, list[int]]]
) -> dict[str, Any]:
    runs = []
    for rate in rates:
        row: dict[str, Any] = {"rate_offered_per_s": rate, "invites": int(rate * seconds)}
        for label, (root, only) in roots.items():
            if rate in only:
                row[label] = _invite_flood(rate, seconds, work / f"invite-{rate}-{label}", root)
        runs.append(row)
        print(json.dumps(row), flush=True)
    return {"setting": "max_calls=1 with one call held (signalling only); refused_vcons_per_s=5 (default)",
            "runs": runs}  # fmt: skip


def _invite_flood(rate: int, seconds: float, run_dir: Path, root: Path) -> dict[str, Any]:
    run_dir.mkdir()
    service = sip_service(run_dir, "--max-calls", "1", "--media-timeout-s", "3600", root=root)
    held = sipp(run_dir, held_call(seconds * 30 + 120), service.sip_port, "-m", "1", name="held")
    try:
        wait_log(service, b"sip.call_answered")
        rest, _ = measure(service.proc.pid, REST_S)
        calls = int(rate * seconds)
        flood = sipp(run_dir, refused_invite(), service.sip_port, "-r", str(rate), "-m", str(calls),
                     "-l", str(max(rate, 100)), name="flood")  # fmt: skip
        during, (out, elapsed) = measure(service.proc.pid, 0, partial(finish, flood, seconds * 30 + 120))
        after, _ = measure(service.proc.pid, SETTLE_S)
        vcons_settled = len(service.vcons())
    finally:
        held.kill()
        held.wait()
        stop_started = time.monotonic()
        log = service.stop()
    ok = re.search(rb"Successful call\s*\|\s*\d+\s*\|\s*(\d+)", out)
    failed = re.search(rb"Failed call\s*\|\s*\d+\s*\|\s*(\d+)", out)
    return {
        "rate_reached_per_s": round(calls / elapsed, 1),
        "answered_503": int(ok.group(1)) if ok else None,
        "sipp_failed": int(failed.group(1)) if failed else None,
        "refusals_as_vcons_5s_after": vcons_settled,
        "refusals_as_vcons_at_exit": len(service.vcons()) - 1,
        "refusals_only_counted": sum(int(n) for n in re.findall(r"sip\.invites_refused_unrecorded count=(\d+)", log)),
        "shutdown_s": round(time.monotonic() - stop_started, 1),
        "at_rest": rest,
        "during": during,
        "after_settle": after,
        "tracebacks": log.count("Traceback"),
    }


# -- WHIP POST flood --------------------------------------------------------------------------------


async def _offer() -> str:
    from aiortc import RTCPeerConnection

    pc = RTCPeerConnection()
    pc.addTransceiver("audio", direction="sendonly")
    await pc.setLocalDescription(await pc.createOffer())
    sdp = pc.localDescription.sdp
    await pc.close()
    return sdp


async def _sessions(base: str, count: int) -> list[int]:
    """``count`` sessions set up with an aiortc offer (never connected); their statuses."""
    import aiohttp

    sdp = await _offer()
    out = []
    async with aiohttp.ClientSession() as http:
        for _ in range(count):
            async with http.post(f"{base}/whip/flood", data=sdp, headers={"Content-Type": "application/sdp"}) as resp:
                out.append(resp.status)
    return out


async def _post_flood(base: str, rate: int, seconds: float) -> tuple[dict[int, int], list[float]]:
    import aiohttp

    statuses: dict[int, int] = {}
    latencies: list[float] = []
    limit = asyncio.Semaphore(100)

    async def one(http: aiohttp.ClientSession) -> None:
        async with limit:
            t0 = time.monotonic()
            try:
                async with http.post(f"{base}/whip/flood", data="v=0\r\n",
                                     headers={"Content-Type": "application/sdp"}) as resp:  # fmt: skip
                    await resp.read()
                    statuses[resp.status] = statuses.get(resp.status, 0) + 1
            except aiohttp.ClientError:
                statuses[0] = statuses.get(0, 0) + 1
            latencies.append(time.monotonic() - t0)

    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=100)) as http:
        start = time.monotonic()
        tasks = []
        for i in range(int(rate * seconds)):
            delay = start + i / rate - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one(http)))
        await asyncio.gather(*tasks)
    return statuses, latencies


def whip_flood(rates: list[int], seconds: float, work: Path) -> dict[str, Any]:
    runs = []
    for rate in rates:
        run_dir = work / f"whip-{rate}"
        run_dir.mkdir()
        port = free_port()
        service = Service(run_dir, "webrtc", "--listen", f"127.0.0.1:{port}", "--host-addresses", "127.0.0.1",
                          "--max-sessions", "2", "--setup-timeout-s", "600")  # fmt: skip
        base = f"http://127.0.0.1:{port}"
        try:
            held = asyncio.run(_sessions(base, 2))
            rest, _ = measure(service.proc.pid, REST_S)
            flood = partial(asyncio.run, _post_flood(base, rate, seconds))
            during, (statuses, latencies) = measure(service.proc.pid, 0, flood)
            after, _ = measure(service.proc.pid, SETTLE_S)
        finally:
            log = service.stop()
        latencies.sort()
        runs.append({
            "rate_offered_per_s": rate, "posts": int(rate * seconds), "sessions_held": held,
            "statuses": {str(k): v for k, v in sorted(statuses.items())},
            "latency_ms_p50": round(1000 * statistics.median(latencies), 1),
            "latency_ms_p99": round(1000 * latencies[int(0.99 * (len(latencies) - 1))], 1),
            "at_rest": rest, "during": during, "after_settle": after,
            "log_lines_about_refusals": log.count("webrtc.sessions_refused"), "tracebacks": log.count("Traceback"),
        })  # fmt: skip
        print(json.dumps(runs[-1]), flush=True)
    return {"setting": "max_sessions=2 with two sessions set up (never connected)", "runs": runs}


# -- RTP spray ---------------------------------------------------------------------------------------


def spray(low: int, ports: int, pps: int, seconds: float) -> int:
    """Random RTP-looking datagrams at ``pps``, round-robin over ``ports`` ports from ``low``."""
    rng = random.Random(1)
    payload = bytes(160)
    sent = 0
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        start = time.monotonic()
        end = start + seconds
        while time.monotonic() < end:
            due = int((time.monotonic() - start) * pps)
            while sent < due:
                port = low + sent % ports
                try:
                    s.sendto(build_rtp(0, sent & 0xFFFF, rng.getrandbits(32), 0xA11CE, payload), ("127.0.0.1", port))
                except OSError:  # ICMP port unreachable from an earlier datagram
                    pass
                sent += 1
            time.sleep(0.001)
    return sent


def rtp_spray(rates: list[int], seconds: float, work: Path, *, aimed: bool = False) -> dict[str, Any]:
    """Spray the whole range, or (``aimed``) only the call's own port: every datagram then
    reaches the recorder and is refused by the source check."""
    from audiocheck import voice_like, window_ncc
    from sip.harness import g711_frames, recording_channels, write_rtp_pcap

    total = REST_S + seconds + SETTLE_S + 3
    payloads, reference = g711_frames(voice_like(total, 8000, seed=3), 0)
    pcap = write_rtp_pcap(work / "caller.pcap", payloads, 0, ssrc=0xA11CE)
    runs = []
    for pps in rates:
        run_dir = work / f"spray-{pps}-{'aimed' if aimed else 'range'}"
        run_dir.mkdir()
        service = sip_service(run_dir)
        low = int(re.search(r"--rtp-port-min', '(\d+)'", str(service.proc.args)).group(1))  # type: ignore[union-attr]
        messages = run_dir / "messages.log"
        call = sipp(run_dir, held_call(total + 0.4, pcap), service.sip_port, "-m", "1", "-trace_msg",
                    "-message_file", str(messages), name="call")  # fmt: skip
        try:
            wait_log(service, b"sip.call_answered")
            answered = re.search(r"SIP/2\.0 200 OK.*?m=audio (\d+)", messages.read_text(errors="replace"), re.S)
            assert answered is not None
            target, ports = (int(answered.group(1)), 1) if aimed else (low, 999)
            rest, _ = measure(service.proc.pid, REST_S)
            during, sent = measure(service.proc.pid, 0, partial(spray, target, ports, pps, seconds))
            after, _ = measure(service.proc.pid, SETTLE_S)
            call.communicate(timeout=60)
            deadline = time.monotonic() + 30
            while not service.vcons() and time.monotonic() < deadline:
                time.sleep(0.1)
        finally:
            call.kill()
            log = service.stop()
        (doc,) = [json.loads(p.read_bytes()) for p in service.vcons()]
        channels, rate, _ = recording_channels(doc)
        notes = next((a["body"] for a in doc["attachments"] if a.get("purpose") == "capture_notes"), None)
        notes = json.loads(notes) if isinstance(notes, str) else notes or {}
        runs.append({
            "packets_per_s_offered": pps, "aimed_at_the_call": aimed, "packets_sent": sent,
            "packets_per_s_reached": round(sent / during["seconds"]),
            "refused_by_the_call": sum(v["refused"] for v in notes.get("rtp_refused", {}).values()),
            "recording_ncc_min": round(min(window_ncc(reference, channels[0], rate)), 3),
            "at_rest_with_the_call": rest, "during": during, "after_settle": after,
            "tracebacks": log.count("Traceback"),
        })  # fmt: skip
        print(json.dumps(runs[-1]), flush=True)
    what = "every datagram at the call's port" if aimed else "round robin over the range (999 ports)"
    return {"setting": f"one G.711 call in progress; {what}", "runs": runs}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--invite-rates", default="100,300,1000")
    parser.add_argument("--whip-rates", default="200,500")
    parser.add_argument("--spray-pps", default="5000,20000")
    parser.add_argument("--aimed-pps", default="2000,10000")
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "floods.json")
    parser.add_argument("--before", type=Path, help="a git worktree of an older commit: its INVITE flood too")
    parser.add_argument("--before-rates", default="100,300", help="INVITE rates run with --before too")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-floods-"))
    load_start = os.getloadavg()[0]
    doc: dict[str, Any] = {
        "command": "python bench/sip/bench_floods.py " + " ".join(sys.argv[1:]),
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}",
        "note": "load generators (sipp, this process) share the cores with the recorder; loopback only",
    }
    try:
        rates = [int(r) for r in args.invite_rates.split(",")]
        roots = {"after": (REPO, rates)}
        if args.before:
            roots["before"] = (args.before.resolve(), [int(r) for r in args.before_rates.split(",")])
        doc["invite_flood"] = invite_flood(rates, args.seconds, work, roots)
        doc["whip_flood"] = whip_flood([int(r) for r in args.whip_rates.split(",")], args.seconds, work)
        doc["rtp_spray"] = rtp_spray([int(r) for r in args.spray_pps.split(",")], args.seconds, work)
        doc["rtp_aimed"] = rtp_spray([int(r) for r in args.aimed_pps.split(",")], args.seconds, work, aimed=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    doc["load_average_1min"] = {"start": round(load_start, 2), "end": round(os.getloadavg()[0], 2)}
    args.out.write_text(json.dumps(doc, indent=2) + "\n")
    print(f"written {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
