"""`vcon-capture run` (the README's first command) starts SIP and WebRTC together and stops cleanly."""

import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest


def free_port(kind: int = socket.SOCK_STREAM) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def sip_options(port: int) -> bytes:
    request = (
        f"OPTIONS sip:rec@127.0.0.1:{port} SIP/2.0\r\n"
        "Via: SIP/2.0/UDP 127.0.0.1:5999;branch=z9hG4bK-run-test\r\n"
        "Max-Forwards: 70\r\nFrom: <sip:probe@127.0.0.1>;tag=1\r\nTo: <sip:rec@127.0.0.1>\r\n"
        "Call-ID: run-test@127.0.0.1\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
    ).encode()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(5)
        s.sendto(request, ("127.0.0.1", port))
        return s.recv(65536)


@pytest.mark.parametrize("event_loop", ["asyncio", "uvloop"])
def test_run_starts_sip_and_webrtc_from_one_config(tmp_path: Path, event_loop: str):
    sip_port, web_port = free_port(socket.SOCK_DGRAM), free_port()
    config = tmp_path / "config.toml"
    config.write_text(
        f'out = "{tmp_path / "vcons"}"\nstate_dir = "{tmp_path / "state"}"\nadapters = ["sip", "webrtc"]\n'
        f'event_loop = "{event_loop}"\n'
        f'[sip]\nlisten = "127.0.0.1:{sip_port}"\n[webrtc]\nlisten = "127.0.0.1:{web_port}"\n'
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "capture", "run", "--config", str(config)], stderr=subprocess.PIPE, text=True
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            line = proc.stderr.readline()
            assert line, "exited before ready"
            if "service.ready" in line:
                break
            assert time.monotonic() < deadline
        assert "sip udp+tcp" in line and str(web_port) in line
        assert f"loop={event_loop}" in line, line
        assert sip_options(sip_port).startswith(b"SIP/2.0 200")
        with urllib.request.urlopen(f"http://127.0.0.1:{web_port}/", timeout=5) as page:
            assert page.status == 200 and b"<html" in page.read().lower()
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert "Traceback" not in err


def test_run_refuses_a_port_in_use_with_exit_3(tmp_path: Path):
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as busy:
        busy.bind(("127.0.0.1", 0))
        port = busy.getsockname()[1]
        result = subprocess.run(
            [
                sys.executable,
                "-m",
                "capture",
                "sip",
                "--listen",
                f"127.0.0.1:{port}",
                "--out",
                str(tmp_path / "o"),
                "--state-dir",
                str(tmp_path / "s"),
            ],
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert result.returncode == 3, result
    assert "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith("vcon-capture: cannot start")
