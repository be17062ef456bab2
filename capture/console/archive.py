"""The finished vCons the console lists: the ``out`` directory, read with bounded work per request.

A directory of vCons can hold many thousands of files, each up to hundreds of megabytes of
inline audio. So: the listing (names by modification time, newest first) is kept until the
directory's own mtime changes (a file added or removed); each file's one-line summary is
parsed once and kept while the file's (mtime, size) stay the same; a search reads summaries
newest first and stops at a page of matches or at :data:`PARSE_BUDGET` files not seen before
(the answer then says where to go on). Files are read in the console's worker process
(:mod:`capture.console.workers`); the caches are only touched on the event loop.
"""

from __future__ import annotations

import asyncio
import os
import re
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from capture.console.reading import SUFFIX, page, summarise_many
from capture.console.vcons import Query, matches
from capture.console.workers import Readers

UUID_RE = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
PARSE_BUDGET = 300
"Files not summarised before that one search request may read (the rest: the next page)."
BATCH = 64
"Files summarised per trip to the worker."
SUMMARIES = 20_000
"Summaries kept in memory (a few hundred bytes each)."


class Archive:
    """The finished vCons in ``dirs`` (the first is where the directory sink writes)."""

    def __init__(
        self, readers: Readers, dirs: Sequence[Path], media_dirs: Sequence[Path] = (), ca_file: Path | None = None
    ) -> None:
        self.readers = readers
        self.dirs = list(dict.fromkeys(dirs))
        self.media_dirs = list(dict.fromkeys([*self.dirs, *media_dirs]))
        self.ca_file = ca_file
        self._listing: tuple[tuple[int, ...], list[tuple[int, str, Path]]] | None = None
        self._lines: OrderedDict[Path, tuple[int, dict[str, Any]]] = OrderedDict()

    def find(self, vcon_uuid: str) -> Path | None:
        if not UUID_RE.match(vcon_uuid):
            return None
        for folder in self.dirs:
            if (folder / f"{vcon_uuid}{SUFFIX}").is_file():
                return folder / f"{vcon_uuid}{SUFFIX}"
        return None

    def _list(self) -> tuple[tuple[int, ...], list[tuple[int, str, Path]]]:
        stamps = tuple(_mtime(d) for d in self.dirs)
        if self._listing is not None and self._listing[0] == stamps:
            return self._listing
        entries = []
        for folder in self.dirs:
            try:
                with os.scandir(folder) as it:
                    for entry in it:
                        if entry.name.endswith(SUFFIX) and not entry.name.startswith("."):
                            try:
                                entries.append((entry.stat().st_mtime_ns, entry.name, Path(entry.path)))
                            except FileNotFoundError:
                                continue
            except FileNotFoundError:
                continue
        entries.sort(reverse=True)
        return stamps, entries

    async def search(
        self, query: Query, limit: int, after: str | None = None
    ) -> tuple[list[dict[str, Any]], str | None]:
        """Up to ``limit`` matching lines, newest first, older than the cursor ``after``; and the
        cursor to go on from (None: nothing older is left)."""
        self._listing = await asyncio.to_thread(self._list)
        entries = self._listing[1]
        i = 0
        if after:
            stamp, _, name = after.partition(":")
            key = (int(stamp) if stamp.isdigit() else 0, name)
            i = next((n for n, (m, name_, _) in enumerate(entries) if (m, name_) < key), len(entries))
        found: list[dict[str, Any]] = []
        parsed = 0
        while i < len(entries) and len(found) < limit:
            batch = entries[i : i + BATCH]
            lines = {p: kept[1] for m, _, p in batch if (kept := self._lines.get(p)) and kept[0] == m}
            stale = [(m, p) for m, _, p in batch if p not in lines]
            if stale and parsed >= PARSE_BUDGET:
                break
            read = await self.readers.run(summarise_many, [p for _, p in stale])
            for (mtime, path), line in zip(stale, read, strict=True):
                self._keep(path, mtime, line)
                lines[path] = line
            parsed += len(stale)
            for _, _, path in batch:
                i += 1
                line = lines[path]
                if query.empty or matches(line, query):
                    found.append({k: v for k, v in line.items() if k != "words"})
                    if len(found) >= limit:
                        break
        if i >= len(entries) or i == 0:
            return found, None
        mtime, name, _ = entries[i - 1]
        return found, f"{mtime}:{name}"

    def _keep(self, path: Path, mtime: int, line: dict[str, Any]) -> None:
        self._lines[path] = (mtime, line)
        self._lines.move_to_end(path)
        while len(self._lines) > SUMMARIES:
            self._lines.popitem(last=False)

    async def page(self, vcon_uuid: str) -> dict[str, Any] | None:
        """A vCon's detail page (:func:`capture.console.reading.page`); None if there is no such file."""
        path = self.find(vcon_uuid)
        if path is None:
            return None
        return await self.readers.run(page, path, vcon_uuid, self.ca_file, self.media_dirs)


def _mtime(folder: Path) -> int:
    try:
        return folder.stat().st_mtime_ns
    except FileNotFoundError:
        return 0
