"""The console's JSON and audio routes (under ``/console``; live calls come from ``/api/calls`` and ``/api/live``).

::

    GET  /console/api/health                         ready/draining, spool depth, dead letters, disk space
    GET  /console/api/vcons?q=&from=&to=&disposition=&limit=&after=
                                                     finished vCons, newest first (see capture.console.archive)
    GET  /console/api/vcons/{uuid}                   one vCon's detail page (capture.console.vcons.detail),
                                                     form, signature and validation
    GET  /console/api/vcons/{uuid}/peaks/{dialog}    waveform peaks of a recording dialog, per channel
    GET  /console/vcons/{uuid}/audio/{dialog}        its audio (range requests), inline bodies decoded
                                                     (into the console's cache directory, by the worker)
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
from capture.console.archive import UUID_RE, Archive
from capture.console.reading import Extracted, extract_audio
from capture.console.vcons import Query
from capture.pipeline import Pipeline

DECODED_BYTES = 512 * 1024 * 1024
"Decoded inline audio kept on disk for the player's range requests (least recently used removed first)."
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


Key = tuple[Path, int, int]
"(vCon file, its mtime, dialog index)"


class DecodedAudio:
    """What :func:`capture.console.reading.extract_audio` found, by :data:`Key`; the files it decoded live in
    ``folder`` (emptied at start: an earlier run's) and are removed past ``max_bytes``, least recently used first."""

    def __init__(self, folder: Path, max_bytes: int = DECODED_BYTES) -> None:
        self.folder = folder
        self.max_bytes = max_bytes
        self._items: OrderedDict[Key, Extracted | None] = OrderedDict()
        self._size = 0
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        for stale in folder.iterdir():
            stale.unlink(missing_ok=True)

    def target(self, key: Key) -> Path:
        path, mtime, index = key
        return self.folder / f"{path.name[: -len('.vcon')]}-{mtime}-{index}.wav"

    def get(self, key: Key) -> tuple[bool, Extracted | None]:
        if key not in self._items:
            return False, None
        self._items.move_to_end(key)
        return True, self._items[key]

    def put(self, key: Key, value: Extracted | None) -> None:
        self._items[key] = value
        if value is not None and value.decoded and value.path is not None:
            self._size += value.path.stat().st_size
        while self._size > self.max_bytes and len(self._items) > 1:
            _, old = self._items.popitem(last=False)
            if old is not None and old.decoded and old.path is not None:
                self._size -= old.path.stat().st_size
                old.path.unlink(missing_ok=True)  # a response still sending it keeps it open


def data_routes(
    pipeline: Pipeline, archive: Archive, ready: Callable[[], bool], auth: bool, cache_dir: Path
) -> web.RouteTableDef:
    routes = web.RouteTableDef()
    decoded = DecodedAudio(cache_dir)
    loading: dict[Key, asyncio.Future[Extracted | None]] = {}

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
        page = await archive.page(request.match_info["uuid"])
        if page is None:
            return _error(404, "no such vCon in the output directory")
        return _json(page)

    async def extract(key: Key) -> Extracted | None:
        try:
            found = await archive.readers.run(extract_audio, key[0], key[2], archive.media_dirs, decoded.target(key))
        except FileNotFoundError:
            return None
        decoded.put(key, found)
        return found

    async def audio_of(request: web.Request) -> Extracted | None:
        """A recording dialog's audio; the player's and the waveform's requests share one read of the file."""
        path = archive.find(request.match_info["uuid"])
        try:
            index = int(request.match_info["dialog"])
            key = (path, path.stat().st_mtime_ns, index) if path is not None else None
        except (ValueError, FileNotFoundError):
            return None
        if key is None:
            return None
        known, found = decoded.get(key)
        if known:
            return found
        task = loading.get(key)
        if task is None:
            task = loading[key] = asyncio.ensure_future(extract(key))
            task.add_done_callback(lambda _: loading.pop(key, None))
        try:
            return await asyncio.shield(task)
        except OSError as exc:  # the cache directory's disk refused the decoded file
            raise web.HTTPServiceUnavailable(
                text=json.dumps({"error": f"cannot decode the audio now: {exc.strerror}"}),
                content_type="application/json",
            ) from None

    @routes.get("/vcons/{uuid}/audio/{dialog}")
    async def audio(request: web.Request) -> web.StreamResponse:
        found = await audio_of(request)
        if found is None:
            return _error(404, "no audio in that dialog")
        if found.path is None:
            return _error(404, "the audio is referenced by URL only; the console does not fetch it")
        kind = "audio/wav" if "wav" in found.mediatype else found.mediatype
        return web.FileResponse(found.path, headers={"Cache-Control": "private, max-age=3600", "Content-Type": kind})

    @routes.get("/api/vcons/{uuid}/peaks/{dialog}")
    async def waveform(request: web.Request) -> web.Response:
        found = await audio_of(request)
        if found is None or found.path is None:
            return _error(404, "no audio stored here for that dialog")
        if found.peaks is None:
            return _error(422, "the audio is in a format the console cannot read for a waveform")
        return _json(found.peaks)

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
