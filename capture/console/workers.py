"""The console's worker process: whole-file reading (:mod:`capture.console.reading`) off the event loop's GIL.

One forkserver worker (as :mod:`capture.finishing` builds vCons: a clean, preloaded
interpreter, not a fork of a process full of threads and sockets), started at the first
request that needs it, so a recorder nobody looks at runs none. Requests queue behind each
other: one long call's vCon at a time holds its few hundred megabytes. Should the pool break
(the worker killed) or fail to start, the request runs in a thread instead and the next one
starts a new pool: the page answers either way.
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import os
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Any, TypeVar

from capture.finishing import _exit_with

log = logging.getLogger(__name__)

T = TypeVar("T")
WORKERS = 1


class Readers:
    def __init__(self, workers: int = WORKERS) -> None:
        self._workers = workers
        self._pool: ProcessPoolExecutor | None = None

    def _executor(self) -> ProcessPoolExecutor:
        if self._pool is None:
            context = multiprocessing.get_context("forkserver")
            context.set_forkserver_preload(["capture.console.reading"])
            self._pool = ProcessPoolExecutor(
                self._workers, mp_context=context, initializer=_exit_with, initargs=(os.getpid(),)
            )
        return self._pool

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        """``fn(*args)`` in the worker (in a thread if the worker cannot run it)."""
        try:
            # Submitted from a thread: the first submit starts the worker (and the forkserver, which
            # imports the console's modules), which would otherwise hold the event loop for a moment.
            future = await asyncio.to_thread(self._executor().submit, fn, *args)
            return await asyncio.wrap_future(future)
        except BrokenProcessPool as exc:  # the worker was killed, or could not start
            log.warning("console.worker_failed", extra={"error": str(exc) or type(exc).__name__})
            self._pool = None
        return await asyncio.to_thread(fn, *args)

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None
