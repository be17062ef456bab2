"""Headless Chromium (the Debian package, driven by Playwright) uses the built-in page:
types a room and a name, presses Start, "speaks" a WAV through the fake microphone, presses
Stop and follows the link to the finished vCon, whose audio must match the WAV."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from audiocheck import window_ncc, write_wav
from playwright.sync_api import sync_playwright
from webrtc_harness import PLAIN_TOKEN, RATE, recording, write_speech

CHROMIUM = "/usr/bin/chromium"


def chromium_args(wav: Path) -> list[str]:
    return [
        "--no-sandbox",
        "--disable-gpu",
        "--use-fake-ui-for-media-stream",
        "--use-fake-device-for-media-stream",
        f"--use-file-for-fake-audio-capture={wav}%noloop",
        "--allow-loopback-in-peer-connection",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
    ]


def test_page_records_a_browser_participant(whip_server, tmp_path):
    assert Path(CHROMIUM).exists(), "the chromium package is required for this test"
    # Chromium drops the audio captured before ICE/DTLS connected (80-330 ms): lead with silence.
    speech = write_speech(tmp_path / "speech.wav", 4.0, seed=8)
    sent = np.concatenate((np.zeros(int(0.7 * RATE)), speech))
    write_wav(tmp_path / "mic.wav", sent, RATE)

    with sync_playwright() as p:
        # launch() gives every run a fresh temporary --user-data-dir
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=chromium_args(tmp_path / "mic.wav"))
        try:
            page = browser.new_page()
            page.goto(whip_server.base + "/")
            page.fill("#room", "browser")
            page.fill("#name", "Carol Browser")
            page.fill("#token", PLAIN_TOKEN)
            page.click("#start")
            page.wait_for_function("document.getElementById('state').textContent === 'connected'", timeout=15000)
            page.wait_for_timeout(int(len(sent) / RATE * 1000) + 300)
            page.click("#stop")
            link = page.wait_for_selector("#vcon a", timeout=30000)
            vcon_uuid = link.get_attribute("data-uuid")
            linked = json.loads(page.evaluate("(a) => fetch(a.href).then((r) => r.text())", link))
        finally:
            browser.close()

    assert linked["uuid"] == vcon_uuid
    doc = whip_server.wait_vcon(vcon_uuid)
    assert linked == doc
    assert doc["parties"] == [{"name": "Carol Browser"}]
    audio, rate, _ = recording(doc)
    scores = window_ncc(speech, audio[:, 0], rate, max_lag_s=1.5)
    assert len(scores) == 4 and min(scores) >= 0.9, scores
