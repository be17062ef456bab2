"""The operator console in headless Chromium (Debian's, driven by Playwright) against a real recorder
(``python -m capture sip`` with ``--api-listen``) taking real SIP calls from sipp with RTP.

Screenshots of each view go to the test's temporary directory (``console-screens``), and to
docs/console/ when VCON_UPDATE_SCREENSHOTS=1 (the README shows those)."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.error
import urllib.request
from datetime import datetime
from pathlib import Path

import pytest
from console_harness import (
    CHROMIUM,
    CHROMIUM_ARGS,
    DTMF_AT_S,
    WATCH_CALLS,
    SippCall,
    ThreadedConserver,
    call_flow,
    shot,
)
from playwright.sync_api import sync_playwright
from sip.harness import Recorder, free_port

TOKEN = "c0ns0le-t0ken-for-the-browser-tests"
SCRIPTED = Path(__file__).resolve().parents[1] / "scripted.py"
DESKTOP = {"width": 1280, "height": 900}
PHONE = {"width": 390, "height": 844}


@pytest.fixture(scope="module")
def browser():
    assert Path(CHROMIUM).exists(), "the chromium package is required for this test"
    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("console-screens")


@pytest.fixture(scope="module")
def recorder(tmp_path_factory):
    """A recorder whose API (and console) needs a token."""
    tmp = tmp_path_factory.mktemp("console")
    (tmp / "api.token").write_text(TOKEN + "\n")
    api = free_port()
    rec = Recorder.start(tmp, api_listen=f"127.0.0.1:{api}", api_token_file=tmp / "api.token")
    rec.base = f"http://127.0.0.1:{api}"  # type: ignore[attr-defined]
    rec.tmp = tmp  # type: ignore[attr-defined]
    yield rec
    log = rec.stop()
    assert "Traceback" not in log, log[log.index("Traceback") - 2000 :][:6000]


def signed_in(browser, recorder, viewport=DESKTOP):
    """A page of a fresh browser context, signed in through the console's form."""
    context = browser.new_context(viewport=viewport)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.errors = errors
    first = page.goto(recorder.base + "/console/")
    assert first.status == 401
    page.get_by_label("API token").fill(TOKEN)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_selector("#view-live:not([hidden])")
    return page


@pytest.fixture(scope="module")
def watched_call(browser, recorder, artifacts):
    """One sipp call (talk, DTMF, hold, talk, BYE) watched in the Live view from before its INVITE."""
    page = signed_in(browser, recorder)
    page.goto(recorder.base + "/console/#/live")
    page.wait_for_function("() => document.getElementById('live-connection').textContent === ''")
    page.evaluate(WATCH_CALLS)
    call = SippCall(recorder.tmp, call_flow(recorder.tmp), recorder)
    try:
        page.wait_for_selector("#calls li.call", timeout=10_000)
        page.wait_for_function("() => Object.values(window.__calls).some((c) => c.level > -60)", timeout=10_000)
        page.wait_for_function("() => Object.values(window.__calls).some((c) => c.held || c.gone)", timeout=10_000)
        shot(page, "live", artifacts)
        call.wait()
    finally:
        call.kill()
    page.wait_for_function("() => Object.values(window.__calls).every((c) => c.gone !== null)", timeout=15_000)
    seen = page.evaluate("window.__calls")
    (vcon,) = recorder.vcons(1)
    assert not page.errors, page.errors
    page.context.close()
    return {"seen": seen, "invite_at": call.sent_at("INVITE"), "bye_at": call.sent_at("BYE"), "vcon": vcon}


def test_live_view_shows_the_call_within_1s_of_its_invite_and_removes_it_when_it_ends(watched_call):
    (seen,) = watched_call["seen"].values()
    vcon = watched_call["vcon"]
    cdr = next(a["body"] for a in vcon["attachments"] if a["purpose"] == "cdr")
    assert seen["callId"] == cdr["sip_call_id"]
    shown_after = seen["first"] / 1000 - watched_call["invite_at"]
    print(f"the call was on screen {shown_after:.3f} s after sipp sent its INVITE")
    assert shown_after <= 1.0, "shown within 1 s of the INVITE"
    assert seen["gone"] / 1000 > watched_call["bye_at"], "not removed before the call ended"
    assert seen["returns"] == 0, "the card never vanished mid-call"
    assert seen["held"], "the hold was shown"
    assert seen["level"] > -60, "the level meter moved"


