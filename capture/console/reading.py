"""Everything that reads a whole vCon file, run in the console's worker process (:mod:`capture.console.workers`).

A long call's vCon is hundreds of megabytes of JSON around base64 audio; parsing it, decoding
its audio, validating it and checking its signatures hold the GIL for seconds. In the service's
process that would stall the event loop reading RTP, so the console does all of it here and
gets back only what a page needs: a list line, a detail page, a decoded WAV file's path and
its waveform peaks. These functions are plain (blocking, picklable arguments and results).

Signed vCons are shown from their payload; with ``console_ca_file`` the signatures and chain
are verified (:func:`capture.signing.verify`), without it the payload is marked unverified.
Encrypted vCons are listed by uuid only: the console holds no key.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from capture.console.audio import locate, peaks
from capture.console.vcons import detail, is_audio, summary
from capture.errors import ConfigError, VerificationError
from capture.signing import verify
from capture.vcon.content import b64url_decode, hash_matches
from capture.vcon.validate import form_of, problems, referenced_content

SUFFIX = ".vcon"


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
    """Read, unwrap, verify and validate one vCon file."""
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


def summarise_many(paths: list[Path]) -> list[dict[str, Any]]:
    return [_summarise(path) for path in paths]


def page(path: Path, vcon_uuid: str, ca_file: Path | None, media_dirs: Sequence[Path]) -> dict[str, Any] | None:
    """The detail page of one vCon file (None if it is gone)."""
    try:
        opened = open_vcon(path, ca_file, media_dirs)
    except FileNotFoundError:
        return None
    shown: dict[str, Any] = detail(opened.content) if opened.content is not None else {"uuid": None}
    shown["uuid"] = shown.get("uuid") or vcon_uuid
    for dialog in shown.get("dialogs", []):
        dialog["audio"] = _audio_link(shown["uuid"], dialog, [path.parent, *media_dirs])
    shown.update(
        form=opened.form,
        signature=opened.signature,
        signature_detail=opened.signature_detail,
        problems=opened.problems,
        size=opened.size,
        download=f"/console/vcons/{shown['uuid']}/download",
    )
    return shown


def _audio_link(vcon_uuid: str, dialog: dict[str, Any], dirs: Sequence[Path]) -> dict[str, Any] | None:
    """Where the page's player takes a recording dialog's audio from."""
    if not is_audio(dialog):
        return None
    here = {
        "src": f"/console/vcons/{vcon_uuid}/audio/{dialog['index']}",
        "peaks": f"/console/api/vcons/{vcon_uuid}/peaks/{dialog['index']}",
        "external": False,
    }
    if dialog.get("inline"):
        return here
    url = dialog.get("url")
    if not isinstance(url, str):
        return None
    found = locate({"url": url}, dirs)
    if found is not None and found.path is not None:
        return here
    return {"src": url if url.startswith("https://") else None, "peaks": None, "external": True, "url": url}


@dataclass(frozen=True)
class Extracted:
    """A recording dialog's audio as the console serves it."""

    mediatype: str
    path: Path | None
    "A file to serve: the decoded inline body (``decoded``) or the referenced file found locally."
    decoded: bool
    url: str | None
    "Referenced by URL only: not stored here."
    peaks: dict[str, Any] | None
    "Waveform peaks (None: not audio the console can read)."


def extract_audio(path: Path, index: int, media_dirs: Sequence[Path], target: Path) -> Extracted | None:
    """A recording dialog's audio: an inline body decoded into ``target`` (written 0600), a local
    referenced file, or its URL; with its waveform peaks. None when the dialog holds no audio."""
    content = load_content(path)
    dialogs = content.get("dialog") if content else None
    if not isinstance(dialogs, list) or not 0 <= index < len(dialogs) or not isinstance(dialogs[index], dict):
        return None
    if not is_audio(dialogs[index]):
        return None
    source = locate(dialogs[index], [path.parent, *media_dirs])
    del content, dialogs
    if source is None:
        return None
    served, decoded = source.path, False
    if source.data is not None:
        partial = target.with_name(f".{target.name}.tmp")
        fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as out:
            out.write(source.data)
        os.replace(partial, target)
        served, decoded = target, True
    shape = None
    if served is not None:
        try:
            shape = peaks(served)
        except RuntimeError:  # not a format libsndfile reads: still served, no waveform
            shape = None
    return Extracted(source.mediatype, served, decoded, source.url if served is None else None, shape)
