"""The sans-IO call tracker, fed the real transcripts (and, for what they lack, labelled synthetic events).

The expected lists are the exact outputs, in order: every capture event and command the
tracker produced for the transcript, with call ids shortened (SystemName prefix dropped).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from amireplay import TRANSCRIPTS, transcript
from hypothesis import given, settings
from hypothesis import strategies as st

from adapters.ami.commands import FinishCall, StartMixMonitor
from adapters.ami.protocol import AmiParser, Message
from adapters.ami.tracker import CallTracker
from capture import events as ev

T0 = datetime(2026, 1, 1, tzinfo=UTC)
STEP = timedelta(milliseconds=100)


def sig(o, prefix: str) -> tuple:
    def s(x):
        return x and x.replace(prefix, "")

    match o:
        case ev.CallStarted():
            return ("start", s(o.call_id))
        case ev.PartyJoined():
            return ("party", s(o.call_id), o.party, o.tel, o.name)
        case ev.CallAnswered():
            return ("answered", s(o.call_id))
        case ev.Transferred():
            return ("transfer", s(o.call_id), o.transferee, o.transferor, o.target, o.attended)
        case StartMixMonitor():
            return ("mixmonitor", s(o.call_id), o.channel, s(o.file))
        case ev.CdrFields():
            f = o.fields
            return (
                "cdr",
                s(o.call_id),
                f["disposition"],
                f["hangup_cause"],
                f["billsec"],
                len(f.get("asterisk_cdr", [])),
            )
        case FinishCall():
            e = o.ended
            recs = tuple((r.stream_id, s(r.file), r.channels) for r in o.recordings)
            return ("finish", s(o.call_id), e.disposition and str(e.disposition), e.cause, e.ended_by, recs)
    raise AssertionError(f"unexpected output {o!r}")


def run(name: str, mixmonitor: str = "adapter", **kw) -> tuple[CallTracker, list]:
    tracker = CallTracker(mixmonitor=mixmonitor, cdr_wait_s=1, **kw)
    now = T0
    out: list = []
    for msg in AmiParser(expect_banner=False).feed(b"".join(transcript(name))):
        now += STEP
        out += tracker.handle(msg, now)
    out += tracker.tick(now + timedelta(seconds=5))
    return tracker, out


def sigs(out: list) -> list[tuple]:
    prefix = out[0].call_id.split("-")[0] + "-"
    return [sig(o, prefix) for o in out]


EXPECTED_AB_SUCCESS_A_HANGUP = [
    ("start", "1529936170.42"),
    ("party", "1529936170.42", "SIP/150010001", "150010001", "Local Alice"),
    ("party", "1529936170.42", "SIP/150010001", "150010001", "Andrew Garza"),
    ("party", "1529936170.42", "SIP/150010001", "201", "Andrew Garza"),
    ("party", "1529936170.42", "SIP/150010002", "202", None),
    ("answered", "1529936170.42"),
    ("mixmonitor", "1529936170.42", "SIP/150010001-00000004", "vcon-1529936170.42.wav"),
    ("cdr", "1529936170.42", "ANSWERED", "Normal Clearing", 2, 0),
    (
        "finish",
        "1529936170.42",
        None,
        "Normal Clearing",
        "SIP/150010001",
        (("mixmonitor-1", "vcon-1529936170.42.wav", (("SIP/150010001",), ("SIP/150010002",))),),
    ),
]
EXPECTED_AB_REJECT = [
    ("start", "1529936241.98"),
    ("party", "1529936241.98", "SIP/150010001", "150010001", "Local Alice"),
    ("party", "1529936241.98", "SIP/150010001", "150010001", "Andrew Garza"),
    ("party", "1529936241.98", "SIP/150010001", "201", "Andrew Garza"),
    ("party", "1529936241.98", "SIP/150010002", "202", None),
    ("cdr", "1529936241.98", "BUSY", "User busy", 0, 0),
    ("finish", "1529936241.98", "busy", "User busy", None, ()),
]
EXPECTED_AB_A_CANCEL = [
    ("start", "1529936141.21"),
    ("party", "1529936141.21", "SIP/150010001", "150010001", "Local Alice"),
    ("party", "1529936141.21", "SIP/150010001", "150010001", "Andrew Garza"),
    ("party", "1529936141.21", "SIP/150010001", "201", "Andrew Garza"),
    ("party", "1529936141.21", "SIP/150010002", "202", None),
    ("cdr", "1529936141.21", "NO ANSWER", "Normal Clearing", 0, 0),
    ("finish", "1529936141.21", "no-answer", "Normal Clearing", None, ()),
]
EXPECTED_XFER_BLIND_ABBCAC = [
    ("start", "1529998959.65"),
    ("party", "1529998959.65", "SIP/150010001", "150010001", "Local Alice"),
    ("party", "1529998959.65", "SIP/150010001", "150010001", "Andrew Garza"),
    ("party", "1529998959.65", "SIP/150010001", "201", "Andrew Garza"),
    ("party", "1529998959.65", "SIP/150010002", "202", None),
    ("answered", "1529998959.65"),
    ("mixmonitor", "1529998959.65", "SIP/150010001-00000003", "vcon-1529998959.65.wav"),
    ("party", "1529998959.65", "SIP/150010003", "203", None),
    ("transfer", "1529998959.65", "SIP/150010001", "SIP/150010002", "SIP/150010003", False),
    ("cdr", "1529998959.65", "ANSWERED", "Normal Clearing", 6, 0),
    (
        "finish",
        "1529998959.65",
        None,
        "Normal Clearing",
        "SIP/150010001",
        (("mixmonitor-1", "vcon-1529998959.65.wav", (("SIP/150010001",), ("SIP/150010002", "SIP/150010003"))),),
    ),
]
EXPECTED_XFER_ABBCAC = [
    ("start", "1529941338.663"),
    ("party", "1529941338.663", "SIP/150010001", "150010001", "Local Alice"),
    ("party", "1529941338.663", "SIP/150010001", "150010001", "Andrew Garza"),
    ("party", "1529941338.663", "SIP/150010001", "201", "Andrew Garza"),
    ("party", "1529941338.663", "SIP/150010002", "202", None),
    ("answered", "1529941338.663"),
    ("mixmonitor", "1529941338.663", "SIP/150010001-0000002c", "vcon-1529941338.663.wav"),
    ("start", "1529941342.690"),
    ("party", "1529941342.690", "SIP/150010002", "150010002", "Bob"),
    ("party", "1529941342.690", "SIP/150010002", "150010002", "Christina Arroyo"),
    ("party", "1529941342.690", "SIP/150010002", "202", "Christina Arroyo"),
    ("party", "1529941342.690", "SIP/150010003", "203", None),
    ("answered", "1529941342.690"),
    ("mixmonitor", "1529941342.690", "SIP/150010002-0000002e", "vcon-1529941342.690.wav"),
    ("party", "1529941338.663", "SIP/150010003", "203", None),
    ("transfer", "1529941338.663", "SIP/150010001", "SIP/150010002", "SIP/150010003", True),
    ("party", "1529941338.663", "SIP/150010002", "202", "Christina Arroyo"),
    ("cdr", "1529941338.663", "ANSWERED", "Normal Clearing", 7, 0),
    (
        "finish",
        "1529941338.663",
        None,
        "Normal Clearing",
        "SIP/150010003",
        (("mixmonitor-1", "vcon-1529941338.663.wav", (("SIP/150010001",), ("SIP/150010002", "SIP/150010003"))),),
    ),
    ("cdr", "1529941342.690", "ANSWERED", "Normal Clearing", 2, 0),
    (
        "finish",
        "1529941342.690",
        None,
        "Normal Clearing",
        "SIP/150010002",
        (("mixmonitor-1", "vcon-1529941342.690.wav", (("SIP/150010002",), ("SIP/150010003",))),),
    ),
]
EXPECTED_PJSIP_REAL_EVENTS = [
    ("start", "1722255899.0"),
    ("party", "1722255899.0", "PJSIP/000", "000", None),
    ("answered", "1722255899.0"),
    ("start", "1722860694.14"),
    ("start", "1725887897.130"),
    ("answered", "1725887897.130"),
    ("cdr", "1722255899.0", "ANSWERED", "Normal Clearing", 0, 1),
    ("finish", "1722255899.0", None, "Normal Clearing", None, (("mixmonitor-1", None, (("PJSIP/000",),)),)),
]


@pytest.mark.parametrize(
    ("name", "mixmonitor", "expected"),
    [
        ("cacofonisk_ab_success_a_hangup.ami", "adapter", EXPECTED_AB_SUCCESS_A_HANGUP),
        ("cacofonisk_ab_reject.ami", "adapter", EXPECTED_AB_REJECT),
        ("cacofonisk_ab_a_cancel.ami", "adapter", EXPECTED_AB_A_CANCEL),
        ("cacofonisk_xfer_blind_abbcac.ami", "adapter", EXPECTED_XFER_BLIND_ABBCAC),
        ("cacofonisk_xfer_abbcac.ami", "adapter", EXPECTED_XFER_ABBCAC),
        ("jasterng_pjsip_real_events.ami", "dialplan", EXPECTED_PJSIP_REAL_EVENTS),
    ],
)
def test_transcript_gives_exactly_these_events(name: str, mixmonitor: str, expected: list) -> None:
    _, out = run(name, mixmonitor)
    assert sigs(out) == expected


def test_dialplan_mode_starts_no_mixmonitor_and_reports_missing_recording() -> None:
    _, out = run("cacofonisk_ab_success_a_hangup.ami", "dialplan")
    assert not [o for o in out if isinstance(o, StartMixMonitor)]
    (finish,) = [o for o in out if isinstance(o, FinishCall)]
    (spec,) = finish.recordings
    assert spec.failure == "no MixMonitor ran on this call"


def test_cdr_event_fields_all_kept_and_call_waits_for_them() -> None:
    tracker, out = run("jasterng_pjsip_real_events.ami", "dialplan")
    (cdr,) = [o for o in out if isinstance(o, ev.CdrFields)]
    (record,) = cdr.fields["asterisk_cdr"]
    assert record["Disposition"] == "ANSWERED" and record["UniqueID"] == "asterisk-1722255899.0"
    assert record["CallerID"] == '"" <000>' and record["BillableSeconds"] == "3"
    assert set(record) >= {"AccountCode", "Source", "Destination", "StartTime", "AnswerTime", "EndTime", "UserField"}
    assert "SequenceNumber" not in record and "Event" not in record
    assert {"start", "answer", "end", "billsec", "disposition", "hangup_cause"} <= set(cdr.fields)
    # the two fragments of other calls never hang up: still tracked, not finished
    assert sorted(tracker.active_calls) == ["asterisk-1722860694.14", "asterisk-1725887897.130"]


def test_call_is_held_for_cdr_until_the_wait_is_over() -> None:
    tracker = CallTracker(cdr_wait_s=2)
    msgs = AmiParser(expect_banner=False).feed(b"".join(transcript("cacofonisk_ab_reject.ami")))
    now = T0
    for m in msgs:
        now += STEP
        tracker.handle(m, now)
    assert tracker.next_deadline() == now + timedelta(seconds=2)
    assert tracker.tick(now + timedelta(seconds=1)) == []
    late_cdr = Message([("Event", "Cdr"), ("UniqueID", "195176c06ab8-1529936241.98"), ("Disposition", "BUSY")])
    tracker.handle(late_cdr, now + timedelta(seconds=1))
    out = tracker.tick(now + timedelta(seconds=2))
    (cdr,) = [o for o in out if isinstance(o, ev.CdrFields)]
    assert cdr.fields["asterisk_cdr"] == [{"UniqueID": "195176c06ab8-1529936241.98", "Disposition": "BUSY"}]
    assert tracker.active_calls == []


# Synthetic events below (no transcript has them): field sets as documented for Asterisk 20's
# Hold/Unhold, DTMFEnd, VarSet, Cdr with a cdr_manager LinkedID mapping, and CoreShowChannel.


def chan_event(name: str, uid: str, channel: str, **extra: str) -> Message:
    fields = [("Event", name), ("Channel", channel), ("ChannelStateDesc", extra.pop("state", "Up"))]
    fields += [("CallerIDNum", extra.pop("num", "<unknown>")), ("CallerIDName", extra.pop("cid_name", "<unknown>"))]
    fields += [("Uniqueid", uid), ("Linkedid", extra.pop("linkedid", "L.1")), *extra.items()]
    return Message(fields)


def test_hold_dtmf_mixmonitor_filename_and_mapped_cdr() -> None:
    t = CallTracker(mixmonitor="dialplan", cdr_wait_s=0)
    a, b = ("L.1", "PJSIP/alice-00000001"), ("L.2", "PJSIP/bob-00000002")
    out: list = []
    at = T0
    steps = [
        chan_event("Newchannel", *a, state="Ring", num="+4930123456", cid_name="Alice"),
        chan_event("DialBegin", *a, state="Ring", DestUniqueid="L.2"),
        chan_event("Newchannel", *b, state="Down", num="200", cid_name="Bob"),
        chan_event("DialEnd", *a, state="Ring", DestUniqueid="L.2", DialStatus="ANSWER"),
        chan_event("BridgeEnter", *a, BridgeUniqueid="br"),
        chan_event("BridgeEnter", *b, BridgeUniqueid="br"),
        chan_event("VarSet", *a, Variable="MIXMONITOR_FILENAME", Value="/var/spool/asterisk/monitor/x.wav"),
        chan_event("MixMonitorStart", *a),
        chan_event("Hold", *b),
        chan_event("Unhold", *b),
        chan_event("DTMFEnd", *a, Digit="5", DurationMs="120", Direction="Received"),
        chan_event("DTMFEnd", *b, Digit="5", DurationMs="120", Direction="Sent"),
        chan_event("BridgeLeave", *b, BridgeUniqueid="br"),
        chan_event("BridgeLeave", *a, BridgeUniqueid="br"),
        chan_event("Hangup", *b, Cause="16", **{"Cause-txt": "Normal Clearing"}),
        chan_event("Hangup", *a, Cause="16", **{"Cause-txt": "Normal Clearing"}),
        Message([("Event", "Cdr"), ("UniqueID", "nope"), ("LinkedID", "L.1"), ("Disposition", "ANSWERED")]),
    ]
    for m in steps:
        at += STEP
        out += t.handle(m, at)
    out += t.tick(at)
    kinds = [o.kind if isinstance(o, ev.CaptureEvent) else type(o).__name__ for o in out]
    assert kinds == [
        "call_started",
        "party_joined",
        "party_joined",
        "call_answered",
        "hold",
        "hold",
        "dtmf",
        "cdr",
        "FinishCall",
    ]
    assert (out[1].party, out[1].tel, out[1].name) == ("PJSIP/alice", "+4930123456", "Alice")
    holds = [o for o in out if isinstance(o, ev.HoldChanged)]
    assert [(h.party, h.held) for h in holds] == [("PJSIP/bob", True), ("PJSIP/bob", False)]
    (dtmf,) = [o for o in out if isinstance(o, ev.DtmfReceived)]
    assert (dtmf.party, dtmf.digit, dtmf.duration_s) == ("PJSIP/alice", "5", 0.12)
    assert dtmf.at == T0 + 11 * STEP - timedelta(milliseconds=120)
    finish = out[-1]
    (spec,) = finish.recordings
    assert spec.file == "/var/spool/asterisk/monitor/x.wav"
    assert spec.channels == (("PJSIP/alice",), ("PJSIP/bob",))
    assert finish.ended.ended_by == "PJSIP/bob"
    assert out[-2].fields["asterisk_cdr"][0]["Disposition"] == "ANSWERED"


def test_mixmonitor_mute_is_a_pause_by_the_pbx_and_an_api_pause_mutes_the_recorded_channel() -> None:
    """Synthetic events shaped as Asterisk 22 sends them (the lab traffic has no mute): a
    MixMonitorMute from the dialplan pauses the recording (by the PBX) and its unmute resumes it;
    a pause through the recorder's API names the channel to mute, and the PBX's echo of that mute
    is not a second pause."""
    t = CallTracker(mixmonitor="dialplan", cdr_wait_s=0)
    a, b = ("L.1", "PJSIP/alice-00000001"), ("L.2", "PJSIP/bob-00000002")
    out: list = []
    at = T0

    def feed(*messages: Message) -> None:
        nonlocal at
        for m in messages:
            at += STEP
            out.extend(t.handle(m, at))

    feed(
        chan_event("Newchannel", *a, state="Ring", num="+4930123456", cid_name="Alice"),
        chan_event("DialBegin", *a, state="Ring", DestUniqueid="L.2"),
        chan_event("Newchannel", *b, state="Down", num="200", cid_name="Bob"),
        chan_event("DialEnd", *a, state="Ring", DestUniqueid="L.2", DialStatus="ANSWER"),
        chan_event("BridgeEnter", *a, BridgeUniqueid="br"),
        chan_event("BridgeEnter", *b, BridgeUniqueid="br"),
        chan_event("MixMonitorStart", *a),
        chan_event("MixMonitorMute", *a, Direction="both", State="1"),
        chan_event("MixMonitorMute", *a, Direction="both", State="1"),  # said twice: one pause
        chan_event("MixMonitorMute", *a, Direction="both", State="0"),
    )
    paused = [o for o in out if isinstance(o, ev.RecordingPaused | ev.RecordingResumed)]
    assert [(o.kind, o.by, o.at) for o in paused] == [
        ("recording_paused", "pbx", T0 + 8 * STEP),
        ("recording_resumed", "pbx", T0 + 10 * STEP),
    ]
    assert paused[0].reason == "MixMonitorMute on PJSIP/alice-00000001"

    out.clear()
    assert t.pause(t.active_calls[0], True) == ["PJSIP/alice-00000001"]
    feed(chan_event("MixMonitorMute", *a, Direction="both", State="1"))  # the echo of our own action
    assert t.pause(t.active_calls[0], False) == ["PJSIP/alice-00000001"]
    feed(chan_event("MixMonitorMute", *a, Direction="both", State="0"))
    assert not [o for o in out if isinstance(o, ev.RecordingPaused | ev.RecordingResumed)]
    assert t.pause("no-such-call", True) == []


def test_split_directions_asks_for_two_legs() -> None:
    _, out = run("cacofonisk_ab_success_a_hangup.ami", split_directions=True)
    (start,) = [o for o in out if isinstance(o, StartMixMonitor)]
    base = "vcon-195176c06ab8-1529936170.42"
    # no mixed file beside the two directions; i() marks the channel as recorded (found again after a restart)
    assert start.file == ""
    assert start.options == f"br({base}-rx.wav)t({base}-tx.wav)i(VCON_MIXMONITOR)"
    (finish,) = [o for o in out if isinstance(o, FinishCall)]
    assert [(r.file, r.channels) for r in finish.recordings] == [
        ("vcon-195176c06ab8-1529936170.42-rx.wav", (("SIP/150010001",),)),
        ("vcon-195176c06ab8-1529936170.42-tx.wav", (("SIP/150010002",),)),
    ]


def test_refused_mixmonitor_becomes_the_unavailability_reason() -> None:
    t = CallTracker(mixmonitor="adapter", cdr_wait_s=0)
    out: list = []
    now = T0
    for m in AmiParser(expect_banner=False).feed(b"".join(transcript("cacofonisk_ab_success_a_hangup.ami"))):
        now += STEP
        for o in t.handle(m, now):
            if isinstance(o, StartMixMonitor):
                t.mixmonitor_failed(o.call_id, o.stream_id, "No such channel")
            out.append(o)
    out += t.tick(now)
    assert out[-1].recordings[0].failure == "MixMonitor refused: No such channel"


def resync_listing(tracker_msgs: list[Message], upto: int) -> list[Message]:
    """What CoreShowChannels would list after the first ``upto`` events: live channels' last state."""
    live: dict[str, dict[str, str]] = {}
    for m in tracker_msgs[:upto]:
        uid = m.get("Uniqueid")
        if not uid or m.event in ("Cdr",):
            continue
        if m.event == "Hangup":
            live.pop(uid, None)
            continue
        d = live.setdefault(uid, {})
        for k in ("Channel", "Uniqueid", "Linkedid", "CallerIDNum", "CallerIDName", "ChannelStateDesc"):
            if m.get(k) is not None:
                d[k] = m[k]
    return [Message([("Event", "CoreShowChannel"), *d.items()]) for d in live.values()]


