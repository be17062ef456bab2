"""What each server recorded, against what the clients sent.

Ours: every session's vCon, its one channel aligned to the sent speech (loss = silence-filled
runs and missing ends, window correlation), and the packet counts the server logged when the
participant left. Janus: every session's .mjr (packets against the client's count, RTP
sequence span), its Opus decoded and placed by RTP timestamp (gaps as silence), and the
same audio checks, so both servers are judged by one yardstick.
"""

from __future__ import annotations

import json
import statistics
import sys
from pathlib import Path
from typing import Any

import av
import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(ROOT / "tests"), str(ROOT / "tests" / "webrtc")]

from audiocheck import best_lag, window_ncc  # noqa: E402
from janus_server import read_mjr  # noqa: E402
from webrtc_harness import RATE, lost_fraction, recording  # noqa: E402


def audio_check(audio: np.ndarray, source: np.ndarray, result: dict[str, Any]) -> dict[str, float]:
    """Audio lost and windowed correlation, beside what this session's client dropped on purpose."""
    lag = best_lag(source, audio, RATE)
    scores = window_ncc(source, audio, RATE)
    return {
        "lost": lost_fraction(audio, source, lag),
        "dropped": result["dropped"] / result["sent"] if result.get("sent") else 0.0,
        "ncc_min": float(min(scores)) if scores else 0.0,
        "ncc_median": float(np.median(scores)) if scores else 0.0,
    }


def mjr_audio(path: Path) -> tuple[np.ndarray, int]:
    """A Janus Opus recording decoded, each packet at its RTP timestamp (gaps stay silence):
    (float samples in [-1, 1), packets)."""
    mjr = read_mjr(path, keep_payloads=True)
    if not mjr.packets:
        return np.zeros(0), 0
    decoder = av.CodecContext.create("libopus", "r")
    decoder.sample_rate = RATE
    first = mjr.rtp_timestamps[0]
    offsets = [(ts - first) % 2**32 for ts in mjr.rtp_timestamps]
    out = np.zeros(max(offsets) + RATE // 50, dtype=np.int16)
    for offset, payload in zip(offsets, mjr.payloads, strict=True):
        for frame in decoder.decode(av.Packet(payload)):
            pcm = frame.to_ndarray().reshape(-1, len(frame.layout.channels))[:, 0]
            end = min(len(out), offset + len(pcm))
            out[offset:end] = pcm[: end - offset]
    return out / 32768.0, mjr.packets


def summarize(checks: list[dict[str, float]], sessions: int) -> dict[str, Any]:
    losses = [c["lost"] for c in checks]
    excess = [c["lost"] - c["dropped"] for c in checks]
    return {
        "recordings_checked": len(checks),
        "recordings_missing": sessions - len(checks),
        "audio_loss_pct_mean": round(100 * statistics.fmean(losses), 3) if losses else None,
        "audio_loss_pct_max": round(100 * max(losses), 3) if losses else None,
        "audio_loss_over_loss_in_pct_max": round(100 * max(excess), 3) if excess else None,
        "ncc_min": round(min(c["ncc_min"] for c in checks), 3) if checks else None,
        "ncc_median_min": round(min(c["ncc_median"] for c in checks), 3) if checks else None,
    }


def ours(out_dir: Path, log: Path, results: list[dict[str, Any]], source: np.ndarray) -> dict[str, Any]:
    checks = []
    for result in results:
        path = out_dir / f"{result.get('vcon_uuid')}.vcon"
        if not path.exists():
            continue
        doc = json.loads(path.read_bytes())
        if not any(d["type"] == "recording" for d in doc["dialog"]):
            continue
        audio, _, _ = recording(doc)
        checks.append(audio_check(audio[:, 0], source, result))
    received = lost = 0
    for line in log.read_text(errors="replace").splitlines():
        if '"webrtc.participant_left"' in line:
            entry = json.loads(line)
            received += entry["packets"] - entry["packets_lost"]
            lost += entry["packets_lost"]
    return {**summarize(checks, len(results)), "packets_recorded": received, "packets_lost_seen_by_server": lost}


def janus(recordings: Path, results: list[dict[str, Any]], source: np.ndarray) -> dict[str, Any]:
    checks = []
    packets = 0
    short = []
    for result in results:
        path = recordings / f"{result.get('filename')}-audio.mjr"
        if not path.exists():
            continue
        audio, count = mjr_audio(path)
        packets += count
        if count != result["sent"] - result["dropped"]:
            short.append({"n": result["n"], "mjr_packets": count, "sent": result["sent"] - result["dropped"]})
        checks.append(audio_check(audio, source, result))
    return {**summarize(checks, len(results)), "packets_recorded": packets, "sessions_with_packet_mismatch": short[:10]}
