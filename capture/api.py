"""The recorder's own HTTP API (``api_listen``; off by default): calls, pause/resume, live audio.

::

    GET  /api/calls                      calls in progress (JSON list of snapshots)
    POST /api/calls/{vcon_uuid}/pause    stop keeping the call's audio (PCI), {"reason": "..."} optional
    POST /api/calls/{vcon_uuid}/resume
    GET  /api/live[?call=VCON_UUID][&audio=0]
                                         WebSocket: every call's (or one call's) events and audio,
                                         framed as capture.live describes (``audio=0``: events only)
    /console/...                         the operator console (capture.console), when mounted

Every request needs the token when one is configured: ``Authorization: Bearer <token>``,
``?token=`` (a browser's WebSocket cannot set headers) or the console's ``vcon_capture_token``
cookie. A browser without it gets the console's sign-in page (401) for a page, 401 JSON for
the rest. Without a token the API may only listen on loopback (the config refuses anything
else), and then only answers requests naming a loopback host (a DNS-rebinding page gets 403).
A browser request from another origin (its ``Origin`` header names another host) gets 403
unless it brings the token itself: another site's page can neither drive the API with the
operator's cookie nor read it.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import WSMsgType, web

from capture.console import LOGIN_PATH, login_page
from capture.live import LiveHub

log = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
PauseRequest = Callable[[str, bool, str | None], Awaitable[bool | None]]
"(vcon uuid, paused, reason) -> True done, False nothing to do, None no such call."


def credential(request: web.Request) -> tuple[str, str]:
    """(how, what) the request offers as its token: ``bearer``, ``query``, ``cookie`` or ``none``."""
    given = request.headers.get("Authorization", "")
    if given.startswith("Bearer "):
        return "bearer", given[len("Bearer ") :]
    if request.query.get("token"):
        return "query", request.query["token"]
    if request.cookies.get("vcon_capture_token"):
        return "cookie", request.cookies["vcon_capture_token"]
    return "none", ""


def authorized(request: web.Request, token: str | None) -> bool:
    if token is None:
        return True
    return hmac.compare_digest(credential(request)[1].encode(), token.encode())


LOOPBACK_HOSTS = ("localhost", "::1")


def _host(netloc: str) -> str:
    """The host part of ``host[:port]`` (IPv6 in brackets), lower case."""
    if netloc.startswith("["):
        return netloc[1 : netloc.find("]")].lower()
    return netloc.rsplit(":", 1)[0].lower() if netloc.count(":") == 1 else netloc.lower()


def refusal(request: web.Request, token: str | None) -> str | None:
    """Why a request is refused whatever its token (None: it is not).

    A browser sends the console's cookie with any site's request, so a request from another
    origin that brings no token of its own (a bearer header, ``?token=``) is refused; one
    that does proved it knows the token (a consumer on another origin may use the API).
    """
    origin = request.headers.get("Origin")
    cross = origin is not None and origin.split("://", 1)[-1].lower() != request.host.lower()
    if cross and credential(request)[0] in ("cookie", "none"):
        return "cross-origin request refused"
    if token is None:
        host = _host(request.host)
        if not (host in LOOPBACK_HOSTS or host.startswith("127.")):
            return "without a token this API answers only requests to a loopback host name"
    return None


def api_app(
    *,
    token: str | None,
    live: LiveHub,
    calls: Callable[[], list[dict[str, Any]]],
    pause: PauseRequest,
    console: web.Application | None = None,
) -> web.Application:
    @web.middleware
    async def guard(request: web.Request, handler: Handler) -> web.StreamResponse:
        if (why := refusal(request, token)) is not None:
            return web.json_response({"error": why}, status=403)
        if not authorized(request, token):
            if console is not None and request.path == LOGIN_PATH and request.method == "POST":
                return await handler(request)
            page = request.method in ("GET", "HEAD") and not request.path.startswith(("/api/", "/console/api/"))
            if console is not None and page and "websocket" not in request.headers.get("Upgrade", "").lower():
                return login_page()
            return web.json_response(
                {"error": "a valid bearer token is required"}, status=401, headers={"WWW-Authenticate": "Bearer"}
            )
        return await handler(request)

    async def list_calls(_: web.Request) -> web.Response:
        return web.Response(text=json.dumps(calls(), default=str), content_type="application/json")

    async def set_paused(request: web.Request, paused: bool) -> web.Response:
        reason = None
        if request.can_read_body:
            try:
                body = await request.json()
                reason = str(body.get("reason")) if isinstance(body, dict) and body.get("reason") else None
            except (json.JSONDecodeError, UnicodeDecodeError):
                return web.json_response({"error": "body must be JSON"}, status=400)
        done = await pause(request.match_info["uuid"], paused, reason)
        if done is None:
            return web.json_response({"error": "no such call in progress"}, status=404)
        return web.json_response({"vcon_uuid": request.match_info["uuid"], "paused": paused, "changed": done})

    async def do_pause(request: web.Request) -> web.Response:
        return await set_paused(request, True)

    async def do_resume(request: web.Request) -> web.Response:
        return await set_paused(request, False)

    async def live_socket(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(heartbeat=20.0)
        await ws.prepare(request)
        audio = request.query.get("audio", "1") not in ("0", "false", "no")
        listener = live.listen(request.query.get("call") or None, audio=audio)
        log.info("live.listener_joined", extra={"call": listener.vcon_uuid, "peer": request.remote})

        async def drain_client() -> None:
            async for msg in ws:  # the client sends nothing we use; this notices it leaving
                if msg.type in (WSMsgType.CLOSE, WSMsgType.ERROR):
                    break

        reader = asyncio.create_task(drain_client())
        try:
            while not ws.closed:
                getter = asyncio.ensure_future(listener.get())
                done, _ = await asyncio.wait({getter, reader}, return_when=asyncio.FIRST_COMPLETED)
                if getter not in done:
                    getter.cancel()
                    break
                message = getter.result()
                if message is None:
                    break
                if isinstance(message, bytes):
                    await ws.send_bytes(message)
                else:
                    await ws.send_str(message)
        except (ConnectionResetError, asyncio.CancelledError):
            pass
        finally:
            reader.cancel()
            live.forget(listener)
            await ws.close()
        return ws

    app = web.Application(middlewares=[guard])
    app.router.add_get("/api/calls", list_calls)
    app.router.add_post("/api/calls/{uuid}/pause", do_pause)
    app.router.add_post("/api/calls/{uuid}/resume", do_resume)
    app.router.add_get("/api/live", live_socket)
    if console is not None:

        async def to_console(_: web.Request) -> web.StreamResponse:
            raise web.HTTPFound("/console/")

        app.router.add_get("/", to_console)
        app.router.add_get("/console", to_console)
        app.add_subapp("/console", console)
    return app
