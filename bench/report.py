"""Draws the benchmark report from bench/results/*.json: sip.png, webrtc.png, ami.png and REPORT.md.

Reads whichever of sip.json, webrtc.json, ami.json and pipeline.json exist (a missing one is
left out of the report, with a note) and writes the figures and a Markdown table per benchmark,
each with the command that produced it, when, and on what machine. REPORT.md's headings start
at level 3 so it can sit under the README's "## Performance"; its images are relative to it.

Usage: python bench/report.py [--results bench/results]
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
SATURATED_BUSY_PCT = 95  # machine busy % above which a WebRTC row measures the box, not the adapter
OURS, BASELINE, OURS_ALT = "tab:blue", "tab:orange", "tab:green"
WEBRTC_SERVERS = (("ours", "ours", OURS), ("janus", "Janus", BASELINE), ("before", "ours before", "tab:gray"))


def provenance(doc: dict) -> str:
    machine = doc.get("machine", "unknown machine")
    if isinstance(machine, dict):
        machine = f"{machine.get('cpus', '?')} cores, Python {machine.get('python', '?')}"
    when = doc.get("when") or doc.get("date") or "unknown time"
    return f"Command: `{doc['command'].strip()}`  \nMachine: {machine}; run {when}."


def table(header: list[str], rows: list[list[object]]) -> str:
    def cell(value: object) -> str:
        return "–" if value is None else str(value)

    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def figure(ncols: int, title: str, width: float = 5.2) -> tuple[plt.Figure, list[plt.Axes]]:
    fig, axes = plt.subplots(1, ncols, figsize=(width * ncols, 4.4), layout="constrained", squeeze=False)
    fig.suptitle(title, fontsize=13)
    for ax in axes[0]:
        ax.grid(True, alpha=0.3)
    return fig, list(axes[0])


def sip(doc: dict, out: Path) -> str:
    runs = doc["runs"]
    calls = [r["ours"]["calls"] for r in runs]
    two = [r["ours"] for r in runs]
    one = [r.get("ours_one_stream") for r in runs]
    bare = [r.get("baresip_one_stream") for r in runs]
    fig, (cpu, lost, lat) = figure(3, "SIP recorder under sipp load (G.711, 20 ms RTP)")

    cpu.plot(
        calls, [r["cpu_ms_per_call_second"] for r in two], "o-", color=OURS_ALT, label="ours, SIPREC (2 streams/call)"
    )
    if all(one) and all(bare):
        cpu.plot(calls, [r["cpu_ms_per_call_second"] for r in one], "o-", color=OURS, label="ours, 1 stream/call")
        cpu.plot(
            calls,
            [r["cpu_ms_per_call_second"] for r in bare],
            "s--",
            color=BASELINE,
            label="baresip (C), 1 stream/call",
        )
        for n, r in zip(calls, bare, strict=True):
            if r["sipp_exit"]:
                cpu.annotate(
                    f"sipp exit {r['sipp_exit']}",
                    (n, r["cpu_ms_per_call_second"]),
                    textcoords="offset points",
                    xytext=(-30, 10),
                    fontsize=8,
                    color=BASELINE,
                )
    cpu.set(title="CPU per call-second", xlabel="concurrent calls", ylabel="CPU ms per call-second", ylim=(0, None))
    cpu.legend(fontsize=8)

    slots = range(len(calls))
    series = [(two, OURS_ALT, "ours, 2 streams/call", -0.2)]
    if all(one):
        series.append((one, OURS, "ours, 1 stream/call", 0.2))
    for rows, color, label, shift in series:
        bars = lost.bar([i + shift for i in slots], [r["rtp_lost"] for r in rows], 0.4, color=color, label=label)
        lost.bar_label(bars, fontsize=9)
    sent = [f"{n}\n({r['rtp_expected'] // 1000} k sent)" for n, r in zip(calls, two, strict=True)]
    lost.set_xticks(list(slots), sent)
    lost.set(title="RTP packets lost (sent: 2 streams/call)", xlabel="concurrent calls", ylabel="packets lost")
    lost.set_ylim(0, max(3, *(r["rtp_lost"] for r in two + [r for r in one if r])) * 1.3)
    lost.legend(fontsize=8)

    for rows, color, label in [(two, OURS_ALT, "2 streams/call"), (one, OURS, "1 stream/call")]:
        if all(rows):
            lat.plot(calls, [r["bye_to_vcon_s_p50"] for r in rows], "o-", color=color, label=f"p50, {label}")
            lat.plot(calls, [r["bye_to_vcon_s_p99"] for r in rows], "^:", color=color, label=f"p99, {label}")
    lat.set(title="BYE → vCon on disk", xlabel="concurrent calls", ylabel="seconds (log)", yscale="log")
    lat.legend(fontsize=8)
    fig.savefig(out / "sip.png", dpi=110)
    plt.close(fig)

    def baresip_cpu(b: dict | None) -> object:
        if b and b["sipp_exit"]:
            return f"{b['cpu_ms_per_call_second']} (sipp exit {b['sipp_exit']})"
        return b and b["cpu_ms_per_call_second"]

    def p50_p99(o: dict | None) -> str | None:
        return o and f"{o['bye_to_vcon_s_p50']} / {o['bye_to_vcon_s_p99']}"

    rows = [
        [
            n,
            t["cpu_ms_per_call_second"],
            o and o["cpu_ms_per_call_second"],
            baresip_cpu(b),
            r.get("cpu_ratio_ours_vs_baresip_one_stream"),
            f"{t['rtp_lost']} / {t['rtp_expected']:,}",
            p50_p99(t),
            p50_p99(o),
            t["max_rss_mib"],
            b and b["max_rss_mib"],
        ]
        for n, t, o, b, r in zip(calls, two, one, bare, runs, strict=True)
    ]
    header = [
        "calls",
        "ours CPU ms/call-s (SIPREC, 2 streams)",
        "ours CPU ms/call-s (1 stream)",
        "baresip CPU ms/call-s (1 stream)",
        "ratio ours/baresip (1 stream)",
        "RTP lost (2 streams)",
        "BYE→vCon p50/p99 s (2 streams)",
        "BYE→vCon p50/p99 s (1 stream)",
        "ours max RSS MiB",
        "baresip max RSS MiB",
    ]
    return "\n\n".join(
        [
            "### SIP",
            provenance(doc),
            table(header, rows),
            doc.get("note", "") and f"Note: {doc['note']}.",
            "![SIP: CPU per call-second, loss, BYE→vCon](sip.png)",
        ]
    )


def webrtc(doc: dict, out: Path) -> str:
    runs = doc["runs"]
    n = [r["sessions"] for r in runs]
    servers = [(k, label, color) for k, label, color in WEBRTC_SERVERS if any(k in r for r in runs)]
    starved = [r["machine_busy_pct_2_cores"] >= SATURATED_BUSY_PCT for r in runs]
    fig, (per, core, loss) = figure(3, "WebRTC (Opus): N aiortc sessions on one core, the server on the other")

    def series(key: str, field: str) -> tuple[list[int], list[float]]:
        points = [(r["sessions"], r[key][field]) for r in runs if key in r and r[key].get(field) is not None]
        return [p[0] for p in points], [p[1] for p in points]

    for key, label, color in servers:
        per.plot(*series(key, "per_session_cpu_pct"), "o-", color=color, label=label)
        core.plot(*series(key, "server_cpu_pct_of_one_core"), "o-", color=color, label=label)
        loss.plot(*series(key, "audio_loss_pct_max"), "o-", color=color, label=f"{label}: audio lost, max")
        failed = [
            (r["sessions"], r[key]["audio_loss_pct_max"])
            for r in runs
            if key in r and not r[key].get("loss_out_equals_loss_in")
        ]
        if failed:
            loss.plot(*zip(*failed, strict=True), "x", ms=11, color="tab:red")
    loss_in = [r.get("ours", r.get("janus", {})).get("loss_in_pct") or 0 for r in runs]
    loss.plot(n, loss_in, "k--", label="loss in (dropped by clients)")
    per.set(title="Server CPU per session", xlabel="concurrent sessions", ylabel="% of one core", ylim=(0, None))
    core.axhline(100, color="gray", lw=1)
    core.set(title="Server CPU (its own core)", xlabel="concurrent sessions", ylabel="% of one core", ylim=(0, None))
    loss.set(title="Loss out vs loss in (x: not equal)", xlabel="concurrent sessions", ylabel="% of sent audio")
    loss.set_ylim(bottom=0, top=max(1.0, loss.get_ylim()[1]))
    for ax in (per, core, loss):
        ax.legend(fontsize=8)
    fig.savefig(out / "webrtc.png", dpi=110)
    plt.close(fig)

    def cell(r: dict, key: str, field: str) -> object:
        return r[key].get(field) if key in r else None

    def trio(r: dict, field: str) -> str:
        return " / ".join(
            "–" if cell(r, k, field) is None else str(cell(r, k, field)) for k in ("ours", "janus", "before")
        )

    rows = [
        [
            r["sessions"],
            f"{r['completed']}/{r['sessions']}",
            r["server_cpu_pct_of_one_core"],
            cell(r, "ours", "per_session_cpu_pct"),
            cell(r, "janus", "per_session_cpu_pct"),
            r.get("cpu_per_session_ratio_ours_to_janus"),
            cell(r, "before", "per_session_cpu_pct"),
            r.get("cpu_per_session_ratio_ours_to_before"),
            cell(r, "ours", "loss_in_pct"),
            trio(r, "loss_out_pct"),
            trio(r, "audio_loss_pct_max"),
            cell(r, "ours", "delete_to_vcon_s_median"),
            f"{r['machine_busy_pct_2_cores']}" + (" (box-bound)" if s else ""),
            " / ".join(f"{v:.2f}" for v in r.get("load_average_before", [])[:1] + r.get("load_average_after", [])[:1]),
        ]
        for r, s in zip(runs, starved, strict=True)
    ]
    header = [
        "sessions",
        "completed (ours)",
        "ours CPU % of its core",
        "ours per session %",
        "Janus per session %",
        "ours / Janus",
        "before per session %",
        "ours / before",
        "loss in %",
        "loss out ours / Janus / before %",
        "audio lost max ours / Janus / before %",
        "DELETE→vCon median s",
        "machine busy % (2 cores)",
        "load avg before / after",
    ]
    setup = doc.get("setup", {})
    notes = [f"{name}: {text}" for name, text in setup.items() if text]
    return "\n\n".join(
        [
            "### WebRTC",
            provenance(doc),
            table(header, rows),
            "Setup. " + "; ".join(notes) + ".",
            "![WebRTC: CPU per session, CPU of the server core, loss out vs loss in](webrtc.png)",
        ]
    )


def ami(doc: dict, out: Path) -> str:
    rate = doc["events_per_s"]
    groups = [
        ("parser", rate["parser_own"], rate["parser_panoramisk"]),
        ("client over TCP", rate["client_own"], rate["client_panoramisk"]),
    ]
    fig, axes = figure(
        1,
        f"AMI throughput: {doc['stream']['events']:,} events from the real transcripts\n"
        f"(mean {doc['stream']['mean_event_bytes']} B), ours vs panoramisk",
        width=7.5,
    )
    ax = axes[0]
    x = range(len(groups))
    for shift, idx, color, label in [(-0.2, 1, OURS, "ours"), (0.2, 2, BASELINE, "panoramisk")]:
        bars = ax.bar([i + shift for i in x], [g[idx] for g in groups], 0.4, color=color, label=label)
        ax.bar_label(bars, [f"{g[idx] / 1000:.0f} k" for g in groups], fontsize=9)
    if "client_own+tracker" in rate:
        bars = ax.bar(
            [len(groups) - 0.2],
            [rate["client_own+tracker"]],
            0.4,
            color=OURS,
            hatch="//",
            label="ours, client + call tracker",
        )
        ax.bar_label(bars, [f"{rate['client_own+tracker'] / 1000:.0f} k"], fontsize=9)
    ax.set_xticks(
        [*x, len(groups) - 0.2] if "client_own+tracker" in rate else list(x),
        [g[0] for g in groups] + (["client + tracker"] if "client_own+tracker" in rate else []),
    )
    ax.set(ylabel="events per second (thousands)", ylim=(0, max(g[1] for g in groups) * 1.2))
    ax.yaxis.set_major_formatter(lambda v, _: f"{v / 1000:.0f}")
    ax.legend(fontsize=9)
    fig.savefig(out / "ami.png", dpi=110)
    plt.close(fig)

    ratios = doc.get("ratios", {})
    rows = [
        [
            "parser (64 KiB chunks, no sockets)",
            rate["parser_own"],
            rate["parser_panoramisk"],
            ratios.get("parser_own_vs_panoramisk"),
        ],
        [
            "client over loopback TCP",
            rate["client_own"],
            rate["client_panoramisk"],
            ratios.get("client_own_vs_panoramisk"),
        ],
    ]
    if "client_own+tracker" in rate:
        rows.append(["client + call tracker", rate["client_own+tracker"], None, None])
    parts = ["### AMI", provenance(doc), table(["path", "ours events/s", "panoramisk events/s", "ratio"], rows)]
    if mem := doc.get("memory_parser_plus_tracker"):
        parts.append(
            f"Memory: {mem['events']:,} events through parser + tracker grow RSS by "
            f"{mem['growth_kib_100k_to_end']:,} KiB after the first 100k ({mem['calls_still_tracked']} "
            "calls still tracked at the end)."
        )
    if note := doc.get("note"):
        parts.append(f"Note: {note}.")
    parts.append("![AMI: events/s, ours vs panoramisk](ami.png)")
    return "\n\n".join(parts)


def pipeline(doc: dict, out: Path) -> str:
    header = [
        "calls ending at once",
        "audio s per party",
        "all vCons written after s",
        "vCons/s",
        "CallEnded→vCon p50 s",
        "p99 s",
    ]
    row = [
        doc["calls"],
        doc["audio_seconds_per_party"],
        doc["drain_s"],
        doc["vcons_per_s"],
        doc["latency_p50_s"],
        doc["latency_p99_s"],
    ]
    return "\n\n".join(["### Pipeline (hang-up burst)", provenance(doc), table(header, [row])])


SECTIONS: dict[str, Callable[[dict, Path], str]] = {"sip": sip, "webrtc": webrtc, "ami": ami, "pipeline": pipeline}


def report(results: Path) -> list[str]:
    """Draws every figure it has data for, writes REPORT.md, and returns the names it left out."""
    parts, missing = [], []
    for name, section in SECTIONS.items():
        path = results / f"{name}.json"
        if path.exists():
            parts.append(section(json.loads(path.read_text()), results))
        else:
            missing.append(name)
    if missing:
        parts.append("Not in this report (no results): " + ", ".join(f"`{m}.json`" for m in missing) + ".")
    (results / "REPORT.md").write_text("\n\n".join(parts) + "\n")
    return missing


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--results", type=Path, default=RESULTS, help="directory with the JSON; figures go there too")
    args = parser.parse_args()
    missing = report(args.results)
    for name in missing:
        print(f"report: no {name}.json in {args.results}, left out", file=sys.stderr)
    print(args.results / "REPORT.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
