"""deploy/kamailio/kamailio.cfg in front of two real recorders: calls spread, a dead node leaves the set.

Everything is real and on loopback: Kamailio (Debian package, run in the foreground with
the shipped config, only ports/paths substituted), two ``python -m capture sip`` processes
and sipp placing the calls through the proxy.
"""

from __future__ import annotations

import os
import random
import re
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from audiocheck import voice_like, window_ncc
from sip.harness import Recorder, free_port, g711_frames, recording_channels, write_rtp_pcap
from vconcheck import load_vcons

DEPLOY = Path(__file__).resolve().parents[2] / "deploy" / "kamailio"
SPEECH_S = 2.0

# A UAC that follows the proxy's Record-Route (rrs) for ACK and BYE, as a PBX would.
UAC = """<?xml version="1.0" encoding="ISO-8859-1" ?>
<scenario name="uac via dispatcher">
  <send retrans="500"><![CDATA[
      INVITE sip:rec@[remote_ip]:[remote_port] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      From: "Alice" <sip:+15551230000@[local_ip]:[local_port]>;tag=[pid]T[call_number]
      To: <sip:rec@[remote_ip]:[remote_port]>
      Call-ID: [call_id]
      CSeq: 1 INVITE
      Contact: <sip:alice@[local_ip]:[local_port]>
      Max-Forwards: 70
      Content-Type: application/sdp
      Content-Length: [len]

      v=0
      o=alice 1 1 IN IP4 [media_ip]
      s=-
      c=IN IP4 [media_ip]
      t=0 0
      m=audio [media_port] RTP/AVP 8
      a=rtpmap:8 PCMA/8000
      a=sendonly
  ]]></send>
  <recv response="100" optional="true"/>
  <recv response="180" optional="true"/>
  <recv response="200" rrs="true" rtd="true"/>
  <send><![CDATA[
      ACK [next_url] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      [routes]
      From: "Alice" <sip:+15551230000@[local_ip]:[local_port]>;tag=[pid]T[call_number]
      To: <sip:rec@[remote_ip]:[remote_port]>[peer_tag_param]
      Call-ID: [call_id]
      CSeq: 1 ACK
      Max-Forwards: 70
      Content-Length: 0

  ]]></send>
  <nop><action><exec play_pcap_audio="{pcap}"/></action></nop>
  <pause milliseconds="{pause_ms}"/>
  <send retrans="500"><![CDATA[
      BYE [next_url] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      [routes]
      From: "Alice" <sip:+15551230000@[local_ip]:[local_port]>;tag=[pid]T[call_number]
      To: <sip:rec@[remote_ip]:[remote_port]>[peer_tag_param]
      Call-ID: [call_id]
      CSeq: 2 BYE
      Max-Forwards: 70
      Content-Length: 0

  ]]></send>
  <recv response="200" crlf="true"/>
</scenario>
"""


def render_cfg(values: dict[str, str]) -> str:
    """The shipped kamailio.cfg with its ``#!substdef`` values replaced."""
    text = (DEPLOY / "kamailio.cfg").read_text()
    for name, value in values.items():
        text, n = re.subn(rf'(#!substdef "!{name}!)[^!]*(!g")', lambda m, v=value: m.group(1) + v + m.group(2), text)
        assert n == 1, f"kamailio.cfg has no substdef {name}"
    return text