@pytest.mark.parametrize("gap", [0, 5, 25])
@pytest.mark.parametrize("cut", [10, 30, 45, 55])
def test_resync_after_a_gap_never_double_emits(cut: int, gap: int) -> None:
    """Events [cut, cut+gap) are lost while disconnected; the resync listing stands in for them."""
    msgs = [m for m in AmiParser(expect_banner=False).feed(b"".join(transcript("cacofonisk_xfer_blind_abbcac.ami")))]
    t = CallTracker(mixmonitor="adapter", cdr_wait_s=0)
    out: list = []
    now = T0
    for m in msgs[:cut]:
        now += STEP
        out += t.handle(m, now)
    now += STEP
    out += t.resync(resync_listing(msgs, cut + gap), now)
    for m in msgs[cut + gap :]:
        now += STEP
        out += t.handle(m, now)
    out += t.tick(now + timedelta(seconds=1))
    assert [type(o) for o in out].count(ev.CallStarted) == 1
    assert [type(o) for o in out].count(FinishCall) == 1
    assert [type(o) for o in out].count(ev.CallAnswered) <= 1
    assert [type(o) for o in out].count(StartMixMonitor) <= 2
    assert isinstance(out[-1], FinishCall) and t.active_calls == []
    joined = [(o.party, o.tel, o.name) for o in out if isinstance(o, ev.PartyJoined)]
    assert len(joined) == len(set(joined))


