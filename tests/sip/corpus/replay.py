"""Replay the corpus through the real recorder, as the SRCs would: their INVITEs over UDP or TCP,
RTP with a distinct signal on every active m-line, mid-call updates, BYE; then check each vCon.

A session is *recorded right* when it was accepted (200), the vCon names the expected parties,
and every active m-line's audio is in the channel of the party the metadata says sends it
(window correlation >= 0.9 with its own signal, <= 0.3 with the others'). ::

    python -m tests.sip.corpus.replay               # this checkout
    python -m tests.sip.corpus.replay --root /tmp/wt-before --python /tmp/wt-before/.venv/bin/python

prints one line per session and transport and ``N of M corpus sessions recorded right``.
"""

from __future__ import annotations

import argparse
import base64
import json
import random
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

TESTS = Path(__file__).resolve().parents[2]
if str(TESTS) not in sys.path:
    sys.path.insert(0, str(TESTS))

from audiocheck import read_audio, voice_like, window_ncc  # noqa: E402
from vconcheck import assert_valid  # noqa: E402

from capture.media.rtp import build_rtp  # noqa: E402
from tests.sip.corpus import Session, labels_of, sessions  # noqa: E402
from tests.sip.corpus.encoders import encode  # noqa: E402

SECONDS = 3.0
SEEDS = (1, 2, 4)
"voice_like seeds whose signals correlate < 0.2 with each other (most pairs reach 0.3)."


# -- the recorder --------------------------------------------------------------------------


@dataclass
class Recorder:
    """``python -m capture sip`` of a checkout, on a free loopback port."""

    proc: subprocess.Popen[bytes]
    port: int
    out: Path
    log: Path

    @classmethod
    def start(cls, tmp: Path, root: Path = TESTS.parent, python: str = sys.executable) -> Recorder:
        port = _free_port()
        rtp = random.randrange(10000, 60000, 1000)
        log = tmp / "recorder.log"
        args = [python, "-m", "capture", "sip", "--listen", f"127.0.0.1:{port}", "--out", str(tmp / "vcons"),
                "--state-dir", str(tmp / "state"), "--domain", "test.example", "--log-level", "debug",
                "--rtp-port-min", str(rtp), "--rtp-port-max", str(rtp + 998)]  # fmt: skip
        proc = subprocess.Popen(args, stdout=log.open("wb"), stderr=subprocess.STDOUT, cwd=root)
        deadline = time.monotonic() + 30
        while b"service.ready" not in log.read_bytes() and b"ready" not in log.read_bytes()[-200:]:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"recorder did not start:\n{log.read_text()}")
            time.sleep(0.05)
        return cls(proc, port, tmp / "vcons", log)

    def vcons(self, count: int, timeout: float = 60.0) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout
        while True:
            files = sorted(self.out.glob("*.vcon")) if self.out.exists() else []
            if len(files) >= count or time.monotonic() > deadline:
                return [assert_valid(json.loads(f.read_bytes())) for f in files]
            time.sleep(0.1)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def _free_port() -> int:
    for _ in range(50):
        port = random.randrange(30000, 60000)
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u, socket.socket() as t:
            try:
                u.bind(("127.0.0.1", port))
                t.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free port")


# -- a minimal SIP client (the SRC side) ---------------------------------------------------


@dataclass
class Response:
    status: int
    headers: dict[str, str]
    body: bytes


def _parse(data: bytes) -> Response:
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("utf-8", "replace").split("\r\n")
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers.setdefault(name.strip().lower(), value.strip())
    return Response(int(lines[0].split()[1]), headers, body)


