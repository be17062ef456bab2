"""The durable outbox: a vCon is on disk here before any sink sees it.

Layout under the spool directory::

    outbox/<uuid>.vcon            the vCon, fsynced and renamed into place before delivery starts
    outbox/.<uuid>.vcon.tmp       a vCon being written (a builder's target; never delivered)
    outbox/<uuid>.<sink>.ok       that sink acknowledged it (or it was dead-lettered there)
    dead/<sink>/<uuid>.vcon       refused permanently by that sink, with <uuid>.reason

A vCon leaves the outbox only when every sink has acknowledged it, so a crash at any
moment loses nothing: at start-up whatever is in the outbox is delivered again, to the
sinks that have not acknowledged it. The outbox is listed once, at start; after that the
spool keeps its index in memory (oldest first), so a burst of calls does not turn every
delivery round into a directory scan. Methods may be called from worker threads.
"""

from __future__ import annotations

import os
import threading
from collections import OrderedDict
from pathlib import Path

from capture.atomic import ensure_dir, fsync_dir, write_atomic

SUFFIX = ".vcon"


class Spool:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.outbox = ensure_dir(root / "outbox")
        self.dead = ensure_dir(root / "dead")
        self._lock = threading.Lock()
        self._pending: OrderedDict[str, set[str]] = OrderedDict()
        "uuid -> sinks that acknowledged it, oldest first."
        for stale in self.outbox.glob(f".*{SUFFIX}.tmp"):
            stale.unlink(missing_ok=True)  # a build the process did not finish: the call is rebuilt
        files = sorted(self.outbox.glob(f"*{SUFFIX}"), key=lambda p: p.stat().st_mtime)
        for path in files:
            vcon_uuid = path.name[: -len(SUFFIX)]
            self._pending[vcon_uuid] = {
                marker.name[len(vcon_uuid) + 1 : -len(".ok")] for marker in self.outbox.glob(f"{vcon_uuid}.*.ok")
            }

    def path(self, vcon_uuid: str) -> Path:
        return self.outbox / f"{vcon_uuid}{SUFFIX}"

    def reserve(self, vcon_uuid: str) -> Path:
        """Where a builder writes the vCon before :meth:`commit` makes it part of the outbox."""
        return self.outbox / f".{vcon_uuid}{SUFFIX}.tmp"

    def commit(self, vcon_uuid: str) -> Path:
        """The reserved file (already fsynced by its writer) becomes a pending vCon."""
        path = self.path(vcon_uuid)
        os.replace(self.reserve(vcon_uuid), path)
        fsync_dir(self.outbox)
        with self._lock:
            self._pending[vcon_uuid] = set()
        return path

    def put(self, vcon_uuid: str, data: bytes) -> Path:
        path = self.path(vcon_uuid)
        write_atomic(path, data)
        with self._lock:
            self._pending.setdefault(vcon_uuid, set())
        return path

    def read(self, vcon_uuid: str) -> bytes:
        return self.path(vcon_uuid).read_bytes()

    def pending(self) -> list[str]:
        """uuids in the outbox, oldest first."""
        with self._lock:
            return list(self._pending)

    def depth(self) -> int:
        with self._lock:
            return len(self._pending)

    def acknowledged(self, vcon_uuid: str, sink: str) -> bool:
        with self._lock:
            return sink in self._pending.get(vcon_uuid, ())

    def acknowledge(self, vcon_uuid: str, sink: str) -> None:
        write_atomic(self.outbox / f"{vcon_uuid}.{sink}.ok", b"")
        with self._lock:
            if vcon_uuid in self._pending:
                self._pending[vcon_uuid].add(sink)

    def dead_letter(self, vcon_uuid: str, sink: str, reason: str) -> Path:
        folder = ensure_dir(self.dead / sink)
        write_atomic(folder / f"{vcon_uuid}{SUFFIX}", self.read(vcon_uuid))
        write_atomic(folder / f"{vcon_uuid}.reason", reason.encode("utf-8") + b"\n")
        self.acknowledge(vcon_uuid, sink)
        return folder / f"{vcon_uuid}{SUFFIX}"

    def dead_letters(self) -> list[tuple[str, str, str]]:
        """(sink, vCon uuid, reason) of every dead letter, newest first."""
        found = []
        for folder in (p for p in self.dead.iterdir() if p.is_dir()):
            for vcon in folder.glob(f"*{SUFFIX}"):
                try:  # a letter retried meanwhile is gone: not a letter any more
                    mtime = vcon.stat().st_mtime
                    text = vcon.with_suffix(".reason").read_text(encoding="utf-8", errors="replace").strip()
                except FileNotFoundError:
                    continue
                found.append((mtime, folder.name, vcon.name[: -len(SUFFIX)], text))
        return [(sink, vcon_uuid, text) for _, sink, vcon_uuid, text in sorted(found, reverse=True)]

    def requeue(self, sink: str, vcon_uuid: str, others: list[str]) -> bool:
        """Give a dead letter to its sink again (an operator fixed the cause); ``others``, the other
        sinks, are not asked again. False if there is no such letter."""
        letter = self.dead / sink / f"{vcon_uuid}{SUFFIX}"
        if not letter.exists():
            return False
        if not self.path(vcon_uuid).exists():
            write_atomic(self.path(vcon_uuid), letter.read_bytes())
        for other in others:
            if other != sink:
                write_atomic(self.outbox / f"{vcon_uuid}.{other}.ok", b"")
        (self.outbox / f"{vcon_uuid}.{sink}.ok").unlink(missing_ok=True)
        with self._lock:
            self._pending[vcon_uuid] = {o for o in others if o != sink}
        letter.unlink()
        letter.with_suffix(".reason").unlink(missing_ok=True)
        return True

    def release_if_done(self, vcon_uuid: str, sinks: list[str]) -> bool:
        """Remove the vCon once every sink acknowledged it; True if it is gone."""
        with self._lock:
            done = self._pending.get(vcon_uuid)
            if done is None:
                return True
            if not all(s in done for s in sinks):
                return False
            del self._pending[vcon_uuid]
        self.path(vcon_uuid).unlink(missing_ok=True)
        for sink in done:
            (self.outbox / f"{vcon_uuid}.{sink}.ok").unlink(missing_ok=True)
        return True
