"""The real Asterisk 22 lab traffic, replayed in real time by a loopback PBX that records like Asterisk.

Scenes are cut from ../shared/ami-transcripts/asterisk22-lab/ by Linkedid (:func:`scene`):
the call's events and the bridge events of its bridges, without what the project's manager
user would not see (``RTCPSent``, class ``reporting``) and without the MixMonitorStart events
the lab's own recorder caused (they come from this server when our adapter asks).

:class:`LabServer` replays a scene on the PBX's clock: event ``Timestamp`` T is sent at
``start + (T - T0) / speed`` and rewritten to that moment, so the adapter sees a live PBX.
It keeps a channel table and answers ``CoreShowChannels`` (Duration, BridgeId), ``Getvar``
(``MIXMONITOR_FILENAME``, the ``i()`` variable, ``CDR(answer,u)``) and ``MixMonitor``. Each
MixMonitor (the adapter's, or the dialplan's seen in the scene) writes its WAV as Asterisk
does: created at the first bridged frame (option ``b``: nothing while unbridged), growing while
the call runs, a header saying 0 until the channel hangs up and the header is finalised.
Each party's voice is a tone (:data:`VOICES`: alice 500 Hz, bob 1300 Hz, carol 2100 Hz, as the
lab's sipp phones played), so a test can tell whose audio a recording holds. :meth:`crash`
kills the PBX: connections reset, files torn (header sizes 0), channels gone, and a
``FullyBooted`` with a small Uptime when it is back. Mocked: only Asterisk itself (none can run
here); the traffic is the real one.
"""

from __future__ import annotations

import asyncio
import math
import re
import struct
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

import numpy as np
from amireplay import TRANSCRIPTS, ReplayServer, fields_of, render

LAB = TRANSCRIPTS / "asterisk22-lab"
RATE = 8000
FINAL, EARLIER = "ami-events-final.ami", "ami-events.ami"
VOICES = {"alice": 500.0, "bob": 1300.0, "carol": 2100.0}
AMPLITUDE = 0.2


def voice(channel: str) -> float | None:
    """The tone a channel carries into its bridge (a Local half carries what is behind it, per the lab dialplan)."""
    for who, freq in VOICES.items():
        if channel.startswith(f"PJSIP/{who}-"):
            return freq
    if channel.startswith("Local/"):
        half = channel.rsplit(";", 1)[-1]
        if "@lab-local-caller-" in channel or channel.startswith("Local/2000@lab-"):
            return VOICES["alice"] if half == "2" else None  # ;1 plays tone-alice (the Originate's application)
        if "@lab-local-" in channel:
            return VOICES["bob"] if half == "1" else None  # ;2 answers and plays tone-bob
        if channel.startswith("Local/2003@lab-"):
            return VOICES["carol"] if half == "1" else None  # the atxfer's way to carol
    return None


def blocks(name: str) -> list[bytes]:
    raw = (LAB / name).read_bytes()
    body = raw[raw.index(b"\r\n") + 2 :]  # the banner
    return [b.strip(b"\r\n") + b"\r\n\r\n" for b in body.split(b"\r\n\r\n") if b.strip(b"\r\n")]


def scene(name: str, *linkedids: str, keep_adapter_mixmonitor: bool = False) -> list[bytes]:
    """The events of the calls ``linkedids`` in one lab file, as Asterisk sent them."""
    wanted = set(linkedids)
    bridges: set[str] = set()
    out = []
    for block in blocks(name):
        f = dict(fields_of(block))
        event = f.get("Event")
        if event in (None, "RTCPSent", "FullyBooted", "ContactStatus", "Shutdown", "Reload"):
            continue
        ids = {v for k, v in f.items() if k.lower().endswith("linkedid")}
        if event == "MixMonitorStart" and f.get("ChannelStateDesc") == "Up" and not keep_adapter_mixmonitor:
            continue  # the lab recorder's own; ours come from this server
        if event == "BridgeEnter" and ids & wanted:
            bridges.add(f.get("BridgeUniqueid", ""))
        if ids & wanted or (not ids and f.get("BridgeUniqueid") in bridges):
            out.append(block)
    return out


