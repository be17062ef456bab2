"""The end-to-end check of deploy/freeswitch/ against a real FreeSWITCH (README.md, "How this was checked").

    python3 deploy/freeswitch/lab/run.py WORKDIR VCON_DIR [SCENARIO ...]

Needs: FreeSWITCH configured as README.md says (recipe + lab-dialplan.xml), phone 1001 registered
from 127.0.0.1:5090 (scenarios/register.xml), `vcon-capture sip --listen 127.0.0.1:5070 --out VCON_DIR`,
and sipp. Each scenario: a sipp callee on 127.0.0.1:5090, a sipp caller on 127.0.0.1:5062 calling
FreeSWITCH's external profile (127.0.0.1:5080); the caller sends a 500 Hz tone for 3 s, the callee a
1500 Hz tone 3 s later; then one line per new vCon: parties, dialog, which tones the recording holds,
the X-Vcon-* headers FreeSWITCH sent (decoded) and the CDR's ended_by.
"""

from __future__ import annotations

import base64
import io
import json
import math
import struct
import subprocess
import sys
import time
import wave
from pathlib import Path
from urllib.parse import unquote

SCENARIOS_DIR = Path(__file__).resolve().parent / "scenarios"
NAMES = {
    "plain": '"Alice Caller"',
    "comma": '"Doe, Jane"',
    "apos": '"Pat O\'Brien"',
    "apos-comma": '"O\'Brien, Pat"',
    "quotes": '"\\"Big\\" Tom"',
    "pipe": '"Tom | Sales"',
    "quotes-pipe": '"\\"Big\\" Tom | Sales"',
    "non-ascii": '"José Müller-Ødegård"',
    "dollar": '"Ann 100% ${uuid} {x}"',
}
# name: (dialled, caller name, caller scenario, callee scenario, caller number)
SCENARIOS = {
    "answered-ext": ("1001", "plain", "uac_bye", "uas_waitbye", "2000"),
    "e164": ("+15557654321", "plain", "uac_bye", "uas_waitbye", "+15551230000"),
    "national": ("05557654321", "plain", "uac_bye", "uas_waitbye", "0555123000"),
    "callee-hangup": ("+15557654321", "plain", "uac_waitbye", "uas_bye", "+15551230000"),
    "busy": ("+15557654321", "plain", "uac_busy", "uas_busy", "+15551230000"),
    "cancel": ("+15557654321", "plain", "uac_cancel", "uas_ring", "+15551230000"),
    "name-comma": ("1001", "comma", "uac_bye", "uas_waitbye", "2000"),
    "name-apos": ("1001", "apos", "uac_bye", "uas_waitbye", "2000"),
    "name-apos-comma": ("1001", "apos-comma", "uac_bye", "uas_waitbye", "2000"),
    "name-quotes": ("1001", "quotes", "uac_bye", "uas_waitbye", "2000"),
    "name-pipe": ("1001", "pipe", "uac_bye", "uas_waitbye", "2000"),
    "name-quotes-pipe": ("1001", "quotes-pipe", "uac_bye", "uas_waitbye", "2000"),
    "name-non-ascii": ("1001", "non-ascii", "uac_bye", "uas_waitbye", "2000"),
    "name-dollar": ("1001", "dollar", "uac_bye", "uas_waitbye", "2000"),
    "opt-out": ("1001", "plain", "uac_bye", "uas_waitbye", "2999"),  # lab-dialplan.xml sets vcon_record=false
}


def ulaw(sample: int) -> int:
    sign = 0x80 if sample < 0 else 0
    sample = min(abs(sample), 32635) + 0x84
    exponent = next((e for e in range(7, -1, -1) if sample & (0x4000 >> (7 - e))), 0)
    return ~(sign | (exponent << 4) | ((sample >> (exponent + 3)) & 0x0F)) & 0xFF


def write_pcap(path: Path, freq: float, start: float, stop: float, seconds: float = 6.0) -> None:
    """Paced PCMU RTP in a pcap, as sipp's play_pcap_audio replays it: a tone from start to stop."""
    out = [struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1)]
    for i in range(int(seconds / 0.02)):
        payload = bytes(
            ulaw(
                int(
                    (8000 if start <= (i * 160 + k) / 8000 < stop else 0)
                    * math.sin(2 * math.pi * freq * (i * 160 + k) / 8000)
                )
            )
            for k in range(160)
        )
        rtp = struct.pack("!BBHII", 0x80, 0x80 if i == 0 else 0, i, i * 160, int(freq)) + payload
        udp = struct.pack("!HHHH", 6000, 6001, 8 + len(rtp), 0) + rtp
        ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), 0, 0, 64, 17, 0, b"\x7f\0\0\1", b"\x7f\0\0\1") + udp
        frame = b"\0" * 12 + b"\x08\x00" + ip
        out.append(struct.pack("<IIII", int(i * 0.02), int((i * 0.02) % 1 * 1e6), len(frame), len(frame)) + frame)
    path.write_bytes(b"".join(out))


