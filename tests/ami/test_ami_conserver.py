"""Issue 13: an Asterisk call, through the real CLI with a conserver configured, is delivered.

vcon-server refuses `tel` shorter than five characters (422); Asterisk extensions (1001, 2000)
used to send every AMI vCon to the dead letters. The conserver stand-in applies vcon-server's
own ingest rules (tests/conserver.py); the PBX is the Asterisk 22 lab replay.
"""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

from conserver import Conserver
from labreplay import FINAL, LabServer, scene
from test_ami_cli import run_cli, stop, wait_for_vcons
from test_ami_lab import LAB_FLAGS, _threaded
from vconcheck import load_vcons


class _ConserverThread:
    """The conserver stand-in on its own event loop (the CLI runs as a separate process)."""

    def __enter__(self) -> Conserver:
        self.loop = asyncio.new_event_loop()
        self.server = Conserver()
        ready = threading.Event()

        def run() -> None:
            asyncio.set_event_loop(self.loop)
            self.url = self.loop.run_until_complete(self.server.start())
            ready.set()
            self.loop.run_forever()

        self.thread = threading.Thread(target=run, daemon=True)
        self.thread.start()
        ready.wait(10)
        return self.server

    def __exit__(self, *exc: object) -> None:
        asyncio.run_coroutine_threadsafe(self.server.stop(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


def test_an_extension_to_extension_call_reaches_the_conserver_not_the_dead_letters(tmp_path: Path) -> None:
    monitor = tmp_path / "monitor"
    monitor.mkdir()
    with _ConserverThread() as conserver, _threaded(LabServer(scene(FINAL, "1795929777.0"), monitor)) as port:
        proc = run_cli(tmp_path, port, *LAB_FLAGS, "--conserver-url", f"http://127.0.0.1:{conserver.port}")
        try:
            wait_for_vcons(proc, tmp_path / "out", 1, timeout=60)
            for _ in range(100):
                if conserver.received:
                    break
                threading.Event().wait(0.1)
            stop(proc)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait(10)
    (doc,) = load_vcons(tmp_path / "out")
    assert dict(conserver.received) == {doc["uuid"]: 1}, "delivered once"
    assert not list((tmp_path / "state" / "spool" / "dead").rglob("*.vcon")), "nothing dead-lettered"
    stored = conserver.documents[doc["uuid"]]
    assert [p.get("sip") for p in stored["parties"]][:2] == ["sip:1001@127.0.0.1", "sip:2000@127.0.0.1"]
    assert all("tel" not in p for p in stored["parties"][:2]), "extensions are not tels"
    (cdr,) = [a for a in stored["attachments"] if a["purpose"] == "cdr"]
    assert cdr["body"]["internal_numbers"] == {"0": "1001", "1": "2000"}, "the digits are kept"