class Client:
    """The SRC's signalling socket: UDP (retransmitting requests) or one TCP connection."""

    def __init__(self, transport: str, server: tuple[str, int]) -> None:
        self.transport = transport
        self.server = server
        if transport == "udp":
            self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            self.sock.bind(("127.0.0.1", 0))
        else:
            self.sock = socket.create_connection(server, timeout=10)
        self.local = f"127.0.0.1:{self.sock.getsockname()[1]}"
        self._buffer = b""

    def send(self, data: bytes) -> None:
        if self.transport == "udp":
            self.sock.sendto(data, self.server)
        else:
            self.sock.sendall(data)

    def _next(self, timeout: float) -> bytes | None:
        self.sock.settimeout(timeout)
        try:
            if self.transport == "udp":
                return self.sock.recvfrom(65536)[0]
            while True:
                head_end = self._buffer.find(b"\r\n\r\n")
                if head_end >= 0:
                    head = self._buffer[:head_end].decode("latin-1").lower()
                    length = next((int(line.split(":", 1)[1]) for line in head.split("\r\n")
                                   if line.split(":", 1)[0].strip() in ("content-length", "l")), 0)  # fmt: skip
                    if len(self._buffer) >= head_end + 4 + length:
                        msg, self._buffer = self._buffer[: head_end + 4 + length], self._buffer[head_end + 4 + length :]
                        return msg
                chunk = self.sock.recv(65536)
                if not chunk:
                    return None
                self._buffer += chunk
        except (TimeoutError, OSError):
            return None

    def transact(self, request: bytes, timeout: float = 15.0) -> Response | None:
        """Send a request; its final response (requests from the server are answered 200)."""
        method = request.split(b" ", 1)[0]
        self.send(request)
        deadline, resend, got_any = time.monotonic() + timeout, time.monotonic() + 0.5, False
        while time.monotonic() < deadline:
            data = self._next(0.1)
            if data is None:
                if self.transport == "udp" and not got_any and time.monotonic() > resend:
                    self.send(request)
                    resend = time.monotonic() + 1.0
                continue
            if not data.startswith(b"SIP/2.0"):
                continue
            resp = _parse(data)
            if not resp.headers.get("cseq", "").upper().endswith(method.decode().upper()):
                continue
            got_any = True
            if resp.status >= 200:
                return resp
        return None

    def close(self) -> None:
        self.sock.close()


# -- RTP -------------------------------------------------------------------------------------


@dataclass
class Leg:
    """One m-line the SRC sends on."""

    label: str | None
    port: int
    payload_type: int
    payloads: list[bytes]
    reference: np.ndarray
    ticks: int = 160
    "RTP timestamp step per packet (and 1/8 ms of pacing per tick)."
    sock: socket.socket = field(default_factory=lambda: socket.socket(socket.AF_INET, socket.SOCK_DGRAM))


def make_leg(label: str | None, port: int, payload_type: int, codec: str, seed: int) -> Leg | None:
    pcm = np.asarray(np.clip(voice_like(SECONDS, 8000, seed), -1, 1) * 32767, dtype=np.int16)
    encoded = encode(codec, pcm)
    if encoded is None:
        return None
    return Leg(label, port, payload_type, encoded.payloads, encoded.reference, encoded.ticks)


def send_rtp(legs: list[Leg]) -> None:
    """Paced 20 ms packets on every leg at once, each from its own socket."""
    ssrc = {id(leg): random.getrandbits(32) for leg in legs}
    sent = {id(leg): 0 for leg in legs}
    start = time.monotonic()
    while any(sent[id(leg)] < len(leg.payloads) for leg in legs):
        due = min(start + sent[id(leg)] * leg.ticks / 8000 for leg in legs if sent[id(leg)] < len(leg.payloads))
        if due > time.monotonic():
            time.sleep(due - time.monotonic())
        for leg in legs:
            i = sent[id(leg)]
            if i < len(leg.payloads) and start + i * leg.ticks / 8000 <= time.monotonic():
                packet = build_rtp(leg.payload_type, i, i * leg.ticks, ssrc[id(leg)], leg.payloads[i], i == 0)
                leg.sock.sendto(packet, ("127.0.0.1", leg.port))
                sent[id(leg)] += 1


# -- one session -----------------------------------------------------------------------------


@dataclass
class Outcome:
    session: Session
    transport: str
    call_id: str
    status: int | None = None
    legs: list[Leg] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    parties_ok: bool = False
    audio_ok: bool = False
    vcon: dict[str, Any] = field(default_factory=dict)
    "The session's vCon (empty if none came)."

    @property
    def right(self) -> bool:
        return self.status == 200 and self.parties_ok and self.audio_ok

    def line(self) -> str:
        verdict = "right" if self.right else "WRONG"
        return f"{self.session.name:28} {self.transport}  {verdict:5}  {self.status}  " + "; ".join(self.errors)


