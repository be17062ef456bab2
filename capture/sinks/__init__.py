"""Where finished vCons go. A sink takes the vCon's JSON bytes and raises DeliveryError."""

from __future__ import annotations

from typing import Protocol


class Sink(Protocol):
    name: str
    "Stable name: keys the spool's acknowledgements."

    async def deliver(self, vcon_uuid: str, data: bytes) -> None:
        """Deliver or raise TransientDeliveryError / PermanentDeliveryError."""

    async def aclose(self) -> None: ...