def test_detail_view_plays_the_audio_and_shows_the_events_at_their_times(browser, recorder, watched_call, artifacts):
    vcon = watched_call["vcon"]
    page = signed_in(browser, recorder)
    page.goto(recorder.base + "/console/#/vcons")
    page.get_by_label("Number, name, address or uuid").fill("+1 555 123 0000")
    page.keyboard.press("Enter")
    page.wait_for_selector(f"#vcons li[data-uuid='{vcon['uuid']}']")
    assert page.locator("#vcons li").count() == 1
    shot(page, "vcons", artifacts)
    for _ in range(12):  # keyboard only: from the search form to the result's link
        page.keyboard.press("Tab")
        if page.evaluate("document.activeElement.closest('#vcons li') !== null"):
            break
    page.keyboard.press("Enter")
    page.wait_for_selector(".mark.dtmf")
    page.wait_for_selector(".waveform svg path")

    geometry = page.evaluate("""() => {
      const box = (e) => e.getBoundingClientRect();
      const bar = document.querySelector(".bar");
      const track = box(bar.parentElement);
      const D = Number(document.getElementById("timeline").dataset.duration);
      const at = (x) => (x - track.left) / track.width * D;
      return {
        D, bar: at(box(bar).left), barEnd: at(box(bar).right),
        marks: [...document.querySelectorAll(".lane.party .mark")].map((m) => ({
          kind: m.dataset.kind, party: Number(m.closest(".lane").dataset.party),
          t: Number(m.dataset.t), x: at(box(m).left + box(m).width / 2) })),
        holds: [...document.querySelectorAll(".band.hold")].map((b) => [at(box(b).left), at(box(b).right)]),
      };
    }""")
    (rec,) = [d for d in vcon["dialog"] if d["type"] == "recording"]
    start = parse(rec["start"])
    assert geometry["barEnd"] - geometry["bar"] == pytest.approx(rec["duration"], abs=0.05)
    for mark in geometry["marks"]:
        assert mark["x"] == pytest.approx(mark["t"], abs=0.03), mark  # drawn where its time says
    # Every party_history entry is on the timeline, at its offset from the recording's start.
    expected = sorted((h["party"], "dtmf" if h["event"] == "keydown" else h["event"], parse(h["time"]) - start)
                      for h in rec["party_history"] if h["event"] != "keyup")  # fmt: skip
    shown = sorted((m["party"], m["kind"], m["x"] - geometry["bar"]) for m in geometry["marks"])
    assert [(p, k) for p, k, _ in shown] == [(p, k) for p, k, _ in expected]
    for (_, kind, got), (_, _, want) in zip(shown, expected, strict=True):
        assert got == pytest.approx(want, abs=0.03), kind
    (dtmf,) = [m for m in geometry["marks"] if m["kind"] == "dtmf"]
    assert dtmf["x"] - geometry["bar"] == pytest.approx(DTMF_AT_S, abs=0.1), "the key press sipp sent at 2.0 s"
    (hold,) = geometry["holds"]
    hold_at = next(m["x"] for m in geometry["marks"] if m["kind"] == "hold")
    assert hold[0] == pytest.approx(hold_at, abs=0.03) and hold[1] > hold[0]

    # Keyboard: the DTMF marker is a button; Enter plays from there, the cursor follows the player.
    page.evaluate("""() => {
      const p = document.getElementById("player");
      window.__seeks = [];
      p.addEventListener("seeked", () => window.__seeks.push(p.currentTime));
    }""")
    page.focus(".mark.dtmf")
    page.keyboard.press("Enter")
    page.wait_for_function("() => document.getElementById('player').currentTime > 2.6", timeout=10_000)
    assert page.evaluate("() => !document.getElementById('player').paused"), "it plays"
    seeks = page.evaluate("window.__seeks")
    assert seeks and seeks[0] == pytest.approx(dtmf["x"] - geometry["bar"], abs=0.03), "from the key press"
    page.evaluate("() => document.getElementById('player').pause()")
    page.wait_for_function("""(bar) => {
      const p = document.getElementById("player"), c = document.getElementById("cursor");
      return p.paused && Math.abs(Number(c.dataset.t) - (bar + p.currentTime)) < 0.02;
    }""", arg=geometry["bar"])  # fmt: skip
    state = page.evaluate("""() => {
      const p = document.getElementById("player"), c = document.getElementById("cursor");
      const layer = c.parentElement.getBoundingClientRect();
      const x = (c.getBoundingClientRect().left - layer.left) / layer.width;
      return { time: p.currentTime, t: Number(c.dataset.t), x };
    }""")
    assert state["x"] * geometry["D"] == pytest.approx(state["t"], abs=0.05), "the cursor is drawn at the player's time"
    assert 2.6 < state["time"] < rec["duration"]

    text = page.inner_text("#detail")
    assert "valid" in page.inner_text(".facts") and vcon["uuid"] in text
    cdr = next(a["body"] for a in vcon["attachments"] if a["purpose"] == "cdr")
    assert cdr["sip_call_id"] in text and "sip-invite" in text
    href = page.get_attribute("a[download]", "href")
    assert json.loads(page.evaluate("(u) => fetch(u).then((r) => r.text())", href)) == vcon
    shot(page, "detail", artifacts)
    assert not page.errors, page.errors
    page.context.close()


