"""Turning a finished conversation into vCon bytes, in worker processes.

Rendering audio, base64, JSON and validation are CPU work that holds the GIL; done in the
service's process they would stall the event loop that reads RTP, exactly when a burst of
calls ends. So each finished call is built in a small process pool (forkserver: workers
start from a clean, preloaded interpreter, not a fork of a process full of threads and
sockets). A worker that dies does not lose the call: it is built again in a thread.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import multiprocessing
import os
import threading
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from capture.errors import MediaError
from capture.mixdown import MediaPolicy, render_recordings
from capture.vcon.assemble import Conversation
from capture.vcon.layout import lay_out
from capture.vcon.model import dumps
from capture.vcon.profile import Profile
from capture.vcon.validate import problems

log = logging.getLogger(__name__)

WATCH_S = 1.0
"How often a worker checks that the service that started it still runs."


@dataclass(frozen=True)
class Sealing:
    """Where the keys for signed (and encrypted) vCons are; each process loads them once."""

    key_file: Path
    cert_file: Path
    encrypt_cert_file: Path | None = None

    def check(self) -> None:
        """Load the keys now, so a bad key stops the service at start, not at the first call."""
        _sealer(self)({"uuid": "00000000-0000-0000-0000-000000000000"})


@functools.cache
def _sealer(sealing: Sealing) -> Callable[[dict[str, Any]], dict[str, Any]]:
    from capture.signing import Signer, encrypt

    signer = Signer.from_files(sealing.key_file, sealing.cert_file)
    recipient = sealing.encrypt_cert_file
    if recipient is None:
        return signer.sign
    return lambda doc: encrypt(signer.sign(doc), recipient)


def build_vcon(
    conv: Conversation, updated_at: datetime, media: MediaPolicy, profile: Profile, sealing: Sealing | None
) -> tuple[bytes, list[str]]:
    """The finished vCon's bytes, and the problems validation found (it is emitted anyway)."""
    try:
        contents = render_recordings(conv.uuid, conv.recordings, conv.party_keys, media)
    except MediaError as exc:
        conv.note("media_error", str(exc))
        contents = []
    doc = lay_out(conv, contents, updated_at=updated_at, profile=profile).to_dict()
    found = problems(doc)
    if sealing is not None:
        doc = _sealer(sealing)(doc)
    return dumps(doc), found


def _exit_with(service_pid: int) -> None:
    """In a worker: exit when the service is gone (a SIGKILLed service would leave the
    worker, and through it the forkserver, waiting forever)."""

    def watch() -> None:
        while True:
            time.sleep(WATCH_S)
            try:
                os.kill(service_pid, 0)
            except ProcessLookupError:
                os._exit(0)

    threading.Thread(target=watch, name="vcon-worker-watch", daemon=True).start()


class VconBuilder:
    """Builds vCons in worker processes, ``workers`` at a time, in the order asked."""

    def __init__(self, media: MediaPolicy, profile: Profile, sealing: Sealing | None, workers: int) -> None:
        self._args = (media, profile, sealing)
        self._workers = workers
        self._pool: ProcessPoolExecutor | None = None
        self._slots = asyncio.Semaphore(workers)

    def _executor(self) -> ProcessPoolExecutor:
        if self._pool is None:
            context = multiprocessing.get_context("forkserver")
            context.set_forkserver_preload(["capture.finishing"])
            self._pool = ProcessPoolExecutor(
                self._workers, mp_context=context, initializer=_exit_with, initargs=(os.getpid(),)
            )
        return self._pool

    async def build(self, conv: Conversation, updated_at: datetime) -> tuple[bytes, list[str]]:
        """The vCon of a finished call (``updated_at``: when it was built)."""
        loop = asyncio.get_running_loop()
        async with self._slots:
            try:
                return await loop.run_in_executor(self._executor(), build_vcon, conv, updated_at, *self._args)
            except BrokenProcessPool:
                log.error("pipeline.worker_died", extra={"call_id": conv.call_id})
                self._pool = None
                return await asyncio.to_thread(build_vcon, conv, updated_at, *self._args)

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None
