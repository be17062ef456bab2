"""SIP recorder load: sipp places N concurrent G.711 calls with RTP; the same load against baresip.

For each N: the recorder (``python -m capture sip``) is started fresh, sipp places N calls
(ramped over ``--ramp`` seconds) that each send ``--seconds`` of PCMA at 20 ms; with
``--streams 2`` every call is a SIPREC session with two labelled streams (sipp plays the
first, a paced sender in this process plays every second one). Measured from /proc and the
vCons: CPU ms per call-second (user+sys of the recorder's process tree: it builds vCons in
worker processes), max RSS (summed over the tree), RTP packets
lost (expected minus recorded, from the CDRs), and BYE -> vCon latency (vCon file mtime
minus the CDR end time) p50/p99, and the machine's 1-minute load average at the start and
end of each run (other processes share the cores: read the spread with it).

Baseline: baresip 1.0 (C) as the answering endpoint with its sndfile recorder, one stream
per call (it answers one audio m= line), under the same sipp load; ratio = our CPU per
stream-second / baresip's.

Usage: python bench/sip/bench_sip.py [--calls 50,100,200] [--seconds 20] [--streams 2] [--out bench/results/sip.json]

Before/after in the same run: ``--before DIR`` (a ``git worktree`` of the older commit) runs
the recorder from that checkout too, alternating with this one, ``--repeat`` times per N;
each row then holds ``before`` and ``after`` (and their one-stream runs).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import resource
import shutil
import signal
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from adapters.sip.demo import two_voices  # noqa: E402
from capture.media.g711 import encode_alaw  # noqa: E402
from capture.media.rtp import build_rtp  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
import spyprofile  # noqa: E402

TICK = os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def payloads(seconds: float) -> list[bytes]:
    pcm = (two_voices(seconds) * 32767).astype("int16")
    coded = encode_alaw(pcm)
    return [coded[i : i + 160] for i in range(0, len(coded) - 159, 160)]


def write_pcap(path: Path, frames: list[bytes]) -> None:
    out = [struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1)]
    for i, payload in enumerate(frames):
        rtp = build_rtp(8, i, i * 160, 0xA11CE, payload)
        udp = struct.pack("!HHHH", 40000, 40000, 8 + len(rtp), 0) + rtp
        ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), 0, 0, 64, 17, 0, b"\x7f\0\0\1", b"\x7f\0\0\1") + udp
        frame = b"\0" * 12 + b"\x08\x00" + ip
        t = i * 0.02
        out.append(struct.pack("<IIII", int(t), int((t % 1) * 1e6), len(frame), len(frame)) + frame)
    path.write_bytes(b"".join(out))


def scenario(pcap: Path, seconds: float, streams: int, ports_dir: Path) -> str:
    media = "m=audio [media_port] RTP/AVP 8\na=rtpmap:8 PCMA/8000\na=label:1\na=sendonly\n"
    body = f"v=0\no=b 1 1 IN IP4 [media_ip]\ns=-\nc=IN IP4 [media_ip]\nt=0 0\n{media}"
    ctype, extra, ereg = "application/sdp", "", ""
    if streams == 2:
        body += media.replace("[media_port]", "[media_port+2]").replace("label:1", "label:2")
        ctype, extra = "application/sdp", "      Require: siprec\n"
        ereg = (
            '<action><ereg regexp="m=audio ([0-9]+).*m=audio ([0-9]+)" search_in="body" check_it="true" '
            'assign_to="all,p1,p2"/></action>'
        )
    head = """      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      From: <sip:load@[local_ip]:[local_port]>;tag=[pid]L[call_number]
      To: <sip:rec@[remote_ip]:[remote_port]>{tag}
      Call-ID: [call_id]
      Contact: <sip:load@[local_ip]:[local_port]>
      Max-Forwards: 70"""
    second = ""
    if streams == 2:
        second = (
            f'  <Reference variables="all,p1"/>\n'
            f'  <nop><action><exec command="touch {ports_dir}/[$p2]"/></action></nop>\n'
        )
    return f"""<?xml version="1.0" encoding="ISO-8859-1" ?>