def stamp(block: bytes) -> float | None:
    m = re.search(rb"\r\nTimestamp: ([0-9.]+)\r\n", block)
    return float(m.group(1)) if m else None


@dataclass
class Monitor:
    """One MixMonitor writing its files the way app_mixmonitor + format_wav do."""

    uniqueid: str
    channel: str
    paths: dict[str, Path]
    "mix / rx / tx -> file"
    bridged_only: bool
    variable: str | None
    started: float
    frame: int = 0
    "Next frame (on the PBX clock, frames since the epoch) to write or skip."
    written: int = 0
    handles: dict[str, BinaryIO] = field(default_factory=dict)
    closed: bool = False
    torn: bool = False
    muted: bool = False
    "MixMonitorMute State 1: app_mixmonitor writes silence in place of the audio (the file keeps its length)."


def _header(frames: int) -> bytes:
    data = frames * 2
    return (
        b"RIFF"
        + struct.pack("<I", 36 + data)
        + b"WAVEfmt "
        + struct.pack("<IHHIIHH", 16, 1, 1, RATE, RATE * 2, 2, 16)
        + b"data"
        + struct.pack("<I", data)
    )


class LabServer(ReplayServer):
    def __init__(
        self,
        script: list[bytes],
        recordings_dir: Path,
        *,
        speed: float = 4.0,
        hold: dict[int, int] | None = None,
        crash_after_s: float | None = None,
        down_s: float = 3.0,
        **kw: object,
    ) -> None:
        super().__init__(script, **kw)  # type: ignore[arg-type]
        self.recordings_dir = recordings_dir
        self.speed = speed
        self.hold = hold or {}
        "Event index -> logins needed before it is sent (a recorder restarting)."
        self.crash_after_s = crash_after_s
        self.down_s = down_s
        self.t0 = next((t for b in script if (t := stamp(b)) is not None), 0.0)
        self.base = 0.0
        self.booted = time.time()
        self.down_until = 0.0
        self.crashed_at: float | None = None
        self.frontier = math.inf
        "The PBX clock never runs past the next event still to be sent."
        self.created: dict[str, float] = {}
        self.answered: dict[str, float] = {}
        self.bridge_of: dict[str, str] = {}
        self.names: dict[str, str] = {}
        self.monitors: list[Monitor] = []
        self.sent_at: dict[int, float] = {}
        self._ticker: asyncio.Task[None] | None = None
        self._login = asyncio.Event()

    def logged_in(self) -> None:
        self._login.set()

    # -- the PBX clock ----------------------------------------------------------------

    def when(self, transcript_time: float) -> float:
        return self.base + (transcript_time - self.t0) / self.speed

    def now(self) -> float:
        return min(time.time(), self.frontier)

    def up(self) -> bool:
        return time.time() >= self.down_until

    def fully_booted(self) -> list[tuple[str, str]]:
        uptime = int(time.time() - self.booted)
        return [*super().fully_booted(), ("Uptime", str(uptime)), ("LastReload", str(uptime))]

    async def start(self) -> int:
        port = await super().start()
        self._ticker = asyncio.create_task(self._tick())
        return port

    async def close(self) -> None:
        if self._ticker is not None:
            self._ticker.cancel()
        await super().close()

    async def _tick(self) -> None:
        while True:
            await asyncio.sleep(0.04)
            self.advance(self.now())

    # -- replay -----------------------------------------------------------------------

    async def _replay(self, writer: asyncio.StreamWriter, session: int) -> None:
        if not self.base:
            self.base = time.time()
        while self.position < len(self.script):
            index = self.position
            block = self.script[index]
            t = stamp(block)
            if t is not None:
                self.frontier = self.when(t)
            while self.logins < self.hold.get(index, 0):
                self._login.clear()
                await self._login.wait()
            if t is not None:
                due = self.when(t)
                await asyncio.sleep(max(0.0, due - time.time()))
                block = re.sub(rb"\r\nTimestamp: [0-9.]+\r\n", f"\r\nTimestamp: {due:.6f}\r\n".encode(), block)
                self.advance(due)
            if writer.is_closing():
                return  # the recorder is gone: this event waits for the next session
            self._apply(block)
            self.sent_at[index] = t if t is not None else 0.0
            self.position += 1
            await self._send(writer, block)
        self.frontier = math.inf
        await self._send(writer, render([("Event", "UserEvent"), ("UserEvent", "ReplayDone")]))
        self.done.set()
        if self.crash_after_s is not None and self.crashed_at is None:
            await asyncio.sleep(self.crash_after_s)
            self.crash()

    def _apply(self, block: bytes) -> None:
        f = dict(fields_of(block))
        uid, event = f.get("Uniqueid", ""), f.get("Event")
        at = float(f["Timestamp"]) if "Timestamp" in f else self.now()
        if uid:
            self.names[uid] = f.get("Channel", self.names.get(uid, ""))
            self.created.setdefault(uid, at)
            if f.get("ChannelStateDesc") == "Up":
                self.answered.setdefault(uid, at)
        if event == "BridgeEnter":
            self.bridge_of[uid] = f.get("BridgeUniqueid", "")
        elif event == "BridgeLeave":
            self.bridge_of.pop(uid, None)
        elif event == "Hangup":
            for mon in self.monitors:
                if mon.uniqueid == uid and not mon.closed:
                    self.finalise(mon)
            self.bridge_of.pop(uid, None)
        elif event == "MixMonitorStart" and f.get("ChannelStateDesc") != "Up":
            # the dialplan's MixMonitor (deploy/asterisk/extensions.conf names the file so)
            name = f"vcon-{f.get('Linkedid')}-{uid}.wav"
            self.monitors.append(
                Monitor(uid, f.get("Channel", ""), {"mix": self.recordings_dir / name}, True, None, at)
            )
            self.monitors[-1].frame = int(at * RATE)
        super()._apply(block)

    # -- actions ------------------------------------------------------------------------

    def answer(self, name: str, fields: dict[str, str], aid: list[tuple[str, str]]) -> bytes:
        if name == "Getvar":
            return self._getvar(fields, aid)
        if name == "MixMonitorMute":
            return self._mute(fields, aid)
        return super().answer(name, fields, aid)

    def _core_show_channels(self, aid: list[tuple[str, str]]) -> bytes:
        now = self.now()
        out = [render([("Response", "Success"), *aid, ("EventList", "start"), ("Message", "Channels will follow")])]
        for uid, chan in self.channels.items():
            age = int(now - self.created.get(uid, now))
            duration = f"{age // 3600:02d}:{age % 3600 // 60:02d}:{age % 60:02d}"
            chan = {k: v for k, v in chan.items() if k != "BridgeId"}
            listed = [
                ("Event", "CoreShowChannel"),
                *aid,
                *chan.items(),
                ("Application", "Dial"),
                ("Duration", duration),
            ]
            out.append(render([*listed, ("BridgeId", self.bridge_of.get(uid, ""))]))
        complete = [("Event", "CoreShowChannelsComplete"), *aid, ("EventList", "Complete")]
        out.append(render([*complete, ("ListItems", str(len(self.channels)))]))
        return b"".join(out)

    def _getvar(self, fields: dict[str, str], aid: list[tuple[str, str]]) -> bytes:
        uid = next((u for u, c in self.channels.items() if c.get("Channel") == fields.get("Channel")), None)
        if uid is None:
            return render([("Response", "Error"), *aid, ("Message", "No such channel")])
        variable, value = fields.get("Variable", ""), ""
        mons = [m for m in self.monitors if m.uniqueid == uid]
        if variable == "MIXMONITOR_FILENAME" and mons and "mix" in mons[-1].paths:
            value = str(mons[-1].paths["mix"])
        elif mons and variable == mons[-1].variable:
            value = f"0x{id(mons[-1]):x}"
        elif variable == "CDR(answer,u)" and uid in self.answered:
            value = f"{self.answered[uid]:.6f}"
        return render([("Response", "Success"), *aid, ("Variable", variable), ("Value", value)])

    def _mixmonitor(self, fields: dict[str, str], aid: list[tuple[str, str]]) -> bytes:
        uid = next((u for u, c in self.channels.items() if c.get("Channel") == fields.get("Channel")), None)
        if uid is None:
            return render([("Response", "Error"), *aid, ("Message", "No such channel")])
        options = fields.get("Options", "")
        paths = {leg: self.recordings_dir / n for leg, n in re.findall(r"([rt])\(([^)]+)\)", options)}
        paths = {"rx" if k == "r" else "tx": v for k, v in paths.items()}
        if fields.get("File"):
            paths["mix"] = self.recordings_dir / Path(fields["File"]).name
        variable = m.group(1) if (m := re.search(r"i\(([^)]+)\)", options)) else None
        now = self.now()
        mon = Monitor(uid, self.channels[uid].get("Channel", ""), paths, "b" in options.split("(")[0], variable, now)
        mon.frame = int(now * RATE)
        self.monitors.append(mon)
        start = [("Event", "MixMonitorStart"), ("Privilege", "call,all"), ("Timestamp", f"{now:.6f}")]
        return render([("Response", "Success"), *aid]) + render([*start, *self.channels[uid].items()])

    def _mute(self, fields: dict[str, str], aid: list[tuple[str, str]]) -> bytes:
        uid = next((u for u, c in self.channels.items() if c.get("Channel") == fields.get("Channel")), None)
        mons = [m for m in self.monitors if m.uniqueid == uid and not m.closed]
        if uid is None or not mons:
            return render([("Response", "Error"), *aid, ("Message", "Cannot set mute flag")])
        self.advance(self.now())  # what came before the mute is written as it was
        for mon in mons:
            mon.muted = fields.get("State") == "1"
        event = [("Event", "MixMonitorMute"), ("Privilege", "call,all"), ("Timestamp", f"{self.now():.6f}")]
        tail = [("Direction", fields.get("Direction", "both")), ("State", fields.get("State", "0"))]
        return render([("Response", "Success"), *aid]) + render([*event, *self.channels[uid].items(), *tail])

    # -- the files --------------------------------------------------------------------

    def advance(self, until: float) -> None:
        """Write every running MixMonitor up to ``until`` on the PBX clock (the bridges as they are now)."""
        for mon in self.monitors:
            if mon.closed:
                continue
            end = int(until * RATE)
            if end <= mon.frame:
                continue
            bridge = self.bridge_of.get(mon.uniqueid)
            if mon.bridged_only and not bridge:
                mon.frame = end  # option b: frames while unbridged are dropped, not written as silence
                continue
            others = [u for u, b in self.bridge_of.items() if b == bridge and u != mon.uniqueid] if bridge else []
            own = [f for f in [voice(mon.channel)] if f]
            heard = [f for u in others if (f := voice(self.names.get(u, "")))]
            t = np.arange(mon.frame, end) / RATE
            for leg, path in mon.paths.items():
                freqs = own if leg == "rx" else heard if leg == "tx" else own + heard
                samples = sum((AMPLITUDE * np.sin(2 * np.pi * f * t) for f in freqs), np.zeros(len(t)))
                if mon.muted:
                    samples = np.zeros(len(t))
                handle = mon.handles.get(leg)
                if handle is None:
                    handle = mon.handles[leg] = path.open("wb")  # created at the first frame, header says 0
                    handle.write(_header(0))
                handle.write((np.asarray(samples) * 32767).astype("<i2").tobytes())
                handle.flush()
            mon.written += end - mon.frame
            mon.frame = end

    def finalise(self, mon: Monitor) -> None:
        self.advance(self.now())
        for handle in mon.handles.values():
            handle.seek(0)
            handle.write(_header(mon.written))
            handle.close()
        mon.closed = True

    def crash(self) -> None:
        """SIGKILL of Asterisk: connections reset, files left as they are (torn), every channel gone."""
        self.advance(self.now())
        self.crashed_at = time.time()
        for mon in self.monitors:
            if not mon.closed:
                for handle in mon.handles.values():
                    handle.close()
                mon.closed = mon.torn = True
        for w in self._writers:
            if not w.is_closing():
                w.transport.abort()
        self.channels.clear()
        self.bridge_of.clear()
        self.down_until = time.time() + self.down_s
        self.booted = self.down_until