class Kamailio:
    """The real kamailio in the foreground, its own runtime dir and process group."""

    def __init__(self, tmp: Path, nodes: list[int], ping_interval_s: int = 1) -> None:
        if shutil.which("kamailio") is None or shutil.which("sipp") is None:
            pytest.fail("kamailio and sipp are needed (scripts/install --test installs them)")
        self.port = free_port()
        run = tmp / "kamailio"
        run.mkdir()
        (run / "dispatcher.list").write_text("".join(f"1 sip:127.0.0.1:{p} 0 0\n" for p in nodes))
        cfg = run / "kamailio.cfg"
        cfg.write_text(
            render_cfg({"LISTEN_IP": "127.0.0.1", "SIP_PORT": str(self.port),
                        "DS_LIST": str(run / "dispatcher.list"), "DS_PING_INTERVAL": str(ping_interval_s)})
        )  # fmt: skip
        self.log = run / "kamailio.log"
        args = ["kamailio", "-f", str(cfg), "-DD", "-E", "-Y", str(run), "-P", str(run / "kamailio.pid"),
                "-w", str(run), "-m", "32", "-M", "4"]  # fmt: skip
        self.proc = subprocess.Popen(args, stdout=self.log.open("wb"), stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + 20
        while not self.answers_options():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"kamailio did not start:\n{self.log.read_text()[-3000:]}")

    def answers_options(self) -> bool:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.bind(("127.0.0.1", 0))
            sock.settimeout(0.5)
            port = sock.getsockname()[1]
            tag = random.randrange(1 << 30)
            request = [
                f"OPTIONS sip:127.0.0.1:{self.port} SIP/2.0",
                f"Via: SIP/2.0/UDP 127.0.0.1:{port};branch=z9hG4bK{tag}",
                f"From: <sip:probe@127.0.0.1>;tag={tag}",
                f"To: <sip:127.0.0.1:{self.port}>",
                f"Call-ID: {tag}@probe",
                "CSeq: 1 OPTIONS",
                "Max-Forwards: 70",
                "Content-Length: 0",
            ]
            sock.sendto(("\r\n".join(request) + "\r\n\r\n").encode(), ("127.0.0.1", self.port))
            try:
                return sock.recv(4096).startswith(b"SIP/2.0 200")
            except OSError:
                return False

    def wait_log(self, text: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while text not in self.log.read_text(errors="replace"):
            assert time.monotonic() < deadline, f"kamailio never logged {text!r}:\n{self.log.read_text()[-3000:]}"
            time.sleep(0.2)

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()


@pytest.fixture
def pcap(tmp_path: Path) -> tuple[Path, object]:
    """A 2 s PCMA speech-like RTP capture for sipp, and what a perfect receiver decodes from it."""
    payloads, reference = g711_frames(voice_like(SPEECH_S, 8000, seed=7), 8)
    return write_rtp_pcap(tmp_path / "speech.pcap", payloads, 8), reference


@pytest.fixture
def recorders(tmp_path: Path) -> Iterator[list[Recorder]]:
    base = random.randrange(20000, 56000, 2000)
    started: list[Recorder] = []
    try:
        for i in range(2):
            (tmp_path / f"node{i}").mkdir()
            low = base + 1000 * i  # disjoint RTP ranges, as two nodes sharing a host need
            started.append(Recorder.start(tmp_path / f"node{i}", rtp_port_min=low, rtp_port_max=low + 998))
        yield started
    finally:
        for rec in started:
            rec.stop()


@pytest.fixture
def kamailio(tmp_path: Path, recorders: list[Recorder]) -> Iterator[Kamailio]:
    proxy = Kamailio(tmp_path, [r.port for r in recorders])
    try:
        yield proxy
    finally:
        proxy.stop()


@pytest.fixture
def unprobed_with_dead_node(tmp_path: Path, recorders: list[Recorder]) -> Iterator[tuple[Kamailio, Recorder]]:
    """The proxy in front of one live node and one port nobody listens on, with probing
    too slow to notice within the test: only the INVITE failure path can route around it."""
    live, gone = recorders
    gone.stop()
    proxy = Kamailio(tmp_path, [live.port, gone.port], ping_interval_s=600)
    try:
        yield proxy, live
    finally:
        proxy.stop()


def place_calls(tmp: Path, proxy: Kamailio, pcap: Path, calls: int) -> None:
    scenario = tmp / f"uac-{calls}.xml"
    # BYE 1.5 s after the audio should have ended: sipp's pcap player may start late on a busy box.
    scenario.write_text(UAC.replace("{pcap}", str(pcap)).replace("{pause_ms}", str(int(SPEECH_S * 1000) + 1500)))
    args = ["sipp", "-sf", str(scenario), "-s", "rec", f"127.0.0.1:{proxy.port}", "-i", "127.0.0.1",
            "-p", str(free_port()), "-mp", str(free_port() & ~1), "-m", str(calls), "-l", str(calls),
            "-r", "10", "-nostdin", "-timeout", "40", "-timeout_error", "-trace_err",
            "-error_file", str(tmp / "sipp_errors.log")]  # fmt: skip
    result = subprocess.run(args, capture_output=True, cwd=tmp, timeout=60, env={**os.environ, "TERM": "dumb"})
    errors = (tmp / "sipp_errors.log").read_text()[-3000:] if (tmp / "sipp_errors.log").exists() else ""
    assert result.returncode == 0, f"sipp: {result.stdout[-2000:]!r}\n{errors}\n{proxy.log.read_text()[-3000:]}"


def wait_total(recorders: list[Recorder], count: int, timeout: float = 30.0) -> list[int]:
    deadline = time.monotonic() + timeout
    while True:
        counts = [len(list(r.out.glob("*.vcon"))) if r.out.exists() else 0 for r in recorders]
        if sum(counts) >= count or time.monotonic() > deadline:
            return counts
        time.sleep(0.2)


def test_dispatcher_spreads_calls_and_drops_a_dead_node(tmp_path: Path, pcap, recorders, kamailio) -> None:  # type: ignore[no-untyped-def]
    path, reference = pcap
    place_calls(tmp_path, kamailio, path, 20)
    counts = wait_total(recorders, 20)
    assert sum(counts) == 20 and all(counts), f"vCons per node: {counts}"
    vcons = [doc for rec in recorders for doc in load_vcons(rec.out)]
    assert len({doc["uuid"] for doc in vcons}) == 20
    for doc in vcons:
        channels, rate, _ = recording_channels(doc)
        scores = window_ncc(reference, channels[0], rate)
        assert scores and min(scores) >= 0.9, (scores, len(channels[0]) / rate)

    survivor, victim = recorders
    victim.stop()
    assert victim.proc.returncode == 0
    kamailio.wait_log(f"recorder node down: sip:127.0.0.1:{victim.port}", timeout=20)

    place_calls(tmp_path, kamailio, path, 4)
    after = wait_total(recorders, 24)
    assert after == [counts[0] + 4, counts[1]], f"vCons per node after the stop: {after} (before: {counts})"
    assert len(load_vcons(survivor.out)) == counts[0] + 4


def test_invite_to_a_dead_node_fails_over_to_the_next(tmp_path: Path, pcap, unprobed_with_dead_node) -> None:  # type: ignore[no-untyped-def]
    path, _ = pcap
    proxy, live = unprobed_with_dead_node
    place_calls(tmp_path, proxy, path, 4)
    proxy.wait_log("did not answer, marking it down", timeout=5)
    assert wait_total([live], 4) == [4]
    assert len(load_vcons(live.out)) == 4
