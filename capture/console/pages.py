"""The console's page, its static files, and signing in with the API token.

The page is plain HTML, CSS and JavaScript modules shipped in ``static/`` (no build step, no
CDN, no external fonts). When a token is configured, a browser without it gets the sign-in
page with status 401 for every page (the API's guard, :mod:`capture.api`, answers so);
``POST /console/login`` with the right token sets it as an HttpOnly, SameSite=Strict cookie
(the guard accepts the ``vcon_capture_token`` cookie), and ``/console/?token=...`` does the
same for a link a script printed. Every console response carries a Content-Security-Policy
that allows nothing but this origin.
"""

from __future__ import annotations

import asyncio
import hmac
import html
from pathlib import Path

from aiohttp import web

STATIC = Path(__file__).resolve().parent / "static"
COOKIE = "vcon_capture_token"
LOGIN_PATH = "/console/login"
CONTENT_TYPES = {".html": "text/html", ".css": "text/css", ".js": "text/javascript", ".svg": "image/svg+xml"}
POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; media-src 'self' https:; "
    "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
)
LOGIN_POLICY = (
    "default-src 'none'; img-src data:; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'"
)
WRONG_TOKEN_DELAY_S = 0.5
"A wrong token is answered this much later (slows guessing; the token should be long and random anyway)."

SECURITY_HEADERS = {"X-Content-Type-Options": "nosniff", "Referrer-Policy": "same-origin", "Cache-Control": "no-cache"}


def login_page(message: str | None = None, status: int = 401) -> web.Response:
    """The sign-in page: one password field for the API token."""
    text = (STATIC / "login.html").read_text(encoding="utf-8")
    note = f'<p id="login-error" role="alert">{html.escape(message)}</p>' if message else ""
    return web.Response(
        text=text.replace("<!--message-->", note),
        status=status,
        content_type="text/html",
        headers={**SECURITY_HEADERS, "Content-Security-Policy": LOGIN_POLICY, "WWW-Authenticate": "Bearer"},
    )


def _signed_in(request: web.Request, token: str, location: str = "/console/") -> web.Response:
    response = _see_other(location)
    response.set_cookie(COOKIE, token, httponly=True, samesite="Strict", path="/", secure=request.secure)
    return response


def page_routes(token: str | None) -> web.RouteTableDef:
    routes = web.RouteTableDef()

    @routes.get("/")
    async def index(request: web.Request) -> web.StreamResponse:
        if token is not None and "token" in request.query:
            return _signed_in(request, token)  # the guard already checked it; keep it out of the address bar
        return _file(STATIC / "index.html")

    @routes.get("/static/{name}")
    async def static(request: web.Request) -> web.StreamResponse:
        name = request.match_info["name"]
        path = STATIC / name
        if "/" in name or name.startswith(".") or path.suffix not in CONTENT_TYPES or not path.is_file():
            raise web.HTTPNotFound()
        return _file(path)

    @routes.post("/login")
    async def login(request: web.Request) -> web.StreamResponse:
        if token is None:
            raise web.HTTPSeeOther("/console/")
        form = await request.post()
        given = str(form.get("token", "")).strip()
        if not hmac.compare_digest(given.encode(), token.encode()):
            await asyncio.sleep(WRONG_TOKEN_DELAY_S)
            return login_page("That token is not the one this recorder was given.")
        return _signed_in(request, token)

    @routes.post("/logout")
    async def logout(_: web.Request) -> web.StreamResponse:
        response = _see_other("/console/")
        response.del_cookie(COOKIE, path="/")
        return response

    return routes


def _see_other(location: str) -> web.Response:
    return web.Response(status=303, headers={"Location": location, **SECURITY_HEADERS})


def _file(path: Path) -> web.StreamResponse:
    headers = {**SECURITY_HEADERS, "Content-Security-Policy": POLICY}
    return web.FileResponse(path, headers={**headers, "Content-Type": CONTENT_TYPES[path.suffix] + "; charset=utf-8"})
