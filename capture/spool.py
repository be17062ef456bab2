"""The durable outbox: a vCon is on disk here before any sink sees it.

Layout under the spool directory::

    outbox/<uuid>.vcon            the vCon, written atomically before delivery starts
    outbox/<uuid>.<sink>.ok       that sink acknowledged it (or it was dead-lettered there)
    dead/<sink>/<uuid>.vcon       refused permanently by that sink, with <uuid>.reason

A vCon leaves the outbox only when every sink has acknowledged it, so a crash at any
moment loses nothing: at start-up whatever is in the outbox is delivered again, to the
sinks that have not acknowledged it.
"""

from __future__ import annotations

from pathlib import Path

from capture.atomic import ensure_dir, write_atomic

SUFFIX = ".vcon"


class Spool:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.outbox = ensure_dir(root / "outbox")
        self.dead = ensure_dir(root / "dead")

    def put(self, vcon_uuid: str, data: bytes) -> Path:
        path = self.outbox / f"{vcon_uuid}{SUFFIX}"
        write_atomic(path, data)
        return path

    def read(self, vcon_uuid: str) -> bytes:
        return (self.outbox / f"{vcon_uuid}{SUFFIX}").read_bytes()

    def pending(self) -> list[str]:
        """uuids in the outbox, oldest first."""
        files = sorted(self.outbox.glob(f"*{SUFFIX}"), key=lambda p: p.stat().st_mtime)
        return [p.name[: -len(SUFFIX)] for p in files]

    def depth(self) -> int:
        return sum(1 for _ in self.outbox.glob(f"*{SUFFIX}"))

    def acknowledged(self, vcon_uuid: str, sink: str) -> bool:
        return (self.outbox / f"{vcon_uuid}.{sink}.ok").exists()

    def acknowledge(self, vcon_uuid: str, sink: str) -> None:
        write_atomic(self.outbox / f"{vcon_uuid}.{sink}.ok", b"")

    def dead_letter(self, vcon_uuid: str, sink: str, reason: str) -> Path:
        folder = ensure_dir(self.dead / sink)
        write_atomic(folder / f"{vcon_uuid}{SUFFIX}", self.read(vcon_uuid))
        write_atomic(folder / f"{vcon_uuid}.reason", reason.encode("utf-8") + b"\n")
        self.acknowledge(vcon_uuid, sink)
        return folder / f"{vcon_uuid}{SUFFIX}"

    def release_if_done(self, vcon_uuid: str, sinks: list[str]) -> bool:
        """Remove the vCon once every sink acknowledged it; True if it is gone."""
        if not all(self.acknowledged(vcon_uuid, s) for s in sinks):
            return False
        (self.outbox / f"{vcon_uuid}{SUFFIX}").unlink(missing_ok=True)
        for marker in self.outbox.glob(f"{vcon_uuid}.*.ok"):
            marker.unlink(missing_ok=True)
        return True
