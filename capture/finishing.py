"""Turning a finished conversation into its vCon file, in worker processes.

Rendering audio, base64, JSON and validation are CPU work that holds the GIL; done in the
service's process they would stall the event loop that reads RTP, exactly when a burst of
calls ends. So each finished call is built in a small process pool (forkserver: workers
start from a clean, preloaded interpreter, not a fork of a process full of threads and
sockets), and the worker writes the vCon straight into the spool's temporary file, streaming
the audio through base64 (:mod:`capture.vconfile`): nothing of the size of the recording
crosses a pipe or sits in memory. Signed and encrypted vCons are the exception: JOSE needs
the whole payload, so they are built in memory (send long calls' audio by reference).

A worker that dies, or a pool that cannot start, does not lose the call: it is built again in
a thread. If building fails outright (a bug, unreadable media), the vCon is built without its
media and says why in its capture notes.
"""

from __future__ import annotations

import asyncio
import functools
import io
import json
import logging
import multiprocessing
import os
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from capture.errors import MediaError, TransientMediaError
from capture.mixdown import MediaPolicy, Rendered, render_recordings
from capture.vcon.assemble import Conversation
from capture.vcon.layout import lay_out
from capture.vcon.model import dumps
from capture.vcon.profile import Profile
from capture.vcon.validate import problems
from capture.vconfile import write_document

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


@dataclass(frozen=True, slots=True)
class Built:
    """What a build left in its target file."""

    size: int
    problems: list[str]


def build_vcon(
    conv: Conversation,
    updated_at: datetime,
    target: Path,
    media: MediaPolicy,
    profile: Profile,
    sealing: Sealing | None,
) -> Built:
    """Write the finished vCon to ``target`` (fsynced); the problems validation found (it is emitted anyway).

    OSError (a full disk) propagates: the caller retries once there is space.
    """
    try:
        rendered = render_recordings(conv.uuid, conv.recordings, conv.party_keys, media, conv.started.at)
    except TransientMediaError:
        raise  # fail closed: never a vCon that references an object that is not there
    except MediaError as exc:
        conv.note("media_error", str(exc))
        rendered = Rendered([], [], {})
    for key, value in rendered.notes.items():
        conv.note(key, value)
    doc = lay_out(conv, rendered.contents, updated_at=updated_at, profile=profile).to_dict()
    found = problems(doc)
    text = dumps(doc)
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as out:
        if sealing is None:
            size = write_document(text, rendered.bodies, out)
        else:
            whole = io.BytesIO()
            write_document(text, rendered.bodies, whole)
            sealed = dumps(_sealer(sealing)(json.loads(whole.getvalue())))
            out.write(sealed)
            size = len(sealed)
        out.flush()
        os.fsync(out.fileno())
    return Built(size, found)


def build_without_media(conv: Conversation, updated_at: datetime, target: Path, profile: Profile, why: str) -> Built:
    """The last resort when building failed: the call's facts without its audio, and why."""
    conv.note("build_error", why)
    conv.recordings.clear()
    return build_vcon(conv, updated_at, target, MediaPolicy(), profile, None)


WORKER_NICENESS = 10
"Workers yield the CPU to the service, whose event loop carries live RTP (and live listeners)."


def _exit_with(service_pid: int) -> None:
    """In a worker: run below the service's priority, and exit when the service is gone (a
    SIGKILLed service would leave the worker, and through it the forkserver, waiting forever)."""
    try:
        os.nice(WORKER_NICENESS)
    except OSError:
        pass

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
        self.profile = profile
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

    async def build(self, conv: Conversation, updated_at: datetime, target: Path) -> Built:
        """The vCon of a finished call written to ``target`` (``updated_at``: when it was built).

        OSError means the disk refused; any other failure falls back to a thread, then to a vCon
        without media, so a call is never lost to a bug in building it.
        """
        async with self._slots:
            try:
                # Submitted from a thread: starting a worker (forkserver handshake) or a slow
                # hand-over must not hold up the event loop that carries RTP.
                pool = self._executor()
                media, profile, sealing = self._args

                def submit() -> Future[Built]:
                    return pool.submit(build_vcon, conv, updated_at, target, media, profile, sealing)

                return await asyncio.wrap_future(await asyncio.to_thread(submit))
            except (OSError, TransientMediaError):
                raise
            except (BrokenProcessPool, RuntimeError) as exc:
                log.error("pipeline.worker_failed", extra={"call_id": conv.call_id, "error": str(exc)})
                self._pool = None
            except Exception as exc:
                log.error("pipeline.build_failed", extra={"call_id": conv.call_id, "error": repr(exc)}, exc_info=True)
                return await asyncio.to_thread(
                    build_without_media, conv, updated_at, target, self.profile, f"{type(exc).__name__}: {exc}"
                )
            try:
                return await asyncio.to_thread(build_vcon, conv, updated_at, target, *self._args)
            except (OSError, TransientMediaError):
                raise
            except Exception as exc:
                log.error("pipeline.build_failed", extra={"call_id": conv.call_id, "error": repr(exc)}, exc_info=True)
                return await asyncio.to_thread(
                    build_without_media, conv, updated_at, target, self.profile, f"{type(exc).__name__}: {exc}"
                )

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None
