"""The HTTP side (aiohttp): WHIP (RFC 9725), CORS, the page, and finished vCons.

::

    POST    /whip/{room}            offer in, 201 + answer + Location of the session
    DELETE  /whip/session/{sid}     the participant leaves
    PATCH   /whip/session/{sid}     405: the answer already carries every candidate
    OPTIONS (both)                  CORS preflight
    GET     /                       the page
    GET     /vcons/{uuid}           a finished vCon of a room recorded here

Every refusal is one line of text with a 4xx/503 status, never a traceback.
"""

from __future__ import annotations

import asyncio
import logging
import re
import secrets
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from importlib.resources import files

from aiohttp import web
from aiortc import RTCConfiguration

from adapters.webrtc.ice import link_headers
from adapters.webrtc.identity import TokenCheck, identity_from
from adapters.webrtc.offer import SDP_TYPE, check_content_type, check_offer
from adapters.webrtc.rooms import Rooms
from adapters.webrtc.session import Session
from adapters.webrtc.settings import WebrtcSettings
from capture.adapter import Capture
from capture.errors import RemoteProtocolError
from capture.logs import call_scope

log = logging.getLogger(__name__)

ROOM = re.compile(r"[A-Za-z0-9._~-]{1,64}")
UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
SESSION_PATH = "/whip/session/"
RETRY_AFTER_S = 5
"Retry-After of a 503 (at capacity, shutting down, disk low)."
BUSY_LOG_EVERY_S = 60.0
"Refused POSTs are logged once a minute, however many there are."
REMEMBERED_VCONS = 10000
"How many finished rooms' vCons GET /vcons/{uuid} will serve."

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class WhipEndpoint:
    def __init__(
        self, settings: WebrtcSettings, capture: Capture, tokens: TokenCheck, configuration: RTCConfiguration
    ) -> None:
        self.settings = settings
        self.capture = capture
        self.tokens = tokens
        self.configuration = configuration
        self.sessions: dict[str, Session] = {}
        self.rooms = Rooms(capture, linger_s=settings.linger_s, on_call_started=self._remember_vcon)
        self.stopping = False
        self._vcons: OrderedDict[str, None] = OrderedDict()
        self._refused = 0
        "POSTs refused with 503 since the last log line about them."
        self._refused_logged_at: float | None = None
        self._page = (files("adapters.webrtc") / "static" / "index.html").read_bytes()

    def app(self) -> web.Application:
        app = web.Application(client_max_size=self.settings.max_offer_bytes, middlewares=[self._refusals])
        app.router.add_get("/", self.page)
        app.router.add_post("/whip/{room}", self.post)
        app.router.add_route("OPTIONS", "/whip/{room}", self.options)
        app.router.add_delete(SESSION_PATH + "{sid}", self.delete)
        app.router.add_patch(SESSION_PATH + "{sid}", self.patch)
        app.router.add_route("OPTIONS", SESSION_PATH + "{sid}", self.options)
        app.router.add_get("/vcons/{uuid}", self.vcon)
        return app

    # -- middleware ----------------------------------------------------------------------

    @web.middleware
    async def _refusals(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        try:
            response = await handler(request)
        except RemoteProtocolError as exc:
            log.info(
                "webrtc.request_refused",
                extra={"method": request.method, "path": request.path, "status": exc.status_hint, "reason": str(exc)},
            )
            response = web.Response(status=exc.status_hint, text=f"{exc}\n")
            if exc.status_hint == 401:
                response.headers["WWW-Authenticate"] = 'Bearer realm="whip"'
        except web.HTTPException as exc:
            response = web.Response(status=exc.status, text=f"{exc.reason}\n")
            if "Allow" in exc.headers:
                response.headers["Allow"] = exc.headers["Allow"]
        response.headers["Access-Control-Allow-Origin"] = self.settings.cors_origin
        response.headers["Access-Control-Expose-Headers"] = "Location, Link, Vcon-Uuid"
        return response

    # -- WHIP ------------------------------------------------------------------------------

    async def options(self, request: web.Request) -> web.Response:
        headers = {
            "Access-Control-Allow-Methods": "POST, DELETE, PATCH, OPTIONS",
            "Access-Control-Allow-Headers": "Authorization, Content-Type, If-Match",
            "Access-Control-Max-Age": "600",
        }
        if "room" in request.match_info:
            headers["Accept-Post"] = SDP_TYPE
            if links := link_headers(self.settings.ice_servers):
                headers["Link"] = ", ".join(links)
        return web.Response(status=204, headers=headers)

    async def post(self, request: web.Request) -> web.Response:
        # Admission first, before the body is read: a flood of POSTs past the limit costs a
        # 503 each and one log line a minute.
        if self.stopping or not self.capture.accepting:
            return self._busy("shutting down or disk low, not taking new sessions")
        if len(self.sessions) >= self.settings.max_sessions:
            return self._busy("at capacity, try again later")
        token_identity = self.tokens.identity(request.headers.get("Authorization"))
        room = request.match_info["room"]
        if not ROOM.fullmatch(room):
            raise RemoteProtocolError("room must be 1-64 letters, digits or . _ ~ -", status_hint=400)
        check_content_type(request.headers.get("Content-Type"))
        cap = self.settings.max_offer_bytes
        if request.content_length is not None and request.content_length > cap:
            raise RemoteProtocolError(f"offer larger than {cap} bytes", status_hint=413)
        offer = check_offer(await request.read(), cap)
        identity = token_identity.filled_from(identity_from(request.query, "query parameter"))
        if len(self.sessions) >= self.settings.max_sessions:  # taken while the offer was read
            return self._busy("at capacity, try again later")
        if self.rooms.participants(room) >= self.settings.max_participants:
            raise RemoteProtocolError(f"room {room} is full", status_hint=403)

        sid = secrets.token_urlsafe(12)
        session = Session(
            sid,
            room,
            identity,
            self.capture,
            configuration=self.configuration,
            reorder_depth=self.settings.reorder_depth,
            setup_timeout_s=self.settings.setup_timeout_s,
            media_timeout_s=self.settings.media_timeout_s,
            on_audio=self.rooms.heard,
            on_closed=self._closed,
        )
        self.sessions[sid] = session
        try:
            answer = await session.negotiate(offer)
            if self.stopping or session.closed:
                raise RemoteProtocolError("shutting down, not taking new sessions", status_hint=503)
        except RemoteProtocolError:
            await session.close("offer refused")
            raise
        call_id = self.rooms.join(session)
        session.start(call_id)
        headers = {"Location": SESSION_PATH + sid}
        if vcon_uuid := self.capture.vcon_uuid(call_id):
            headers["Vcon-Uuid"] = vcon_uuid
        response = web.Response(status=201, text=answer, content_type=SDP_TYPE, headers=headers)
        for link in link_headers(self.settings.ice_servers):
            response.headers.add("Link", link)
        with call_scope(self.capture.vcon_uuid(call_id)):
            log.info("webrtc.participant_joined", extra={"call_id": call_id, "party": sid, "room": room})
        return response

    def _busy(self, reason: str) -> web.Response:
        """503 with Retry-After; logged once a minute with how many were refused since."""
        self._refused += 1
        now = self.capture.monotonic()
        if self._refused_logged_at is None or now - self._refused_logged_at >= BUSY_LOG_EVERY_S:
            log.warning("webrtc.sessions_refused", extra={"reason": reason, "count": self._refused,
                                                          "sessions": len(self.sessions)})  # fmt: skip
            self._refused, self._refused_logged_at = 0, now
        return web.Response(status=503, text=f"{reason}\n", headers={"Retry-After": str(RETRY_AFTER_S)})

    async def delete(self, request: web.Request) -> web.Response:
        self.tokens.identity(request.headers.get("Authorization"))
        session = self.sessions.get(request.match_info["sid"])
        if session is None:
            raise RemoteProtocolError("no such WHIP session", status_hint=404)
        await session.close("DELETE")
        return web.Response(status=200)

    async def patch(self, request: web.Request) -> web.Response:
        return web.Response(
            status=405, text="trickle ICE and ICE restarts are not supported\n", headers={"Allow": "DELETE, OPTIONS"}
        )

    async def _closed(self, session: Session) -> None:
        self.sessions.pop(session.sid, None)
        self.rooms.leave(session)

    # -- page and vCons --------------------------------------------------------------------

    async def page(self, request: web.Request) -> web.Response:
        return web.Response(body=self._page, content_type="text/html", charset="utf-8")

    def _remember_vcon(self, call_id: str) -> None:
        vcon_uuid = self.capture.vcon_uuid(call_id)
        if vcon_uuid is None:
            return
        self._vcons[vcon_uuid] = None
        while len(self._vcons) > REMEMBERED_VCONS:
            self._vcons.popitem(last=False)

    async def vcon(self, request: web.Request) -> web.Response:
        self.tokens.identity(request.headers.get("Authorization"))
        vcon_uuid = request.match_info["uuid"]
        if not UUID.fullmatch(vcon_uuid) or vcon_uuid not in self._vcons:
            raise RemoteProtocolError("no vCon of a room recorded here has that uuid", status_hint=404)
        body = await asyncio.to_thread(self.capture.finished_vcon, vcon_uuid)
        if body is None:
            raise RemoteProtocolError("the vCon is not finished yet", status_hint=404)
        return web.Response(body=body, content_type="application/json")
