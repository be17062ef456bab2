"""The console's routes, in process: the real pipeline finishes scripted calls (tests/scripted.py,
standing in for a protocol adapter) into real vCon files; the API application, console mounted,
answers over a real loopback socket (aiohttp's test server). The page itself is tested in
headless Chromium against a real recorder with sipp calls (test_console_browser.py)."""

from __future__ import annotations

import asyncio
import io
import json
import os
import signal
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import aiohttp
import numpy as np
import pytest
import soundfile
from aiohttp.test_utils import TestClient, TestServer
from scripted import answered, busy, transfer

from capture.api import api_app
from capture.console import console_app
from capture.console.archive import PARSE_BUDGET
from capture.console.audio import peaks
from capture.console.reading import Extracted
from capture.console.routes import DecodedAudio
from capture.console.vcons import Query, matches, summary, timeline
from capture.console.workers import Readers
from capture.mixdown import MediaPolicy
from capture.pipeline import Pipeline
from capture.signing import Signer, encrypt
from capture.sinks.directory import DirectorySink
from capture.spool import Spool
from capture.vcon.content import b64url_decode

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "core"))
from test_signing import make_pki  # noqa: E402

TOKEN = "console-test-token-0123456789"


async def finished(tmp_path: Path, *scenarios, **media) -> Pipeline:
    """A started pipeline whose scripted calls are vCons in ``tmp_path/out`` (oldest first by mtime)."""
    out = tmp_path / "out"
    out.mkdir(exist_ok=True)
    pipeline = Pipeline(
        state_dir=tmp_path / "state",
        domain="test.example",
        media=MediaPolicy(media_dir=out, **media),
        spool=Spool(tmp_path / "state" / "spool"),
        sinks=[DirectorySink(out)],
    )
    await pipeline.start()
    for n, scenario in enumerate(scenarios):
        await scenario(pipeline, f"call-{n}")
        await asyncio.sleep(0.01)  # distinct mtimes: the list is newest first
        assert await pipeline.drain(10)
    return pipeline


def by_call(tmp_path: Path) -> dict[str, dict]:
    docs = [json.loads(p.read_bytes()) for p in (tmp_path / "out").glob("*.vcon")]
    return {next(a["body"]["call_id"] for a in d["attachments"] if a["purpose"] == "cdr"): d for d in docs}


def client(pipeline: Pipeline, tmp_path: Path, token: str | None = TOKEN, ca: Path | None = None) -> TestClient:
    out, cache = tmp_path / "out", tmp_path / "cache"
    console = console_app(pipeline, token=token, ready=lambda: True, out_dirs=(out,), cache_dir=cache, ca_file=ca)
    app = api_app(
        token=token, live=pipeline.live, calls=pipeline.calls_snapshot, pause=pipeline.request_pause, console=console
    )
    return TestClient(TestServer(app, host="127.0.0.1"))


AUTH = {"Authorization": f"Bearer {TOKEN}"}


async def test_search_by_number_name_date_and_disposition_pages_newest_first(tmp_path):
    pipeline = await finished(tmp_path, answered, busy, transfer)
    docs = by_call(tmp_path)
    try:
        async with client(pipeline, tmp_path) as c:

            async def search(**query) -> list[str]:
                resp = await c.get("/console/api/vcons", params=query, headers=AUTH)
                assert resp.status == 200
                return [v["uuid"] for v in (await resp.json())["vcons"]]

            everything = await search()
            assert everything == [docs[f"call-{n}"]["uuid"] for n in (2, 1, 0)], "newest first"
            assert await search(q="555-123-0003") == [docs["call-2"]["uuid"]], "a number by its digits"
            assert await search(q="+15551230001") == everything, "the caller of all three"
            assert await search(q="bob") == [docs["call-0"]["uuid"]], "a name, any case"
            assert await search(q="bob@example") == [docs["call-0"]["uuid"]], "a SIP address"
            assert await search(q=docs["call-1"]["uuid"][:13]) == [docs["call-1"]["uuid"]], "a uuid prefix"
            assert await search(disposition="busy") == [docs["call-1"]["uuid"]]
            assert await search(disposition="answered", q="15551230001") == [docs[f"call-{n}"]["uuid"] for n in (2, 0)]
            today = datetime.now(UTC).date()
            assert await search(**{"from": today.isoformat(), "to": today.isoformat()}) == everything
            assert await search(to=(today - timedelta(days=1)).isoformat()) == []
            assert await search(q="nobody-like-this") == []
            pages, after = [], None
            while True:
                resp = await c.get("/console/api/vcons", params={"limit": "1", **({"after": after} if after else {})},
                                   headers=AUTH)  # fmt: skip
                page = await resp.json()
                pages += [v["uuid"] for v in page["vcons"]]
                after = page["after"]
                if after is None:
                    break
            assert pages == everything, "pages of one, no repeat, none missed"
            resp = await c.get("/console/api/vcons", params={"from": "yesterday"}, headers=AUTH)
            assert resp.status == 400
    finally:
        await pipeline.aclose()


