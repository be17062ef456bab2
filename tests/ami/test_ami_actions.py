"""ActionID correlation, including EventList replies, on real Asterisk replies (panoramisk fixtures)."""

from __future__ import annotations

from amireplay import transcript

from adapters.ami.actions import Correlator, Reply
from adapters.ami.protocol import AmiParser, Message


def replayed(name: str, action_id: str) -> list[Message]:
    """A recorded reply with its ActionID rewritten to the one our correlator minted."""
    data = b"".join(transcript(name)).replace(b"action/transaction_uid/1/1", action_id.encode())
    return [m for m in AmiParser(expect_banner=False).feed(data) if isinstance(m, Message)]


def event(name: str, **fields: str) -> Message:
    return Message([("Event", name), *fields.items()])


def test_eventlist_reply_collects_its_events_and_lets_live_events_through() -> None:
    c = Correlator()
    aid, data = c.action("PJSIPShowEndpoint", {"Endpoint": "XXXXX"})
    assert data.startswith(b"Action: PJSIPShowEndpoint\r\nEndpoint: XXXXX\r\nActionID: " + aid.encode())
    reply_msgs = replayed("panoramisk_pjsip_show_endpoint.ami", aid)
    live = event("Newchannel", Uniqueid="1.1")
    results = []
    for i, msg in enumerate(reply_msgs):
        results.append(c.handle(msg))
        if i == 1:
            results.append(c.handle(live))  # a live event arriving in the middle of the list
    done = [r for r in results if isinstance(r, Reply)]
    assert len(done) == 1 and results[-1] is done[0]
    reply = done[0]
    assert reply.ok and reply.response["EventList"] == "start"
    assert [e.event for e in reply.events] == [m.event for m in reply_msgs[1:]]
    assert reply.events[-1].event == "EndpointDetailComplete"
    assert live in results
    assert c.pending == 0


def test_legacy_will_follow_list() -> None:
    c = Correlator()
    aid, _ = c.action("QueueStatus")
    results = [c.handle(m) for m in replayed("panoramisk_queue_status.ami", aid)]
    reply = results[-1]
    assert isinstance(reply, Reply)
    assert results[:-1] == [None] * (len(results) - 1)
    assert reply.events[0].event == "QueueParams" and reply.events[-1].event == "QueueStatusComplete"


def test_replies_go_by_action_id_not_arrival_order() -> None:
    c = Correlator()
    ids = [c.action("Ping")[0] for _ in range(50)]
    got = {}
    for aid in reversed(ids):
        r = c.handle(Message([("Response", "Success"), ("ActionID", aid), ("Ping", "Pong")]))
        assert isinstance(r, Reply)
        got[r.action_id] = r
    assert set(got) == set(ids) and c.pending == 0


def test_unknown_or_forgotten_action_ids_are_plain_messages() -> None:
    c = Correlator()
    aid, _ = c.action("Ping")
    c.forget(aid)
    late = Message([("Response", "Success"), ("ActionID", aid)])
    assert c.handle(late) is late
    stray = Message([("Response", "Error"), ("ActionID", "someone-else"), ("Message", "x")])
    assert c.handle(stray) is stray


def test_error_reply() -> None:
    c = Correlator()
    aid, _ = c.action("Login", {"Username": "u", "Secret": "bad"})
    r = c.handle(Message([("Response", "Error"), ("ActionID", aid), ("Message", "Authentication failed")]))
    assert isinstance(r, Reply) and not r.ok and r.message == "Authentication failed"
