"""What the console's browser tests drive: headless Chromium (Debian's, through Playwright), sipp calls
with RTP placed in the background (so the page can watch them live), the sipp message trace that
says when the INVITE and the BYE left, and a conserver stand-in (tests/conserver.py) on its own
event loop thread."""

from __future__ import annotations

import asyncio
import os
import random
import re
import shutil
import socket
import subprocess
import threading
from datetime import datetime
from pathlib import Path

from audiocheck import voice_like
from conserver import Conserver
from sip.harness import Recorder, free_port, g711_frames, write_rtp_pcap
from sip.scenarios import ack, bye, invite, pause, play, scenario, sdp

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]  # fmt: skip
ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs" / "console"
DTMF_AT_S = 2.0
"The key press's offset from the first RTP packet (its RTP timestamp), as sipp sends it."


def shot(page, name: str, artifacts: Path, *, full_page: bool = False, docs: bool = True) -> Path:
    """A screenshot into the test's artifacts; with ``docs``, into docs/console/ too when VCON_UPDATE_SCREENSHOTS=1."""
    artifacts.mkdir(parents=True, exist_ok=True)
    path = artifacts / f"{name}.png"
    page.screenshot(path=str(path), full_page=full_page)
    if docs and os.environ.get("VCON_UPDATE_SCREENSHOTS") == "1":
        DOCS.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, DOCS / path.name)
    return path


def call_flow(tmp: Path, *, hold: bool = True) -> str:
    """Alice talks 2 s then presses 5 (RFC 4733, at 2.0 s of her stream), is put on hold 1.5 s, talks 2 s, hangs up."""
    first, _ = g711_frames(voice_like(DTMF_AT_S, 8000, seed=21), 0)
    second, _ = g711_frames(voice_like(2.0, 8000, seed=22), 0)
    # The key press follows the speech, so the capture's packets are in time order as sipp replays them.
    talk1 = write_rtp_pcap(tmp / "talk1.pcap", first, 0, ssrc=0x1111, dtmf=(5, DTMF_AT_S))
    talk2 = write_rtp_pcap(tmp / "talk2.pcap", second, 0, ssrc=0x2222)
    parts = [invite(sdp(0)), ack(), play(str(talk1), DTMF_AT_S + 0.3)]
    if hold:
        parts += [invite(sdp(0, "sendonly"), cseq=2, in_dialog=True), ack(2), pause(1.5),
                  invite(sdp(0, "sendrecv"), cseq=3, in_dialog=True), ack(3)]  # fmt: skip
    parts += [play(str(talk2), 2.2), bye(4 if hold else 2)]
    return scenario("console", *parts)


def free_media_port() -> int:
    """An even UDP port free with its next three (sipp's RTP, RTCP and video pair) right now."""
    for _ in range(100):
        port = random.randrange(20000, 60000, 2)
        sockets = []
        try:
            for offset in range(4):
                s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                sockets.append(s)
                s.bind(("127.0.0.1", port + offset))
        except OSError:
            continue
        finally:
            for s in sockets:
                s.close()
        return port
    raise RuntimeError("no free media port")


class SippCall:
    """One sipp call running in the background, its messages traced with their send times."""

    def __init__(self, tmp: Path, flow: str, recorder: Recorder) -> None:
        self.tmp = tmp
        name = f"console-{random.randrange(1 << 30)}"
        (tmp / f"{name}.xml").write_text(flow)
        self.trace = tmp / f"{name}_messages.log"
        args = ["sipp", "-sf", str(tmp / f"{name}.xml"), "-s", "rec", f"127.0.0.1:{recorder.port}", "-i", "127.0.0.1",
                "-p", str(free_port()), "-mp", str(free_media_port()), "-m", "1", "-l", "1", "-nostdin",
                "-timeout", "40", "-timeout_error", "-trace_msg", "-message_file", str(self.trace)]  # fmt: skip
        self.proc = subprocess.Popen(args, cwd=tmp, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                     env={**os.environ, "TERM": "dumb"})  # fmt: skip

    def wait(self, timeout: float = 60) -> bytes:
        out, _ = self.proc.communicate(timeout=timeout)
        assert self.proc.returncode == 0, out[-3000:]
        return out

    def sent_at(self, method: str) -> float:
        """Epoch seconds at which sipp sent the first ``method`` request (its trace stamps local time)."""
        text = self.trace.read_text(errors="replace")
        stamp = r"-{10,} (\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d+)\n"
        found = re.search(stamp + r"\w+ message sent[^\n]*\n\n" + method + " ", text)
        assert found, f"no {method} in sipp's trace"
        return datetime.strptime(found.group(1), "%Y-%m-%d %H:%M:%S.%f").timestamp()

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


class ThreadedConserver:
    """tests/conserver.py's Conserver on an event loop of its own (the browser tests are synchronous)."""

    def __init__(self, token: str) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.server = Conserver(token=token)
        self.url = asyncio.run_coroutine_threadsafe(self.server.start(), self.loop).result(10)

    def accept_token(self, token: str) -> None:
        """The operator fixed the conserver's configuration: it now takes this token."""
        self.loop.call_soon_threadsafe(setattr, self.server, "token", token)

    def stop(self) -> None:
        asyncio.run_coroutine_threadsafe(self.server.stop(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


# Installed in the Live view before a call: when each call's card appeared and went, whether a
# party was ever shown on hold, the highest level a meter showed, and whether a card ever
# vanished and came back. A MutationObserver sees every state the page was in, however briefly.
WATCH_CALLS = """() => {
  window.__calls = {};
  const seen = () => {
    const now = Date.now();
    const present = new Set();
    for (const li of document.querySelectorAll("#calls li.call")) {
      const uuid = li.dataset.uuid;
      present.add(uuid);
      const c = window.__calls[uuid] ||= { first: now, gone: null, held: false, level: -999, returns: 0, callId: "" };
      if (c.gone !== null) { c.returns += 1; c.gone = null; }
      c.callId = li.dataset.callId || c.callId;
      if (li.querySelector(".held")) c.held = true;
      for (const m of li.querySelectorAll("meter")) c.level = Math.max(c.level, Number(m.value));
    }
    for (const [uuid, c] of Object.entries(window.__calls)) if (!present.has(uuid) && c.gone === null) c.gone = now;
  };
  new MutationObserver(seen).observe(document.getElementById("calls"),
    { subtree: true, childList: true, attributes: true, characterData: true });
}"""
