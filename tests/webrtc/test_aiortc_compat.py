"""aiortc's internals that recording relies on are all where adapters/webrtc/aiortc_compat.py expects them.

If an aiortc or aioice upgrade moves one, this fails with its name (and the adapter refuses to
start with the same list) instead of sessions silently recording nothing.
"""

from __future__ import annotations

import asyncio

from aiortc import RTCCertificate, RTCDtlsTransport, RTCIceGatherer, RTCIceTransport, RTCRtpReceiver
from aiortc.rtcrtpparameters import RTCRtpCodecParameters, RTCRtpReceiveParameters
from aiortc.rtcrtpreceiver import RemoteStreamTrack

from adapters.webrtc import aiortc_compat as compat

PCMU = RTCRtpCodecParameters(mimeType="audio/PCMU", clockRate=8000, payloadType=0)


def test_every_internal_the_recorder_uses_is_there():
    assert compat.check() == []


async def test_each_accessor_works_on_a_real_receiver():
    transport = RTCDtlsTransport(RTCIceTransport(RTCIceGatherer()), [RTCCertificate.generateCertificate()])
    receiver = RTCRtpReceiver("audio", transport)
    receiver._track = RemoteStreamTrack(kind="audio")
    marker = object()
    compat.replace_jitter_buffer(receiver, marker)
    assert receiver._RTCRtpReceiver__jitter_buffer is marker
    await receiver.receive(RTCRtpReceiveParameters(codecs=[PCMU]))
    assert compat.receiver_codec(receiver, 0) == PCMU and compat.receiver_codec(receiver, 8) is None
    assert compat.media_timestamp(receiver, 123456) == 0, "pts counts from the first packet"
    assert compat.media_timestamp(receiver, 123456 + 160) == 160
    assert isinstance(compat.track_queue(receiver.track), asyncio.Queue)
    await receiver.stop()
