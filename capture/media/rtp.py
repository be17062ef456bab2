"""RTP (RFC 3550) packets: the fixed header, CSRCs, header extension and padding.

Parsing is on the per-packet hot path, so it is one ``struct`` unpack and a slice.
"""

from __future__ import annotations

import struct
from typing import NamedTuple

from capture.errors import RemoteProtocolError

HEADER = struct.Struct("!BBHII")
"The fixed header: V/P/X/CC, M/PT, sequence number, timestamp, SSRC."
RTCP_TYPES = range(192, 224)
"Second-byte values of RTCP packets multiplexed on the RTP port (RFC 5761)."


class RtpPacket(NamedTuple):
    payload_type: int
    marker: bool
    sequence: int
    timestamp: int
    ssrc: int
    payload: bytes


def is_rtcp(data: bytes) -> bool:
    """True for an RTCP packet sharing the RTP port (rtcp-mux)."""
    return len(data) >= 2 and data[1] in RTCP_TYPES


def parse_rtp(data: bytes) -> RtpPacket:
    """One RTP packet; RemoteProtocolError if it is not one."""
    if len(data) < 12:
        raise RemoteProtocolError("RTP packet shorter than its header", excerpt=data)
    b0, b1, seq, ts, ssrc = HEADER.unpack_from(data)
    if b0 >> 6 != 2:
        raise RemoteProtocolError("not RTP version 2", excerpt=data[:12])
    start = 12 + 4 * (b0 & 0x0F)
    end = len(data)
    if b0 & 0x10:
        if end < start + 4:
            raise RemoteProtocolError("RTP header extension truncated", excerpt=data[:32])
        start += 4 + 4 * int.from_bytes(data[start + 2 : start + 4], "big")
    if b0 & 0x20:
        if end == 0 or data[-1] == 0:
            raise RemoteProtocolError("bad RTP padding", excerpt=data[:32])
        end -= data[-1]
    if start > end:
        raise RemoteProtocolError("RTP header longer than the packet", excerpt=data[:32])
    return RtpPacket(b1 & 0x7F, bool(b1 & 0x80), seq, ts, ssrc, bytes(data[start:end]))


def build_rtp(
    payload_type: int, sequence: int, timestamp: int, ssrc: int, payload: bytes, marker: bool = False
) -> bytes:
    """A minimal RTP packet (no CSRC, extension or padding): for senders and tests."""
    return (
        HEADER.pack(0x80, (0x80 if marker else 0) | payload_type, sequence & 0xFFFF, timestamp & 0xFFFFFFFF, ssrc)
        + payload
    )
