"""SIPREC signalling in the shell, in-process (the FakeCapture keeps the events): one recording
session gives one call whatever is sent again, a wrong Content-Length on UDP, what CallStarted
and PartyJoined say, the answer's shape, a metadata-only re-INVITE, and metadata in a BYE."""

from __future__ import annotations

import json
import socket
from pathlib import Path

from capture.events import AttachmentAdded, CallEnded, CallStarted, PartyJoined, PartyLeft

from .corpus import sessions
from .test_adapter import SDP, exchange, request, start, udp  # noqa: F401  (fixture)

BY_NAME = {s.name: s for s in sessions()}
CISCO = BY_NAME["cisco_1"]


def invite(call_id: str, port: int, *, branch: str | None = None, length: int | None = None) -> bytes:
    data = CISCO.invite(target="sip:rec@127.0.0.1", local=f"127.0.0.1:{port}", transport="udp", call_id=call_id,
                        tag="src1", branch=branch or f"z9hG4bK{call_id}")  # fmt: skip
    if length is not None:
        head, _, body = data.partition(b"\r\n\r\n")
        head = head.replace(f"Content-Length: {len(body)}".encode(), f"Content-Length: {length}".encode())
        data = head + b"\r\n\r\n" + body
    return data


def in_dialog(method: str, call_id: str, port: int, to_tag: str, cseq: int, body: bytes = b"",
              content_type: str = "", extra: str = "") -> bytes:  # fmt: skip
    head = (
        f"{method} sip:rec@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:{port};branch=z9hG4bK{call_id}{cseq}\r\n"
        f"From: <sip:src@src.example.test>;tag=src1\r\nTo: <sip:rec@127.0.0.1>;tag={to_tag}\r\n"
        f"Call-ID: {call_id}\r\nCSeq: {cseq} {method}\r\nContact: <sip:src@127.0.0.1:{port}>;+sip.src\r\n{extra}"
    )
    if content_type:
        head += f"Content-Type: {content_type}\r\n"
    return f"{head}Content-Length: {len(body)}\r\n\r\n".encode() + body  # fmt: skip


def _tag(reply: bytes) -> str:
    to = next(line for line in reply.decode().split("\r\n") if line.lower().startswith("to:"))
    return to.rsplit("tag=", 1)[1]


async def test_one_session_one_call_and_the_answer(tmp_path: Path, udp: socket.socket) -> None:  # noqa: F811
    adapter, capture = await start(tmp_path)
    me = udp.getsockname()[1]
    try:
        # Content-Length 4 bytes short of the body, over UDP: the datagram decides.
        first = await exchange(udp, invite("s1", me, length=len(CISCO.published()[2]) - 4), adapter.port)
        ok = first[-1]
        assert ok.startswith(b"SIP/2.0 200")
        # The same INVITE again under another branch (a retry after a failover): the same answer.
        again = await exchange(udp, invite("s1", me, branch="z9hG4bKretry"), adapter.port)
        assert again[-1].split(b"\r\n\r\n")[1] == ok.split(b"\r\n\r\n")[1] and _tag(again[-1]) == _tag(ok)
        udp.sendto(in_dialog("ACK", "s1", me, _tag(ok), 1), ("127.0.0.1", adapter.port))
        bye = await exchange(udp, in_dialog("BYE", "s1", me, _tag(ok), 2), adapter.port)
        assert bye[-1].startswith(b"SIP/2.0 200")
    finally:
        await adapter.stop()
        await adapter.close()
    head, _, answer = ok.partition(b"\r\n\r\n")
    assert b"\r\nContent-Type: application/sdp\r\n" in head  # never multipart
    blocks = answer.decode().split("m=")[1:]
    assert [b.splitlines()[0].split()[0] for b in blocks] == ["audio", "audio"]
    assert ["a=label:1" in blocks[0], "a=label:2" in blocks[1]] == [True, True]
    assert all("a=recvonly" in b for b in blocks)
    started = [e for e in capture.events if isinstance(e, CallStarted)]
    assert len(started) == 1 and len([e for e in capture.events if isinstance(e, CallEnded)]) == 1
    (s,) = started
    assert (s.sip_call_id, s.sip_from_tag, s.sip_to_tag, s.sip_cseq) == ("s1", "src1", _tag(ok), 1)
    assert s.domain == "cube.example.test"  # request URI and To name the recorder: From's host
    # sipSessionID of the metadata: the communication session's RFC 7989 id.
    assert s.session_id == ("e9fffff2-020a-598b-8696-2867715db0cf", "cd0f7093-d62c-5f06-9709-8fd69a4aa57b")


