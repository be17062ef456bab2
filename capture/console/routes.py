"""The console's JSON and audio routes (under ``/console``; live calls come from ``/api/calls`` and ``/api/live``).

::

    GET  /console/api/health                         ready/draining, spool depth, dead letters, disk space
    GET  /console/api/vcons?q=&from=&to=&disposition=&limit=&after=
                                                     finished vCons, newest first (see capture.console.archive)
    GET  /console/api/vcons/{uuid}                   one vCon's detail page (capture.console.vcons.detail),
                                                     form, signature and validation
    GET  /console/api/vcons/{uuid}/peaks/{dialog}    waveform peaks of a recording dialog, per channel
    GET  /console/vcons/{uuid}/audio/{dialog}        its audio (range requests), inline bodies decoded
    GET  /console/vcons/{uuid}/download              the vCon file as stored
    GET  /console/api/dead-letters                   vCons a sink refused for good, with the reason
    POST /console/api/dead-letters/{sink}/{uuid}/retry   deliver one again to that sink
"""

from __future__ import annotations

import asyncio
import json
from collections import OrderedDict
from collections.abc import Callable
from datetime import date
from pathlib import Path
from typing import Any

from aiohttp import web

from capture import __version__
from capture.console.archive import UUID_RE, Archive, load_content
from capture.console.audio import AudioCache, AudioSource, locate, peaks, ranged
from capture.console.vcons import Query, detail, is_audio
from capture.pipeline import Pipeline

AUDIO_CACHE_BYTES = 256 * 1024 * 1024
"Decoded inline audio kept for the player's range requests."
PEAKS_KEPT = 256
DEAD_LETTERS_SHOWN = 500
PAGE_MAX = 200


def _json(data: Any, status: int = 200) -> web.Response:
    return web.Response(text=json.dumps(data, default=str), status=status, content_type="application/json")


def _error(status: int, text: str) -> web.Response:
    return _json({"error": text}, status)


def _day(text: str | None, name: str) -> date | None:
    if not text:
        return None
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise web.HTTPBadRequest(text=json.dumps({"error": f"{name}: expected YYYY-MM-DD"}),
                                 content_type="application/json") from None  # fmt: skip


def _storage(pipeline: Pipeline) -> dict[str, Any]:
    """Free space under each directory the service writes, and the dead letters' count (file system only)."""
    disk = pipeline.disk
    spaces = []
    for path in disk.paths:
        try:
            free = disk.free_bytes(path)
        except OSError:
            continue
        spaces.append({"path": str(path), "free_bytes": free, "low": free < disk.min_free_bytes})
    dead = sum(1 for _ in pipeline.spool.dead.glob("*/*.vcon"))
    return {"dead_letters": dead, "disk": spaces, "min_free_bytes": disk.min_free_bytes}


def _state(pipeline: Pipeline, ready: Callable[[], bool]) -> str:
    if pipeline.disk.low:
        return "refusing calls: disk space low"
    if not pipeline.accepting:
        return "draining"
    return "ready" if ready() else "starting"


def _dead_letters(pipeline: Pipeline) -> list[dict[str, Any]]:
    letters: list[tuple[str, str, str]] = []
    for _ in range(3):
        try:
            letters = pipeline.spool.dead_letters()
            break
        except FileNotFoundError:  # a letter was retried (moved back to the outbox) while its folder was read
            continue
    out = []
    for sink, vcon_uuid, reason in letters[:DEAD_LETTERS_SHOWN]:
        try:
            at: float | None = (pipeline.spool.dead / sink / f"{vcon_uuid}.vcon").stat().st_mtime
        except FileNotFoundError:
            at = None
        out.append({"sink": sink, "uuid": vcon_uuid, "reason": reason, "at": at})
    return out