def test_resync_finds_calls_already_up_and_ends_those_gone() -> None:
    t = CallTracker(mixmonitor="adapter", cdr_wait_s=0)
    listing = [
        chan_event("CoreShowChannel", "L.1", "PJSIP/alice-00000001", num="100", BridgeId="br"),
        chan_event("CoreShowChannel", "L.2", "PJSIP/bob-00000002", num="200", BridgeId="br"),
    ]
    out = t.resync(listing, T0)
    kinds = [type(o).__name__ for o in out]
    # first seen in a listing: ask whether a MixMonitor already records them, and when Asterisk answered
    assert kinds == ["CallStarted", "PartyJoined", "InspectChannel", "PartyJoined", "InspectChannel"]
    out = t.inspected("L.1", "L.1", {"CDR(answer,u)": f"{(T0 - 9 * STEP).timestamp():.6f}"}, T0 + STEP)
    assert [type(o).__name__ for o in out] == ["CallAnswered", "StartMixMonitor"]
    assert out[0].at == T0 - 9 * STEP  # the PBX's answer time, not the listing's
    assert t.inspected("L.1", "L.2", {}, T0 + STEP) == []  # the call records already: no second MixMonitor
    assert t.resync(listing, T0 + STEP) == []  # known channels: nothing again
    out = t.resync([], T0 + 2 * STEP)  # both hung up while we were away
    out += t.tick(T0 + 2 * STEP)
    (finish,) = [o for o in out if isinstance(o, FinishCall)]
    assert finish.ended.cause == "hung up while AMI was disconnected" and finish.ended.disposition is None


