"""The loss-tolerant audio buffer inside a real aiortc RTCRtpReceiver (its decoder thread and track).

Packets are handed to the receiver's RTP entry point directly, as the DTLS transport would.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

from aiortc import RTCCertificate, RTCDtlsTransport, RTCIceGatherer, RTCIceTransport, RTCRtpReceiver
from aiortc.rtcrtpparameters import RTCRtpCodecParameters, RTCRtpReceiveParameters
from aiortc.rtcrtpreceiver import RemoteStreamTrack
from aiortc.rtp import RtpPacket

from adapters.webrtc import jitter

PCMU = RTCRtpCodecParameters(mimeType="audio/PCMU", clockRate=8000, payloadType=0)
FRAME = 160


async def frames_out(order: list[int], *, ours: bool, first_seq: int = 0) -> list[int]:
    """Feed PCMU packets of these frame numbers (sequence number ``first_seq + n``, wrapping);
    return the frame numbers the track yields."""
    transport = RTCDtlsTransport(RTCIceTransport(RTCIceGatherer()), [RTCCertificate.generateCertificate()])
    receiver = RTCRtpReceiver("audio", transport)
    receiver._track = RemoteStreamTrack(kind="audio")
    if ours:
        jitter.install(receiver, depth=3, now=lambda: datetime.now(UTC))
    await receiver.receive(RTCRtpReceiveParameters(codecs=[PCMU]))
    for n, frame_number in enumerate(order):
        packet = RtpPacket(
            payload_type=0,
            sequence_number=(first_seq + frame_number) % 65536,
            timestamp=frame_number * FRAME,
            ssrc=1234,
            payload=bytes(FRAME),
        )
        await receiver._handle_rtp_packet(packet, arrival_time_ms=n * 20)
    out = []
    try:
        while True:
            frame = await asyncio.wait_for(receiver.track.recv(), 0.5)
            out.append(frame.pts // FRAME)
    except TimeoutError:
        pass
    receiver._track.stop()
    await receiver.stop()
    return out


async def test_one_lost_packet_costs_one_frame() -> None:
    sent = [s for s in range(40) if s != 10]
    assert await frames_out(sent, ours=True) == sent


async def test_stock_aiortc_buffer_loses_more_than_was_lost() -> None:
    """Why the replacement exists: aiortc evicts the hole with 4 good prefetched frames (and holds 4 at the end)."""
    sent = [s for s in range(40) if s != 10]
    out = await frames_out(sent, ours=False)
    assert len(sent) - len(out) >= 5
    assert 9 not in out


async def test_reordered_packets_come_out_in_order_and_late_ones_are_dropped() -> None:
    order = list(range(10)) + [11, 10] + list(range(12, 20)) + [25, 21, 22, 23, 24, 26, 27, 20]
    out = await frames_out(order, ours=True)
    assert out == list(range(20)) + list(range(21, 28))


async def test_wraparound_of_sequence_numbers() -> None:
    sent = [i for i in range(20) if i != 4]
    assert await frames_out(sent, ours=True, first_seq=65530) == sent