async def test_plain_call_sip_fields(tmp_path: Path, udp: socket.socket) -> None:  # noqa: F811
    adapter, capture = await start(tmp_path)
    me = udp.getsockname()[1]
    data = request("INVITE", "p1", me, body=SDP, extra="User-Agent: Yealink SIP-T54W\r\n")
    data = data.replace(b"From: <sip:alice@127.0.0.1>", b'From: "Alice A." <sip:1001@pbx.example.com>')
    data = data.replace(b"To: <sip:rec@127.0.0.1>", b'To: "Front Desk" <sip:2000@pbx.example.com>')
    try:
        assert (await exchange(udp, data, adapter.port))[-1].startswith(b"SIP/2.0 200")
    finally:
        await adapter.stop()
        await adapter.close()
    (s,) = [e for e in capture.events if isinstance(e, CallStarted)]
    assert s.domain == "pbx.example.com" and s.sip_from_tag == "a" and s.sip_cseq == 1
    caller, callee = [e for e in capture.events if isinstance(e, PartyJoined)]
    assert (caller.sip_display_name, caller.sip_user_agent, caller.sip_contact) == (
        "Alice A.", "Yealink SIP-T54W", f"sip:alice@127.0.0.1:{me}")  # fmt: skip
    assert caller.tel == "1001" and callee.sip_display_name == "Front Desk" and callee.sip_contact is None


async def test_metadata_only_reinvite_and_metadata_in_bye(tmp_path: Path, udp: socket.socket) -> None:  # noqa: F811
    adapter, capture = await start(tmp_path)
    me = udp.getsockname()[1]
    xml = CISCO.metadata()
    gone = (b'<recording xmlns="urn:ietf:params:xml:ns:recording:1"><datamode>partial</datamode>'
            b'<participantsessionassoc participant_id="kQNhKFdEEeeJ+ND/VsPGWA==" session_id="s">'
            b"<disassociate-time>2017-06-23T12:17:06Z</disassociate-time>"
            b"</participantsessionassoc></recording>")  # fmt: skip
    metadata = "Content-Disposition: recording-session\r\n"
    try:
        ok = (await exchange(udp, invite("r1", me), adapter.port))[-1]
        tag = _tag(ok)
        udp.sendto(in_dialog("ACK", "r1", me, tag, 1), ("127.0.0.1", adapter.port))
        renamed = xml.replace(b'<name xml:lang="en">7300</name>', b"<name>Front Desk</name>")
        re_invite = in_dialog("INVITE", "r1", me, tag, 2, renamed, "application/rs-metadata+xml", metadata)
        reply = (await exchange(udp, re_invite, adapter.port))[-1]
        # A re-INVITE without SDP is answered with the session as it is (our offer), same ports.
        assert reply.startswith(b"SIP/2.0 200") and reply.split(b"\r\n\r\n")[1].count(b"m=audio") == 2
        udp.sendto(in_dialog("ACK", "r1", me, tag, 2), ("127.0.0.1", adapter.port))
        bye = in_dialog(
            "BYE", "r1", me, tag, 3, gone, "application/rs-metadata+xml", metadata + "Reason: Q.850;cause=16\r\n"
        )
        assert (await exchange(udp, bye, adapter.port))[-1].startswith(b"SIP/2.0 200")
    finally:
        await adapter.stop()
        await adapter.close()
    joined = [(e.party, e.name) for e in capture.events if isinstance(e, PartyJoined)]
    assert joined[-1] == ("kQNhKFdEEeeJ+ND/VsPGWA==", "Front Desk")
    (left,) = [e for e in capture.events if isinstance(e, PartyLeft)]
    assert left.party == "kQNhKFdEEeeJ+ND/VsPGWA==" and "BYE" in (left.reason or "")
    kinds = [e.purpose for e in capture.events if isinstance(e, AttachmentAdded)]
    assert kinds.count("rs-metadata") == 3 and kinds.count("sip-body-part") == 1  # the ISUP part (application/gtd)
    (session,) = [json.loads(e.body) for e in capture.events if isinstance(e, AttachmentAdded)
                  and e.purpose == "siprec-session"]  # fmt: skip
    assert session["dialect"] == "rfc7865" and "notes" not in session