def test_stop_ends_every_call_as_interrupted() -> None:
    t = CallTracker(cdr_wait_s=0)
    t.handle(chan_event("Newchannel", "L.1", "PJSIP/alice-00000001", state="Ring", num="100"), T0)
    out = t.stop(T0 + STEP)
    (finish,) = [o for o in out if isinstance(o, FinishCall)]
    assert finish.interrupted and finish.ended.cause == "capture stopped"
    assert finish.ended.disposition == ev.Disposition.NO_ANSWER
    assert t.active_calls == []


def test_answer_missed_during_the_gap_is_recovered_from_the_bridge_in_the_listing() -> None:
    msgs = AmiParser(expect_banner=False).feed(b"".join(transcript("cacofonisk_ab_success_a_hangup.ami")))
    answer = next(i for i, m in enumerate(msgs) if m.event == "DialEnd" and m.get("DialStatus") == "ANSWER")
    bridged = max(i for i, m in enumerate(msgs) if m.event == "BridgeEnter")
    t = CallTracker(cdr_wait_s=0)
    out: list = []
    for m in msgs[:answer]:
        out += t.handle(m, T0)
    listing = resync_listing(msgs, bridged + 1)
    for m in listing:
        if m.get("Channel", "").startswith("SIP/"):
            m.fields.append(("BridgeId", "e3ea0fbd"))
    out += t.resync([Message(m.fields) for m in listing], T0 + STEP)
    for m in msgs[bridged + 1 :]:
        out += t.handle(m, T0 + 2 * STEP)
    out += t.tick(T0 + 3 * STEP)
    assert [type(o) for o in out].count(ev.CallAnswered) == 1
    assert out[-1].ended.disposition is None


