"""The sans-IO UAS: bytes and time in, bytes and events out (no sockets)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from adapters.sip.core import SipCore
from adapters.sip.dialogs import (
    AckTimeout,
    Cancelled,
    Confirmed,
    Dialog,
    InviteRefused,
    MediaTimeout,
    NewInvite,
    RemoteBye,
    Reoffer,
)
from adapters.sip.message import parse_message
from capture.errors import RemoteProtocolError

PEER = ("127.0.0.1", 5080)


def request(method: str, *, branch: str = "z9hG4bK1", cseq: int = 1, to_tag: str = "", extra: str = "",
            body: bytes = b"", cseq_method: str | None = None) -> bytes:  # fmt: skip
    head = (
        f"{method} sip:rec@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5080;branch={branch}\r\n"
        f"From: <sip:alice@127.0.0.1>;tag=a1\r\nTo: <sip:rec@127.0.0.1>{';tag=' + to_tag if to_tag else ''}\r\n"
        f"Call-ID: c1\r\nCSeq: {cseq} {cseq_method or method}\r\nContact: <sip:alice@127.0.0.1:5080>\r\n{extra}"
        f"Content-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


def statuses(sends) -> list[int]:  # type: ignore[no-untyped-def]
    return [parse_message(s.data).status for s in sends]


def invite(core: SipCore, now: float = 0.0, **kw):  # type: ignore[no-untyped-def]
    sends, events = core.receive(request("INVITE", **kw), "udp", PEER, "udp", now)
    assert statuses(sends) == [100]
    assert len(events) == 1 and isinstance(events[0], NewInvite)
    return events[0].dialog


def test_invite_answer_retransmit_until_ack_then_bye() -> None:
    core = SipCore("127.0.0.1", 5060)
    dialog = invite(core)
    ok = core.respond(dialog, 200, now=0.0, body=b"v=0\r\n")
    assert statuses(ok) == [200]
    resp = parse_message(ok[0].data)
    assert resp.get("Contact") and "tag=" in (resp.get("To") or "")
    sends, _ = core.handle_timer(0.6)
    assert statuses(sends) == [200]  # 2xx retransmitted at T1
    again, _ = core.receive(request("INVITE"), "udp", PEER, "udp", 0.7)
    assert statuses(again) == [200]  # a retransmitted INVITE gets the 2xx again
    _, events = core.receive(request("ACK", to_tag=dialog.local_tag), "udp", PEER, "udp", 0.8)
    assert [type(e) for e in events] == [Confirmed]
    assert core.handle_timer(5.0) == ([], [])
    sends, events = core.receive(request("BYE", branch="z9hG4bK2", cseq=2, to_tag=dialog.local_tag), "udp", PEER,
                                 "udp", 6.0)  # fmt: skip
    assert statuses(sends) == [200] and [type(e) for e in events] == [RemoteBye]
    sends, _ = core.receive(request("BYE", branch="z9hG4bK3", cseq=3, to_tag="nope"), "udp", PEER, "udp", 6.1)
    assert statuses(sends) == [481]


def test_cancel_before_answer_gives_487_and_after_answer_changes_nothing() -> None:
    core = SipCore("127.0.0.1", 5060)
    dialog = invite(core)
    core.respond(dialog, 180, now=0.0)
    sends, events = core.receive(request("CANCEL"), "udp", PEER, "udp", 0.1)
    assert sorted(statuses(sends)) == [200, 487] and [type(e) for e in events] == [Cancelled]
    assert dialog.state == "terminated"
    core2 = SipCore("127.0.0.1", 5060)
    d2 = invite(core2)
    core2.respond(d2, 200, now=0.0, body=b"v=0\r\n")
    sends, events = core2.receive(request("CANCEL"), "udp", PEER, "udp", 0.1)
    assert statuses(sends) == [200] and events == [] and d2.state == "confirmed"
    sends, _ = core2.receive(request("CANCEL", branch="z9hG4bKx"), "udp", PEER, "udp", 0.2)
    assert statuses(sends) == [481]


def test_reinvite_is_a_reoffer_and_our_bye_is_retransmitted_until_answered() -> None:
    core = SipCore("127.0.0.1", 5060)
    dialog = invite(core)
    core.respond(dialog, 200, now=0.0, body=b"v=0\r\n")
    core.receive(request("ACK", to_tag=dialog.local_tag), "udp", PEER, "udp", 0.1)
    _, events = core.receive(request("INVITE", branch="z9hG4bK9", cseq=2, to_tag=dialog.local_tag), "udp", PEER,
                             "udp", 1.0)  # fmt: skip
    assert [type(e) for e in events] == [Reoffer]
    bye = core.hangup(dialog, now=2.0, reason="SIP;cause=408")
    msg = parse_message(bye[0].data)
    assert msg.method == "BYE" and msg.get("Reason") == "SIP;cause=408" and bye[0].addr == ("127.0.0.1", 5080)
    assert "tag=a1" in (msg.get("To") or "") and dialog.local_tag in (msg.get("From") or "")
    assert [parse_message(s.data).method for s in core.handle_timer(2.6)[0]] == ["BYE"]
    ok = f"SIP/2.0 200 OK\r\n{msg.to_bytes().decode().split(chr(13) + chr(10), 1)[1]}".replace("BYE sip", "x")
    core.receive(ok.encode(), "udp", PEER, "udp", 2.7)
    assert core.handle_timer(10.0)[0] == []


def test_unacked_2xx_times_out_with_bye() -> None:
    core = SipCore("127.0.0.1", 5060)
    dialog = invite(core)
    core.respond(dialog, 200, now=0.0, body=b"v=0\r\n")
    sends, events = core.handle_timer(33.0)
    assert [parse_message(s.data).method for s in sends] == ["BYE"] and [type(e) for e in events] == [AckTimeout]


@pytest.mark.parametrize(
    ("data", "status", "header"),
    [
        (request("OPTIONS"), 200, "Allow"),
        (request("INVITE", extra="Require: 100rel, siprec\r\n"), 420, "Unsupported"),
        (request("REFER"), 405, "Allow"),
        (request("FOOBAR"), 501, "Allow"),
        (request("INFO"), 481, None),
        (request("INVITE").replace(b";tag=a1", b""), 400, "Warning"),
    ],
)
def test_out_of_dialog_requests(data: bytes, status: int, header: str | None) -> None:
    sends, events = SipCore("127.0.0.1", 5060).receive(data, "udp", PEER, "udp", 0.0)
    resp = parse_message(sends[-1].data)
    assert resp.status == status and events == []
    if header:
        assert resp.get(header)
    if status == 420:
        assert resp.get("Unsupported") == "100rel"


def test_siprec_require_is_supported() -> None:
    invite(SipCore("127.0.0.1", 5060), extra="Require: siprec\r\n")


def test_garbage_raises_remote_protocol_error() -> None:
    with pytest.raises(RemoteProtocolError):
        SipCore("127.0.0.1", 5060).receive(b"\x00\x01garbage", "udp", PEER, "udp", 0.0)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from([request("INVITE"), request("ACK", to_tag="x"), request("BYE", to_tag="x"),
                                 request("CANCEL"), request("OPTIONS"), request("INVITE", extra="Require: a\r\n")]),
                max_size=4),
       st.binary(max_size=200), st.integers(0, 400))  # fmt: skip
def test_core_fed_mutated_messages_raises_only_remote_protocol_error(
    prefix: list[bytes], noise: bytes, cut: int
) -> None:
    core = SipCore("127.0.0.1", 5060)
    for i, data in enumerate(prefix + [request("INVITE")[:cut] + noise]):
        try:
            core.receive(data, "udp", PEER, "udp", float(i))
        except RemoteProtocolError:
            pass
        core.handle_timer(float(i) + 0.5)


def test_update_with_offer_is_a_reoffer_and_unknown_in_dialog_methods_are_refused() -> None:
    core = SipCore("127.0.0.1", 5060)
    dialog = invite(core)
    core.respond(dialog, 200, now=0.0, body=b"v=0\r\n")
    core.receive(request("ACK", to_tag=dialog.local_tag), "udp", PEER, "udp", 0.1)
    _, events = core.receive(
        request("UPDATE", branch="z9hG4bKu", cseq=2, to_tag=dialog.local_tag, body=b"v=0\r\n"), "udp", PEER, "udp", 1.0
    )
    assert [type(e) for e in events] == [Reoffer]
    assert statuses(core.respond(dialog, 200, now=1.0, body=b"v=0\r\n")) == [200]
    sends, _ = core.receive(request("REFER", branch="z9hG4bKr", cseq=3, to_tag=dialog.local_tag), "udp", PEER, "udp", 2)
    assert statuses(sends) == [405]


def test_draining_refuses_options_and_invites_with_503_and_retry_after() -> None:
    core = SipCore("127.0.0.1", 5060, retry_after_s=7)
    core.accepting = False
    sends, events = core.receive(request("OPTIONS"), "udp", PEER, "udp", 0.0)
    (resp,) = [parse_message(s.data) for s in sends]
    assert (resp.status, resp.get("Retry-After"), events) == (503, "7", [])
    sends, events = core.receive(request("INVITE", branch="z9hG4bKi"), "udp", PEER, "udp", 0.1)
    assert statuses(sends) == [100, 503] and parse_message(sends[-1].data).get("Retry-After") == "7"
    (refused,) = events
    assert isinstance(refused, InviteRefused) and (refused.status, refused.reason) == (503, "shutdown")
    assert refused.dialog.state == "terminated" and core.active_calls == 0


def test_capacity_counts_dialogs_in_progress() -> None:
    core = SipCore("127.0.0.1", 5060, max_calls=2)
    first = invite(core, branch="z9hG4bKa")
    second = core.receive(request("INVITE", branch="z9hG4bKb").replace(b"c1", b"c2"), "udp", PEER, "udp", 0.0)
    assert isinstance(second[1][0], NewInvite) and core.active_calls == 2
    sends, events = core.receive(request("INVITE", branch="z9hG4bKc").replace(b"c1", b"c3"), "udp", PEER, "udp", 0)
    assert statuses(sends) == [100, 503] and isinstance(events[0], InviteRefused)
    assert events[0].reason == "over capacity"
    core.respond(first, 486, now=0.0)  # the first call ends: room for another
    core.forget(first)
    _, events = core.receive(request("INVITE", branch="z9hG4bKd").replace(b"c1", b"c4"), "udp", PEER, "udp", 0)
    assert isinstance(events[0], NewInvite) and core.active_calls == 2


def answered(core: SipCore, now: float = 0.0) -> Dialog:
    dialog = invite(core, now)
    core.respond(dialog, 200, now=now, body=b"v=0\r\n")
    core.receive(request("ACK", to_tag=dialog.local_tag), "udp", PEER, "udp", now + 0.01)
    return dialog


def test_media_timeout_ends_an_answered_call_without_media_with_a_bye() -> None:
    core = SipCore("127.0.0.1", 5060, media_timeout_s=10.0)
    dialog = answered(core)
    for t in (1.0, 5.0, 9.0):
        core.media_received(dialog, t)
    assert core.next_deadline() == 10.0, "media reports never bring the deadline earlier"
    assert core.handle_timer(10.0) == ([], [])
    assert core.next_deadline() == 19.0
    sends, events = core.handle_timer(19.0)
    bye = parse_message(sends[0].data)
    assert bye.method == "BYE" and bye.get("Reason") == 'SIP;cause=408;text="media timeout"'
    assert [type(e) for e in events] == [MediaTimeout] and dialog.state == "terminated"


def test_hold_suspends_the_media_timeout_and_resume_restarts_it() -> None:
    core = SipCore("127.0.0.1", 5060, media_timeout_s=10.0)
    dialog = answered(core)
    core.media_held(dialog, True, 2.0)
    assert core.handle_timer(10.0) == ([], [])
    assert core.next_deadline() == 64 * 0.5 + 1.0, "on hold there is no media deadline, only transactions to forget"
    assert core.handle_timer(40.0) == ([], []) and core.next_deadline() is None
    core.media_held(dialog, False, 60.0)  # a long hold: the timeout runs from the resume, not the last packet
    assert core.next_deadline() == 70.0 and core.handle_timer(65.0) == ([], [])
    assert [type(e) for e in core.handle_timer(70.0)[1]] == [MediaTimeout]


def test_without_media_timeout_and_traffic_there_is_no_deadline() -> None:
    core = SipCore("127.0.0.1", 5060)
    assert core.next_deadline() is None
    answered(core)
    assert core.next_deadline() == pytest.approx(64 * 0.5 + 1.0), "only the old transactions to forget"
    core.handle_timer(40.0)
    assert core.next_deadline() is None


def test_tags_and_branches_come_from_the_injected_token() -> None:
    tokens = iter(["aaaaaa", "bbbbbbbb"])
    core = SipCore("127.0.0.1", 5060, token=lambda n: next(tokens))
    dialog = answered(core)
    assert dialog.local_tag == "aaaaaa"
    bye = parse_message(core.hangup(dialog, now=1.0)[0].data)
    assert "branch=z9hG4bKbbbbbbbb" in (bye.get("Via") or "")
