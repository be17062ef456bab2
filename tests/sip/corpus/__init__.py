"""Recording-session offers from real SIPREC clients (and a few marked SYNTHETIC), with what the
recorder must make of each.

Every folder holds the published files, ``source.md`` (where they come from, what is peculiar
about them) and, for copied files, the upstream ``LICENSE``. ``expect.json`` lists the folder's
sessions: which file carries the offer (a full ``invite.txt``, a multipart ``body.txt`` with its
boundary, or a metadata document plus an SDP), the parties the recorder must name (fields that
must match, in metadata order) and, per ``a=label``, which of them must be heard on it.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).parent
BOUNDARY = "vcon-capture-corpus"
"Boundary of the multipart bodies the tests build (metadata + SDP published separately)."

ENVELOPES = {
    # How a body-only sample is wrapped: Contact feature tag, Require, From.
    "rfc7866": ("<sip:src@{local}>;+sip.src", True, "<sip:src@src.example.test>"),
    "cube": ("<sip:{local}>;+sip.src", False, "<sip:src@cube.example.test>"),
    "avaya": ('"SBCE" <sip:{local};transport={transport};+sip.src>', True, "<sip:src@sbce.example.test>"),
    "broadworks": ("<sip:+15550001001@{local};transport={transport}>;src", False,
                   "<sip:+15550001001@as.example.test;user=phone>"),
}  # fmt: skip


def crlf(data: bytes) -> bytes:
    return data.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")


@dataclass
class Session:
    """One recording session of the corpus."""

    name: str
    folder: Path
    expect: dict[str, Any]

    @property
    def synthetic(self) -> bool:
        return bool(self.expect.get("synthetic"))

    @property
    def parties(self) -> list[dict[str, str]]:
        return self.expect["parties"]

    @property
    def streams(self) -> dict[str, list[int]]:
        """a=label -> indexes into :attr:`parties` heard on it (active m-lines only)."""
        return self.expect.get("streams", {})

    @property
    def replayable(self) -> bool:
        return "message" in self.expect or "sdp" in self.expect

    def _read(self, name: str) -> bytes:
        return crlf((self.folder / name).read_bytes())

    def published(self) -> tuple[list[str], str, bytes]:
        """(request line + headers as published, or [] for a body-only sample, Content-Type, body)."""
        if "message" in self.expect and self.expect["message"].startswith("invite"):
            head, _, body = self._read(self.expect["message"]).partition(b"\r\n\r\n")
            lines = head.decode().split("\r\n")
            content_type = next(v for k, v in _headers(lines) if k.lower() in ("content-type", "c"))
            return lines, content_type, body
        if "message" in self.expect:
            return [], f"multipart/mixed;boundary={self.expect['boundary']}", self._read(self.expect["message"])
        if "sdp" in self.expect:
            sdp = self._read(self.expect["sdp"])
            xml = self._read(self.expect["metadata"])
            body = (
                (f"--{BOUNDARY}\r\nContent-Type: application/sdp\r\n\r\n").encode()
                + sdp
                + (
                    f"\r\n--{BOUNDARY}\r\nContent-Type: application/rs-metadata+xml\r\n"
                    "Content-Disposition: recording-session\r\n\r\n"
                ).encode()
                + xml
                + f"\r\n--{BOUNDARY}--\r\n".encode()
            )
            return [], f"multipart/mixed;boundary={BOUNDARY}", body
        return [], "application/rs-metadata+xml", self._read(self.expect["metadata"])

    def metadata(self) -> bytes:
        """The rs-metadata document alone."""
        if "metadata" in self.expect:
            return self._read(self.expect["metadata"])
        _, content_type, body = self.published()
        return _part(body, content_type, lambda headers: "rs-metadata" in headers or "recording-session" in headers)

    def sdp(self) -> bytes:
        _, content_type, body = self.published()
        return _part(body, content_type, lambda headers: "application/sdp" in headers)

    def invite(self, *, target: str, local: str, transport: str, call_id: str, tag: str, branch: str,
               body: bytes | None = None) -> bytes:  # fmt: skip
        """The INVITE to send: a published one with Via, Call-ID, From tag and request URI made
        ours (everything else as published), or a body-only sample in its vendor's envelope."""
        lines, content_type, published = self.published()
        body = published if body is None else body
        via = f"SIP/2.0/{transport.upper()} {local};branch={branch};rport"
        if lines:
            out = [f"INVITE {target} SIP/2.0", f"Via: {via}"]
            for line in lines[1:]:
                name = line.split(":", 1)[0].strip().lower()
                if name in ("via", "v"):
                    continue
                if name in ("content-length", "l"):  # where the SRC put it, often not last
                    line = f"{line.split(':', 1)[0]}: {len(body)}"
                elif name in ("call-id", "i"):
                    line = f"Call-ID: {call_id}"
                elif name in ("from", "f"):
                    line = re.sub(r";tag=[^;]*", "", line) + f";tag={tag}"
                out.append(line)
        else:
            contact, require, from_ = ENVELOPES[self.expect.get("envelope", "rfc7866")]
            out = [f"INVITE {target} SIP/2.0", f"Via: {via}", "Max-Forwards: 70", f"From: {from_};tag={tag}",
                   f"To: <{target}>", f"Call-ID: {call_id}", "CSeq: 1 INVITE",
                   "Contact: " + contact.format(local=local, transport=transport)]  # fmt: skip
            if require:
                out.append("Require: siprec")
            out += ["Allow: INVITE, ACK, CANCEL, BYE, UPDATE, OPTIONS", f"Content-Type: {content_type}",
                    f"Content-Length: {len(body)}"]  # fmt: skip
            if self.expect.get("envelope") == "broadworks":
                out.append("MIME-Version: 1.0")
        return ("\r\n".join(out) + "\r\n\r\n").encode() + body


def _headers(lines: list[str]) -> list[tuple[str, str]]:
    return [(k.strip(), v.strip()) for k, _, v in (line.partition(":") for line in lines[1:]) if k.strip()]


def _part(body: bytes, content_type: str, wanted: Any) -> bytes:
    boundary = re.search(r"boundary=\"?([^\";]+)", content_type)
    if boundary is None:
        return body
    for chunk in body.split(b"--" + boundary.group(1).strip().encode()):
        head, sep, payload = chunk.partition(b"\r\n\r\n")
        if sep and wanted(head.decode("latin-1").lower()):
            return payload.rstrip(b"\r\n") + b"\r\n"
    raise LookupError(f"no such part in {content_type}")


def sessions(*, replayable: bool | None = None) -> list[Session]:
    out = []
    for folder in sorted(p for p in ROOT.iterdir() if (p / "expect.json").is_file()):
        for expect in json.loads((folder / "expect.json").read_text())["sessions"]:
            s = Session(expect["name"], folder, expect)
            if replayable is None or s.replayable == replayable:
                out.append(s)
    return out


def labels_of(sdp: bytes) -> list[tuple[str | None, str, int]]:
    """(a=label, direction, port) per m-line: a reading of the SDP independent of the recorder's."""
    out: list[list[Any]] = []
    session_direction = "sendrecv"
    for line in sdp.decode().split("\r\n"):
        if line.startswith("m="):
            out.append([None, session_direction, int(line.split()[1].split("/")[0])])
        elif line.startswith("a=label:") and out:
            out[-1][0] = line[8:].strip()
        elif line[2:] in ("sendrecv", "sendonly", "recvonly", "inactive") and line.startswith("a="):
            if out:
                out[-1][1] = line[2:]
            else:
                session_direction = line[2:]
    return [(label, direction, port) for label, direction, port in out]