<scenario name="load">
  <send retrans="500"><![CDATA[
      INVITE sip:rec@[remote_ip]:[remote_port] SIP/2.0
{head.format(tag="")}
      CSeq: 1 INVITE
{extra}      Content-Type: {ctype}
      Content-Length: [len]

{body}
  ]]></send>
  <recv response="100" optional="true"/>
  <recv response="180" optional="true"/>
  <recv response="200" rtd="true">{ereg}</recv>
  <send><![CDATA[
      ACK sip:rec@[remote_ip]:[remote_port] SIP/2.0
{head.format(tag="[peer_tag_param]")}
      CSeq: 1 ACK
      Content-Length: 0

  ]]></send>
{second}  <nop><action><exec play_pcap_audio="{pcap}"/></action></nop>
  <pause milliseconds="{int(seconds * 1000) + 200}"/>
  <send retrans="500"><![CDATA[
      BYE sip:rec@[remote_ip]:[remote_port] SIP/2.0
{head.format(tag="[peer_tag_param]")}
      CSeq: 2 BYE
      Content-Length: 0

  ]]></send>
  <recv response="200"/>
</scenario>
"""


class SecondStreams(threading.Thread):
    """Plays the payloads, paced, to every port sipp names by a file in ``ports_dir``
    (sipp's exec runs no shell, so no redirection: ``touch DIR/PORT``)."""

    def __init__(self, ports_dir: Path, frames: list[bytes]) -> None:
        super().__init__(daemon=True)
        self.ports_dir = ports_dir
        self.frames = frames
        self.stop = threading.Event()
        self.sent = 0

    def run(self) -> None:
        streams: list[tuple[int, float]] = []
        seen: set[str] = set()
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1 << 22)
        while not self.stop.is_set():
            now = time.monotonic()
            new = {p.name for p in self.ports_dir.iterdir()} - seen
            streams += [(int(p), now) for p in new]
            seen |= new
            alive = []
            for port, start in streams:
                index = int((now - start) / 0.02)
                if index < len(self.frames):
                    alive.append((port, start))
                    sent_upto = getattr(self, f"_s{port}", 0)
                    for i in range(sent_upto, index + 1):
                        sock.sendto(build_rtp(8, i, i * 160, port, self.frames[i]), ("127.0.0.1", port))
                        self.sent += 1
                    setattr(self, f"_s{port}", index + 1)
            streams = alive
            time.sleep(0.005)
        sock.close()


def _stat(pid: int) -> list[str]:
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()


def process_tree(pid: int) -> list[int]:
    """``pid`` and all its descendants (the recorder builds vCons in worker processes)."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parents[int(entry.name)] = int(_stat(int(entry.name))[1])
            except (OSError, IndexError, ValueError):
                continue
    tree, frontier = [pid], [pid]
    while frontier:
        children = [c for c, p in parents.items() if p in frontier]
        tree += children
        frontier = children
    return tree


def cpu_s(pid: int) -> float:
    """User + system CPU of the process tree, reaped children included."""
    return sum(cpu_split(pid).values())


def cpu_split(pid: int) -> dict[str, float]:
    """The tree's CPU in parts: the recorder's own user and system time (the loop carrying SIP
    and RTP, its threads), and everything its children used (vCon-building workers)."""
    split = {"main_user_s": 0.0, "main_system_s": 0.0, "workers_s": 0.0}
    for member in process_tree(pid):
        try:
            fields = _stat(member)
        except OSError:
            continue
        if member == pid:
            split["main_user_s"] += int(fields[11]) / TICK
            split["main_system_s"] += int(fields[12]) / TICK
            split["workers_s"] += (int(fields[13]) + int(fields[14])) / TICK
        else:
            split["workers_s"] += sum(int(fields[i]) for i in (11, 12, 13, 14)) / TICK
    return split


def max_rss_kib(pid: int) -> int:
    """Sum over the process tree of each process's peak RSS."""
    total = 0
    for member in process_tree(pid):
        try:
            lines = Path(f"/proc/{member}/status").read_text().splitlines()
        except OSError:
            continue
        total += next((int(line.split()[1]) for line in lines if line.startswith("VmHWM:")), 0)
    return total


