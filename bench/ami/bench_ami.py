"""AMI throughput: our sans-IO parser and asyncio client vs panoramisk, same run, same stream.

Stream: the real transcripts (answered, busy, blind transfer, PJSIP) repeated with fresh
Uniqueids/Linkedids per copy and a non-ASCII caller name, so every copy is a new set of
calls. Measures

* parser: events/s through ``AmiParser.feed`` vs panoramisk's ``AMIProtocol.data_received``
  (64 KiB chunks, one core, no sockets);
* client: events/s over loopback TCP from a server process (login, then the whole stream)
  to ``AmiClient`` vs ``panoramisk.Manager``; plus ``AmiClient`` feeding the call tracker;
* memory: RSS while 1M events go through parser + tracker (growth between 100k and 1M).

Usage: python bench/ami/bench_ami.py [--events 100000] [--memory-events 1000000] [--out bench/results/ami.json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import platform
import socket
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from adapters.ami.client import AmiClient  # noqa: E402
from adapters.ami.protocol import AmiParser, Message  # noqa: E402
from adapters.ami.tracker import CallTracker  # noqa: E402

TRANSCRIPTS = REPO.parent / "shared" / "ami-transcripts"
TEMPLATE = [
    "cacofonisk_ab_success_a_hangup.ami",
    "cacofonisk_ab_reject.ami",
    "cacofonisk_xfer_blind_abbcac.ami",
    "jasterng_pjsip_real_events.ami",
]
PREFIXES = (b"195176c06ab8-", b"07b796be1962-", b"asterisk-")
CHUNK = 1 << 16
DONE = b"Event: UserEvent\r\nUserEvent: ReplayDone\r\n\r\n"


def template_blocks() -> list[bytes]:
    """Whole calls only (so a long run must not accumulate state): jasterNG's call A, not its fragments."""
    blocks = []
    for name in TEMPLATE:
        raw = (TRANSCRIPTS / name).read_bytes()
        kept = b"".join(line for line in raw.splitlines(keepends=True) if not line.startswith(b"#"))
        found = [b.strip(b"\r\n") + b"\r\n\r\n" for b in kept.split(b"\r\n\r\n") if b.strip(b"\r\n")]
        blocks += found[:5] if name.startswith("jasterng") else found
    return [b.replace(b"Andrew Garza", "Andr\u00e9s G\u00e4rza".encode()) for b in blocks]


