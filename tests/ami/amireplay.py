"""A loopback AMI server that replays real transcripts (tests only; there is no Asterisk here).

It speaks the AMI wire format itself (banner, Login check, Ping, CoreShowChannels as an
EventList, MixMonitor/StopMixMonitor, Logoff) and, after each login, replays the scripted
events from where the previous session stopped. Its channel table follows the replayed
events, so ``CoreShowChannels`` and ``MixMonitor`` answer like Asterisk would at that
point. Faults: writes of random 1..``chunk`` bytes, dropping the first session after
``drop_after`` events (the next ``lost_on_drop`` events happen "while disconnected" and are
never sent), unanswered Pings. It parses actions with its own few lines of code, not with
the adapter's parser under test. A MixMonitor action makes it write a real WAV into
``recordings_dir`` (Asterisk would, on the PBX host), remembered in ``written``.
"""

from __future__ import annotations

import asyncio
import random
import re
import threading
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import soundfile as sf
from audiocheck import voice_like

TRANSCRIPTS = Path(__file__).resolve().parents[2].parent / "shared" / "ami-transcripts"
BANNER = b"Asterisk Call Manager/9.0.0\r\n"
RATE = 8000


def transcript(name: str) -> list[bytes]:
    """A transcript's messages as wire bytes (each ending in the blank line), comments dropped."""
    raw = (TRANSCRIPTS / name).read_bytes()
    kept = b"".join(line for line in raw.splitlines(keepends=True) if not line.startswith(b"#"))
    return [block.strip(b"\r\n") + b"\r\n\r\n" for block in kept.split(b"\r\n\r\n") if block.strip(b"\r\n")]


def fields_of(block: bytes) -> list[tuple[str, str]]:
    out = []
    for line in block.decode("utf-8", "replace").split("\r\n"):
        key, _, value = line.partition(": ")
        if key:
            out.append((key, value))
    return out


def render(fields: Iterable[tuple[str, str]]) -> bytes:
    return ("".join(f"{k}: {v}\r\n" for k, v in fields) + "\r\n").encode()


CHANNEL_KEYS = (
    "Channel", "ChannelState", "ChannelStateDesc", "CallerIDNum", "CallerIDName", "ConnectedLineNum",
    "ConnectedLineName", "Language", "AccountCode", "Context", "Exten", "Priority", "Uniqueid", "Linkedid",
)  # fmt: skip