def run_sipp(
    pcap: Path, port: int, calls: int, seconds: float, ramp: float, streams: int, work: Path
) -> tuple[float, int, int, dict[str, float | None]]:
    ports_dir = Path(tempfile.mkdtemp(prefix="ports-", dir=work))
    sf = work / "load.xml"
    sf.write_text(scenario(pcap, seconds, streams, ports_dir))
    sender = SecondStreams(ports_dir, payloads(seconds)) if streams == 2 else None
    if sender:
        sender.start()
    started = time.monotonic()
    children0, own0 = resource.getrusage(resource.RUSAGE_CHILDREN), time.process_time()
    rate = max(1, int(calls / ramp))
    res = subprocess.run(
        ["sipp", "-sf", str(sf), "-s", "rec", f"127.0.0.1:{port}", "-i", "127.0.0.1", "-p", str(free_port()),
         "-mp", str(random.randrange(40000, 50000, 2)), "-m", str(calls), "-l", str(calls), "-r", str(rate),
         "-nostdin", "-timeout", str(int(seconds + ramp + 60)), "-trace_err", "-error_file", str(work / "sipp.err")],
        capture_output=True, cwd=work,
    )  # fmt: skip
    elapsed = time.monotonic() - started
    if sender:
        sender.stop.set()
        sender.join()
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    load = {  # the load generators' own CPU (sipp: the only child reaped meanwhile; the sender: this process)
        "sipp_cpu_s": round(children.ru_utime + children.ru_stime - children0.ru_utime - children0.ru_stime, 2),
        "second_stream_sender_cpu_s": round(time.process_time() - own0, 2) if sender else None,
    }
    return elapsed, res.returncode, sender.sent if sender else 0, load


