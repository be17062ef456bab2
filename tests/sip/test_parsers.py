"""SIP, SDP, multipart and rs-metadata parsing: examples and properties."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from adapters.sip.framing import TcpFramer
from adapters.sip.message import parse_message, parse_name_addr, split_commas, uri_hostport
from adapters.sip.sdp import AnsweredStream, build_answer, choose_codecs, parse_sdp
from adapters.sip.siprec import body_parts, parse_metadata
from capture.errors import RemoteProtocolError

INVITE = (
    b"INVITE sip:rec@127.0.0.1:5060 SIP/2.0\r\n"
    b"v: SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bK1, SIP/2.0/UDP 10.0.0.2;branch=z9hG4bK0\r\n"
    b'f: "Smith, Alice" <sip:+15551230000@pbx.example;user=phone>;tag=abc\r\n'
    b"t: <sip:rec@127.0.0.1>\r\n"
    b"i: call-1@pbx\r\n"
    b"CSeq: 7 INVITE\r\n"
    b"Subject: a long\r\n  folded subject\r\n"
    b"k: siprec\r\nSupported: replaces, timer\r\n"
    b"c: application/sdp\r\n"
    b"l: 4\r\n\r\nv=0\r\ntrailing"
)

SDP = (
    b"v=0\r\no=- 1 1 IN IP4 10.0.0.1\r\ns=-\r\nc=IN IP4 10.0.0.1\r\nt=0 0\r\n"
    b"m=audio 4000 RTP/AVP 96 8 101\r\na=rtpmap:96 FOO/8000\r\na=rtpmap:101 telephone-event/8000\r\n"
    b"a=label:1\r\na=sendonly\r\n"
    b"m=audio 4002 RTP/AVP 9 0\r\nc=IN IP4 10.0.0.9\r\na=label:2\r\n"
    b"m=video 4004 RTP/AVP 96\r\n"
)

METADATA = b"""<?xml version="1.0" encoding="UTF-8"?>
<recording xmlns="urn:ietf:params:xml:ns:recording:1">
  <datamode>complete</datamode>
  <session session_id="s1"><sipSessionID>x</sipSessionID></session>
  <participant participant_id="pA"><nameID aor="sip:alice@example.com"><name>Alice</name></nameID></participant>
  <participant participant_id="pB"><nameID aor="tel:+15550001111"><name>Bob</name></nameID></participant>
  <stream stream_id="sA" session_id="s1"><label>1</label></stream>
  <stream stream_id="sB" session_id="s1"><label>2</label></stream>
  <participantstreamassoc participant_id="pA"><send>sA</send><recv>sB</recv></participantstreamassoc>
  <participantstreamassoc participant_id="pB"><send>sB</send><recv>sA</recv></participantstreamassoc>