async def test_detail_puts_history_holds_dtmf_and_transfers_on_one_axis(tmp_path):
    pipeline = await finished(tmp_path, answered, transfer)
    docs = by_call(tmp_path)
    try:
        async with client(pipeline, tmp_path) as c:
            resp = await c.get(f"/console/api/vcons/{docs['call-0']['uuid']}", headers=AUTH)
            page = await resp.json()
            resp = await c.get(f"/console/api/vcons/{docs['call-1']['uuid']}", headers=AUTH)
            moved = await resp.json()
    finally:
        await pipeline.aclose()
    doc = docs["call-0"]
    assert page["problems"] == [] and page["form"] == "unsigned" and page["signature"] == "none"
    assert [p["label"] for p in page["parties"]] == ["Alice", "Bob"]
    assert page["cdr"]["ended_by"] == "bob" and page["disposition"] == "answered"
    assert "body" not in json.dumps(page["dialogs"]), "bodies stay out of the page"
    tl = page["timeline"]
    origin = datetime.fromisoformat(tl["origin"].replace("Z", "+00:00"))
    rec = doc["dialog"][0]
    (track,) = tl["recordings"]
    start = datetime.fromisoformat(rec["start"].replace("Z", "+00:00"))
    assert track["start"] == pytest.approx((start - origin).total_seconds(), abs=0.002)
    assert [c["label"] for c in track["channels"]] == ["Alice", "Bob"]
    for h in rec["party_history"]:
        at = (datetime.fromisoformat(h["time"].replace("Z", "+00:00")) - origin).total_seconds()
        kind = "dtmf" if h["event"] in ("keydown", "keyup") else h["event"]
        shown = [e for e in tl["events"] if e["kind"] == kind and e["party"] == h["party"]]
        if h["event"] != "keyup":
            assert any(abs(e["t"] - at) < 0.002 for e in shown), (h, shown)
    (press,) = [e for e in tl["events"] if e["kind"] == "dtmf"]
    assert press["button"] == "5" and press["label"] == "DTMF 5 by Alice" and press["duration"] >= 0
    (hold,) = [b for b in tl["bands"] if b["kind"] == "hold"]
    assert hold["party"] == 1 and hold["end"] >= hold["start"]
    (swap,) = [e for e in moved["timeline"]["events"] if e["kind"] == "transfer"]
    assert "+15551230001 to +15551230003" in swap["label"] and "by +15551230002" in swap["label"]
    assert any(e["kind"] == "drop" and e["party"] == 1 for e in moved["timeline"]["events"])


