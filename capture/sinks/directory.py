"""Writes each vCon as DIR/<uuid>.vcon (atomic, 0600)."""

from __future__ import annotations

import asyncio
from pathlib import Path

from capture.atomic import write_atomic
from capture.errors import TransientDeliveryError


class DirectorySink:
    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.name = "dir"

    async def deliver(self, vcon_uuid: str, data: bytes) -> None:
        try:
            await asyncio.to_thread(write_atomic, self.directory / f"{vcon_uuid}.vcon", data)
        except OSError as exc:
            raise TransientDeliveryError(
                self.name, vcon_uuid, f"cannot write to {self.directory}: {exc.strerror}"
            ) from None

    async def aclose(self) -> None:
        return None