def bench_ours(
    calls: int,
    seconds: float,
    ramp: float,
    streams: int,
    pcap: Path,
    work: Path,
    repo: Path = REPO,
    profile: Path | None = None,
) -> dict[str, Any]:
    """The recorder of the checkout ``repo`` (run with this interpreter: same dependencies) under sipp's
    load; with ``profile`` (a directory) py-spy samples its loop meanwhile (this perturbs the figures)."""
    name = f"ours-{calls}x{streams}-{random.randrange(1 << 30)}"
    out = work / name
    port = free_port()
    log = (work / f"{name}.log").open("wb")
    lo = random.randrange(10000, 20000, 2)
    proc = subprocess.Popen(
        [sys.executable, "-m", "capture", "sip", "--listen", f"127.0.0.1:{port}", "--out", str(out),
         "--state-dir", str(work / f"state-{name}"), "--max-calls", str(calls + 10),
         "--log-level", "warning",
         "--rtp-port-min", str(lo), "--rtp-port-max", str(lo + 4 * calls + 100), "--domain", "bench.localhost"],
        stdout=log, stderr=subprocess.STDOUT, cwd=repo,
    )  # fmt: skip
    deadline = time.monotonic() + 20
    while not _listening(port) and time.monotonic() < deadline:
        time.sleep(0.1)
    time.sleep(0.5)
    split0 = cpu_split(proc.pid)
    load0 = os.getloadavg()[0]
    spy = None
    if profile is not None:
        profile.mkdir(parents=True, exist_ok=True)
        spy = spyprofile.record(proc.pid, ramp + seconds, profile / f"{name}.raw")
    elapsed, rc, second_sent, load = run_sipp(pcap, port, calls, seconds, ramp, streams, work)
    if spy is not None:
        spy.wait(60)
    deadline = time.monotonic() + 60
    while len(list(out.glob("*.vcon"))) < calls and time.monotonic() < deadline:
        time.sleep(0.2)
    split = {k: round(v - split0[k], 2) for k, v in cpu_split(proc.pid).items()}
    cpu = sum(split.values())
    rss = max_rss_kib(proc.pid)
    proc.send_signal(signal.SIGTERM)
    proc.wait(30)
    log.close()
    latencies, received, recorded = [], 0, 0
    for f in out.glob("*.vcon"):
        doc = json.loads(f.read_bytes())
        cdr = next(a["body"] for a in doc["attachments"] if a.get("purpose") == "cdr")
        cdr = cdr if isinstance(cdr, dict) else json.loads(cdr)
        end = datetime.fromisoformat(cdr["end"].replace("Z", "+00:00"))
        latencies.append(f.stat().st_mtime - end.timestamp())
        received += sum(s["packets"] for s in cdr.get("rtp", {}).values())
        recorded += 1
    expected = calls * streams * len(payloads(seconds))
    call_seconds = calls * seconds
    profiled: dict[str, Any] = {}
    if profile is not None:
        raw = profile / f"{name}.raw"
        profiled["profile"] = {"py_spy_raw": str(raw), **spyprofile.summarize(raw)}
    return {
        "calls": calls,
        "streams_per_call": streams,
        "sipp_exit": rc,
        "vcons": recorded,
        "cpu_s": round(cpu, 2),
        "cpu_split_s": split,
        "cpu_ms_per_call_second": round(1000 * cpu / call_seconds, 3),
        "cpu_ms_per_stream_second": round(1000 * cpu / (call_seconds * streams), 3),
        "max_rss_mib": round(rss / 1024, 1),
        "rtp_expected": expected,
        "rtp_received": received,
        "rtp_lost": expected - received,
        "second_stream_packets_sent": second_sent if streams == 2 else None,
        "load_generators": load,
        "bye_to_vcon_s_p50": round(statistics.median(latencies), 3) if latencies else None,
        "bye_to_vcon_s_p99": round(sorted(latencies)[int(0.99 * (len(latencies) - 1))], 3) if latencies else None,
        "wall_s": round(elapsed, 1),
        "machine_load_1m": [round(load0, 2), round(os.getloadavg()[0], 2)],
        **profiled,
    }


