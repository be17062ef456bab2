"""Where finished vCons go. A sink takes the spooled vCon file and raises DeliveryError."""

from __future__ import annotations

from pathlib import Path
from typing import Protocol


class Sink(Protocol):
    name: str
    "Stable name: keys the spool's acknowledgements."

    async def deliver(self, vcon_uuid: str, path: Path) -> None:
        """Deliver the vCon in ``path`` (never modify it) or raise TransientDeliveryError / PermanentDeliveryError."""

    async def aclose(self) -> None: ...