def data_routes(pipeline: Pipeline, archive: Archive, ready: Callable[[], bool], auth: bool) -> web.RouteTableDef:
    routes = web.RouteTableDef()
    audio_cache = AudioCache(AUDIO_CACHE_BYTES)
    peaks_cache: OrderedDict[tuple[Path, int, int], dict[str, Any]] = OrderedDict()
    loading: dict[tuple[Path, int, int], asyncio.Future[AudioSource | None]] = {}

    @routes.get("/api/health")
    async def health(_: web.Request) -> web.Response:
        storage = await asyncio.to_thread(_storage, pipeline)
        return _json(
            {
                "now": pipeline.now().isoformat(),
                "state": _state(pipeline, ready),
                "accepting": pipeline.accepting,
                "calls": len(pipeline.live.snapshots()),
                "spool_depth": pipeline.spool.depth(),
                **storage,
                "auth": auth,
                "version": __version__,
            }
        )

    @routes.get("/api/vcons")
    async def vcons(request: web.Request) -> web.Response:
        q = request.query
        query = Query(
            text=q.get("q", "")[:200],
            day_from=_day(q.get("from"), "from"),
            day_to=_day(q.get("to"), "to"),
            disposition=q.get("disposition") or None,
        )
        try:
            limit = max(1, min(int(q.get("limit", "50")), PAGE_MAX))
        except ValueError:
            return _error(400, "limit: expected a number")
        lines, cursor = await archive.search(query, limit, q.get("after") or None)
        return _json({"vcons": lines, "after": cursor})

    @routes.get("/api/vcons/{uuid}")
    async def one(request: web.Request) -> web.Response:
        opened = await archive.open(request.match_info["uuid"])
        if opened is None:
            return _error(404, "no such vCon in the output directory")
        page: dict[str, Any] = detail(opened.content) if opened.content is not None else {"uuid": None}
        page["uuid"] = page.get("uuid") or request.match_info["uuid"]
        for dialog in page.get("dialogs", []):
            dialog["audio"] = _audio_link(page["uuid"], dialog, archive)
        page.update(
            form=opened.form,
            signature=opened.signature,
            signature_detail=opened.signature_detail,
            problems=opened.problems,
            size=opened.size,
            download=f"/console/vcons/{page['uuid']}/download",
        )
        return _json(page)

    async def read_source(path: Path, index: int, key: tuple[Path, int, int]) -> AudioSource | None:
        content = await asyncio.to_thread(load_content, path)
        dialogs = content.get("dialog") if content else None
        if not isinstance(dialogs, list) or not 0 <= index < len(dialogs) or not isinstance(dialogs[index], dict):
            return None
        if not is_audio(dialogs[index]):
            return None
        source = await asyncio.to_thread(locate, dialogs[index], archive.media_dirs)
        if source is not None and source.data is not None:
            audio_cache.put(key, source)
        return source

    async def source_of(request: web.Request) -> tuple[AudioSource | None, tuple[Path, int, int] | None]:
        """A recording dialog's audio; the player's and the waveform's requests share one read of the file."""
        path = archive.find(request.match_info["uuid"])
        try:
            index = int(request.match_info["dialog"])
        except ValueError:
            return None, None
        if path is None:
            return None, None
        try:
            key = (path, path.stat().st_mtime_ns, index)
        except FileNotFoundError:
            return None, None
        if (cached := audio_cache.get(key)) is not None:
            return cached, key
        task = loading.get(key)
        if task is None:
            task = loading[key] = asyncio.ensure_future(read_source(path, index, key))
            task.add_done_callback(lambda _: loading.pop(key, None))
        return await asyncio.shield(task), key

    @routes.get("/vcons/{uuid}/audio/{dialog}")
    async def audio(request: web.Request) -> web.StreamResponse:
        source, _ = await source_of(request)
        if source is None:
            return _error(404, "no audio in that dialog")
        if source.data is not None:
            return ranged(request, source.data, "audio/wav" if "wav" in source.mediatype else source.mediatype)
        if source.path is not None:
            return web.FileResponse(source.path, headers={"Cache-Control": "private, max-age=3600"})
        return _error(404, "the audio is referenced by URL only; the console does not fetch it")

    @routes.get("/api/vcons/{uuid}/peaks/{dialog}")
    async def waveform(request: web.Request) -> web.Response:
        source, key = await source_of(request)
        if source is None or key is None or (source.data is None and source.path is None):
            return _error(404, "no audio stored here for that dialog")
        if key not in peaks_cache:
            try:
                peaks_cache[key] = await asyncio.to_thread(peaks, source.data or source.path)  # type: ignore[arg-type]
            except RuntimeError as exc:
                return _error(422, f"the audio could not be read: {exc}")
            while len(peaks_cache) > PEAKS_KEPT:
                peaks_cache.popitem(last=False)
        return _json(peaks_cache[key])

    @routes.get("/vcons/{uuid}/download")
    async def download(request: web.Request) -> web.StreamResponse:
        path = archive.find(request.match_info["uuid"])
        if path is None:
            return _error(404, "no such vCon in the output directory")
        disposition = f'attachment; filename="{path.name}"'
        return web.FileResponse(path, headers={"Content-Disposition": disposition, "Content-Type": "application/json"})

    @routes.get("/api/dead-letters")
    async def dead_letters(_: web.Request) -> web.Response:
        return _json({"dead_letters": await asyncio.to_thread(_dead_letters, pipeline)})

    @routes.post("/api/dead-letters/{sink}/{uuid}/retry")
    async def retry(request: web.Request) -> web.Response:
        sink, vcon_uuid = request.match_info["sink"], request.match_info["uuid"]
        if not UUID_RE.match(vcon_uuid):
            return _error(404, "no such dead letter")
        if not await pipeline.delivery.retry_dead_letter(sink, vcon_uuid):
            return _error(404, "no such dead letter (already retried?)")
        return _json({"sink": sink, "uuid": vcon_uuid, "retried": True})

    return routes


def _audio_link(vcon_uuid: str, dialog: dict[str, Any], archive: Archive) -> dict[str, Any] | None:
    """Where the page's player takes a recording dialog's audio from."""
    if not is_audio(dialog):
        return None
    src = f"/console/vcons/{vcon_uuid}/audio/{dialog['index']}"
    if dialog.get("inline"):
        return {"src": src, "peaks": f"/console/api/vcons/{vcon_uuid}/peaks/{dialog['index']}", "external": False}
    url = dialog.get("url")
    if not isinstance(url, str):
        return None
    found = locate({"url": url}, archive.media_dirs)
    if found is not None and found.path is not None:
        return {"src": src, "peaks": f"/console/api/vcons/{vcon_uuid}/peaks/{dialog['index']}", "external": False}
    return {"src": url if url.startswith("https://") else None, "peaks": None, "external": True, "url": url}