ALL_MESSAGES = [
    m
    for name in (
        "cacofonisk_ab_success_a_hangup.ami",
        "cacofonisk_ab_reject.ami",
        "cacofonisk_xfer_blind_abbcac.ami",
        "cacofonisk_xfer_abbcac.ami",
        "jasterng_pjsip_real_events.ami",
    )
    for m in AmiParser(expect_banner=False).feed(b"".join(transcript(name)))
] + [
    m
    for m in AmiParser().feed((TRANSCRIPTS / "asterisk22-lab" / "ami-events-final.ami").read_bytes())
    if isinstance(m, Message) and m.event != "RTCPSent"
]


@settings(max_examples=150, deadline=None)
@given(st.lists(st.integers(min_value=0, max_value=len(ALL_MESSAGES) - 1), max_size=120), st.booleans())
def test_any_order_or_loss_of_real_events_never_raises_and_every_call_ends_once(picks, adapter_mode) -> None:
    """Events reordered, dropped or repeated (a broken feed): every started call still ends exactly once."""
    t = CallTracker(mixmonitor="adapter" if adapter_mode else "dialplan", cdr_wait_s=1)
    out: list = []
    now = T0
    for i in picks:
        now += STEP
        out += t.handle(ALL_MESSAGES[i], now)
        if i % 7 == 0:
            out += t.tick(now)
    out += t.stop(now + STEP)
    started = [o.call_id for o in out if isinstance(o, ev.CallStarted)]
    finished = [o.call_id for o in out if isinstance(o, FinishCall)]
    assert sorted(started) == sorted(finished)
    assert t.active_calls == []
    for o in out:
        if isinstance(o, FinishCall):
            assert o.ended.call_id == o.call_id