def _answer_ports(answer: bytes) -> list[tuple[int, int, str]]:
    """(port, first payload type, its encoding name) per m-line of the recorder's answer."""
    out: list[tuple[int, int, str]] = []
    names: dict[tuple[int, int], str] = {}
    for line in answer.decode().split("\r\n"):
        if line.startswith("m="):
            parts = line.split()
            out.append((int(parts[1]), int(parts[3]) if len(parts) > 3 and parts[3].isdigit() else -1, ""))
        elif line.startswith("a=rtpmap:") and out:
            pt, _, spec = line[9:].partition(" ")
            names[(len(out) - 1, int(pt))] = spec.split("/")[0].upper()
    static = {0: "PCMU", 3: "GSM", 4: "G723", 8: "PCMA", 9: "G722", 18: "G729"}
    return [(port, pt, names.get((i, pt), static.get(pt, ""))) for i, (port, pt, _) in enumerate(out)]


def _request(method: str, target: str, client: Client, call_id: str, tag: str, to_tag: str, cseq: int,
             body: bytes = b"", content_type: str | None = None, extra: str = "") -> bytes:  # fmt: skip
    lines = [f"{method} {target} SIP/2.0",
             f"Via: SIP/2.0/{client.transport.upper()} {client.local};branch=z9hG4bK{uuid.uuid4().hex[:16]};rport",
             "Max-Forwards: 70", f"From: <sip:src@src.example.test>;tag={tag}", f"To: <{target}>;tag={to_tag}",
             f"Call-ID: {call_id}", f"CSeq: {cseq} {method}",
             f"Contact: <sip:src@{client.local}>;+sip.src"]  # fmt: skip
    if content_type:
        lines.append(f"Content-Type: {content_type}")
    lines += [x for x in extra.split("\r\n") if x]
    lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def play(session: Session, transport: str, port: int) -> Outcome:
    """Run one recording session against the recorder on ``port``."""
    client = Client(transport, ("127.0.0.1", port))
    call_id = f"{session.name}-{transport}-{uuid.uuid4().hex[:10]}@corpus.test"
    tag, target = uuid.uuid4().hex[:8], f"sip:recorder@127.0.0.1:{port}"
    outcome = Outcome(session, transport, call_id)
    try:
        invite = session.invite(target=target, local=client.local, transport=transport, call_id=call_id, tag=tag,
                                branch="z9hG4bK" + uuid.uuid4().hex[:16])  # fmt: skip
        resp = client.transact(invite)
        outcome.status = resp.status if resp else None
        if resp is None or resp.status != 200:
            outcome.errors.append(f"INVITE answered {outcome.status}")
            return outcome
        to_tag = resp.headers.get("to", "").rpartition("tag=")[2].split(";")[0]
        cseq = int(re.search(rb"(?im)^CSeq:\s*([0-9]+)", invite).group(1))  # type: ignore[union-attr]
        client.send(_request("ACK", target, client, call_id, tag, to_tag, cseq))
        offer = labels_of(session.sdp())
        answered = _answer_ports(resp.body)
        if len(answered) != len(offer):
            outcome.errors.append(f"answer has {len(answered)} m-lines for {len(offer)} offered")
        codec = session.expect.get("codec")
        if codec and any(c != codec for port_, _, c in answered if port_):
            outcome.errors.append(f"answered in {[c for _, _, c in answered]}, not {codec} as offered first")
        if session.expect.get("activate"):
            cseq += 1
            body = session.published()[2].replace(b"a=inactive", b"a=sendonly")
            ctype = session.published()[1]
            re_resp = client.transact(_request("INVITE", target, client, call_id, tag, to_tag, cseq, body, ctype))
            if re_resp is None or re_resp.status != 200:
                outcome.errors.append(f"activating re-INVITE answered {re_resp.status if re_resp else None}")
                return outcome
            client.send(_request("ACK", target, client, call_id, tag, to_tag, cseq))
            answered = _answer_ports(re_resp.body)
            offer = [(label, "sendonly", p) for label, _, p in offer]
        for (label, direction, offered_port), (port_, pt, codec) in zip(offer, answered, strict=False):
            if direction in ("sendonly", "sendrecv") and offered_port and port_:
                leg = make_leg(label, port_, pt, codec, seed=SEEDS[len(outcome.legs) % len(SEEDS)])
                if leg is None:
                    outcome.errors.append(f"cannot send {codec or pt} here")
                else:
                    outcome.legs.append(leg)
        sender = threading.Thread(target=send_rtp, args=(outcome.legs,))
        sender.start()
        update = session.expect.get("update")
        if update:
            time.sleep(1.0)
            cseq += 1
            body = (session.folder / update["body"]).read_bytes().replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
            method = update.get("method", "UPDATE")
            ctype, disposition = update["content_type"], "Content-Disposition: recording-session"
            up = client.transact(_request(method, target, client, call_id, tag, to_tag, cseq, body, ctype, disposition))
            if up is None or up.status != 200:
                outcome.errors.append(f"metadata-only {method} answered {up.status if up else None}")
        sender.join()
        time.sleep(0.3)
        cseq += 1
        bye = client.transact(_request("BYE", target, client, call_id, tag, to_tag, cseq))
        if bye is None or bye.status != 200:
            outcome.errors.append(f"BYE answered {bye.status if bye else None}")
    finally:
        client.close()
        for leg in outcome.legs:
            leg.sock.close()
    return outcome