def test_dead_letter_retried_from_the_page_is_delivered(browser, tmp_path, artifacts):
    conserver = ThreadedConserver(token="the-right-token")
    (tmp_path / "conserver.token").write_text("an-outdated-token\n")
    api = free_port()
    recorder = Recorder.start(tmp_path, api_listen=f"127.0.0.1:{api}", conserver_url=conserver.url,
                              conserver_token_file=tmp_path / "conserver.token")  # fmt: skip
    try:
        call = SippCall(tmp_path, call_flow(tmp_path, hold=False), recorder)
        call.wait()
        (vcon,) = recorder.vcons(1)
        u = vcon["uuid"]
        page = browser.new_page(viewport=DESKTOP)
        page.goto(f"http://127.0.0.1:{api}/console/#/dead-letters")
        letter = page.wait_for_selector(f"#dead li[data-uuid='{u}']", timeout=20_000)
        assert "403" in letter.inner_text() and "conserver" in letter.inner_text()
        page.wait_for_function("() => document.getElementById('dead-count').textContent === '1'")
        shot(page, "dead-letters", artifacts)
        assert not conserver.server.received

        conserver.accept_token("an-outdated-token")
        page.get_by_role("button", name=f"Retry delivery of {u} to conserver").click()
        deadline = time.monotonic() + 20
        while conserver.server.received.get(u) != 1:
            assert time.monotonic() < deadline, "the retried vCon never reached the conserver"
            time.sleep(0.1)
        page.wait_for_selector(f"#dead li[data-uuid='{u}']", state="detached")
        page.wait_for_selector("#dead-empty:not([hidden])")
        assert page.is_hidden("#logout"), "no token configured: nothing to sign out of"
        page.close()
        assert conserver.server.documents[u] == vcon, "the conserver has the vCon as it was written"
        assert dict(conserver.server.received) == {u: 1}
    finally:
        log = recorder.stop()
        conserver.stop()
    assert "delivery.dead_lettered" in log and "delivery.dead_letter_retried" in log
    assert "Traceback" not in log, log[log.index("Traceback") - 2000 :][:6000]


def test_a_vcon_with_a_file_per_party_plays_each_file_on_the_one_axis(browser, tmp_path):
    """layout = "files": two recording dialogs (Alice from 0 s, Bob from 0.5 s), referenced files beside the
    vCon. The calls come from tests/scripted.py standing in for an adapter: what is tested is the page."""
    api = free_port()
    args = [sys.executable, str(SCRIPTED), "--scenario=answered", f"--out={tmp_path / 'out'}", "--layout=files",
            f"--state-dir={tmp_path / 'state'}", "--domain=test.example", f"--api-listen=127.0.0.1:{api}",
            "--media-url-base=https://media.example.com/rec"]  # fmt: skip
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=(tmp_path / "service.log").open("wb"))
    try:
        deadline = time.monotonic() + 30
        while not list((tmp_path / "out").glob("*.vcon")):
            assert time.monotonic() < deadline and proc.poll() is None, (tmp_path / "service.log").read_text()
            time.sleep(0.1)
        (path,) = (tmp_path / "out").glob("*.vcon")
        doc = json.loads(path.read_bytes())
        alice, bob = [d for d in doc["dialog"] if d["type"] == "recording"]
        page = browser.new_page(viewport=DESKTOP)
        page.goto(f"http://127.0.0.1:{api}/console/#/vcons/{doc['uuid']}")
        page.wait_for_function("() => document.querySelectorAll('.waveform svg path').length === 2")
        assert page.locator("#recording option").count() == 2
        origin = page.evaluate("() => Number(document.querySelector('.bar').dataset.start)")
        page.get_by_label("Recording", exact=True).select_option(index=1)
        page.wait_for_function("() => document.getElementById('player').src.endsWith('/audio/1')")
        page.wait_for_function("(t) => Math.abs(Number(document.getElementById('cursor').dataset.t) - t) < 0.01",
                               arg=origin + parse(bob["start"]) - parse(alice["start"]))  # fmt: skip
        # A click on Alice's waveform at 2.0 s on the axis: her file, 2.0 s into it.
        wave = page.locator(".lane.wave .track").first.bounding_box()
        duration = float(page.get_attribute("#timeline", "data-duration"))
        page.mouse.click(wave["x"] + wave["width"] * (origin + 2.0) / duration, wave["y"] + wave["height"] / 2)
        page.wait_for_function("() => document.getElementById('player').src.endsWith('/audio/0')")
        page.wait_for_function("() => Math.abs(document.getElementById('player').currentTime - 2.0) < 0.05")
        assert page.input_value("#recording") == "0"
        page.close()
    finally:
        proc.terminate()
        proc.wait(20)
    assert "Traceback" not in (tmp_path / "service.log").read_text()


