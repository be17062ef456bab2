"""Seed inputs for each fuzz target, gathered from the project's own test data (never invented
wholesale): the SIPREC corpus of real SRC offers, the real AMI transcripts, the WHIP offer the
offer tests use, and RTP packets built the way the test senders build them."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SHARED = ROOT.parent / "shared"


def _corpus_files() -> list[bytes]:
    return [p.read_bytes() for p in sorted((ROOT / "tests" / "sip" / "corpus").glob("*/*.txt"))]


def _sip_messages() -> list[bytes]:
    out = []
    for text in _corpus_files():
        text = text.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
        if re.match(rb"^(INVITE|UPDATE|BYE) ", text):
            out.append(text)
    out.append(
        b"OPTIONS sip:rec@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK1\r\n"
        b"From: <sip:p@127.0.0.1>;tag=1\r\nTo: <sip:rec@127.0.0.1>\r\nCall-ID: a@b\r\nCSeq: 1 OPTIONS\r\n"
        b"l: 0\r\n\r\n"
    )
    return out


def _parts(kind: bytes) -> list[bytes]:
    out = []
    for text in _corpus_files():
        part = rb"(?s)Content-Type:\s*" + kind + rb"[^\r\n]*\r?\n(?:[^\r\n]+\r?\n)*\r?\n(.*?)(?=\r?\n--)"
        out.extend(match.group(1) for match in re.finditer(part, text))
    return out


def seeds(target: str) -> list[bytes]:
    if target in ("sip", "sip_tcp"):
        messages = _sip_messages()
        return messages if target == "sip" else [b"\x05" + m for m in messages]
    if target == "sdp":
        return _parts(rb"application/sdp") or [b"v=0\r\nm=audio 4000 RTP/AVP 0\r\n"]
    if target == "multipart":
        out = []
        for text in _corpus_files():
            boundary = re.search(rb'boundary="?([^";\r\n]+)', text)
            if boundary:
                body = text.split(b"\r\n\r\n", 1)[-1] if b"\r\n\r\n" in text else text.split(b"\n\n", 1)[-1]
                out.append(boundary.group(1) + b"\n" + body)
        return out
    if target == "metadata":
        xml = _parts(rb"application/rs-metadata")
        xml += [p.read_bytes() for p in sorted((SHARED / "siprec-samples").glob("*/body.txt"))]
        return xml
    if target == "ami":
        out = []
        for path in sorted((SHARED / "ami-transcripts").rglob("*.ami")):
            data = path.read_bytes()
            out.append(b"\x10" + data[:6000])
        return out
    if target == "whip_offer":
        return [
            b"v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\na=group:BUNDLE 0\r\n"
            b"m=audio 9 UDP/TLS/RTP/SAVPF 111\r\nc=IN IP4 0.0.0.0\r\na=mid:0\r\na=sendonly\r\n"
            b"a=rtpmap:111 opus/48000/2\r\na=fingerprint:sha-256 AB:CD\r\n"
        ]
    if target == "rtp":
        from capture.media.rtp import build_rtp

        return [
            build_rtp(0, 1, 160, 0x1234, bytes(160)),
            build_rtp(101, 2, 320, 0x1234, bytes([5, 0x8A, 0x03, 0x20])),
            build_rtp(8, 3, 480, 0x1234, bytes(80), marker=True),
        ]
    raise KeyError(target)