class ReplayServer:
    def __init__(
        self,
        script: list[bytes],
        *,
        username: str = "vcon",
        secret: str = "s3cret",
        chunk: int | None = None,
        delay_s: float = 0.0,
        drop_after: int | None = None,
        lost_on_drop: int = 0,
        answer_pings: bool = True,
        recordings_dir: Path | None = None,
        wav_seconds: float = 1.5,
        seed: int = 7,
    ) -> None:
        self.script = script
        self.username, self.secret = username, secret
        self.chunk, self.delay_s = chunk, delay_s
        self.drop_after, self.lost_on_drop = drop_after, lost_on_drop
        self.answer_pings = answer_pings
        self.recordings_dir = recordings_dir
        self.wav_seconds = wav_seconds
        self.rng = random.Random(seed)
        self.sessions = 0
        self.logins = 0
        self.actions: list[tuple[str, dict[str, str]]] = []
        self.written: dict[str, np.ndarray] = {}
        self.channels: dict[str, dict[str, str]] = {}
        self.position = 0
        self.done = asyncio.Event()
        self._server: asyncio.Server | None = None
        self._writers: list[asyncio.StreamWriter] = []

    async def start(self) -> int:
        self._server = await asyncio.start_server(self._session, "127.0.0.1", 0)
        return self._server.sockets[0].getsockname()[1]

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            for w in self._writers:
                w.close()
            await self._server.wait_closed()

    # -- the channel table ----------------------------------------------------------------

    def _apply(self, block: bytes) -> None:
        fields = dict(fields_of(block))
        uid = fields.get("Uniqueid")
        if not uid:
            return
        event = fields.get("Event")
        if event == "Hangup":
            self.channels.pop(uid, None)
            return
        if event in ("Cdr",):
            return
        chan = self.channels.setdefault(uid, {})
        chan.update({k: fields[k] for k in CHANNEL_KEYS if k in fields})
        if event == "BridgeEnter":
            chan["BridgeId"] = fields.get("BridgeUniqueid", "")
        elif event == "BridgeLeave":
            chan["BridgeId"] = ""

    # -- one client connection ----------------------------------------------------------

    async def _session(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.sessions += 1
        session = self.sessions
        self._writers.append(writer)
        replay: asyncio.Task[None] | None = None
        if not self.up():
            writer.close()  # a PBX that is down: the connection is refused
            return
        try:
            await self._send(writer, BANNER)
            while True:
                try:
                    block = await reader.readuntil(b"\r\n\r\n")
                except (asyncio.IncompleteReadError, ConnectionError):
                    return
                fields = dict(fields_of(block))
                name = fields.get("Action", "")
                self.actions.append((name, fields))
                aid = [("ActionID", fields["ActionID"])] if "ActionID" in fields else []
                if name == "Login":
                    if fields.get("Username") != self.username or fields.get("Secret") != self.secret:
                        await self._send(
                            writer, render([("Response", "Error"), *aid, ("Message", "Authentication failed")])
                        )
                        writer.close()
                        return
                    self.logins += 1
                    self.logged_in()
                    await self._send(
                        writer, render([("Response", "Success"), *aid, ("Message", "Authentication accepted")])
                    )
                    await self._send(writer, render(self.fully_booted()))
                    replay = asyncio.create_task(self._replay(writer, session))
                elif name == "Ping":
                    if self.answer_pings:
                        await self._send(
                            writer, render([("Response", "Success"), *aid, ("Ping", "Pong"), ("Timestamp", "1.0")])
                        )
                elif name == "Logoff":
                    await self._send(
                        writer, render([("Response", "Goodbye"), *aid, ("Message", "Thanks for all the fish.")])
                    )
                    writer.close()
                    return
                else:
                    await self._send(writer, self.answer(name, fields, aid))
        finally:
            if replay is not None:
                replay.cancel()

    def logged_in(self) -> None:
        """A client logged in (``logins`` counts them)."""

    def up(self) -> bool:
        """Whether the PBX takes connections now."""
        return True

    def fully_booted(self) -> list[tuple[str, str]]:
        return [("Event", "FullyBooted"), ("Privilege", "system,all"), ("Status", "Fully Booted")]

    def answer(self, name: str, fields: dict[str, str], aid: list[tuple[str, str]]) -> bytes:
        """The reply to an action other than Login, Ping and Logoff."""
        if name == "CoreShowChannels":
            return self._core_show_channels(aid)
        if name == "MixMonitor":
            return self._mixmonitor(fields, aid)
        return render([("Response", "Error"), *aid, ("Message", "Invalid/unknown command")])

    async def _replay(self, writer: asyncio.StreamWriter, session: int) -> None:
        while self.position < len(self.script):
            if session == 1 and self.drop_after is not None and self.position >= self.drop_after:
                for block in self.script[self.position : self.position + self.lost_on_drop]:
                    self._apply(block)
                self.position += self.lost_on_drop
                writer.transport.abort()
                return
            block = self.script[self.position]
            self._apply(block)
            self.position += 1
            await self._send(writer, block)
            if self.delay_s:
                await asyncio.sleep(self.delay_s)
        await self._send(writer, render([("Event", "UserEvent"), ("UserEvent", "ReplayDone")]))
        self.done.set()

    async def _send(self, writer: asyncio.StreamWriter, data: bytes) -> None:
        if writer.is_closing():
            return
        if not self.chunk:
            writer.write(data)
        else:
            i = 0
            while i < len(data):
                n = self.rng.randint(1, self.chunk)
                writer.write(data[i : i + n])
                i += n
                await writer.drain()
                await asyncio.sleep(0)
        try:
            await writer.drain()
        except ConnectionError:
            pass

    # -- actions ------------------------------------------------------------------------

    def _core_show_channels(self, aid: list[tuple[str, str]]) -> bytes:
        out = [render([("Response", "Success"), *aid, ("EventList", "start"), ("Message", "Channels will follow")])]
        for chan in self.channels.values():
            fields = [
                ("Event", "CoreShowChannel"),
                *aid,
                *chan.items(),
                ("Application", "Dial"),
                ("Duration", "00:00:05"),
            ]
            out.append(render(fields))
        out.append(
            render(
                [
                    ("Event", "CoreShowChannelsComplete"),
                    *aid,
                    ("EventList", "Complete"),
                    ("ListItems", str(len(self.channels))),
                ]
            )
        )
        return b"".join(out)

    def _mixmonitor(self, fields: dict[str, str], aid: list[tuple[str, str]]) -> bytes:
        chan = next((c for c in self.channels.values() if c.get("Channel") == fields.get("Channel")), None)
        if chan is None:
            return render([("Response", "Error"), *aid, ("Message", "No such channel")])
        if self.recordings_dir is not None:
            # The mixed file, plus the r(...)/t(...) per-direction files the options ask for.
            legs = re.findall(r"[rt]\(([^)]+)\)", fields.get("Options", ""))
            for name in [fields.get("File", ""), *legs]:
                if name:
                    audio = voice_like(self.wav_seconds, RATE, seed=len(self.written) + 1)
                    sf.write(str(self.recordings_dir / name), audio, RATE, subtype="PCM_16")
                    self.written[name] = audio
        start = render([("Event", "MixMonitorStart"), ("Privilege", "call,all"), *chan.items()])
        return render([("Response", "Success"), *aid]) + start


class ThreadedReplay:
    """The server on its own event loop in a thread, for tests that run the CLI as a subprocess."""

    def __init__(self, server: ReplayServer) -> None:
        self.server = server
        self.loop = asyncio.new_event_loop()
        self.port = 0
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)

    def __enter__(self) -> ThreadedReplay:
        self._thread.start()
        self.port = asyncio.run_coroutine_threadsafe(self.server.start(), self.loop).result(5)
        return self

    def __exit__(self, *exc: object) -> None:
        asyncio.run_coroutine_threadsafe(self.server.close(), self.loop).result(5)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(5)
        self.loop.close()