def request(url: str, *, method: str = "GET", headers: dict[str, str] | None = None) -> tuple[int, str]:
    req = urllib.request.Request(url, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:  # noqa: S310 (loopback)
            return resp.status, resp.read().decode(errors="replace")
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode(errors="replace")


def test_with_a_token_no_page_or_api_answers_without_it(browser, recorder, watched_call, artifacts):
    u = watched_call["vcon"]["uuid"]
    paths = ["/", "/console/", "/console/static/console.js", "/console/api/health", "/console/api/vcons",
             f"/console/api/vcons/{u}", f"/console/api/vcons/{u}/peaks/0", f"/console/vcons/{u}/audio/0",
             f"/console/vcons/{u}/download", "/console/api/dead-letters", "/api/calls", "/api/live"]  # fmt: skip
    ws = {"Connection": "Upgrade", "Upgrade": "websocket", "Sec-WebSocket-Version": "13",
          "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ=="}  # fmt: skip
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Cookie": "vcon_capture_token=wrong"}):
        for path in paths:
            status, body = request(recorder.base + path, headers={**headers, **(ws if path == "/api/live" else {})})
            assert status == 401, (path, headers, status)
            assert u not in body and "console.js" not in body
        for path in (f"/console/api/dead-letters/dir/{u}/retry", f"/api/calls/{u}/pause"):
            assert request(recorder.base + path, method="POST", headers=headers)[0] == 401
    status, _ = request(recorder.base + "/console/api/vcons", headers={"Authorization": f"Bearer {TOKEN}"})
    assert status == 200, "and with it, they do"

    context = browser.new_context(viewport=DESKTOP)
    page = context.new_page()
    assert page.goto(recorder.base + "/console/#/vcons").status == 401
    page.get_by_label("API token").fill("not-the-token")
    page.get_by_role("button", name="Sign in").click()
    assert "not the one" in page.get_by_role("alert").inner_text()
    shot(page, "sign-in", artifacts, docs=False)
    page.get_by_label("API token").fill(TOKEN)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_selector("#view-live:not([hidden])")
    page.wait_for_function("() => document.getElementById('live-connection').textContent === ''")
    assert page.is_visible("#logout button")
    page.get_by_role("button", name="Sign out").click()
    page.get_by_label("API token").wait_for()
    assert (
        request(
            recorder.base + "/console/api/health",
            headers={"Cookie": "; ".join(f"{c['name']}={c['value']}" for c in context.cookies()) or "x=y"},
        )[0]
        == 401
    ), "signed out"
    context.close()


def test_every_view_is_labelled_keyboard_reachable_and_fits_a_phone(browser, recorder, watched_call, artifacts):
    page = signed_in(browser, recorder, viewport=PHONE)
    views = {"live": "#/live", "vcons": "#/vcons", "detail": f"#/vcons/{watched_call['vcon']['uuid']}",
             "dead-letters": "#/dead-letters"}  # fmt: skip
    for name, hash_ in views.items():
        page.goto(recorder.base + "/console/" + hash_)
        page.wait_for_function("() => document.querySelector('main .view:not([hidden]) h1') !== null")
        if name == "detail":
            page.wait_for_selector(".waveform svg path")
        report = page.evaluate("""() => {
          const named = (e) => (e.getAttribute("aria-label") || e.textContent || "").trim() !== ""
            || (e.labels && e.labels.length > 0);
          const visible = (e) => e.offsetParent !== null || e.tagName === "AUDIO";
          const controls = [...document.querySelectorAll("input, select, button, audio, a[href]")].filter(visible);
          return {
            overflow: document.documentElement.scrollWidth - window.innerWidth,
            unnamed: controls.filter((e) => !named(e)).map((e) => e.outerHTML.slice(0, 120)),
            unlabelledImages: [...document.querySelectorAll("svg[role=img]")]
              .filter((e) => !e.getAttribute("aria-label")).length,
            current: document.querySelector("nav a[aria-current=page]")?.dataset.view,
            focusable: controls.filter((e) => e.tabIndex >= 0).length,
          };
        }""")
        assert report["overflow"] <= 0, (name, report)
        assert report["unnamed"] == [] and report["unlabelledImages"] == 0, (name, report)
        assert report["current"] == {"detail": "vcons", "dead-letters": "dead"}.get(name, name)
        assert report["focusable"] >= 3
        shot(page, f"phone-{name}", artifacts, full_page=True, docs=False)
    assert not page.errors, page.errors
    page.context.close()


def parse(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