# -- the Asterisk 22 lab traffic (issue 12), straight into the tracker ------------------------------

LAB = TRANSCRIPTS / "asterisk22-lab"


def lab_outputs(name: str, **kw) -> list:
    """Every output for a whole lab file, ``now`` = each event's Timestamp (RTCPSent dropped)."""
    tracker = CallTracker(mixmonitor="adapter", cdr_wait_s=1, recorder_endpoints=["PJSIP/vcon-recorder"], **kw)
    out: list = []
    now = T0
    for msg in AmiParser().feed((LAB / name).read_bytes()):
        if isinstance(msg, Message) and msg.event != "RTCPSent":
            now = datetime.fromtimestamp(float(msg.get("Timestamp") or now.timestamp()), UTC)
            out += tracker.handle(msg, now)
    return out + tracker.tick(now + timedelta(seconds=5))


def by_call(out: list) -> dict[str, list]:
    calls: dict[str, list] = {}
    for o in out:
        calls.setdefault(o.call_id, []).append(o)
    return calls


@pytest.fixture(scope="module")
def final_lab() -> dict[str, list]:
    return by_call(lab_outputs("ami-events-final.ami"))


def roles(outs: list) -> list[tuple]:
    return [(o.transferee, o.transferor, o.target, o.attended) for o in outs if isinstance(o, ev.Transferred)]


