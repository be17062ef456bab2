"""The checks run on a WHIP request before aiortc sees the offer, and the token/identity rules."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from adapters.webrtc.identity import Identity, TokenCheck, identity_from, parse_tokens
from adapters.webrtc.offer import check_content_type, check_offer
from capture.errors import ConfigError, RemoteProtocolError

OFFER = (
    "v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\na=group:BUNDLE 0\r\n"
    "m=audio 9 UDP/TLS/RTP/SAVPF 111 0\r\nc=IN IP4 0.0.0.0\r\na=mid:0\r\na=sendonly\r\n"
    "a=rtpmap:111 opus/48000/2\r\na=rtpmap:0 PCMU/8000\r\na=ice-ufrag:abcd\r\na=ice-pwd:0123456789abcdef01234567\r\n"
    "a=fingerprint:sha-256 " + ":".join(["AB"] * 32) + "\r\n"
    "a=setup:actpass\r\n"
)


def refusal(call, *args) -> RemoteProtocolError:
    with pytest.raises(RemoteProtocolError) as info:
        call(*args)
    return info.value


def test_a_sending_audio_offer_passes():
    assert check_offer(OFFER.encode(), 65536) == OFFER


@pytest.mark.parametrize(
    ("body", "status", "reason"),
    [
        (OFFER.replace("m=audio", "m=video"), 400, "no audio m-line"),
        (OFFER.replace("a=sendonly", "a=recvonly"), 400, "sends no audio"),
        (OFFER.replace("m=audio 9", "m=audio 0"), 400, "sends no audio"),
        (OFFER.replace("a=fingerprint", "a=x-fingerprint"), 400, "fingerprint"),
        ("v=0\r\n", 400, "no audio m-line"),
        ("hello", 400, "not SDP"),
        ("", 400, "not SDP"),
        (OFFER + "a=x:" + "y" * 100, 413, "larger than"),
    ],
)
def test_bad_offers_are_refused_with_a_reason(body, status, reason):
    error = refusal(check_offer, body.encode(), len(OFFER) + 50)
    assert error.status_hint == status and reason in str(error)


def test_session_level_direction_applies_to_media_without_their_own():
    offer = OFFER.replace("a=sendonly\r\n", "").replace("t=0 0\r\n", "t=0 0\r\na=inactive\r\n")
    assert "sends no audio" in str(refusal(check_offer, offer.encode(), 65536))


@pytest.mark.parametrize("content_type", [None, "text/plain", "application/json", "application/sdpx"])
def test_only_application_sdp_is_accepted(content_type):
    assert refusal(check_content_type, content_type).status_hint == 415


def test_content_type_parameters_are_ignored():
    check_content_type("Application/SDP; charset=utf-8")


@given(st.binary(max_size=400))
def test_any_bytes_give_text_or_a_remote_protocol_error(body):
    try:
        check_offer(body, 300)
    except RemoteProtocolError as exc:
        assert exc.status_hint in (400, 413)


@given(st.lists(st.sampled_from(OFFER.split("\r\n") + ["m=audio", "m=audio 1", "a=sendrecv", "m="]), max_size=30))
def test_shuffled_sdp_lines_give_text_or_a_remote_protocol_error(lines):
    try:
        check_offer("\r\n".join(["v=0", *lines]).encode(), 65536)
    except RemoteProtocolError:
        pass


def test_token_file_identities():
    tokens = parse_tokens("# agents\nabc name=Ann Lee; tel=+1 555-0100\n\nxyz\n", "webrtc.token_file")
    assert tokens == {"abc": Identity(name="Ann Lee", tel="+15550100"), "xyz": Identity()}
    check = TokenCheck(tokens)
    assert check.identity("Bearer abc").name == "Ann Lee"
    assert check.identity("bearer xyz") == Identity()
    for header in (None, "", "Bearer", "Bearer nope", "Basic abc", "abc"):
        assert refusal(check.identity, header).status_hint == 401


def test_no_tokens_means_no_auth():
    assert TokenCheck(None).identity(None) == Identity()


@pytest.mark.parametrize("text", ["", "# only a comment\n", "abc colour=blue\n", "abc tel=call-me\n"])
def test_bad_token_files_name_the_setting(text):
    with pytest.raises(ConfigError, match="webrtc.token_file"):
        parse_tokens(text, "webrtc.token_file")


def test_query_identity_fills_what_the_token_lacks():
    token = Identity(name="Agent")
    query = identity_from({"name": "Mallory", "mailto": "mailto:m@example.com", "tel": ""}, "query")
    assert token.filled_from(query) == Identity(name="Agent", mailto="m@example.com")


@pytest.mark.parametrize(
    "fields", [{"tel": "12ab"}, {"mailto": "not-an-address"}, {"name": "x" * 201}, {"name": "bell\x07"}]
)
def test_bad_identity_fields_are_refused(fields):
    assert refusal(identity_from, fields, "query").status_hint == 400


def test_an_unencoded_plus_in_tel_is_kept():
    assert identity_from({"tel": " 15551234"}, "query") == Identity(tel="+15551234")
