"""Writes each vCon as DIR/<uuid>.vcon (atomic, 0600).

On the spool's filesystem the file is hard-linked (no copy: the spool already wrote and
fsynced it), elsewhere copied and fsynced; either way it appears under its name by an
atomic rename, never half-written.
"""

from __future__ import annotations

import asyncio
import errno
import os
import shutil
from pathlib import Path

from capture.atomic import fsync_dir
from capture.errors import TransientDeliveryError

NO_LINK = {errno.EXDEV, errno.EPERM, errno.EMLINK, errno.ENOTSUP}


def publish(source: Path, target: Path) -> None:
    tmp = target.with_name(f".{target.name}.tmp")
    tmp.unlink(missing_ok=True)
    try:
        os.link(source, tmp)
    except OSError as exc:
        if exc.errno not in NO_LINK:
            raise
        shutil.copyfile(source, tmp)
        os.chmod(tmp, 0o600)
        fd = os.open(tmp, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    try:
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(target.parent)


class DirectorySink:
    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.name = "dir"

    async def deliver(self, vcon_uuid: str, path: Path) -> None:
        try:
            await asyncio.to_thread(publish, path, self.directory / f"{vcon_uuid}.vcon")
        except OSError as exc:
            raise TransientDeliveryError(
                self.name, vcon_uuid, f"cannot write to {self.directory}: {exc.strerror}"
            ) from None

    async def aclose(self) -> None:
        return None