# -- checking the vCon -----------------------------------------------------------------------


def _matches(party: dict[str, Any], want: dict[str, str]) -> bool:
    for key, value in want.items():
        if key == "role":
            continue
        if key == "tel" and party.get("tel") != value:
            # The core turns a short extension into sip:EXT@domain.
            if value.startswith("+") or len(value) >= 5 or not str(party.get("sip", "")).startswith(f"sip:{value}@"):
                return False
        elif key != "tel" and party.get(key) != value:
            return False
    return True


def capture_notes(vcon: dict[str, Any]) -> dict[str, Any]:
    for att in vcon.get("attachments", []):
        if att.get("purpose") == "capture_notes":
            return att["body"] if isinstance(att["body"], dict) else json.loads(att["body"])
    return {}


def _channels(vcon: dict[str, Any]) -> list[tuple[set[int], np.ndarray]]:
    """(parties heard, samples) per channel of every recording: a channel of a mixed stream lists
    everyone heard (a mono file's ``parties``, or the exact map in capture_notes.channel_parties)."""
    out = []
    mapped = capture_notes(vcon).get("channel_parties", {})
    for n, dialog in enumerate(vcon.get("dialog", [])):
        if dialog.get("type") != "recording" or "body" not in dialog:
            continue
        data, _ = read_audio(base64.urlsafe_b64decode(dialog["body"] + "=" * (-len(dialog["body"]) % 4)), 8000)
        parties = dialog["parties"] if isinstance(dialog["parties"], list) else [dialog["parties"]]
        if str(n) in mapped:
            heard = [set(ch) for ch in mapped[str(n)]]
        elif data.shape[1] == 1:
            heard = [set(parties)]
        else:
            heard = [{p} if isinstance(p, int) else set(p) for p in parties]
        for i, ps in enumerate(heard[: data.shape[1]]):
            out.append((ps, data[:, i]))
    return out


