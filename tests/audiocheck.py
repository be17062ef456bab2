"""Compare recorded audio with what was sent: per-window normalized cross-correlation.

Shared by the SIP, WebRTC and AMI tests. All functions take float arrays at one sample rate.
"""

from __future__ import annotations

import io
import wave
from pathlib import Path

import numpy as np
import soundfile as sf


def read_audio(source: Path | bytes, rate: int | None = None) -> tuple[np.ndarray, int]:
    """(samples as float64 of shape (n, channels), sample rate), resampled to ``rate`` if given."""
    data, sr = sf.read(io.BytesIO(source) if isinstance(source, bytes) else source, dtype="float64", always_2d=True)
    if rate is not None and rate != sr:
        data = resample(data, sr, rate)
        sr = rate
    return data, sr


def resample(data: np.ndarray, src: int, dst: int) -> np.ndarray:
    """Linear-interpolation resampling (enough for correlation checks)."""
    n = int(round(len(data) * dst / src))
    x_old = np.arange(len(data)) / src
    x_new = np.arange(n) / dst
    if data.ndim == 1:
        return np.interp(x_new, x_old, data)
    return np.stack([np.interp(x_new, x_old, data[:, c]) for c in range(data.shape[1])], axis=1)


def best_lag(reference: np.ndarray, recorded: np.ndarray, rate: int, max_lag_s: float = 1.0) -> int:
    """Lag (samples) at which ``recorded`` best matches ``reference``: recorded[i + lag] ~ reference[i]."""
    n = min(len(reference), len(recorded), int(rate * 5))
    max_lag = int(max_lag_s * rate)
    ref = reference[:n]
    best, best_score = 0, -np.inf
    spec_len = 1 << int(np.ceil(np.log2(len(recorded) + n)))
    corr = np.fft.irfft(np.fft.rfft(recorded, spec_len) * np.conj(np.fft.rfft(ref, spec_len)), spec_len)
    for lag in range(-max_lag, max_lag + 1):
        score = corr[lag % spec_len]
        if score > best_score:
            best, best_score = lag, score
    return best


def window_ncc(
    reference: np.ndarray,
    recorded: np.ndarray,
    rate: int,
    *,
    window_s: float = 1.0,
    slip_s: float = 0.04,
    max_lag_s: float = 1.0,
) -> list[float]:
    """Normalized cross-correlation per window after global alignment.

    Each window may slip by up to ``slip_s`` (PJSIP-style 20 ms frame slips). Windows of
    silence in the reference are skipped.
    """
    lag = best_lag(reference, recorded, rate, max_lag_s)
    win = int(window_s * rate)
    slip = int(slip_s * rate)
    scores: list[float] = []
    for start in range(0, len(reference) - win + 1, win):
        ref = reference[start : start + win]
        if np.sqrt(np.mean(ref**2)) < 1e-3:
            continue
        best = 0.0
        for s in range(-slip, slip + 1, max(1, rate // 1000)):
            a = start + lag + s
            if a < 0 or a + win > len(recorded):
                continue
            rec = recorded[a : a + win]
            denom = np.sqrt(np.sum(ref**2) * np.sum(rec**2))
            if denom > 0:
                best = max(best, float(np.sum(ref * rec) / denom))
        scores.append(best)
    return scores


def level_db(samples: np.ndarray) -> float:
    """RMS level in dBFS."""
    rms = np.sqrt(np.mean(np.square(samples))) if len(samples) else 0.0
    return 20 * np.log10(max(rms, 1e-10))


def tone(freq: float, seconds: float, rate: int, amplitude: float = 0.5) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    return amplitude * np.sin(2 * np.pi * freq * t)


def voice_like(seconds: float, rate: int, seed: int) -> np.ndarray:
    """A deterministic, speech-like test signal: gliding harmonics with syllable-rate bursts.

    Unlike a pure tone it does not correlate with itself at small shifts, so alignment and
    cross-talk checks are meaningful.
    """
    rng = np.random.default_rng(seed)
    n = int(seconds * rate)
    t = np.arange(n) / rate
    f0 = 120 + 60 * rng.random() + 40 * np.sin(2 * np.pi * (0.3 + 0.4 * rng.random()) * t)
    phase = 2 * np.pi * np.cumsum(f0) / rate
    sig = sum((0.6 / k) * np.sin(k * phase + rng.random() * 6.28) for k in range(1, 6))
    envelope = 0.5 + 0.5 * np.sin(2 * np.pi * (3 + rng.random()) * t + rng.random() * 6.28)
    noise = rng.standard_normal(n) * 0.05
    out = (sig * envelope + noise) * 0.35
    return np.clip(out, -0.95, 0.95)


def write_wav(path: Path, samples: np.ndarray, rate: int) -> Path:
    """16-bit PCM WAV (mono or (n, channels))."""
    data = np.asarray(np.clip(samples, -1, 1) * 32767, dtype=np.int16)
    channels = 1 if data.ndim == 1 else data.shape[1]
    with wave.open(str(path), "wb") as w:
        w.setnchannels(channels)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(data.tobytes())
    return path
