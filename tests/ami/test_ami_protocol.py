"""The sans-IO AMI wire core: framing, decoding, size cap; fed real transcripts and hypothesis streams."""

from __future__ import annotations

import pytest
from amireplay import BANNER, transcript
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from adapters.ami.protocol import AmiParser, Banner, Message, Oversized, encode_action, parse_message
from capture.errors import LocalProtocolError, RemoteProtocolError

ALL = [
    "cacofonisk_ab_success_a_hangup.ami",
    "cacofonisk_ab_reject.ami",
    "cacofonisk_ab_a_cancel.ami",
    "cacofonisk_xfer_blind_abbcac.ami",
    "cacofonisk_xfer_abbcac.ami",
    "jasterng_pjsip_real_events.ami",
    "panoramisk_pjsip_show_endpoint.ami",
    "panoramisk_queue_status.ami",
]


def stream(name: str) -> bytes:
    return BANNER + b"".join(transcript(name))


def messages(items: list) -> list[Message]:
    return [i for i in items if isinstance(i, Message)]


def feed_in_pieces(data: bytes, cuts: list[int], **kw) -> list:
    parser = AmiParser(**kw)
    out: list = []
    last = 0
    for cut in sorted(set(c % (len(data) + 1) for c in cuts)) + [len(data)]:
        out += parser.feed(data[last:cut])
        last = cut
    return out


@pytest.mark.parametrize("name", ALL)
def test_real_transcripts_frame_into_every_message(name: str) -> None:
    blocks = transcript(name)
    items = AmiParser().feed(stream(name))
    assert items[0] == Banner("9.0.0")
    got = messages(items)
    assert len(got) == len(blocks)
    for msg, block in zip(got, blocks, strict=True):
        assert msg.fields[0][0] in ("Event", "Response")
        assert len(msg.fields) == block.count(b"\r\n") - 1


def test_one_byte_dribble_gives_the_same_messages() -> None:
    data = stream("cacofonisk_xfer_abbcac.ami")
    whole = AmiParser().feed(data)
    parser = AmiParser()
    dribbled: list = []
    for i in range(len(data)):
        dribbled += parser.feed(data[i : i + 1])
    assert dribbled == whole
    assert parser.buffered == 0


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.integers(min_value=0, max_value=1 << 20), max_size=40))
def test_any_split_of_the_stream_gives_the_same_messages(cuts: list[int]) -> None:
    data = stream("cacofonisk_xfer_blind_abbcac.ami")
    assert feed_in_pieces(data, cuts) == AmiParser().feed(data)


def test_keys_case_insensitive_and_repeated_keys_kept_in_order() -> None:
    raw = b"Event: VarSet\r\nchanvariable: a=1\r\nChanVariable: b=2\r\nValue: x: y\r\nEmpty: \r\nBare line"
    msg = parse_message(raw)
    assert msg.event == "VarSet"
    assert msg.get("CHANVARIABLE") == "a=1"
    assert msg.getall("ChanVariable") == ["a=1", "b=2"]
    assert msg["value"] == "x: y"
    assert msg.get("Empty") == ""
    assert msg.getall("") == ["Bare line"]
    assert "event" in msg and "Nope" not in msg


@pytest.mark.parametrize("cut", range(1, 4))
def test_utf8_character_split_across_reads_is_kept(cut: int) -> None:
    name = "Caller: Jos\u00e9 \u00c5ngstr\u00f6m \U0001f4de".encode()
    data = BANNER + b"Event: Newchannel\r\nCallerIDName: " + name + b"\r\n\r\n"
    split_at = data.index(b"\xf0") + cut  # inside the 4-byte emoji
    parser = AmiParser()
    items = parser.feed(data[:split_at]) + parser.feed(data[split_at:])
    assert messages(items)[0]["CallerIDName"] == name.decode()
    # and at every byte of the é
    at = data.index(b"\xc3")
    for k in (at, at + 1):
        p = AmiParser()
        assert messages(p.feed(data[:k]) + p.feed(data[k:]))[0]["CallerIDName"] == name.decode()


def test_invalid_utf8_is_visible_never_silently_dropped() -> None:
    parser = AmiParser(expect_banner=False)
    (msg,) = parser.feed(b"Event: Newchannel\r\nCallerIDName: M\xfcller \xff\xfe\r\nUniqueid: 1.2\r\n\r\n")
    assert msg["CallerIDName"] == "M\\xfcller \\xff\\xfe"
    assert msg["Uniqueid"] == "1.2"


def test_four_megabyte_event_is_skipped_with_its_size_and_the_stream_goes_on() -> None:
    huge = b"Event: Huge\r\n" + b"ChanVariable: " + b"x" * (4 << 20) + b"\r\n\r\n"
    data = BANNER + b"Event: Before\r\n\r\n" + huge + b"Event: After\r\nA: 1\r\n\r\n"
    parser = AmiParser()
    items: list = []
    for i in range(0, len(data), 65536):
        items += parser.feed(data[i : i + 65536])
        assert parser.buffered <= parser.max_message + 65536
    assert [type(i).__name__ for i in items] == ["Banner", "Message", "Oversized", "Message"]
    assert items[2] == Oversized(len(huge) - 4, 1 << 20)
    assert items[3]["A"] == "1"


def test_four_megabyte_event_passes_under_a_raised_cap() -> None:
    value = "\u00e9" * (2 << 20)
    data = b"Event: Huge\r\nV: " + value.encode() + b"\r\n\r\n"
    (msg,) = AmiParser(max_message=8 << 20, expect_banner=False).feed(data)
    assert msg["V"] == value


def test_bad_banner_is_a_remote_protocol_error() -> None:
    with pytest.raises(RemoteProtocolError, match="banner"):
        AmiParser().feed(b"SSH-2.0-OpenSSH_9.2\r\n")
    with pytest.raises(RemoteProtocolError, match="too long"):
        AmiParser().feed(b"x" * 5000)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=600), st.lists(st.integers(min_value=0, max_value=600), max_size=8))
def test_garbage_raises_only_remote_protocol_error(data: bytes, cuts: list[int]) -> None:
    for banner in (BANNER, b""):
        try:
            items = feed_in_pieces(banner + data, cuts, max_message=64)
        except RemoteProtocolError:
            continue
        for item in items:
            assert isinstance(item, Banner | Message | Oversized)


@settings(max_examples=100, deadline=None)
@given(
    st.lists(
        st.lists(
            st.tuples(
                st.from_regex(r"[A-Za-z][A-Za-z0-9-]{0,10}", fullmatch=True),
                st.text(st.characters(blacklist_characters="\r\n", blacklist_categories=("Cs",)), max_size=20),
            ),
            min_size=1,
            max_size=6,
        ),
        min_size=1,
        max_size=5,
    ),
    st.lists(st.integers(min_value=0, max_value=2000), max_size=10),
)
def test_encoded_actions_parse_back_exactly(actions, cuts) -> None:
    data = b"".join(encode_action("Test", fields) for fields in actions)
    got = messages(feed_in_pieces(data, cuts, expect_banner=False))
    assert [m.fields for m in got] == [[("Action", "Test"), *fields] for fields in actions]


def test_action_values_cannot_smuggle_lines() -> None:
    with pytest.raises(LocalProtocolError):
        encode_action("Originate", {"Channel": "PJSIP/a\r\nAction: Command"})
