"""SIPREC bodies and envelopes as SRCs send them: multipart quirks, metadata media types, the
recording-client markers in Contact, and SDP the way recording clients write it."""

from __future__ import annotations

import pytest

from adapters.sip.message import parse_message
from adapters.sip.sdp import AnsweredStream, build_answer, choose_codecs, parse_sdp
from adapters.sip.siprec import METADATA, body_parts, metadata_part, split_body, wants_siprec
from capture.errors import RemoteProtocolError

from .corpus import labels_of, sessions

BY_NAME = {s.name: s for s in sessions(replayable=True)}


@pytest.mark.parametrize("session", list(BY_NAME.values()), ids=lambda s: s.name)
def test_every_corpus_body_has_its_sdp_and_metadata(session) -> None:
    _, content_type, body = session.published()
    parts = split_body(content_type, body)
    kinds = [p.content_type for p in parts]
    assert "application/sdp" in kinds and sum(p.is_metadata for p in parts) == 1, kinds
    sdp = parse_sdp(body_parts(content_type, body)["application/sdp"])
    assert [m.label for m in sdp.media] == [label for label, _, _ in labels_of(session.sdp())]
    assert METADATA in body_parts(content_type, body)


def test_part_order_types_and_extra_parts() -> None:
    # Metadata first with per-part Content-Length and no space after the colons (BroadWorks).
    lines, content_type, body = BY_NAME["broadworks_2"].published()
    assert [p.content_type for p in split_body(content_type, body)] == [METADATA, "application/sdp"]
    # A third part (ISUP in application/gtd) is kept, and the body has no closing delimiter (CUBE).
    _, content_type, body = BY_NAME["cisco_1"].published()
    parts = split_body(content_type, body)
    assert [p.content_type for p in parts] == ["application/sdp", METADATA, "application/gtd"]
    assert parts[0].disposition == "session" and parts[1].disposition == "recording-session"
    assert parts[2].payload.startswith(b"IAM,")
    # application/rs-metadata, the RFC's own type (SEMS), is the metadata part too.
    _, content_type, body = BY_NAME["sems_1"].published()
    assert [(p.content_type, p.is_metadata) for p in split_body(content_type, body)][1] == (
        "application/rs-metadata",
        True,
    )


def test_boundary_quirks() -> None:
    body = (
        b"--b1 \r\nContent-Type: application/sdp \r\n\r\nv=0\r\n\r\n"
        b"--b1\r\nContent-Type:application/x\r\n\r\nX\r\n--b1-- \r\n"
    )
    for content_type in ('multipart/mixed; boundary="b1"', "multipart/mixed;boundary=b1", "multipart/mixed"):
        assert [p.content_type for p in split_body(content_type, body)] == ["application/sdp", "application/x"]
    with pytest.raises(RemoteProtocolError):
        split_body("multipart/mixed", b"no delimiter at all")
    # A part marked recording-session whose type was mangled is still the metadata.
    mangled = b"--b\r\nContent-Type:application/ +xml\r\nContent-Disposition:recording-session\r\n\r\n<x/>\r\n--b--\r\n"
    assert split_body("multipart/mixed;boundary=b", mangled)[0].is_metadata
    snapshot = (
        b"--b\r\nContent-Type: application/rs-metadata-request\r\n"
        b"Content-Disposition: recording-session\r\n\r\n<x/>\r\n--b--"
    )
    assert not split_body("multipart/mixed;boundary=b", snapshot)[0].is_metadata


REQUEST = (
    "UPDATE sip:rec@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.1;branch=z9hG4bK1\r\nFrom: <sip:src@a>;tag=1\r\n"
    "To: <sip:rec@b>;tag=2\r\nCall-ID: c\r\nCSeq: 2 UPDATE\r\nCONTACT\r\nHEADERS\r\n"
)


def _msg(contact: str = "Contact: <sip:src@10.0.0.1>", headers: str = "", body: bytes = b"") -> bytes:
    head = REQUEST.replace("CONTACT", contact).replace("HEADERS", headers or "Max-Forwards: 70")
    return f"{head}Content-Length: {len(body)}\r\n\r\n".encode() + body