def recordings(outs: list) -> list[tuple]:
    (finish,) = [o for o in outs if isinstance(o, FinishCall)]
    return [r.channels for r in finish.recordings]


def test_lab_transfers_resolve_to_the_real_endpoints(final_lab) -> None:
    alice, bob, carol = "PJSIP/alice", "PJSIP/bob", "PJSIP/carol"
    assert roles(final_lab["1795929822.16"]) == [(alice, bob, carol, False)]  # AMI BlindTransfer
    assert roles(final_lab["1795929881.44"]) == [(bob, alice, carol, False)]  # the caller's blind transfer
    assert roles(final_lab["1795929899.49"]) == [(alice, bob, carol, True)]  # Atxfer, target behind Local;1
    earlier = by_call(lab_outputs("ami-events.ami"))
    assert roles(earlier["1795929497.116"]) == [(alice, bob, carol, True)]  # TransferTarget = the Local;1
    assert "1795929350.96" not in earlier  # the SIP fork's leg to the recorder


def test_lab_recordings_list_the_voices_they_hold(final_lab) -> None:
    alice, bob, carol = "PJSIP/alice", "PJSIP/bob", "PJSIP/carol"
    assert recordings(final_lab["1795929822.16"]) == [((alice,), (bob, carol))]
    assert recordings(final_lab["1795929881.44"]) == [((alice,), (bob,)), ((carol,), (bob,))]
    assert recordings(final_lab["1795929899.49"]) == [((alice,), (bob, carol))]
    local = ("exten:3000@lab-local",), ("Local/3000@lab-local-caller",)
    assert recordings(final_lab["1795929844.21"]) == [local]
    assert recordings(final_lab["1795929937.63"]) == [(("PJSIP/bob",), ("Local/2000@lab",))]


def test_lab_hold_and_dtmf(final_lab) -> None:
    def holds(outs):
        return [(o.party, o.held) for o in outs if isinstance(o, ev.HoldChanged)]

    assert holds(final_lab["1795929822.16"]) == []  # the Unhold a BlindTransfer brings, with no Hold
    assert holds(final_lab["1795929923.60"]) == [("PJSIP/alice", True), ("PJSIP/alice", False)]
    assert holds(final_lab["1795929899.49"]) == [("PJSIP/bob", True), ("PJSIP/bob", False)]  # ended by hangup
    dtmf = [(o.digit, o.duration_s) for o in final_lab["1795929923.60"] if isinstance(o, ev.DtmfReceived)]
    assert dtmf == [("5", 0.25), ("#", 0.25)]
    assert not [o for o in final_lab["1795929899.49"] if isinstance(o, ev.DtmfReceived)]  # Atxfer's queued *2...