def sipp(scenario: str, *args: str) -> list[str]:
    return [
        "sipp",
        *args,
        "-sf",
        str(SCENARIOS_DIR / f"{scenario}.xml"),
        "-i",
        "127.0.0.1",
        "-m",
        "1",
        "-nostdin",
        "-trace_err",
    ]


def run(work: Path, vcons: Path, name: str) -> list[Path]:
    dialled, who, caller, callee, number = SCENARIOS[name]
    before = set(vcons.glob("*.vcon"))
    quiet = {"cwd": work, "stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL}
    callee_p = subprocess.Popen(sipp(callee, "-p", "5090", "-mp", "6100", "-key", "callee_num", "1001"), **quiet)
    time.sleep(0.5)
    caller_p = subprocess.run(
        sipp(
            caller,
            "127.0.0.1:5080",
            "-p",
            "5062",
            "-mp",
            "6200",
            "-key",
            "dial",
            dialled,
            "-key",
            "caller_display",
            NAMES[who],
            "-key",
            "caller_num",
            number,
        ),
        timeout=60,
        **quiet,
    )
    try:
        callee_rc: object = callee_p.wait(timeout=20)
    except subprocess.TimeoutExpired:
        callee_p.kill()
        callee_rc = "killed"
    new: list[Path] = []
    for _ in range(20):
        time.sleep(0.5)
        if set(vcons.glob("*.vcon")) - before:
            time.sleep(1.5)
            new = sorted(set(vcons.glob("*.vcon")) - before)
            break
    print(
        f"== {name}: dialled {dialled} by {NAMES[who]} <{number}>: caller sipp rc={caller_p.returncode}, "
        f"callee sipp rc={callee_rc}, {len(new)} vCon(s)"
    )
    for path in new:
        summarize(path)
    return new


def tones(body: str) -> str:
    """Seconds of the caller's 500 Hz and the callee's 1500 Hz tone in a WAV recording (0.5 s windows)."""
    import numpy as np

    w = wave.open(io.BytesIO(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))))
    rate = w.getframerate()
    x = np.frombuffer(w.readframes(w.getnframes()), dtype=np.int16).astype(float)
    x = x.reshape(-1, w.getnchannels()).mean(axis=1)
    found = {500: 0.0, 1500: 0.0}
    for i in range(0, len(x) - rate // 2, rate // 2):
        seg = x[i : i + rate // 2]
        if np.sqrt(np.mean(seg**2)) < 100:
            continue
        spec = np.abs(np.fft.rfft(seg * np.hanning(len(seg))))
        freqs = np.fft.rfftfreq(len(seg), 1 / rate)
        for f in found:
            if spec[(freqs > f - 30) & (freqs < f + 30)].sum() > 0.5 * spec.sum():
                found[f] += 0.5
    return f"{len(x) / rate:.1f} s, caller tone {found[500]:.1f} s, callee tone {found[1500]:.1f} s"


def summarize(path: Path) -> None:
    v = json.loads(path.read_text())
    print("  vcon", path.name)
    for i, party in enumerate(v.get("parties", [])):
        print(f"    party[{i}]", json.dumps(party, ensure_ascii=False))
    for d in v.get("dialog", []):
        audio = tones(d["body"]) if d.get("type") == "recording" and d.get("body") else ""
        print("    dialog", d.get("type"), "disposition", d.get("disposition"), "parties", d.get("parties"), audio)
    for a in v.get("attachments", []):
        if a.get("purpose") == "sip-invite":
            for line in a["body"].split("\r\n"):
                if line.lower().startswith("x-vcon-"):
                    header, _, value = line.partition(":")
                    print(f"    {header}: {unquote(value.strip())!r}")
        if a.get("purpose") == "cdr":
            cdr = a["body"] if isinstance(a["body"], dict) else json.loads(a["body"])
            print("    cdr ended_by", cdr.get("ended_by"), "hangup_by", cdr.get("hangup_by"))


def main(argv: list[str]) -> int:
    work, vcons, *names = argv
    work_dir = Path(work)
    work_dir.mkdir(parents=True, exist_ok=True)
    write_pcap(work_dir / "caller.pcap", 500, 0, 3)
    write_pcap(work_dir / "callee.pcap", 1500, 3, 6)
    for name in names or SCENARIOS:
        run(work_dir, Path(vcons), name)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
