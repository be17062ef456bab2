"""An HTTP endpoint shaped like vcon-server's ingest API, for delivery tests.

``POST /api/vcon?ingress_lists=a&ingress_lists=b`` with ``x-conserver-api-token``:
201 with the stored document, 403 on a bad token, 422 when the document breaks the
conserver's own pydantic rules (``vcon``/``uuid``/``created_at`` required, ``parties``
of dialogs a flat list of ints in range, ``tel`` without a ``tel:`` prefix). It can be
told to fail the first N requests with 503, or to hold requests unanswered until
:meth:`Conserver.release`, which answers them 503 (their client is usually gone by then).
Run it in-process (:class:`Conserver`) or as a process: ``python tests/conserver.py PORT``.
"""

from __future__ import annotations

import asyncio
import json
import re
import sys
from collections import Counter
from typing import Any

from aiohttp import web

TEL_RE = re.compile(r"^[+\d(][\d\s\-().+xX#*]{4,}$")


def conserver_rejects(doc: Any) -> str | None:
    """Why the real conserver would answer 422, or None."""
    if not isinstance(doc, dict):
        return "body is not an object"
    for key in ("vcon", "uuid", "created_at"):
        if key not in doc:
            return f"missing {key}"
    n = len(doc.get("parties") or [])
    for i, party in enumerate(doc.get("parties") or []):
        if "tel" in party and not TEL_RE.match(party["tel"]):
            return f"parties[{i}].tel invalid"
    for i, dialog in enumerate(doc.get("dialog") or []):
        parties = dialog.get("parties")
        if parties is None:
            continue
        if not isinstance(parties, list) or not all(isinstance(p, int) and 0 <= p < n for p in parties):
            return f"dialog[{i}].parties must be a flat list of party indices"
    return None


class Conserver:
    def __init__(self, *, token: str | None = None, fail_first: int = 0, hold: bool = False) -> None:
        self.token = token
        self.fail_first = fail_first
        self.hold = hold
        self.requests = 0
        self.received: Counter[str] = Counter()
        self.documents: dict[str, dict[str, Any]] = {}
        self.ingress: list[list[str]] = []
        self._released = asyncio.Event()
        self._runner: web.AppRunner | None = None
        self.port = 0

    async def _post(self, request: web.Request) -> web.Response:
        self.requests += 1
        if self.hold:
            await self._released.wait()
            return web.json_response({"detail": "held"}, status=503)
        if self.token is not None and request.headers.get("x-conserver-api-token") != self.token:
            return web.json_response({"detail": "Invalid API Key"}, status=403)
        if self.requests <= self.fail_first:
            return web.json_response({"detail": "temporarily unavailable"}, status=503)
        try:
            doc = json.loads(await request.read())
        except json.JSONDecodeError:
            return web.json_response({"detail": "not JSON"}, status=422)
        reason = conserver_rejects(doc)
        if reason:
            return web.json_response({"detail": reason}, status=422)
        self.received[doc["uuid"]] += 1
        self.documents[doc["uuid"]] = doc
        self.ingress.append(request.query.getall("ingress_lists", []))
        return web.json_response(doc, status=201)

    def release(self) -> None:
        """Stop holding: answer held requests 503 and take new ones normally."""
        self.hold = False
        self._released.set()

    async def start(self, port: int = 0) -> str:
        app = web.Application(client_max_size=256 * 1024 * 1024)
        app.router.add_post("/api/vcon", self._post)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", port)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        return f"http://127.0.0.1:{self.port}"

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()


async def _serve_forever(port: int) -> None:
    server = Conserver()
    await server.start(port)
    print(f"listening {server.port}", flush=True)
    await asyncio.Event().wait()


if __name__ == "__main__":
    asyncio.run(_serve_forever(int(sys.argv[1])))
