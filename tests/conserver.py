"""An HTTP endpoint that applies vcon-server's own ingest rules, for delivery tests.

``POST /api/vcon?ingress_lists=a&ingress_lists=b`` with ``x-conserver-api-token``: 201 with the
stored document, 403 on a bad token, 422 with a pydantic-shaped ``{"detail": [...]}`` when the
document breaks the rules vcon-server's ``api/api.py`` applies (vcon-dev/vcon-server @ b9b0381,
``Vcon``/``PartyEntry``/``DialogEntry`` models, l.291-405): ``vcon`` a string, ``uuid`` a UUID,
``created_at`` a datetime; ``parties[].tel`` matching ``_TEL_RE``; ``dialog[].parties`` a flat list
of in-range integers; ``dialog[].url`` any ``scheme://``; ``dialog[].mimetype`` (legacy) matching
``_MIME_RE``; ``dialog[].alg`` in ``_VALID_ALG``; ``duration`` a number >= 0, ``start`` a string;
attachments/analysis/group elements objects. Signed and encrypted bodies are refused (the API
ingests unsigned vCons only). Nothing else is checked, exactly like the real one.
It can be told to fail the first N requests with 503, or to hold requests unanswered until
:meth:`Conserver.release`, which answers them 503 (their client is usually gone by then).
Run it in-process (:class:`Conserver`) or as a process: ``python tests/conserver.py PORT``.
"""

from __future__ import annotations

import asyncio
import json
import re
import sys
import uuid
from collections import Counter
from datetime import datetime
from typing import Any

from aiohttp import web

TEL_RE = re.compile(r"^[+\d(][\d\s\-().+xX#*]{4,}$")
MIME_RE = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9!\#$&\-^_]*/[a-zA-Z0-9][a-zA-Z0-9!\#$&\-^_.+]*$")
URL_RE = re.compile(r"^[a-zA-Z][a-zA-Z0-9+\-.]*://.+")
VALID_ALG = frozenset(
    {"SHA-256", "SHA-384", "SHA-512", "HS256", "HS384", "HS512", "RS256", "RS384", "RS512"}
    | {"ES256", "ES384", "ES512", "PS256", "PS384", "PS512"}
)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _datetime_ok(value: Any) -> bool:
    if _is_int(value) or isinstance(value, float):
        return True
    if not isinstance(value, str):
        return False
    try:
        datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return False
    return True


def conserver_errors(doc: Any) -> list[dict[str, Any]]:
    """The pydantic-style errors vcon-server's ingest would answer 422 with (empty: it would store it)."""
    errors: list[dict[str, Any]] = []

    def err(loc: list[Any], msg: str, value: Any = None) -> None:
        errors.append({"type": "value_error", "loc": ["body", *loc], "msg": msg, "input": value})

    if not isinstance(doc, dict):
        err([], "Input should be a valid dictionary", doc)
        return errors
    for key in ("vcon", "uuid", "created_at"):
        if key not in doc:
            err([key], "Field required")
    if "vcon" in doc and not isinstance(doc["vcon"], str):
        err(["vcon"], "Input should be a valid string", doc["vcon"])
    if "uuid" in doc:
        try:
            uuid.UUID(str(doc["uuid"]))
        except ValueError:
            err(["uuid"], "Input should be a valid UUID", doc["uuid"])
    if "created_at" in doc and not _datetime_ok(doc["created_at"]):
        err(["created_at"], "Input should be a valid datetime", doc["created_at"])
    for key in ("parties", "dialog", "analysis", "attachments", "group"):
        if key in doc and not isinstance(doc[key], list):
            err([key], "Input should be a valid list", doc[key])
    parties = doc.get("parties") if isinstance(doc.get("parties"), list) else []
    for i, party in enumerate(parties):
        if not isinstance(party, dict):
            err(["parties", i], "Input should be a valid dictionary", party)
        elif party.get("tel") is not None and not (isinstance(party["tel"], str) and TEL_RE.match(party["tel"])):
            err(["parties", i, "tel"], f"Value error, tel has invalid format: {party['tel']!r}", party["tel"])
    dialogs = doc.get("dialog") if isinstance(doc.get("dialog"), list) else []
    for i, dialog in enumerate(dialogs):
        if not isinstance(dialog, dict):
            err(["dialog", i], "Input should be a valid dictionary", dialog)
            continue
        refs = dialog.get("parties")
        if refs is not None:
            if not isinstance(refs, list):
                err(["dialog", i, "parties"], "Input should be a valid list", refs)
            else:
                for j, ref in enumerate(refs):
                    if not _is_int(ref):
                        err(["dialog", i, "parties", j], "Input should be a valid integer", ref)
                    elif not 0 <= ref < len(parties):
                        err([], f"dialog[{i}].parties contains index {ref} which is out of range", ref)
        if dialog.get("url") is not None and not (isinstance(dialog["url"], str) and URL_RE.match(dialog["url"])):
            err(["dialog", i, "url"], "Value error, url has invalid format", dialog["url"])
        if dialog.get("mimetype") is not None and not MIME_RE.match(str(dialog["mimetype"])):
            err(["dialog", i, "mimetype"], "Value error, mimetype has invalid format", dialog["mimetype"])
        if dialog.get("alg") is not None and dialog["alg"] not in VALID_ALG:
            err(["dialog", i, "alg"], "Value error, invalid alg", dialog["alg"])
        duration = dialog.get("duration")
        if duration is not None and (
            not isinstance(duration, (int, float)) or isinstance(duration, bool) or duration < 0
        ):
            err(["dialog", i, "duration"], "Value error, duration must be >= 0", duration)
        if dialog.get("start") is not None and not isinstance(dialog["start"], str):
            err(["dialog", i, "start"], "Input should be a valid string", dialog["start"])
    for key in ("attachments", "analysis", "group"):
        items = doc.get(key) if isinstance(doc.get(key), list) else []
        for i, item in enumerate(items):
            if not isinstance(item, dict):
                err([key, i], "Input should be a valid dictionary", item)
    if "redacted" in doc and not isinstance(doc["redacted"], dict):
        err(["redacted"], "Input should be a valid dictionary", doc["redacted"])
    return errors


def conserver_rejects(doc: Any) -> str | None:
    """Why the real conserver would answer 422 (every error, one line), or None if it would store it."""
    errors = conserver_errors(doc)
    if not errors:
        return None
    return "; ".join(f"{'.'.join(str(x) for x in e['loc'])}: {e['msg']}" for e in errors)


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
        errors = conserver_errors(doc)
        if errors:
            return web.json_response({"detail": errors}, status=422)
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
