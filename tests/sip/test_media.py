"""capture/media: RTP parsing, the RTP clock, G.711 tables, RFC 4733 telephone-events."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from capture.errors import RemoteProtocolError
from capture.media.clock import RtpClock
from capture.media.dtmf import DtmfTracker, KeyPress, parse_telephone_event
from capture.media.g711 import ALAW, ULAW, decode_alaw, decode_ulaw, encode_alaw, encode_ulaw
from capture.media.rtp import build_rtp, is_rtcp, parse_rtp


def test_rtp_round_trip_with_csrc_extension_and_padding() -> None:
    pkt = parse_rtp(build_rtp(0, 65535, 0xFFFFFFF0, 0x1234, b"\xff" * 160, marker=True))
    assert (pkt.payload_type, pkt.marker, pkt.sequence, pkt.timestamp, pkt.ssrc) == (0, True, 65535, 0xFFFFFFF0, 0x1234)
    assert pkt.payload == b"\xff" * 160
    fancy = bytes([0x80 | 0x20 | 0x10 | 1, 8]) + b"\x00\x01" + b"\x00" * 8 + b"CSRC" + b"\xbe\xde\x00\x01" + b"EXT!"
    fancy += b"data" + b"\x00\x00\x03"
    assert parse_rtp(fancy).payload == b"data"
    assert is_rtcp(bytes([0x80, 200])) and not is_rtcp(build_rtp(0, 1, 1, 1, b""))


@given(st.binary(max_size=64))
def test_rtp_parser_raises_only_remote_protocol_error(data: bytes) -> None:
    try:
        pkt = parse_rtp(data)
    except RemoteProtocolError:
        return
    assert len(pkt.payload) <= len(data) - 12


def test_g711_tables_match_the_standard() -> None:
    # ITU-T G.711 decision values: mu-law 0xFF and A-law 0xD5 are the smallest positive outputs.
    assert ULAW[0xFF] == 0 and ULAW[0x00] == -32124 and ULAW[0x80] == 32124
    assert ALAW[0xD5] == 8 and ALAW[0x55] == -8 and ALAW[0xAA] == 32256
    x = (np.sin(np.arange(800) / 7) * 20000).astype(np.int16)
    for enc, dec in ((encode_ulaw, decode_ulaw), (encode_alaw, decode_alaw)):
        y = dec(enc(x)).astype(float)
        snr = 10 * np.log10(np.sum(x.astype(float) ** 2) / np.sum((y - x) ** 2))
        assert snr > 30


def test_clock_unwraps_timestamps_and_keeps_gaps() -> None:
    clock = RtpClock(8000)
    assert clock.position(1, 0xFFFFFF00, 0.0) == 0
    assert clock.position(1, 0x00000060, 0.02) == 0x160  # across the 32-bit wrap
    assert clock.position(1, 0x60 + 4000, 0.52) == 0x160 + 4000  # DTX gap of 0.5 s kept
    assert clock.position(1, 0x60 + 4000 - 160, 0.53) == 0x160 + 3840  # a late packet
    assert clock.reanchors == 0


def test_clock_reanchors_new_ssrc_and_jumps_on_the_wall_clock() -> None:
    clock = RtpClock(8000)
    clock.position(1, 1000, 10.0)
    assert clock.position(2, 999999, 11.0) == 8000  # new SSRC: 1 s of wall time later
    assert clock.position(2, 999999 + 160, 11.02) == 8160
    # Hold for 5 s, and the sender did not advance its timestamps: wall clock wins.
    assert clock.position(2, 999999 + 320, 16.02) == 8160 + 40000
    # A leap of an hour in timestamps after 20 ms: wall clock wins again.
    assert clock.position(2, 999999 + 320 + 8000 * 3600, 16.04) == 8160 + 40000 + 160
    assert clock.reanchors == 3


def test_telephone_events_become_one_key_press_each() -> None:
    tracker = DtmfTracker()

    def ev(event: int, end: bool, duration: int) -> bytes:
        return bytes([event, (0x80 if end else 0) | 10]) + duration.to_bytes(2, "big")

    out: list[KeyPress] = []
    for d in (160, 320, 480):
        out += tracker.feed(1000, ev(5, False, d))
    for _ in range(3):
        out += tracker.feed(1000, ev(5, True, 640))
    out += tracker.feed(5000, ev(11, False, 160))  # '#' whose end packets are lost
    out += tracker.feed(9000, ev(1, False, 160))
    out += tracker.flush()
    assert out == [KeyPress("5", 1000, 640), KeyPress("#", 5000, 160), KeyPress("1", 9000, 160)]
    assert parse_telephone_event(ev(16, True, 1)).event == 16
    with pytest.raises(RemoteProtocolError):
        parse_telephone_event(b"\x01")
