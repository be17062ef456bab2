"""POSTs vCons to a conserver (vcon-server's ``POST {base}/api/vcon``).

``ingress_lists`` is repeated once per list (the conserver reads ``a,b`` as one list named
"a,b"). 2xx is success; 408, 429, 5xx, timeouts and connection errors are transient; any
other 4xx (e.g. 422, a rejected document) is permanent, and the dead letter keeps the whole reply.
"""

from __future__ import annotations

from pathlib import Path

from capture.sinks.http import HttpPoster

TOKEN_HEADER = "x-conserver-api-token"


class ConserverSink:
    def __init__(self, base_url: str, *, token: str | None, ingress_lists: tuple[str, ...], timeout_s: float) -> None:
        self.name = "conserver"
        self.url = base_url.rstrip("/") + "/api/vcon"
        self._params = [("ingress_lists", name) for name in ingress_lists]
        self._headers = {"Content-Type": "application/json"}
        if token:
            self._headers[TOKEN_HEADER] = token
        self._http = HttpPoster(self.name, self.url, timeout_s=timeout_s)

    async def deliver(self, vcon_uuid: str, path: Path) -> None:
        await self._http.post(vcon_uuid, path, self._headers, self._params)

    async def aclose(self) -> None:
        await self._http.aclose()
