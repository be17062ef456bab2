"""Every use of aiortc's and aioice's private internals, in one place.

The recorder needs five things aiortc 1.16 / aioice 0.13 do not offer publicly:

1. an audio receiver's jitter buffer replaced by a loss-tolerant one (``RTCRtpReceiver.__jitter_buffer``);
2. that receiver's negotiated codecs and RTP-to-pts mapper, to decode what the buffer releases
   (``__codecs``, ``__timestamp_mapper``), and the depayloaded bytes aiortc leaves on a packet
   (``RtpPacket._data``);
3. the remote track's frame queue, to put decoded frames on it and to drain what waits when a
   session closes (``RemoteStreamTrack._queue``);
4. aioice's host-address discovery, pinned to configured addresses (``aioice.ice.get_host_addresses``).

:func:`check` looks for each of them on real objects; the adapter runs it at start (an aiortc
that moved one refuses to start with a one-line reason instead of recording silence), and
tests/webrtc/test_aiortc_compat.py runs it so an upgrade that moves one fails the suite.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import aioice.ice
from aiortc import RTCCertificate, RTCDtlsTransport, RTCIceGatherer, RTCIceTransport, RTCRtpReceiver
from aiortc.rtcrtpparameters import RTCRtpCodecParameters
from aiortc.rtcrtpreceiver import RemoteStreamTrack
from aiortc.rtp import RtpPacket

TESTED_WITH = "aiortc 1.16, aioice 0.13"
_PREFIX = "_RTCRtpReceiver__"


def replace_jitter_buffer(receiver: RTCRtpReceiver, buffer: object) -> None:
    """Make ``buffer`` (with ``add(packet) -> (pli, frame)``) the receiver's jitter buffer (before packets arrive)."""
    setattr(receiver, _PREFIX + "jitter_buffer", buffer)


def receiver_codec(receiver: RTCRtpReceiver, payload_type: int) -> RTCRtpCodecParameters | None:
    """The codec the receiver negotiated for ``payload_type``."""
    codecs: dict[int, RTCRtpCodecParameters] = getattr(receiver, _PREFIX + "codecs")
    return codecs.get(payload_type)


def media_timestamp(receiver: RTCRtpReceiver, rtp_timestamp: int) -> int:
    """The frame pts aiortc gives an RTP timestamp (counted from the track's first packet)."""
    return int(getattr(receiver, _PREFIX + "timestamp_mapper").map(rtp_timestamp))


def depayloaded(packet: RtpPacket) -> bytes:
    """The codec data aiortc depayloaded from the packet (set before the jitter buffer sees it)."""
    return bytes(getattr(packet, "_data", b""))


def track_queue(track: Any) -> asyncio.Queue[Any]:
    """The queue a remote track's ``recv()`` reads frames from (None marks the end)."""
    queue: asyncio.Queue[Any] = track._queue
    return queue


def pin_host_addresses(addresses: Callable[[bool, bool], list[str]]) -> None:
    """Replace aioice's host-address discovery for the whole process."""
    setattr(aioice.ice, "get_host_addresses", addresses)  # noqa: B010 (a module attribute replaced on purpose)


def check() -> list[str]:
    """What of the above is missing from the installed aiortc/aioice (empty when all is there)."""
    missing = []
    transport = RTCDtlsTransport(RTCIceTransport(RTCIceGatherer()), [RTCCertificate.generateCertificate()])
    receiver = RTCRtpReceiver("audio", transport)
    for name in ("jitter_buffer", "codecs", "timestamp_mapper"):
        if not hasattr(receiver, _PREFIX + name):
            missing.append(f"RTCRtpReceiver.__{name}")
    mapper = getattr(receiver, _PREFIX + "timestamp_mapper", None)
    if mapper is not None and not callable(getattr(mapper, "map", None)):
        missing.append("RTCRtpReceiver.__timestamp_mapper.map()")
    if not isinstance(getattr(RemoteStreamTrack(kind="audio"), "_queue", None), asyncio.Queue):
        missing.append("RemoteStreamTrack._queue")
    if not callable(getattr(aioice.ice, "get_host_addresses", None)):
        missing.append("aioice.ice.get_host_addresses")
    return missing