@pytest.mark.parametrize(
    "contact, headers, siprec",
    [
        ("Contact: <sip:src@10.0.0.1>", "Require: siprec", True),
        ("Contact: <sip:src@10.0.0.1>;+sip.src", "", True),
        ('Contact: "H323 User 1" <sip:10.0.0.1:5060;transport=tcp;+sip.src>', "", True),
        ("Contact: <sip:+15550001001@10.0.0.1:5060;transport=udp>;src", "", True),
        ("m: <sip:src@10.0.0.1>;expires=60", "k: siprec", False),
        ("Contact: <sip:src@10.0.0.1>;+sip.srs", "", False),
    ],
)
def test_recording_client_markers(contact: str, headers: str, siprec: bool) -> None:
    assert wants_siprec(parse_message(_msg(contact, headers))) is siprec


@pytest.mark.parametrize("content_type", ["application/rs-metadata", "application/rs-metadata+xml"])
def test_metadata_only_body(content_type: str) -> None:
    msg = parse_message(_msg(headers=f"Content-Type: {content_type}\r\nContent-Disposition: recording-session",
                             body=b"<recording/>"))  # fmt: skip
    part = metadata_part(msg)
    assert part is not None and part.payload == b"<recording/>"
    assert metadata_part(parse_message(_msg(headers="Content-Type: application/sdp", body=b"v=0\r\n"))) is None


SRC_SDP = b"""v=0
o=- 1 1 IN IP4 0.0.0.0
s=-
m=audio 4000 RTP/AVP 8 18 101
a=rtpmap:101 telephone-event/8000
a=label:201835599
m=audio 4002 RTP/AVP 0
a=rtpmap:0 pcmu/8000a
a=direction:both
a=label:b_leg
m=audio 4004 RTP/AVP 0 8 18 4 9 100 101
a=label:3
a=inactive
m=video 4006 RTP/AVP 97
a=rtpmap:97 H264/90000
a=label:4
a=sendonly
"""


def test_sdp_as_recording_clients_write_it() -> None:
    sdp = parse_sdp(SRC_SDP)
    audio1, audio2, held, video = sdp.media
    assert sdp.address is None and audio1.address is None  # no c= line at all (OpenSIPS)
    assert audio1.direction == "sendrecv" and audio2.direction == "sendrecv"  # none given; direction:both ignored
    assert choose_codecs(audio1)[0].name == "PCMA"  # type: ignore[union-attr]  # static 8, no rtpmap
    assert choose_codecs(audio2)[0].name == "PCMU"  # type: ignore[union-attr]  # lower case, junk after the rate
    assert choose_codecs(held)[0].name == "PCMU"  # type: ignore[union-attr]  # inactive, no rtpmap at all
    assert [m.label for m in sdp.media] == ["201835599", "b_leg", "3", "4"]
    answer = build_answer(
        sdp,
        [AnsweredStream(20000, *choose_codecs(audio1)), AnsweredStream(20002, choose_codecs(audio2)[0]),
         AnsweredStream(20004, choose_codecs(held)[0]), AnsweredStream(0)],
        address="127.0.0.1", session_id=1, version=1,
    ).decode()  # fmt: skip
    blocks = answer.split("m=")[1:]
    assert [b.split("\r\n")[0].split()[:2] for b in blocks] == [
        ["audio", "20000"], ["audio", "20002"], ["audio", "20004"], ["video", "0"],
    ]  # fmt: skip
    assert ["a=label:201835599" in blocks[0], "a=label:b_leg" in blocks[1], "a=label:4" in blocks[3]] == [True] * 3
    assert "a=recvonly" in blocks[0] and "a=recvonly" in blocks[1] and "a=inactive" in blocks[2]
    assert "multipart" not in answer


def test_non_ascii_part_headers() -> None:
    # email returns a Header object, not a str, for a header it cannot decode (found by tests/fuzz).
    body = b"--b\r\nContent-Type: application/sdp\xff\xfe; x=\xc3\r\nContent-Disposition: \xe9\r\n\r\nv=0\r\n--b--\r\n"
    (part,) = split_body("multipart/mixed;boundary=b", body)
    assert part.payload == b"v=0"
