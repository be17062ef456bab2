"""The finished vCons the console lists: the ``out`` directory, read with bounded work per request.

A directory of vCons can hold many thousands of files, each up to hundreds of megabytes of
inline audio. So: the listing (names by modification time, newest first) is kept until the
directory's own mtime changes (a file added or removed); each file's one-line summary is
parsed once and kept while the file's (mtime, size) stay the same; a search reads summaries
newest first and stops at a page of matches or at :data:`PARSE_BUDGET` files not seen before
(the answer then says where to go on). Parsing runs in a worker thread; the caches are only
touched on the event loop.

Signed vCons are listed and shown from their payload; with ``console_ca_file`` the signatures
and chain are verified (:func:`capture.signing.verify`), without it the payload is shown
marked unverified. Encrypted vCons are listed by uuid only: the console holds no key.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from capture.console.vcons import Query, matches, summary
from capture.errors import ConfigError, VerificationError
from capture.signing import verify
from capture.vcon.content import b64url_decode, hash_matches
from capture.vcon.validate import form_of, problems, referenced_content

SUFFIX = ".vcon"
UUID_RE = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
PARSE_BUDGET = 300
"Files not summarised before that one search request may read (the rest: the next page)."
SUMMARIES = 20_000
"Summaries kept in memory (a few hundred bytes each)."


@dataclass(frozen=True)
class Opened:
    """A vCon read for its detail page."""

    path: Path
    size: int
    form: str
    "unsigned, signed, encrypted or unknown"
    content: dict[str, Any] | None
    "The unsigned document (a signed one's payload); None when it cannot be read (encrypted, broken)."
    signature: str
    "none (unsigned), verified, unverified (no CA configured), invalid, or unreadable (encrypted)"
    signature_detail: str | None
    problems: list[str]


def _read_json(path: Path) -> Any:
    return json.loads(path.read_bytes())


def _payload(doc: dict[str, Any]) -> dict[str, Any] | None:
    """A signed vCon's payload, not verified."""
    try:
        value = json.loads(b64url_decode(str(doc.get("payload", ""))))
    except (ValueError, UnicodeDecodeError):
        return None
    return value if isinstance(value, dict) else None


def open_vcon(path: Path, ca_file: Path | None, media_dirs: Sequence[Path]) -> Opened:
    """Read, unwrap, verify and validate one vCon file (blocking: run it in a thread)."""
    size = path.stat().st_size
    try:
        doc = _read_json(path)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        return Opened(path, size, "unknown", None, "none", None, [f"$: not JSON: {exc}"])
    form = form_of(doc)
    content: dict[str, Any] | None = doc if form == "unsigned" else None
    signature, why, found = "none", None, []
    if form == "signed":
        if ca_file is None:
            content, signature, why = _payload(doc), "unverified", "no console_ca_file is configured"
        else:
            try:
                content, signature = verify(doc, ca_file), "verified"
            except (VerificationError, ConfigError) as exc:
                content, signature, why = _payload(doc), "invalid", str(exc)
                found.append(f"$: signature: {exc}")
        if content is None:
            found.append("$.payload: not a base64url JSON object")
    elif form == "encrypted":
        signature, why = "unreadable", "encrypted (JWE): the console holds no key to decrypt it"
    if content is not None:
        found += problems(content)
        found += _hash_problems(content, [path.parent, *media_dirs])
    elif form in ("unknown",):
        found += problems(doc)
    return Opened(path, size, form, content, signature, why, found)


def _hash_problems(doc: dict[str, Any], dirs: Sequence[Path]) -> list[str]:
    """content_hash mismatches of referenced files found locally (as ``vcon-capture validate`` checks)."""
    found = []
    for where, url, expected in referenced_content(doc):
        name = url.split("?", 1)[0].rsplit("/", 1)[-1]
        local = next((d / name for d in dirs if name and (d / name).is_file()), None)
        if local is not None and expected is not None and not hash_matches(expected, local.read_bytes()):
            found.append(f"{where}.content_hash: does not match {local.name}")
    return found


def load_content(path: Path) -> dict[str, Any] | None:
    """The unsigned document of a vCon file (a signed one's payload, unverified); None if unreadable."""
    try:
        doc = _read_json(path)
    except (OSError, json.JSONDecodeError, UnicodeDecodeError):
        return None
    form = form_of(doc)
    if form == "signed":
        return _payload(doc)
    return doc if form == "unsigned" else None


def _summarise(path: Path) -> dict[str, Any]:
    try:
        doc = _read_json(path)
    except (OSError, json.JSONDecodeError, UnicodeDecodeError):
        return {"uuid": path.name[: -len(SUFFIX)], "form": "unknown", "parties": [], "words": [], "unreadable": True}
    form = form_of(doc)
    if form == "signed":
        doc = _payload(doc) or {}
    elif form == "encrypted":
        doc = {"uuid": path.name[: -len(SUFFIX)]}
    return summary(doc, form)


class Archive:
    """The finished vCons in ``dirs`` (the first is where the directory sink writes)."""

    def __init__(self, dirs: Sequence[Path], media_dirs: Sequence[Path] = (), ca_file: Path | None = None) -> None:
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
            batch = entries[i : i + 32]
            lines = {p: kept[1] for m, _, p in batch if (kept := self._lines.get(p)) and kept[0] == m}
            stale = [(m, p) for m, _, p in batch if p not in lines]
            if stale and parsed >= PARSE_BUDGET:
                break
            for (mtime, path), line in zip(stale, await asyncio.to_thread(_summarise_many, stale), strict=True):
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

    async def open(self, vcon_uuid: str) -> Opened | None:
        path = self.find(vcon_uuid)
        if path is None:
            return None
        try:
            return await asyncio.to_thread(open_vcon, path, self.ca_file, self.media_dirs)
        except FileNotFoundError:
            return None


def _summarise_many(items: list[tuple[int, Path]]) -> list[dict[str, Any]]:
    return [_summarise(path) for _, path in items]


def _mtime(folder: Path) -> int:
    try:
        return folder.stat().st_mtime_ns
    except FileNotFoundError:
        return 0