def synthetic(n: int, first_copy: int = 0) -> bytes:
    """``n`` events: copies of the template, each with its own ids (copy numbers from ``first_copy``)."""
    template = b"".join(template_blocks())
    per_copy = template.count(b"\r\n\r\n")
    parts = []
    for k in range(first_copy, first_copy + n // per_copy + 1):
        copy = template
        for prefix in PREFIXES:
            copy = copy.replace(prefix, prefix[:-1] + f"c{k}-".encode())
        parts.append(copy)
    blob = b"".join(parts)
    cut = 0
    for _ in range(n):
        cut = blob.index(b"\r\n\r\n", cut) + 4
    return blob[:cut]


# -- parser ---------------------------------------------------------------------------------


def bench_own_parser(data: bytes) -> tuple[int, float]:
    parser = AmiParser(expect_banner=False)
    count = 0
    t0 = time.perf_counter()
    for i in range(0, len(data), CHUNK):
        count += len(parser.feed(data[i : i + CHUNK]))
    return count, time.perf_counter() - t0


def bench_panoramisk_parser(data: bytes) -> tuple[int, float]:
    from panoramisk.ami_protocol import AMIProtocol

    class Factory:
        count = 0

        def dispatch(self, message) -> None:
            self.count += 1

    proto = AMIProtocol()
    proto.connection_made(transport=None)
    proto.factory = Factory()
    proto.encoding = "utf-8"
    proto.version = "9.0.0"
    t0 = time.perf_counter()
    for i in range(0, len(data), CHUNK):
        proto.data_received(data[i : i + CHUNK])
    return proto.factory.count, time.perf_counter() - t0


# -- loopback client ------------------------------------------------------------------------


def serve(sock: socket.socket, data: bytes) -> None:
    """Server process: banner, accept any Login, blast the stream, answer Logoff; per connection."""
    while True:
        conn, _ = sock.accept()
        conn.sendall(b"Asterisk Call Manager/9.0.0\r\n")
        buf = b""
        while b"\r\n\r\n" not in buf:
            buf += conn.recv(4096)
        action_id = next(
            (ln.split(b": ", 1)[1] for ln in buf.split(b"\r\n") if ln.lower().startswith(b"actionid")), b""
        )
        conn.sendall(b"Response: Success\r\nActionID: " + action_id + b"\r\nMessage: Authentication accepted\r\n\r\n")
        conn.sendall(data + DONE)
        try:
            while conn.recv(4096):
                pass
        except OSError:
            pass
        conn.close()


async def own_client(port: int, with_tracker: bool) -> tuple[int, float]:
    done = asyncio.Event()
    count = 0
    tracker = CallTracker(mixmonitor="dialplan", cdr_wait_s=0)
    now = datetime.now(UTC)

    def on_event(msg: Message) -> None:
        nonlocal count
        count += 1
        if msg.event == "UserEvent":
            done.set()
        elif with_tracker:
            tracker.handle(msg, now)

    client = AmiClient("127.0.0.1", port, "bench", "bench", on_event=on_event, ping_interval_s=3600)
    t0 = time.perf_counter()
    await client.connect()
    await done.wait()
    elapsed = time.perf_counter() - t0
    await client.close()
    return count - 1, elapsed


async def panoramisk_client(port: int) -> tuple[int, float]:
    from panoramisk import Manager

    done = asyncio.Event()
    count = 0

    def on_event(manager, msg) -> None:
        nonlocal count
        count += 1
        if msg.get("Event") == "UserEvent":
            done.set()

    manager = Manager(host="127.0.0.1", port=port, username="bench", secret="bench", ping_delay=3600, encoding="utf-8")
    manager.register_event("*", on_event)
    t0 = time.perf_counter()
    await manager.connect()
    await done.wait()
    elapsed = time.perf_counter() - t0
    manager.close()
    return count - 1, elapsed


def run_client(kind: str, data: bytes) -> tuple[int, float]:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen()
    server = multiprocessing.Process(target=serve, args=(sock, data), daemon=True)
    server.start()
    port = sock.getsockname()[1]
    try:
        if kind == "panoramisk":
            return asyncio.run(panoramisk_client(port))
        return asyncio.run(own_client(port, with_tracker=kind == "own+tracker"))
    finally:
        server.terminate()
        server.join()
        sock.close()


# -- memory ---------------------------------------------------------------------------------


def rss_kib() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") // 1024


def bench_memory(total: int) -> dict[str, object]:
    copies = 100_000 // len(template_blocks()) + 1
    parser = AmiParser(expect_banner=False)
    tracker = CallTracker(mixmonitor="dialplan", cdr_wait_s=0)
    now = datetime.now(UTC)
    samples = []
    events = 0
    for n in range(total // 100_000):
        block = synthetic(100_000, first_copy=n * copies)
        for i in range(0, len(block), CHUNK):
            for msg in parser.feed(block[i : i + CHUNK]):
                tracker.handle(msg, now)
                events += 1
        tracker.tick(now)
        samples.append(rss_kib())
    return {
        "events": events,
        "rss_kib_every_100k": samples,
        "growth_kib_100k_to_end": samples[-1] - samples[0],
        "calls_still_tracked": len(tracker.active_calls),
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--events", type=int, default=100_000)
    ap.add_argument("--memory-events", type=int, default=1_000_000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "ami.json")
    args = ap.parse_args()
    data = synthetic(args.events)
    results: dict[str, object] = {
        "command": "python " + " ".join(sys.argv),
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}",
        "stream": {"events": args.events, "bytes": len(data), "mean_event_bytes": round(len(data) / args.events)},
        "note": "best of --repeat runs; the loopback server is a separate process sharing the machine's cores",
    }
    rates: dict[str, float] = {}
    for name, fn in (("parser_own", bench_own_parser), ("parser_panoramisk", bench_panoramisk_parser)):
        best = min((fn(data) for _ in range(args.repeat)), key=lambda r: r[1])
        assert best[0] == args.events, (name, best[0])
        rates[name] = round(best[0] / best[1])
    for kind in ("own", "own+tracker", "panoramisk"):
        best = min((run_client(kind, data) for _ in range(args.repeat)), key=lambda r: r[1])
        assert best[0] >= args.events - 1, (kind, best[0])
        rates[f"client_{kind}"] = round(args.events / best[1])
    results["events_per_s"] = rates
    results["ratios"] = {
        "parser_own_vs_panoramisk": round(rates["parser_own"] / rates["parser_panoramisk"], 2),
        "client_own_vs_panoramisk": round(rates["client_own"] / rates["client_panoramisk"], 2),
    }
    results["memory_parser_plus_tracker"] = bench_memory(args.memory_events)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
