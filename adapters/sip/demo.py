"""``vcon-capture demo``: record one real SIP call end to end, on this machine only.

Starts ``vcon-capture sip`` on a free localhost port with its API (and so the operator
console) on another, prints the console's address, calls the recorder with pjsua2 (PJSIP)
playing a two-voice WAV made here (no downloads), hangs up after ~10 s, and prints where the
vCon is with a short summary. Run from a terminal, it then keeps the recorder (and the
console, showing that vCon) running until Ctrl-C; ``--wait``/``--no-wait`` choose.
"""

from __future__ import annotations

import argparse
import json
import socket
import subprocess
import sys
import tempfile
import time
import wave
from pathlib import Path
from typing import Any

import numpy as np

RATE = 8000


def two_voices(seconds: float, rate: int = RATE) -> np.ndarray:
    """Alternating turns of a low and a high synthetic voice (harmonic glides with syllable bursts)."""
    t = np.arange(int(seconds * rate)) / rate
    out = np.zeros_like(t)
    for k, f0 in enumerate((110.0, 210.0)):
        pitch = f0 * (1 + 0.15 * np.sin(2 * np.pi * 0.5 * t + k))
        phase = 2 * np.pi * np.cumsum(pitch) / rate
        voice = sum((0.5 / h) * np.sin(h * phase) for h in range(1, 6))
        syllables = 0.5 + 0.5 * np.sin(2 * np.pi * (3.5 + k) * t)
        turn = ((t // 2.5) % 2 == k).astype(float)
        out += voice * syllables * turn
    return np.clip(out * 0.4, -1, 1)


def write_wav(path: Path, samples: np.ndarray, rate: int = RATE) -> Path:
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes((samples * 32767).astype("<i2").tobytes())
    return path


def place_call(uri: str, wav: Path, seconds: float, *, timeout: float = 30.0) -> dict[str, Any]:
    """Call ``uri`` with pjsua2, play ``wav`` into the call for ``seconds``, hang up.

    Everything pjsua2 runs on this thread (threadCnt=0, polled), the pattern that is safe
    with its Python bindings. Returns what the call looked like to the caller.
    """
    import pjsua2 as pj

    ep = pj.Endpoint()
    ep.libCreate()
    cfg = pj.EpConfig()
    cfg.uaConfig.threadCnt = 0
    cfg.uaConfig.mainThreadOnly = True
    cfg.logConfig.level = 1
    cfg.logConfig.consoleLevel = 1
    cfg.medConfig.clockRate = RATE
    cfg.medConfig.sndClockRate = RATE
    cfg.medConfig.noVad = True
    ep.libInit(cfg)
    for codec in ("iLBC/8000/1", "GSM/8000/1"):  # the recorder takes the first it decodes: make it G.711
        try:
            ep.codecSetPriority(codec, 0)
        except pj.Error:
            pass
    tcfg = pj.TransportConfig()
    tcfg.boundAddress = "127.0.0.1"
    tcfg.port = 0
    ep.transportCreate(pj.PJSIP_TRANSPORT_UDP, tcfg)
    ep.libStart()
    ep.audDevManager().setNullDev()
    state: dict[str, Any] = {"confirmed_at": None, "disconnected": False, "status": None}
    player = pj.AudioMediaPlayer()
    player.createPlayer(str(wav), pj.PJMEDIA_FILE_NO_LOOP)

    class Call(pj.Call):
        def onCallState(self, prm: Any) -> None:
            try:
                info = self.getInfo()
                state["status"] = info.lastStatusCode
                if info.state == pj.PJSIP_INV_STATE_CONFIRMED and state["confirmed_at"] is None:
                    state["confirmed_at"] = time.monotonic()
                if info.state == pj.PJSIP_INV_STATE_DISCONNECTED:
                    state["disconnected"] = True
            except pj.Error as exc:
                print(f"pjsua2: {exc.info()}", file=sys.stderr)

        def onCallMediaState(self, prm: Any) -> None:
            try:
                info = self.getInfo()
                for i, media in enumerate(info.media):
                    if media.type == pj.PJMEDIA_TYPE_AUDIO and media.status == pj.PJSUA_CALL_MEDIA_ACTIVE:
                        player.startTransmit(self.getAudioMedia(i))
            except pj.Error as exc:
                print(f"pjsua2: {exc.info()}", file=sys.stderr)

    account = pj.Account()
    acfg = pj.AccountConfig()
    acfg.idUri = "sip:demo-caller@127.0.0.1"
    account.create(acfg)
    call = Call(account)
    try:
        call.makeCall(uri, pj.CallOpParam(True))
        deadline = time.monotonic() + timeout
        hung_up = False
        while not state["disconnected"] and time.monotonic() < deadline:
            ep.libHandleEvents(10)
            confirmed = state["confirmed_at"]
            if not hung_up and confirmed is not None and time.monotonic() - confirmed >= seconds:
                call.hangup(pj.CallOpParam(True))
                hung_up = True
        if not state["disconnected"]:
            ep.hangupAllCalls()
            for _ in range(50):
                ep.libHandleEvents(10)
    finally:
        del call
        player = None  # noqa: F841 (must be gone before libDestroy)
        account.shutdown()
        ep.libDestroy()
    return state


def _free_port(kind: int = socket.SOCK_DGRAM) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _summary(vcon: dict[str, Any]) -> str:
    parties = ", ".join(p.get("name") or p.get("tel") or p.get("sip") or "?" for p in vcon["parties"])
    lines = [f"  parties:  {parties}"]
    for d in vcon["dialog"]:
        channels = len(d["parties"]) if isinstance(d.get("parties"), list) else 1
        lines.append(f"  dialog:   {d['type']}, {d.get('duration', 0):.1f} s, {channels} channel(s)")
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="vcon-capture demo", description=main.summary)
    parser.add_argument("--out", type=Path, help="where the vCon lands (default: a new temporary directory)")
    parser.add_argument("--seconds", type=float, default=10.0, help="call length (default: 10)")
    parser.add_argument("--wait", action=argparse.BooleanOptionalAction, default=None,
                        help="keep the recorder and its console running after the vCon until Ctrl-C "
                             "(default: when the output is a terminal)")  # fmt: skip
    args = parser.parse_args(argv)
    wait = sys.stdout.isatty() if args.wait is None else args.wait
    out = args.out or Path(tempfile.mkdtemp(prefix="vcon-demo-"))
    port, api_port = _free_port(), _free_port(socket.SOCK_STREAM)
    console = f"http://127.0.0.1:{api_port}/console/"
    work = Path(tempfile.mkdtemp(prefix="vcon-demo-work-"))
    wav = write_wav(work / "two-voices.wav", two_voices(args.seconds + 2))
    log = (work / "recorder.log").open("wb")
    recorder = subprocess.Popen(
        [sys.executable, "-m", "capture", "sip", "--listen", f"127.0.0.1:{port}", "--out", str(out),
         "--state-dir", str(work / "state"), "--domain", "demo.localhost", "--api-listen", f"127.0.0.1:{api_port}"],
        stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 20
        while b"service.ready" not in (work / "recorder.log").read_bytes():
            if recorder.poll() is not None or time.monotonic() > deadline:
                print(f"demo: the recorder did not start; see {work / 'recorder.log'}", file=sys.stderr)
                return 1
            time.sleep(0.05)
        print(f"demo: recorder listening on sip:127.0.0.1:{port}")
        print(f"demo: watch the call live in the operator console: {console}")
        print(f"demo: calling the recorder with pjsua2 for {args.seconds:g} s", flush=True)
        state = place_call(f"sip:recorder@127.0.0.1:{port}", wav, args.seconds)
        if state["confirmed_at"] is None:
            print(f"demo: the call was not answered (last status {state['status']})", file=sys.stderr)
            return 1
        deadline = time.monotonic() + 15
        while not list(out.glob("*.vcon")) and time.monotonic() < deadline:
            time.sleep(0.1)
        files = sorted(out.glob("*.vcon"))
        if not files:
            print(f"demo: no vCon arrived; see {work / 'recorder.log'}", file=sys.stderr)
            return 1
        vcon = json.loads(files[-1].read_bytes())
        print(f"demo: vCon written to {files[-1]}")
        print(_summary(vcon))
        if wait:
            try:
                print(f"demo: the recorder keeps running: see the vCon (waveform, timeline, player) at {console}")
                print("demo: press Ctrl-C to stop it", flush=True)
                # Waiting in slices, not in one waitpid(): a thread pjsua2 left behind may take the
                # SIGINT, and only the main thread running Python code then raises KeyboardInterrupt.
                while recorder.poll() is None:
                    time.sleep(0.2)
            except KeyboardInterrupt:
                print("\ndemo: stopping the recorder")
        return 0
    finally:
        recorder.terminate()
        try:
            recorder.wait(15)
        except subprocess.TimeoutExpired:
            recorder.kill()
        log.close()


main.summary = "place one local SIP call with pjsua2 into the SIP recorder and print the vCon it made"  # type: ignore[attr-defined]