async def test_audio_is_served_with_byte_ranges_and_peaks_follow_each_channel(tmp_path):
    pipeline = await finished(tmp_path, answered)
    (doc,) = by_call(tmp_path).values()
    wav = b64url_decode(doc["dialog"][0]["body"])
    try:
        async with client(pipeline, tmp_path) as c:
            base = f"/console/vcons/{doc['uuid']}/audio/0"
            resp = await c.get(base, headers=AUTH)
            assert resp.status == 200 and resp.headers["Accept-Ranges"] == "bytes"
            assert resp.content_type == "audio/wav" and await resp.read() == wav
            resp = await c.get(base, headers={**AUTH, "Range": "bytes=100-199"})
            assert resp.status == 206 and await resp.read() == wav[100:200]
            assert resp.headers["Content-Range"] == f"bytes 100-199/{len(wav)}"
            resp = await c.get(base, headers={**AUTH, "Range": "bytes=-10"})
            assert resp.status == 206 and await resp.read() == wav[-10:]
            resp = await c.get(base, headers={**AUTH, "Range": f"bytes={len(wav)}-"})
            assert resp.status == 416
            resp = await c.get(f"/console/api/vcons/{doc['uuid']}/peaks/0", headers=AUTH)
            shape = await resp.json()
            for path in (f"/console/vcons/{doc['uuid']}/audio/1", f"/console/vcons/{doc['uuid']}/audio/x"):
                assert (await c.get(path, headers=AUTH)).status == 404
            resp = await c.get(f"/console/vcons/{doc['uuid']}/download", headers=AUTH)
            assert json.loads(await resp.read()) == doc
            assert resp.headers["Content-Disposition"] == f'attachment; filename="{doc["uuid"]}.vcon"'
    finally:
        await pipeline.aclose()
    audio, rate = soundfile.read(io.BytesIO(wav), dtype="int16", always_2d=True)
    assert shape["rate"] == rate and shape["frames"] == len(audio) and len(shape["channels"]) == 2
    for ch, got in enumerate(shape["channels"]):
        assert len(got["max"]) == len(got["min"]) <= 1000
        per_bin = -(-len(audio) // len(got["max"]))
        for n in (0, len(got["max"]) // 2, len(got["max"]) - 1):
            stretch = audio[n * per_bin : (n + 1) * per_bin, ch] / 32768
            assert got["max"][n] == pytest.approx(stretch.max(), abs=1e-3)
            assert got["min"][n] == pytest.approx(stretch.min(), abs=1e-3)
    # Bob (channel 1) starts 0.5 s in: his first bins are silent, Alice's are not.
    assert max(shape["channels"][1]["max"][:50]) == 0 and max(shape["channels"][0]["max"][:50]) > 0.05


async def test_referenced_files_beside_the_vcon_are_played_and_their_hashes_checked(tmp_path):
    pipeline = await finished(tmp_path, answered, layout="files", url_base="https://media.example.com/rec")
    (doc,) = by_call(tmp_path).values()
    try:
        async with client(pipeline, tmp_path) as c:
            page = await (await c.get(f"/console/api/vcons/{doc['uuid']}", headers=AUTH)).json()
            recordings = [d for d in page["dialogs"] if d["type"] == "recording"]
            assert len(recordings) == 2 and page["problems"] == []
            assert [len(r["channels"]) for r in page["timeline"]["recordings"]] == [1, 1]
            for dialog in recordings:
                audio = dialog["audio"]
                assert audio["src"] == f"/console/vcons/{doc['uuid']}/audio/{dialog['index']}" and not audio["external"]
                local = tmp_path / "out" / dialog["url"].rsplit("/", 1)[-1]
                resp = await c.get(audio["src"], headers={**AUTH, "Range": "bytes=0-99"})
                assert resp.status == 206 and await resp.read() == local.read_bytes()[:100]
                shape = await (await c.get(audio["peaks"], headers=AUTH)).json()
                assert len(shape["channels"]) == 1 and max(shape["channels"][0]["max"]) > 0.05
            # A file changed after the vCon was made: the validation says so (the hash no longer matches).
            first = tmp_path / "out" / recordings[0]["url"].rsplit("/", 1)[-1]
            first.write_bytes(first.read_bytes()[:-2] + b"\x01\x02")
            page = await (await c.get(f"/console/api/vcons/{doc['uuid']}", headers=AUTH)).json()
            assert [p for p in page["problems"] if "content_hash" in p] == [
                f"$.dialog[{recordings[0]['index']}].content_hash: does not match {first.name}"
            ]
            first.unlink()
            page = await (await c.get(f"/console/api/vcons/{doc['uuid']}", headers=AUTH)).json()
            gone = page["dialogs"][recordings[0]["index"]]["audio"]
            assert gone["external"] and gone["src"] == recordings[0]["url"], "not here: the page links the URL"
    finally:
        await pipeline.aclose()


def test_peaks_of_a_long_file_are_read_in_blocks_with_the_same_answer(tmp_path):
    rng = np.random.default_rng(3)
    audio = (rng.standard_normal((8000 * 300 + 77, 2)) * 3000).astype(np.int16)
    path = tmp_path / "long.wav"
    soundfile.write(path, audio, 8000, subtype="PCM_16")
    shape = peaks(path)
    per_bin = -(-len(audio) // 1000)
    assert len(shape["channels"][0]["max"]) == -(-len(audio) // per_bin)
    last = audio[(len(shape["channels"][1]["min"]) - 1) * per_bin :, 1]
    assert shape["channels"][1]["min"][-1] == pytest.approx(last.min() / 32768, abs=1e-3)
    assert shape["channels"][0]["max"][123] == pytest.approx(audio[123 * per_bin : 124 * per_bin, 0].max() / 32768,
                                                             abs=1e-3)  # fmt: skip


async def test_signed_vcons_are_verified_against_the_configured_ca_and_encrypted_ones_listed(tmp_path):
    pki = make_pki(tmp_path, "rsa")
    pipeline = await finished(tmp_path, busy)
    (doc,) = by_call(tmp_path).values()
    signer = Signer.from_files(pki["key"], pki["chain"])
    out = tmp_path / "out"
    (out / f"{doc['uuid']}.vcon").write_text(json.dumps(signer.sign(doc)))
    hidden = {**doc, "uuid": "01a2266a-0000-8000-8000-000000000001"}
    (out / f"{hidden['uuid']}.vcon").write_text(json.dumps(encrypt(signer.sign(hidden), pki["chain"])))
    try:
        for ca, expected in ((pki["ca"], "verified"), (None, "unverified"), (pki["other_ca"], "invalid")):
            async with client(pipeline, tmp_path, ca=ca) as c:
                page = await (await c.get(f"/console/api/vcons/{doc['uuid']}", headers=AUTH)).json()
                assert page["form"] == "signed" and page["signature"] == expected, page["signature_detail"]
                assert page["disposition"] == "busy", "the payload is shown"
                assert bool(page["problems"]) == (expected == "invalid"), page["problems"]
                listed = await (await c.get("/console/api/vcons", headers=AUTH)).json()
                forms = {v["uuid"]: (v["form"], v["parties"]) for v in listed["vcons"]}
                assert forms[doc["uuid"]] == ("signed", ["+15551230001", "+15551230002"])
                assert forms[hidden["uuid"]] == ("encrypted", [])
                page = await (await c.get(f"/console/api/vcons/{hidden['uuid']}", headers=AUTH)).json()
                assert page["form"] == "encrypted" and page["signature"] == "unreadable"
    finally:
        await pipeline.aclose()


async def test_a_signed_vcon_with_its_audio_inline_verifies_and_plays(tmp_path):
    pki = make_pki(tmp_path, "ec")
    pipeline = await finished(tmp_path, answered)
    (doc,) = by_call(tmp_path).values()
    (tmp_path / "out" / f"{doc['uuid']}.vcon").write_text(
        json.dumps(Signer.from_files(pki["key"], pki["chain"]).sign(doc))
    )
    try:
        async with client(pipeline, tmp_path, ca=pki["ca"]) as c:
            audio = await c.get(f"/console/vcons/{doc['uuid']}/audio/0", headers=AUTH)
            assert audio.status == 200 and await audio.read() == b64url_decode(doc["dialog"][0]["body"])
            page = await (await c.get(f"/console/api/vcons/{doc['uuid']}", headers=AUTH)).json()
    finally:
        await pipeline.aclose()
    assert page["signature"] == "verified", page["signature_detail"]


async def test_broken_files_in_the_output_directory_are_shown_as_broken_never_fatal(tmp_path):
    pipeline = await finished(tmp_path, answered)
    broken = "01a2266a-0000-8000-8000-00000000000b"
    (tmp_path / "out" / f"{broken}.vcon").write_bytes(b'{"vcon": "0.4.0", "parties": [')
    weird = "01a2266a-0000-8000-8000-00000000000c"
    (tmp_path / "out" / f"{weird}.vcon").write_text(json.dumps({
        "uuid": weird, "vcon": "0.4.0", "created_at": "x", "parties": "nobody",
        "dialog": [{"type": "recording", "start": "2026-01-01T00:00:00Z", "encoding": "base64url", "body": "!!"},
                   "not a dialog", {"type": "transfer", "start": 5}],
        "attachments": [{"purpose": "cdr", "encoding": "json", "body": "{not json"}, 7],
    }))  # fmt: skip
    try:
        async with client(pipeline, tmp_path) as c:
            listed = await (await c.get("/console/api/vcons", headers=AUTH)).json()
            assert {v["uuid"] for v in listed["vcons"]} >= {broken, weird}
            page = await (await c.get(f"/console/api/vcons/{broken}", headers=AUTH)).json()
            assert page["problems"][0].startswith("$: not JSON")
            page = await (await c.get(f"/console/api/vcons/{weird}", headers=AUTH)).json()
            assert page["problems"] and page["timeline"]["recordings"][0]["start"] == 0
            assert (await c.get(f"/console/vcons/{weird}/audio/0", headers=AUTH)).status == 404
            assert (await c.get(f"/console/api/vcons/{weird}/peaks/1", headers=AUTH)).status == 404
            assert (await c.get("/console/api/vcons/../../etc/passwd", headers=AUTH)).status == 404
            assert (await c.get("/console/vcons/not-a-uuid/download", headers=AUTH)).status == 404
            assert (await c.get("/console/static/..%2fpages.py", headers=AUTH)).status == 404
    finally:
        await pipeline.aclose()


async def test_a_search_reads_a_bounded_number_of_new_files_and_says_where_to_go_on(tmp_path):
    pipeline = await finished(tmp_path, answered)
    (doc,) = by_call(tmp_path).values()
    out = tmp_path / "out"
    for n in range(PARSE_BUDGET + 40):
        other = {**doc, "uuid": f"01a2266a-0000-8000-8000-{n:012d}", "parties": [{"tel": "+15550000000"}]}
        (out / f"{other['uuid']}.vcon").write_text(json.dumps(other))
    try:
        async with client(pipeline, tmp_path) as c:
            page = await (await c.get("/console/api/vcons", params={"q": "Alice"}, headers=AUTH)).json()
            assert page["vcons"] == [] and page["after"] is not None, "stopped at the budget, not at the end"
            found = []
            while page["after"]:
                page = await (await c.get("/console/api/vcons", params={"q": "Alice", "after": page["after"]},
                                          headers=AUTH)).json()  # fmt: skip
                found += [v["uuid"] for v in page["vcons"]]
            assert doc["uuid"] in found
            page = await (await c.get("/console/api/vcons", params={"q": "Alice"}, headers=AUTH)).json()
            assert [v["uuid"] for v in page["vcons"]] == [doc["uuid"]], "summaries are kept: one request now"
    finally:
        await pipeline.aclose()


async def test_a_killed_worker_is_replaced_and_reading_goes_on():
    readers = Readers()
    try:
        worker = await readers.run(os.getpid)
        assert worker != os.getpid(), "files are read in another process"
        os.kill(worker, signal.SIGKILL)
        await asyncio.sleep(0.2)
        assert await readers.run(abs, -3) == 3, "answered (in a thread) although the worker died"
        assert await readers.run(os.getpid) not in (worker, os.getpid()), "then by a new worker"
    finally:
        readers.close()


def test_decoded_audio_is_bounded_on_disk_and_an_earlier_runs_files_removed(tmp_path):
    folder = tmp_path / "console"
    folder.mkdir()
    (folder / "left-by-a-killed-run.wav").write_bytes(b"x" * 10)
    cache = DecodedAudio(folder, max_bytes=1000)
    assert list(folder.iterdir()) == [], "emptied at start"
    keys = [(tmp_path / f"{n}.vcon", 1, 0) for n in range(3)]
    for key in keys:
        cache.target(key).write_bytes(b"x" * 400)
        cache.put(key, Extracted("audio/x-wav", cache.target(key), True, None, None))
    assert not cache.target(keys[0]).exists() and cache.get(keys[0]) == (False, None), "the oldest went"
    assert cache.target(keys[1]).exists() and cache.get(keys[2])[0]
    cache.put((tmp_path / "ref.vcon", 1, 0), Extracted("audio/x-wav", tmp_path / "theirs.wav", False, None, None))
    assert cache.target(keys[1]).exists(), "a referenced file is not ours to count or remove"


def test_matching_rules():
    line = summary({"uuid": "01a2266a-aaaa-8000-8000-000000000001", "created_at": "2026-03-04T05:06:07Z",
                    "parties": [{"tel": "+1 (555) 123-0000", "name": "Zoë Q"}, {"sip": "sip:desk@pbx.example"}]},
                   "unsigned")  # fmt: skip
    assert line["start"] == "2026-03-04T05:06:07Z" and line["disposition"] == "unknown"
    for text, hit in (("5551230000", True), ("555 123", True), ("zoë", True), ("desk@pbx", True),
                      ("01a2266a-aaaa", True), ("zoë 999", False), ("zz", False), ("", True)):  # fmt: skip
        assert matches(line, Query(text=text)) is hit, text
    assert matches(line, Query(day_from=datetime(2026, 3, 4).date()))
    assert not matches(line, Query(day_from=datetime(2026, 3, 5).date()))
    assert timeline({"parties": []})["recordings"] == []


# -- who may ask ------------------------------------------------------------------------


async def test_with_a_token_nothing_answers_without_it_and_other_origins_are_refused(tmp_path):
    pipeline = await finished(tmp_path, answered)
    (doc,) = by_call(tmp_path).values()
    u = doc["uuid"]
    gets = ["/", "/console", "/console/", "/console/static/console.js", "/console/static/console.css",
            "/console/api/health", "/console/api/vcons", f"/console/api/vcons/{u}", f"/console/api/vcons/{u}/peaks/0",
            f"/console/vcons/{u}/audio/0", f"/console/vcons/{u}/download", "/console/api/dead-letters", "/api/calls",
            "/api/live", "/console/nothing-here"]  # fmt: skip
    posts = [f"/console/api/dead-letters/dir/{u}/retry", f"/api/calls/{u}/pause", "/console/logout"]
    wrong = [{}, {"Authorization": "Bearer nope"}, {"Cookie": "vcon_capture_token=nope"}]
    try:
        async with client(pipeline, tmp_path) as c:
            for headers in wrong:
                for path in gets:
                    resp = await c.get(path, headers=headers, allow_redirects=False)
                    assert resp.status == 401, (path, headers, resp.status)
                    text = await resp.text()
                    assert u not in text and "console.js" not in text, path
                for path in posts:
                    resp = await c.post(path, headers=headers, allow_redirects=False)
                    assert resp.status == 401, (path, headers, resp.status)
            resp = await c.get("/console/api/vcons", params={"token": "nope"})
            assert resp.status == 401
            page = await c.get("/console/")
            assert 'name="token"' in await page.text() and page.headers["WWW-Authenticate"] == "Bearer"
            resp = await c.post("/console/login", data={"token": "nope"}, allow_redirects=False)
            assert resp.status == 401 and "not the one" in await resp.text()

            resp = await c.post("/console/login", data={"token": TOKEN}, allow_redirects=False)
            assert resp.status == 303 and resp.headers["Location"] == "/console/"
            cookie = resp.headers["Set-Cookie"]
            assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Path=/" in cookie
            signed_in = {"Cookie": f"vcon_capture_token={TOKEN}"}
            resp = await c.get("/console/", headers=signed_in)
            assert resp.status == 200 and "console.js" in await resp.text()
            assert "default-src 'self'" in resp.headers["Content-Security-Policy"]
            resp = await c.get(f"/console/?token={TOKEN}", allow_redirects=False)
            assert resp.status == 303 and TOKEN not in resp.headers["Location"]
            assert "HttpOnly" in resp.headers["Set-Cookie"]
            for path in gets[3:-3]:
                assert (await c.get(path, headers=AUTH)).status == 200, path

            # Another site's page, even in the operator's browser (cookie sent), is refused.
            evil = {**signed_in, "Origin": "http://evil.example"}
            assert (await c.get("/console/api/vcons", headers=evil)).status == 403
            assert (await c.post(f"/console/api/dead-letters/dir/{u}/retry", headers=evil)).status == 403
            with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
                await c.ws_connect("/api/live", headers=evil)
            assert refused.value.status == 403
            ours = {**signed_in, "Origin": f"http://127.0.0.1:{c.port}"}
            async with c.ws_connect("/api/live?audio=0", headers=ours) as ws:
                assert not ws.closed
            # A consumer on another origin that holds the token itself may use the API.
            elsewhere = {"Origin": "https://dashboard.example", **AUTH}
            assert (await c.get("/api/calls", headers=elsewhere)).status == 200
            assert (await c.get(f"/api/calls?token={TOKEN}", headers={"Origin": "https://x.example"})).status == 200
            assert (await c.get("/api/calls", headers={"Origin": "https://x.example"})).status == 403
    finally:
        await pipeline.aclose()


async def test_without_a_token_only_loopback_host_names_are_answered(tmp_path):
    pipeline = await finished(tmp_path)
    try:
        async with client(pipeline, tmp_path, token=None) as c:
            assert (await c.get("/console/api/health")).status == 200
            assert (await c.get("/console/", headers={"Host": f"localhost:{c.port}"})).status == 200
            rebound = {"Host": f"attacker.example:{c.port}"}
            for path in ("/console/", "/console/api/vcons", "/api/calls"):
                resp = await c.get(path, headers=rebound)
                assert resp.status == 403 and "loopback" in (await resp.json())["error"], path
            health = await (await c.get("/console/api/health")).json()
            assert health["state"] == "ready" and health["auth"] is False and health["spool_depth"] == 0
            assert health["dead_letters"] == 0 and health["disk"] and health["calls"] == 0
            pipeline.stop_accepting()
            assert (await (await c.get("/console/api/health")).json())["state"] == "draining"
    finally:
        await pipeline.aclose()
