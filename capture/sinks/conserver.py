"""POSTs vCons to a conserver (vcon-server's ``POST {base}/api/vcon``).

``ingress_lists`` is repeated once per list (the conserver reads ``a,b`` as one list named
"a,b"). 200/201/204 is success; 408, 429, 5xx, timeouts and connection errors are
transient; any other 4xx (e.g. 422, a rejected document) is permanent.
"""

from __future__ import annotations

import aiohttp

from capture.errors import PermanentDeliveryError, TransientDeliveryError

TOKEN_HEADER = "x-conserver-api-token"
RETRYABLE = {408, 429}


class ConserverSink:
    def __init__(self, base_url: str, *, token: str | None, ingress_lists: tuple[str, ...], timeout_s: float) -> None:
        self.name = "conserver"
        self.url = base_url.rstrip("/") + "/api/vcon"
        self._params = [("ingress_lists", name) for name in ingress_lists]
        self._headers = {"Content-Type": "application/json"}
        if token:
            self._headers[TOKEN_HEADER] = token
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._session: aiohttp.ClientSession | None = None

    async def deliver(self, vcon_uuid: str, data: bytes) -> None:
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=self._timeout)
        try:
            async with self._session.post(self.url, data=data, params=self._params, headers=self._headers) as resp:
                if resp.status in (200, 201, 204):
                    return
                text = (await resp.text(errors="replace"))[:200].replace("\n", " ")
        except (TimeoutError, aiohttp.ClientError, OSError) as exc:
            raise TransientDeliveryError(self.name, vcon_uuid, f"{type(exc).__name__}: {exc}") from None
        reason = f"HTTP {resp.status}: {text}"
        if resp.status >= 500 or resp.status in RETRYABLE:
            raise TransientDeliveryError(self.name, vcon_uuid, reason)
        raise PermanentDeliveryError(self.name, vcon_uuid, reason)

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
