"""The operator console: a page served by the recorder itself, on the API's listener (``api_listen``).

Four views in one page (``/console/``): **Live** (calls in progress from ``/api/calls``, kept
current by ``/api/live`` events, with level meters and the service's health), **Recent vCons**
(the ``out`` directory, searchable), a vCon's **detail** (parties, dialogs, the timeline with
waveforms and a player in sync, CDR, attachments, validation, signature), and **Dead letters**
(with a retry button). The page is static HTML/CSS/JS (``static/``); everything it shows comes
from the JSON routes in :mod:`capture.console.routes`. It is off unless ``api_listen`` is set,
and behind the API's token when one is configured (:mod:`capture.console.pages`).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path

from aiohttp import web

from capture.console.archive import Archive
from capture.console.pages import LOGIN_PATH, POLICY, SECURITY_HEADERS, login_page, page_routes
from capture.console.routes import data_routes
from capture.console.workers import Readers
from capture.pipeline import Pipeline

__all__ = ["LOGIN_PATH", "console_app", "login_page"]


def console_app(
    pipeline: Pipeline,
    *,
    token: str | None,
    ready: Callable[[], bool],
    out_dirs: Sequence[Path],
    cache_dir: Path,
    media_dirs: Sequence[Path] = (),
    ca_file: Path | None = None,
) -> web.Application:
    """The console as an application to mount at ``/console`` on the API's (which guards it).

    ``cache_dir`` holds audio decoded for the player (emptied at start, bounded in size).
    """

    @web.middleware
    async def headers(
        request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        response = await handler(request)
        for name, value in SECURITY_HEADERS.items():
            response.headers.setdefault(name, value)
        response.headers.setdefault("Content-Security-Policy", POLICY)
        return response

    app = web.Application(middlewares=[headers])
    app.router.add_routes(page_routes(token))
    readers = Readers()
    archive = Archive(readers, out_dirs, media_dirs, ca_file)
    app.router.add_routes(data_routes(pipeline, archive, ready, token is not None, cache_dir))

    async def close(_: web.Application) -> None:
        readers.close()

    app.on_cleanup.append(close)
    return app