</recording>"""


def test_compact_forms_folding_multiple_values_and_content_length() -> None:
    msg = parse_message(INVITE)
    assert msg.method == "INVITE" and msg.call_id == "call-1@pbx" and msg.cseq == (7, "INVITE")
    assert msg.get_all("Via") == ["SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bK1", "SIP/2.0/UDP 10.0.0.2;branch=z9hG4bK0"]
    assert msg.branch == "z9hG4bK1"
    assert msg.get("Subject") == "a long folded subject"
    assert msg.tokens("Supported") == {"siprec", "replaces", "timer"}
    assert msg.body == b"v=0\r"
    frm = parse_name_addr(msg.get("From") or "")
    assert frm.display == "Smith, Alice" and frm.params["tag"] == "abc"
    again = parse_message(msg.to_bytes())
    assert again.headers == msg.headers and again.body == msg.body


def test_helpers() -> None:
    assert split_commas('"a, b" <sip:x>, <sip:y;p=1,2>') == ['"a, b" <sip:x>', "<sip:y;p=1,2>"]
    assert uri_hostport("sip:bob@10.1.2.3:5070;transport=tcp") == ("10.1.2.3", 5070)
    assert uri_hostport("sip:[::1]") == ("::1", 5060)


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"garbage\r\n\r\n",
        b"INVITE sip:x SIP/2.0\r\nCall-ID: 1\r\n\r\n",
        INVITE.replace(b"CSeq: 7 INVITE", b"CSeq: 7 BYE"),
        INVITE.replace(b"l: 4", b"l: 400"),
        INVITE.replace(b"l: 4", b"l: -1"),
        INVITE.replace(b"l: 4", "l: \u00b2".encode()),  # a Unicode digit is not a length (hypothesis found it)
        INVITE.replace(b"CSeq: 7", "CSeq: \u0667".encode()),
        b"SIP/2.0 999 Nope\r\n\r\n",
        b"x" * 70000,
    ],
)
def test_malformed_messages_raise_remote_protocol_error(data: bytes) -> None:
    with pytest.raises(RemoteProtocolError):
        parse_message(data)


def test_tcp_framer_splits_by_content_length() -> None:
    framer = TcpFramer()
    stream = b"\r\n" + INVITE[:-8] + INVITE
    out = framer.feed(stream[:30]) + framer.feed(stream[30:])
    assert len(out) == 2 and all(parse_message(m).call_id == "call-1@pbx" for m in out)


def test_sdp_offer_and_recvonly_answer() -> None:
    sdp = parse_sdp(SDP)
    a, b, video = sdp.media
    assert (a.address, a.port, a.direction, a.label) == ("10.0.0.1", 4000, "sendonly", "1")
    assert b.address == "10.0.0.9" and b.direction == "sendrecv"
    audio, event = choose_codecs(a)
    assert audio is not None and audio.name == "PCMA" and event is not None and event.payload_type == 101
    assert choose_codecs(b)[0].name == "G722"  # type: ignore[union-attr]
    assert choose_codecs(video) == (None, None)
    answer = build_answer(
        sdp,
        [AnsweredStream(20000, audio, event), AnsweredStream(20002, choose_codecs(b)[0]), AnsweredStream(0)],
        address="127.0.0.1",
        session_id=1,
        version=1,
    ).decode()
    assert "m=audio 20000 RTP/AVP 8 101" in answer and "a=label:1" in answer and "a=label:2" in answer
    assert answer.count("a=recvonly") == 2 and "m=video 0 " in answer
    parse_sdp(answer.encode())


def test_multipart_siprec_body_and_metadata() -> None:
    body = (
        b"--b\r\nContent-Type: application/sdp\r\n\r\n" + SDP + b"\r\n--b\r\n"
        b"Content-Type: application/rs-metadata+xml\r\nContent-Disposition: recording-session\r\n\r\n"
        + METADATA
        + b"\r\n--b--\r\n"
    )
    parts = body_parts("multipart/mixed;boundary=b", body)
    assert parse_sdp(parts["application/sdp"]).media[0].label == "1"
    meta = parse_metadata(parts["application/rs-metadata+xml"])
    assert [p.name for p in meta.participants.values()] == ["Alice", "Bob"]
    assert meta.participant_for_label("2").aor == "tel:+15550001111"  # type: ignore[union-attr]
    assert meta.participant_for_label("9") is None


def test_metadata_refuses_entities() -> None:
    bomb = b'<?xml version="1.0"?><!DOCTYPE r [<!ENTITY a "aaaa">]><recording>&a;</recording>'
    with pytest.raises(RemoteProtocolError):
        parse_metadata(bomb)


HEADER_NAMES = st.sampled_from(["Via", "v", "From", "f", "To", "t", "Call-ID", "i", "CSeq", "l", "Content-Length",
                                "Contact", "m", "Require", "X-Junk"])  # fmt: skip
TEXT = st.text(st.characters(min_codepoint=1, max_codepoint=0x2FF), max_size=40)


@st.composite
def sip_like(draw: st.DrawFn) -> bytes:
    start = draw(st.sampled_from(["INVITE sip:a@b SIP/2.0", "SIP/2.0 200 OK", "BYE x SIP/2.0", draw(TEXT)]))
    lines = [start] + [f"{draw(HEADER_NAMES)}:{draw(TEXT)}" for _ in range(draw(st.integers(0, 8)))]
    sep = draw(st.sampled_from(["\r\n", "\n", "\r\n "]))
    return (sep.join(lines) + "\r\n\r\n").encode("utf-8", "replace") + draw(st.binary(max_size=50))


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(st.binary(max_size=300), sip_like()))
def test_sip_parser_raises_only_remote_protocol_error(data: bytes) -> None:
    try:
        msg = parse_message(data)
    except RemoteProtocolError:
        return
    parse_message(msg.to_bytes())
    for name in ("From", "To", "Contact"):
        for value in msg.get_all(name):
            try:
                parse_name_addr(value)
            except RemoteProtocolError:
                pass


@settings(max_examples=200, deadline=None)
@given(st.lists(st.one_of(st.binary(max_size=40), sip_like()), max_size=5))
def test_tcp_framer_raises_only_remote_protocol_error(chunks: list[bytes]) -> None:
    framer = TcpFramer()
    try:
        for chunk in chunks:
            framer.feed(chunk)
    except RemoteProtocolError:
        pass


SDP_LINES = st.sampled_from([
    "v=0", "c=IN IP4 1.2.3.4", "c=IN IP6 ::1", "c=XX", "m=audio 4000 RTP/AVP 0 8 101", "m=audio x RTP/AVP",
    "m=audio 99999 RTP/AVP 0", "a=rtpmap:101 telephone-event/8000", "a=rtpmap:x", "a=rtpmap:0 PCMU", "a=sendonly",
    "a=label:1", "a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:abc", "b=AS:64", "=", "m=",
])  # fmt: skip


@settings(max_examples=400, deadline=None)
@given(
    st.one_of(
        st.binary(max_size=200),
        st.lists(st.one_of(SDP_LINES, TEXT), max_size=12).map(lambda ls: "\r\n".join(ls).encode()),
    )
)
def test_sdp_parser_raises_only_remote_protocol_error(data: bytes) -> None:
    try:
        sdp = parse_sdp(data)
    except RemoteProtocolError:
        return
    for m in sdp.media:
        choose_codecs(m)


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=300), st.sampled_from(["multipart/mixed;boundary=b", "multipart/mixed", "application/sdp"]))
def test_body_and_metadata_parsers_raise_only_remote_protocol_error(data: bytes, content_type: str) -> None:
    for parse in (lambda: body_parts(content_type, b"--b\r\n" + data), lambda: parse_metadata(data)):
        try:
            parse()
        except RemoteProtocolError:
            pass


def test_rtpmap_channel_count_with_a_control_character_is_read_not_raised() -> None:
    """Found by the sdp fuzz target: ``str.strip()`` takes \\x1c-\\x1f, ``int()`` does not."""
    sdp = parse_sdp(b"v=0\r\nm=audio 4000 RTP/AVP 9\r\na=rtpmap:9 G722/8000/1\x1f/x\r\n")
    (codec, _) = choose_codecs(sdp.media[0])
    assert codec is not None and (codec.name, codec.channels) == ("G722", 1)