def bench_baresip(calls: int, seconds: float, ramp: float, pcap: Path, work: Path) -> dict[str, Any]:
    conf = work / f"baresip-{calls}"
    conf.mkdir(exist_ok=True)
    (conf / "dumps").mkdir(exist_ok=True)
    port = free_port()
    lo = random.randrange(20000, 30000, 2)
    silence = conf / "silence.wav"
    subprocess.run(["sox", "-n", "-r", "8000", "-c", "1", "-b", "16", str(silence), "trim", "0", str(seconds + 5)],
                   check=True)  # fmt: skip
    lines = [f"sip_listen 127.0.0.1:{port}", f"audio_source aufile,{silence}", "audio_player aubridge,nil",
             "ausrc_srate 8000", f"rtp_ports {lo}-{lo + 4 * calls + 100}", "module_path /usr/lib/baresip/modules",
             f"snd_path {conf / 'dumps'}", "call_max_calls 4096"]  # fmt: skip
    lines += [f"module {m}.so" for m in ("g711", "aufile", "aubridge", "sndfile", "account")]
    (conf / "config").write_text("\n".join(lines) + "\n")
    (conf / "accounts").write_text(f"<sip:rec@127.0.0.1:{port}>;regint=0;answermode=auto;audio_codecs=PCMA\n")
    proc = subprocess.Popen(["baresip", "-f", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(2)
    cpu0 = cpu_s(proc.pid)
    elapsed, rc, _, _ = run_sipp(pcap, port, calls, seconds, ramp, 1, work)
    time.sleep(2)
    cpu = cpu_s(proc.pid) - cpu0
    rss = max_rss_kib(proc.pid)
    proc.terminate()
    try:
        proc.wait(5)
    except subprocess.TimeoutExpired:
        proc.kill()  # baresip waits for its calls on SIGTERM; they are over, the numbers are taken
        proc.wait()
    return {
        "calls": calls,
        "sipp_exit": rc,
        "cpu_s": round(cpu, 2),
        "cpu_ms_per_call_second": round(1000 * cpu / (calls * seconds), 3),
        "max_rss_mib": round(rss / 1024, 1),
        "wall_s": round(elapsed, 1),
    }


def compare(n: int, rep: int, args: argparse.Namespace, pcap: Path, work: Path) -> dict[str, Any]:
    """One before/after pair at ``n`` calls; the order alternates between repeats."""
    row: dict[str, Any] = {"calls": n, "repeat": rep, "before_repo": str(args.before)}
    order = [("before", args.before), ("after", REPO)]
    for label, repo in order if rep % 2 == 0 else order[::-1]:
        row[label] = bench_ours(n, args.seconds, args.ramp, args.streams, pcap, work, repo)
        if args.streams == 2 and not args.no_baseline:
            row[f"{label}_one_stream"] = bench_ours(n, args.seconds, args.ramp, 1, pcap, work, repo)
    return row


def describe(repo: Path) -> str:
    """The checkout's commit, marked ``-dirty`` when its tracked files differ from it."""
    res = subprocess.run(["git", "-C", str(repo), "describe", "--always", "--dirty"], capture_output=True, text=True)
    return res.stdout.strip() or "unknown"


def _listening(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--calls", default="50,100,200")
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--ramp", type=float, default=5.0)
    parser.add_argument("--streams", type=int, choices=(1, 2), default=2)
    parser.add_argument("--no-baseline", action="store_true")
    parser.add_argument("--keep", action="store_true", help="keep the work directory (logs, vCons)")
    parser.add_argument("--before", type=Path, help="checkout of an older commit to compare with, in the same run")
    parser.add_argument("--repeat", type=int, default=1, help="with --before: before/after pairs per N")
    parser.add_argument("--profile", type=Path, help="py-spy (native frames) the recorder's loop into this directory")
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "sip.json")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-sip-"))
    pcap = work / "a.pcap"
    write_pcap(pcap, payloads(args.seconds))
    runs = []
    for n in [int(x) for x in args.calls.split(",")]:
        if args.before is not None:
            for rep in range(args.repeat):
                row = compare(n, rep, args, pcap, work)
                print(json.dumps(row), flush=True)
                runs.append(row)
            if not args.no_baseline:
                runs.append({"calls": n, "baresip_one_stream": bench_baresip(n, args.seconds, args.ramp, pcap, work)})
            continue
        row: dict[str, Any] = {"ours": bench_ours(n, args.seconds, args.ramp, args.streams, pcap, work,
                                                  profile=args.profile)}  # fmt: skip
        if args.streams == 1 or not args.no_baseline:
            if not args.no_baseline:
                row["ours_one_stream"] = (
                    row["ours"] if args.streams == 1 else bench_ours(n, args.seconds, args.ramp, 1, pcap, work)
                )
                row["baresip_one_stream"] = bench_baresip(n, args.seconds, args.ramp, pcap, work)
                base = row["baresip_one_stream"]["cpu_ms_per_call_second"]
                mine = row["ours_one_stream"]["cpu_ms_per_call_second"]
                row["cpu_ratio_ours_vs_baresip_one_stream"] = round(mine / base, 2) if base else None
        print(json.dumps(row), flush=True)
        runs.append(row)
    result = {
        "command": "python bench/sip/bench_sip.py " + " ".join(sys.argv[1:]),
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}",
        "note": "sipp, the second-stream sender and the recorder share the same cores; loopback only",
        "commit": describe(REPO),
        "before_commit": describe(args.before) if args.before is not None else None,
        "runs": runs,
    }
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