def test_lab_local_calls_have_both_ends(final_lab) -> None:
    def people(outs):
        return {o.party: (o.tel, o.name) for o in outs if isinstance(o, ev.PartyJoined)}

    assert people(final_lab["1795929844.21"]) == {
        "Local/3000@lab-local-caller": ("1001", "Alice Local"),
        "exten:3000@lab-local": ("3000", None),
    }
    assert people(final_lab["1795929937.63"])["Local/2000@lab"] == ("1001", "Alice Local")  # not bob's 2000
    (busy,) = [o for o in final_lab["1795929858.28"] if isinstance(o, FinishCall)]
    assert (busy.ended.disposition, busy.ended.cause) == (ev.Disposition.BUSY, "User busy")


def test_restarted_tracker_continues_a_resumed_call_on_the_running_mixmonitor() -> None:
    """Recorder restart: the journal's call and the PBX listing meet; no second start, answer or MixMonitor."""
    from capture.adapter import ResumedCall

    t = CallTracker(mixmonitor="adapter", cdr_wait_s=0)
    answered = T0 - timedelta(seconds=7)
    t.resume([ResumedCall("L.1", "uuid", "ami", T0 - timedelta(seconds=8), answered, T0 - timedelta(seconds=1))])
    listing = [
        chan_event("CoreShowChannel", "L.1", "PJSIP/alice-00000001", num="100", BridgeId="br", Duration="00:00:08"),
        chan_event("CoreShowChannel", "L.2", "PJSIP/bob-00000002", num="200", BridgeId="br", Duration="00:00:08"),
    ]
    out = t.resync(listing, T0, known=set())
    assert [type(o).__name__ for o in out] == ["PartyJoined", "InspectChannel", "PartyJoined", "InspectChannel"]
    path = "/var/spool/asterisk/monitor/vcon-L.1.wav"
    assert t.inspected("L.1", "L.1", {"MIXMONITOR_FILENAME": path}, T0) == []
    assert t.inspected("L.1", "L.2", {}, T0) == []  # the call records already
    out = t.handle(chan_event("Hangup", "L.2", "PJSIP/bob-00000002", Cause="16"), T0 + STEP)
    out += t.handle(chan_event("Hangup", "L.1", "PJSIP/alice-00000001", Cause="16"), T0 + 2 * STEP)
    out += t.tick(T0 + 3 * STEP)
    (finish,) = [o for o in out if isinstance(o, FinishCall)]
    (spec,) = finish.recordings
    assert (spec.file, spec.started_at, spec.channels) == (path, answered, (("PJSIP/alice",), ("PJSIP/bob",)))
    assert not [o for o in out if isinstance(o, ev.CallStarted | ev.CallAnswered | StartMixMonitor)]


def test_pbx_gone_calls_end_when_the_connection_dropped() -> None:
    t = CallTracker(mixmonitor="dialplan", cdr_wait_s=30)
    t.handle(chan_event("Newchannel", "L.1", "PJSIP/alice-00000001", num="100"), T0)
    dropped = T0 + 5 * STEP
    t.connection_lost(dropped)
    t.handle(Message([("Event", "FullyBooted"), ("Uptime", "0")]), T0 + 50 * STEP)  # Asterisk restarted
    out = t.resync([], T0 + 50 * STEP, known={"L.1"})
    assert t.next_deadline() == T0 + 50 * STEP  # no Cdr will come from a restarted PBX: no 30 s wait
    out += t.tick(T0 + 50 * STEP)
    (finish,) = [o for o in out if isinstance(o, FinishCall)]
    assert finish.ended.at == dropped


def test_a_resumed_call_gone_while_the_recorder_was_down_ends_when_last_known_alive() -> None:
    from capture.adapter import ResumedCall

    t = CallTracker(mixmonitor="adapter", cdr_wait_s=30)
    last = T0 - timedelta(seconds=3)
    t.resume([ResumedCall("L.1", "uuid", "ami", T0 - timedelta(seconds=9), T0 - timedelta(seconds=8), last)])
    out = t.resync([], T0, known=set())
    out += t.tick(T0)  # no Cdr will come for it: no wait
    (finish,) = [o for o in out if isinstance(o, FinishCall)]
    assert (finish.ended.at, finish.ended.cause) == (last, "hung up while the recorder was down")
    (spec,) = finish.recordings  # whatever file our MixMonitor left, found by the call's Linkedid
    assert (spec.file, spec.search, spec.started_at) == (None, "L.1", T0 - timedelta(seconds=8))
    assert not [o for o in out if isinstance(o, ev.CallStarted)]