def check(outcome: Outcome, vcon: dict[str, Any]) -> None:
    session = outcome.session
    final = session.expect.get("update") or {}
    want_parties = final.get("parties", session.parties)
    want_streams = final.get("streams") or session.expect.get("activate") or session.streams
    parties = vcon.get("parties", [])
    index: dict[int, int] = {}
    for i, want in enumerate(want_parties):
        found = [j for j, p in enumerate(parties) if j not in index.values() and _matches(p, want)]
        if found:
            index[i] = found[0]
        else:
            outcome.errors.append(f"no party like {want}")
    outcome.parties_ok = len(index) == len(want_parties) and len(parties) == len(want_parties)
    if len(parties) != len(want_parties):
        outcome.errors.append(f"{len(parties)} parties, expected {len(want_parties)}: {parties}")
    channels = _channels(vcon)
    legs = {leg.label: leg for leg in outcome.legs}
    ok = bool(want_streams) or not outcome.legs
    for label, who in want_streams.items():
        leg = legs.get(label)
        if leg is None:
            outcome.errors.append(f"nothing sent on label {label}")
            ok = False
            continue
        heard = {index.get(i, -1) for i in who}
        candidates = [samples for ps, samples in channels if ps == heard]
        others = [legs[lbl].reference for lbl, w in want_streams.items() if set(w) != set(who) and lbl in legs]
        good, scores = False, []
        for samples in candidates:
            own = window_ncc(leg.reference, samples, 8000)
            cross = max((max(window_ncc(o, samples, 8000), default=0.0) for o in others), default=0.0)
            scores.append((round(min(own, default=0.0), 2), round(cross, 2)))
            if own and min(own) >= 0.9 and cross <= 0.3:
                good = True
        if not good:
            ok = False
            outcome.errors.append(f"label {label}: no channel of parties {sorted(heard)} carries it "
                                  f"(channels: {[sorted(ps) for ps, _ in channels]}, own/cross {scores})")  # fmt: skip
    outcome.audio_ok = ok


def cdr_call_id(vcon: dict[str, Any]) -> str | None:
    for att in vcon.get("attachments", []):
        if att.get("purpose") == "cdr":
            body = att["body"] if isinstance(att["body"], dict) else json.loads(att["body"])
            return body.get("sip_call_id")
    return None


def run(selected: list[Session], transport: str, tmp: Path, root: Path = TESTS.parent,
        python: str = sys.executable, parallel: int = 6) -> list[Outcome]:  # fmt: skip
    """Replay ``selected`` over one transport against a fresh recorder; each outcome checked."""
    tmp.mkdir(parents=True, exist_ok=True)
    recorder = Recorder.start(tmp, root, python)
    outcomes: list[Outcome] = []
    try:
        pending = list(selected)
        lock = threading.Lock()

        def worker() -> None:
            while True:
                with lock:
                    if not pending:
                        return
                    session = pending.pop(0)
                result = play(session, transport, recorder.port)
                with lock:
                    outcomes.append(result)

        threads = [threading.Thread(target=worker) for _ in range(parallel)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        vcons = {cdr_call_id(v): v for v in recorder.vcons(len(outcomes))}
    finally:
        recorder.stop()
    for outcome in outcomes:
        vcon = vcons.get(outcome.call_id)
        if vcon is None:
            outcome.errors.append("no vCon")
        else:
            outcome.vcon = vcon
            if outcome.status == 200:
                check(outcome, vcon)
    return sorted(outcomes, key=lambda o: o.session.name)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--root", type=Path, default=TESTS.parent, help="checkout whose recorder runs")
    parser.add_argument("--python", default=sys.executable)
    parser.add_argument("--transport", choices=("udp", "tcp", "both"), default="both")
    parser.add_argument("--tmp", type=Path, default=Path("/tmp") / f"corpus-replay-{uuid.uuid4().hex[:6]}")
    parser.add_argument("names", nargs="*", help="only these sessions")
    args = parser.parse_args(argv)
    selected = [s for s in sessions(replayable=True) if not args.names or s.name in args.names]
    transports = ("udp", "tcp") if args.transport == "both" else (args.transport,)
    results: dict[str, list[Outcome]] = {}
    for transport in transports:
        for outcome in run(selected, transport, args.tmp / transport, args.root, args.python):
            print(outcome.line(), flush=True)
            results.setdefault(outcome.session.name, []).append(outcome)
    right = sum(all(o.right for o in outs) for outs in results.values())
    accepted = sum(all(o.status == 200 for o in outs) for outs in results.values())
    parties = sum(all(o.parties_ok for o in outs) for outs in results.values())
    audio = sum(all(o.audio_ok for o in outs) for outs in results.values())
    print(f"{right} of {len(results)} corpus sessions recorded right over {'+'.join(transports)} "
          f"(accepted {accepted}, right parties {parties}, right channel attribution {audio})")  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
