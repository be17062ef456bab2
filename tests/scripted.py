"""A scripted adapter: it plays call scenarios into the core exactly as a protocol adapter would.

It stands in for SIP/WebRTC/AMI in the core's own tests (those adapters have their own
tests with real peers). Run as a process to test the service end to end, including kills:
``python tests/scripted.py SCENARIO [core flags...]``.
"""

from __future__ import annotations

import asyncio
import sys
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from audiocheck import voice_like  # noqa: E402

from capture import events as ev  # noqa: E402
from capture.adapter import Adapter, Capture  # noqa: E402
from capture.settings import setting  # noqa: E402

RATE = 8000
FRAME = 160
SESSION = "0a1b2c3d-4e5f-4a6b-8c7d-8e9fa0b1c2d3"


def pcm(seconds: float, seed: int) -> np.ndarray:
    return (voice_like(seconds, RATE, seed) * 32767).astype(np.int16)


def play(
    capture: Capture, call_id: str, party: str, audio: np.ndarray, anchor: datetime, lost: frozenset[int] = frozenset()
) -> None:
    """Write ``audio`` (first sample at ``anchor``) frame by frame as an RTP receiver would, minus ``lost`` frames."""
    rec = capture.open_recording(call_id, f"{party}-leg", party, RATE)
    for i in range(0, len(audio) // FRAME):
        if i in lost:
            continue
        rec.write_at(i * FRAME, audio[i * FRAME : (i + 1) * FRAME], at=anchor + timedelta(seconds=i * FRAME / RATE))


async def answered(capture: Capture, call_id: str) -> None:
    now = capture.now
    t0 = now()
    capture.emit(ev.CallStarted(call_id=call_id, at=t0, source="scripted", session_id=(SESSION, "")))
    capture.emit(ev.PartyJoined(call_id=call_id, at=now(), party="alice", tel="+15551230001", name="Alice"))
    capture.emit(ev.PartyJoined(call_id=call_id, at=now(), party="bob", sip="sip:bob@example.com", name="Bob"))
    capture.emit(ev.CallAnswered(call_id=call_id, at=now()))
    play(capture, call_id, "alice", pcm(3.0, 1), t0, lost=frozenset(range(50, 60)))
    play(capture, call_id, "bob", pcm(2.5, 2), t0 + timedelta(seconds=0.5))
    capture.emit(ev.DtmfReceived(call_id=call_id, at=now(), party="alice", digit="5", duration_s=0.1))
    capture.emit(ev.HoldChanged(call_id=call_id, at=now(), party="bob", held=True))
    capture.emit(ev.HoldChanged(call_id=call_id, at=now(), party="bob", held=False))
    capture.emit(
        ev.AttachmentAdded(
            call_id=call_id,
            at=now(),
            purpose="sip-invite",
            mediatype="message/sip",
            body="INVITE sip:x SIP/2.0\r\n\r\n",
            party="alice",
        )
    )
    capture.emit(ev.CdrFields(call_id=call_id, at=now(), fields={"sip_call_id": call_id}))
    capture.emit(
        ev.CallEnded(call_id=call_id, at=now() + timedelta(seconds=3), cause="normal clearing", ended_by="bob")
    )


async def busy(capture: Capture, call_id: str) -> None:
    now = capture.now
    capture.emit(ev.CallStarted(call_id=call_id, at=now(), source="scripted"))
    capture.emit(ev.PartyJoined(call_id=call_id, at=now(), party="alice", tel="+15551230001"))
    capture.emit(ev.PartyJoined(call_id=call_id, at=now(), party="bob", tel="+15551230002"))
    capture.emit(ev.CallEnded(call_id=call_id, at=now(), disposition=ev.Disposition.BUSY, cause="User busy"))


async def transfer(capture: Capture, call_id: str) -> None:
    now = capture.now
    t0 = now()
    capture.emit(ev.CallStarted(call_id=call_id, at=t0, source="scripted"))
    for key, tel in (("alice", "+15551230001"), ("bob", "+15551230002"), ("carol", "+15551230003")):
        capture.emit(ev.PartyJoined(call_id=call_id, at=now(), party=key, tel=tel))
    capture.emit(ev.CallAnswered(call_id=call_id, at=now()))
    play(capture, call_id, "alice", pcm(2.0, 3), t0)
    play(capture, call_id, "bob", pcm(1.0, 4), t0)
    capture.emit(ev.Transferred(call_id=call_id, at=now(), transferee="alice", transferor="bob", target="carol"))
    capture.emit(ev.PartyLeft(call_id=call_id, at=now(), party="bob"))
    play(capture, call_id, "carol", pcm(1.0, 5), t0 + timedelta(seconds=1))
    capture.emit(ev.CallEnded(call_id=call_id, at=now() + timedelta(seconds=2)))


async def midcall(capture: Capture, call_id: str) -> None:
    """A call that never ends: audio in real time until the process is killed."""
    now = capture.now
    capture.emit(ev.CallStarted(call_id=call_id, at=now(), source="scripted"))
    capture.emit(ev.PartyJoined(call_id=call_id, at=now(), party="alice", tel="+15551230001"))
    capture.emit(ev.CallAnswered(call_id=call_id, at=now()))
    rec = capture.open_recording(call_id, "alice-leg", "alice", RATE)
    audio = pcm(600.0, 6)
    print(f"call started {capture.vcon_uuid(call_id)}", flush=True)
    await real_time(rec, audio, now)


async def real_time(rec, audio: np.ndarray, now) -> None:  # type: ignore[no-untyped-def]
    """Write ``audio`` frame by frame as an RTP receiver would, keeping to the wall clock: a busy
    process catches up (as a receiver drains its socket), it never falls behind real time."""
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    for i in range(len(audio) // FRAME):
        rec.write_at(i * FRAME, audio[i * FRAME : (i + 1) * FRAME], at=now())
        await asyncio.sleep(max(0.0, t0 + (i + 1) * FRAME / RATE - loop.time()))


async def timed(capture: Capture, call_id: str, seconds: float, seed: int) -> None:
    """A call of ``seconds`` of one party's audio (``pcm(seconds, seed)``), played in real time, then hung up."""
    now = capture.now
    capture.emit(ev.CallStarted(call_id=call_id, at=now(), source="scripted"))
    capture.emit(ev.PartyJoined(call_id=call_id, at=now(), party="alice", tel=f"+1555123000{seed}"))
    capture.emit(ev.CallAnswered(call_id=call_id, at=now()))
    rec = capture.open_recording(call_id, "alice-leg", "alice", RATE)
    audio = pcm(seconds, seed)
    print(f"call started {capture.vcon_uuid(call_id)}", flush=True)
    await real_time(rec, audio, now)
    capture.emit(ev.CallEnded(call_id=call_id, at=now()))


async def bulk(capture: Capture, call_id: str, seconds: float) -> None:
    """A two-party call with ``seconds`` of audio each, recorded as fast as the recorder takes it (time compressed)."""
    now = capture.now
    t0 = now()
    capture.emit(ev.CallStarted(call_id=call_id, at=t0, source="scripted"))
    for n, party in enumerate(("alice", "bob")):
        capture.emit(ev.PartyJoined(call_id=call_id, at=t0, party=party, tel=f"+1555123000{n + 1}"))
    capture.emit(ev.CallAnswered(call_id=call_id, at=t0))
    chunk = pcm(60.0, 7)
    recordings = [capture.open_recording(call_id, f"{p}-leg", p, RATE) for p in ("alice", "bob")]
    for i in range(int(seconds // 60)):
        for n, rec in enumerate(recordings):
            rec.write_at(i * len(chunk), np.roll(chunk, n * 800), at=t0)
        await asyncio.sleep(0)
    print(f"call started {capture.vcon_uuid(call_id)}", flush=True)
    capture.emit(ev.CallEnded(call_id=call_id, at=t0 + timedelta(seconds=seconds)))


SCENARIOS = {"answered": answered, "busy": busy, "transfer": transfer, "midcall": midcall, "timed": timed}


@dataclass(frozen=True)
class ScriptedSettings:
    scenario: str = setting("answered", "scenario to play: " + ", ".join(SCENARIOS))
    calls: int = setting(1, "how many calls to play")
    call_seconds: float = setting(10.0, "timed: seconds of audio per call")
    gap_s: float = setting(0.0, "timed: seconds between the starts of two calls (0: one after the other)")


class ScriptedAdapter(Adapter):
    name = "scripted"
    summary = "plays scripted calls (tests only)"
    settings_class = ScriptedSettings

    async def start(self) -> None:
        self._task = asyncio.create_task(self._play())

    async def _play(self) -> None:
        s = self.settings
        if s.scenario == "bulk":
            await bulk(self.capture, "bulk-0", s.call_seconds)
            return
        if s.scenario == "timed":
            calls = []
            for n in range(s.calls):
                calls.append(asyncio.create_task(timed(self.capture, f"timed-{n}", s.call_seconds, n + 1)))
                await (asyncio.sleep(s.gap_s) if s.gap_s else calls[-1])
            await asyncio.gather(*calls)
            return
        for n in range(s.calls):
            await SCENARIOS[s.scenario](self.capture, f"{s.scenario}-{n}")

    async def stop(self) -> None:
        self._task.cancel()


def main(argv: list[str]) -> int:
    from capture import logs
    from capture.config import load
    from capture.service import serve

    flags: dict[str, str] = {}
    for arg in argv:
        key, _, value = arg.removeprefix("--").partition("=")
        flags[key.replace("-", "_")] = value
    config = load({}, {"scripted": ScriptedAdapter}, env={}, flags=flags, only="scripted")
    logs.configure(config.core.log_level, config.core.log_format)
    return asyncio.run(serve(config, {"scripted": ScriptedAdapter}))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
