"""End to end: the real CLI, real aiortc WHIP clients in their own processes, vCons read from --out."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from datetime import timedelta

import numpy as np
import pytest
from aiortc import RTCConfiguration, RTCPeerConnection
from audiocheck import best_lag, window_ncc
from vconcheck import assert_valid
from webrtc_harness import (
    AGENT_TOKEN,
    PLAIN_TOKEN,
    RATE,
    Server,
    client_result,
    lost_fraction,
    recording,
    write_speech,
)


def request(method: str, url: str, body: bytes = b"", headers: dict[str, str] | None = None):
    req = urllib.request.Request(url, data=body or None, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, r.headers, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.headers, e.read().decode()


def aiortc_offer(kind: str = "audio") -> str:
    async def make() -> str:
        pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        pc.addTransceiver(kind, direction="sendonly")
        await pc.setLocalDescription(await pc.createOffer())
        sdp = pc.localDescription.sdp
        await pc.close()
        return sdp

    return asyncio.run(make())


def test_refusals_are_one_line_4xx_and_a_good_client_is_served_after(whip_server, tmp_path):
    url = f"{whip_server.base}/whip/refusals"
    sdp_type = {"Content-Type": "application/sdp"}
    auth = {"Authorization": f"Bearer {PLAIN_TOKEN}"}
    good = aiortc_offer().encode()
    cases = [
        ("no token", "POST", url, good, sdp_type, 401),
        ("wrong token", "POST", url, good, {**sdp_type, "Authorization": "Bearer nope"}, 401),
        ("not SDP", "POST", url, b'{"sdp": 1}', {**auth, "Content-Type": "application/json"}, 415),
        ("bogus v=0", "POST", url, b"v=0\r\n", {**auth, **sdp_type}, 400),
        ("video only", "POST", url, aiortc_offer("video").encode(), {**auth, **sdp_type}, 400),
        ("binary", "POST", url, b"v=0\r\n\xff\xfe", {**auth, **sdp_type}, 400),
        ("too big", "POST", url, good + b"a=x-pad:" + b"x" * 70000 + b"\r\n", {**auth, **sdp_type}, 413),
        ("bad room", "POST", f"{whip_server.base}/whip/a%2Fb", good, {**auth, **sdp_type}, 400),
        ("bad tel", "POST", url + "?tel=call-me", good, {**auth, **sdp_type}, 400),
        ("unknown session", "DELETE", f"{whip_server.base}/whip/session/nope", b"", auth, 404),
        ("delete without token", "DELETE", f"{whip_server.base}/whip/session/nope", b"", {}, 401),
        ("patch", "PATCH", f"{whip_server.base}/whip/session/nope", b"x", auth, 405),
        ("GET on WHIP", "GET", url, b"", auth, 405),
        ("unknown vCon", "GET", f"{whip_server.base}/vcons/00000000-0000-8000-8000-000000000000", b"", auth, 404),
    ]
    for name, method, target, body, headers, status in cases:
        got, _, text = request(method, target, body, headers)
        assert got == status, f"{name}: {got} {text!r}"
        assert text.count("\n") <= 1 and "Traceback" not in text and text.strip(), f"{name}: {text!r}"

    status, headers, _ = request("PATCH", f"{whip_server.base}/whip/session/nope", b"x", auth)
    assert headers["Allow"] == "DELETE, OPTIONS"
    status, headers, _ = request("OPTIONS", url, headers={"Origin": "http://example.org"})
    assert status == 204
    assert headers["Access-Control-Allow-Origin"] == "*"
    assert "Authorization" in headers["Access-Control-Allow-Headers"]
    assert headers["Accept-Post"] == "application/sdp"

    source = write_speech(tmp_path / "alice.wav", 5.0, seed=1)
    result = client_result(
        whip_server.client(
            "refusals", tmp_path / "alice.wav", "--token", AGENT_TOKEN, query="name=Alice&mailto=alice%40example.com"
        )
    )
    assert result["location"].startswith("/whip/session/")
    assert result["delete_status"] == 200
    doc = whip_server.wait_vcon(result["vcon_uuid"])
    # the token's identity wins, the query fills in what the token does not say
    assert doc["parties"] == [{"name": "Agent Seven", "tel": "+15550007", "mailto": "alice@example.com"}]
    audio, rate, _ = recording(doc)
    assert rate == RATE and audio.shape[1] == 1
    scores = window_ncc(source, audio[:, 0], rate)
    assert len(scores) == 5 and min(scores) >= 0.9, scores
    assert abs(len(audio) - len(source)) / rate <= 0.15

    status, headers, text = request("GET", f"{whip_server.base}/vcons/{result['vcon_uuid']}", headers=auth)
    assert status == 200 and headers["Content-Type"].startswith("application/json")
    assert f'"{result["vcon_uuid"]}"' in text


def test_two_participants_are_one_vcon_aligned_within_50_ms(whip_server, tmp_path):
    a = write_speech(tmp_path / "a.wav", 5.0, seed=2)
    b = write_speech(tmp_path / "b.wav", 3.5, seed=3)
    token = ("--token", PLAIN_TOKEN)
    first = whip_server.client("duo", tmp_path / "a.wav", *token, query="name=Ann")
    time.sleep(1.0)
    second = whip_server.client("duo", tmp_path / "b.wav", *token, query="name=Bob&tel=%2B4930123")
    ra, rb = client_result(first), client_result(second)
    assert ra["vcon_uuid"] == rb["vcon_uuid"]
    doc = whip_server.wait_vcon(ra["vcon_uuid"])
    assert [p.get("name") for p in doc["parties"]] == ["Ann", "Bob"]
    assert doc["parties"][1]["tel"] == "+4930123"
    audio, rate, start = recording(doc)
    assert audio.shape[1] == 2
    heard = []
    for channel, source in enumerate((a, b)):
        lag = best_lag(source, audio[:, channel], rate, max_lag_s=3.0)
        scores = window_ncc(source, audio[:, channel], rate, max_lag_s=3.0)
        assert min(scores) >= 0.9, (channel, scores)
        heard.append(start + timedelta(seconds=lag / rate))
    sent_apart = rb["first_frame_at"] - ra["first_frame_at"]
    heard_apart = (heard[1] - heard[0]).total_seconds()
    assert sent_apart > 0.5
    assert abs(heard_apart - sent_apart) <= 0.05, (heard_apart, sent_apart)


def test_five_percent_packet_loss_stays_five_percent_audio_loss(whip_server, tmp_path):
    source = write_speech(tmp_path / "lossy.wav", 10.0, seed=4)
    result = client_result(
        whip_server.client("lossy", tmp_path / "lossy.wav", "--token", PLAIN_TOKEN, "--drop", "0.05", "--seed", "7")
    )
    loss_in = result["dropped"] / result["sent"]
    assert 0.03 <= loss_in <= 0.07
    doc = whip_server.wait_vcon(result["vcon_uuid"])
    audio, rate, _ = recording(doc)
    lag = best_lag(source, audio[:, 0], rate)
    loss_out = lost_fraction(audio[:, 0], source, lag)
    assert loss_out <= 0.07, (loss_in, loss_out)
    assert loss_out <= loss_in + 0.01, (loss_in, loss_out)
    assert np.median(window_ncc(source, audio[:, 0], rate)) >= 0.9


def test_vanished_client_still_yields_its_vcon_within_15_s(whip_server, tmp_path):
    source = write_speech(tmp_path / "gone.wav", 6.0, seed=5)
    result = client_result(
        whip_server.client("gone", tmp_path / "gone.wav", "--token", PLAIN_TOKEN, "--vanish-after", "2.5")
    )
    doc = whip_server.wait_vcon(result["vcon_uuid"], timeout=20)
    assert (whip_server.out / f"{result['vcon_uuid']}.vcon").stat().st_mtime - result["killed_at"] <= 15
    audio, rate, _ = recording(doc)
    heard = result["killed_at"] - result["first_frame_at"]
    assert abs(len(audio) / rate - heard) <= 0.25, (len(audio) / rate, heard)
    played = source[: int(heard * rate)]
    assert min(window_ncc(played, audio[:, 0], rate)) >= 0.9
    assert doc["dialog"][0]["party_history"][-1]["event"] == "drop"


@pytest.mark.parametrize("codec", ["PCMU"])
def test_g711_participant_is_upsampled_and_keeps_time(whip_server, tmp_path, codec):
    source = write_speech(tmp_path / "g711.wav", 3.0, seed=6)
    result = client_result(whip_server.client("g711", tmp_path / "g711.wav", "--token", PLAIN_TOKEN, "--codec", codec))
    audio, rate, _ = recording(whip_server.wait_vcon(result["vcon_uuid"]))
    assert rate == RATE
    assert min(window_ncc(source, audio[:, 0], rate)) >= 0.9
    assert abs(len(audio) - len(source)) / rate <= 0.15


def test_shutdown_ends_active_rooms_into_vcons(tmp_path):
    server = Server(tmp_path)
    try:
        write_speech(tmp_path / "long.wav", 8.0, seed=9)
        client = server.client("busy", tmp_path / "long.wav")
        deadline = time.monotonic() + 15
        while "webrtc.participant_joined" not in server.log.read_text():
            assert time.monotonic() < deadline, server.log.read_text()
            time.sleep(0.1)
        time.sleep(1.5)
        server.proc.send_signal(signal.SIGTERM)
        assert server.proc.wait(20) == 0
        vcons = list(server.out.glob("*.vcon"))
        assert len(vcons) == 1
        doc = assert_valid(json.loads(vcons[0].read_bytes()))
        audio, rate, _ = recording(doc)
        assert 1.0 <= len(audio) / rate <= 3.0
        assert "shutdown" in json.dumps(doc)
    finally:
        log = server.stop()
        client.kill()
        client.wait()
    assert "Traceback" not in log, log


def test_port_in_use_is_a_startup_error(whip_server, tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "capture", "webrtc", "--listen", f"127.0.0.1:{whip_server.port}",
         "--out", str(tmp_path / "out"), "--state-dir", str(tmp_path / "state")],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 3, result.stderr
    assert "cannot listen on" in result.stderr and "Traceback" not in result.stderr
