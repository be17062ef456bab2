"""Cutting SIP out of a TCP stream (Content-Length wherever the SRC puts it, compact ``l:``,
split anywhere across reads) and reading a UDP datagram whose Content-Length is wrong."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from adapters.sip.framing import TcpFramer
from adapters.sip.message import parse_message
from capture.errors import RemoteProtocolError

HEADERS = [
    "Via: SIP/2.0/TCP 10.0.0.1:5060;branch=z9hG4bK{n}",
    "From: <sip:src@10.0.0.1>;tag=a{n}",
    "To: <sip:rec@10.0.0.2>",
    "Call-ID: call-{n}@10.0.0.1",
    "CSeq: {n} INVITE",
    "Contact: <sip:src@10.0.0.1:5060;transport=tcp>;+sip.src",
    "Content-Type: multipart/mixed;boundary=b",
    "MIME-Version: 1.0",
]


def message(
    n: int, position: int, *, name: str = "Content-Length", body: bytes | None = None, sep: str = "\r\n"
) -> bytes:
    body = body if body is not None else f"--b\r\nbody {n} with a blank line\r\n\r\ninside\r\n--b--\r\n".encode()
    lines = [h.format(n=n) for h in HEADERS]
    lines.insert(position, f"{name}:  {len(body)} ")
    return (f"INVITE sip:rec@10.0.0.2 SIP/2.0{sep}" + sep.join(lines) + sep + sep).encode() + body


@pytest.mark.parametrize("position", range(len(HEADERS) + 1))
@pytest.mark.parametrize("name", ["Content-Length", "content-length", "l", "L"])
def test_content_length_anywhere(position: int, name: str) -> None:
    framer = TcpFramer()
    out = framer.feed(message(1, position, name=name) + message(2, len(HEADERS) - position, name=name))
    assert [parse_message(m).call_id for m in out] == ["call-1@10.0.0.1", "call-2@10.0.0.1"]
    assert parse_message(out[0]).body.endswith(b"--b--\r\n")


def test_lf_only_messages_keepalives_and_missing_length() -> None:
    framer = TcpFramer()
    stream = b"\r\n\r\n" + message(1, 3, sep="\n") + b"\r\n" + message(2, 0)
    assert [parse_message(m).call_id for m in framer.feed(stream)] == ["call-1@10.0.0.1", "call-2@10.0.0.1"]
    with pytest.raises(RemoteProtocolError):
        TcpFramer().feed(b"INVITE sip:x SIP/2.0\r\nCall-ID: 1\r\n\r\n")


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.tuples(st.integers(0, len(HEADERS)), st.sampled_from(["Content-Length", "l"])), min_size=1,
             max_size=4),
    st.lists(st.integers(1, 400), max_size=12),
)  # fmt: skip
def test_split_anywhere_across_reads(specs: list[tuple[int, str]], cuts: list[int]) -> None:
    stream = b"".join(message(i, pos, name=name) for i, (pos, name) in enumerate(specs))
    framer, out, start = TcpFramer(), [], 0
    for cut in sorted({min(c * 7, len(stream)) for c in cuts}) + [len(stream)]:
        out += framer.feed(stream[start:cut])
        start = cut
    assert [parse_message(m).call_id for m in out] == [f"call-{i}@10.0.0.1" for i in range(len(specs))]


def test_udp_datagram_length_wins_over_a_wrong_content_length() -> None:
    body = b"v=0\r\no=- 1 1 IN IP4 10.0.0.1\r\n"
    too_long = message(1, 3, body=body).replace(f"Content-Length:  {len(body)}".encode(), b"Content-Length:  3304")
    msg = parse_message(too_long, datagram=True)
    assert msg.body == body and msg.length_mismatch == (3304, len(body))
    too_short = message(1, 3, body=body).replace(f"Content-Length:  {len(body)}".encode(), b"Content-Length:  4")
    msg = parse_message(too_short, datagram=True)
    assert msg.body == body and msg.length_mismatch == (4, len(body))
    padded = message(1, 3, body=body + b"\r\n\x00\x00")
    msg = parse_message(padded.replace(f"Content-Length:  {len(body) + 4}".encode(), f"l: {len(body)}".encode()),
                        datagram=True)  # fmt: skip
    assert msg.body == body and msg.length_mismatch is None
    with pytest.raises(RemoteProtocolError):  # a framed (TCP) message is not given the same benefit
        parse_message(too_long)
