"""capture/media/receiver.py: the sans-IO RTP receiver, fed datagrams and arrival times.

No sockets: packets are built with the same helpers the senders in the other tests use, and
SRTP is protected by a real libsrtp session.
"""

from __future__ import annotations

import base64

import numpy as np
import pylibsrtp
import pytest
from hypothesis import given
from hypothesis import strategies as st

from capture.media.codecs import Codec
from capture.media.g711 import decode_ulaw, encode_ulaw
from capture.media.receiver import AudioReceived, KeyPressed, MediaEvent, RtpReceiver
from capture.media.reorder import ReorderBuffer, seq_delta
from capture.media.rtp import build_rtp
from capture.media.srtp import SrtpReceiver

PCMU = Codec(0, "PCMU", 8000)
PCMA = Codec(8, "PCMA", 8000)
G722 = Codec(9, "G722", 8000)
DTMF = Codec(101, "TELEPHONE-EVENT", 8000)
PEER = ("127.0.0.1", 40000)


def tone(packets: int, seed: int = 1) -> list[bytes]:
    """``packets`` 20 ms PCMU payloads of a noisy tone (no two alike)."""
    rng = np.random.default_rng(seed)
    pcm = (np.sin(np.arange(160 * packets) / 5) * 9000 + rng.normal(0, 500, 160 * packets)).astype(np.int16)
    coded = encode_ulaw(pcm)
    return [coded[i * 160 : (i + 1) * 160] for i in range(packets)]


def drain(receiver: RtpReceiver) -> list[MediaEvent]:
    out = []
    while (event := receiver.next_event()) is not None:
        out.append(event)
    return out


def placed(events: list[MediaEvent], length: int | None = None) -> np.ndarray:
    """What a recording would hold: every AudioReceived written at its position, gaps silent."""
    audio = [e for e in events if isinstance(e, AudioReceived)]
    end = max(e.position + len(e.pcm) for e in audio) if audio else 0
    out = np.zeros(length or end, dtype=np.int16)
    for e in audio:
        out[e.position : e.position + len(e.pcm)] = e.pcm
    return out


def test_in_order_packets_come_out_in_batches_as_one_run_each() -> None:
    payloads = tone(60)
    receiver = RtpReceiver(PCMU, batch_packets=25)
    for i, payload in enumerate(payloads):
        assert receiver.receive(build_rtp(0, 1000 + i, 5000 + 160 * i, 7, payload), PEER, 10.0 + i * 0.02)
        if i == 23:
            assert receiver.next_event() is None, "nothing is decoded before a batch is full"
    first = drain(receiver)
    assert [(e.position, len(e.pcm)) for e in first if isinstance(e, AudioReceived)] == [(0, 4000), (4000, 4000)]
    receiver.close()
    events = first + drain(receiver)
    assert np.array_equal(placed(events), decode_ulaw(b"".join(payloads)))
    audio = [e for e in events if isinstance(e, AudioReceived)]
    assert {e.anchor for e in audio} == {10.0} and {e.sample_rate for e in audio} == {8000}
    stats = receiver.stats
    assert (stats.received, stats.lost, stats.dropped, stats.late, stats.duplicates) == (60, 0, 0, 0, 0)
    assert receiver.remote == PEER and receiver.last_received == pytest.approx(10.0 + 59 * 0.02)


def test_reordered_lost_duplicate_and_late_packets() -> None:
    payloads = tone(40)
    order = [0, 1, 3, 2, 4, 6, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15] + list(range(16, 40))  # 5 lost, 6 twice
    receiver = RtpReceiver(PCMU, reorder_depth=8)
    for n, i in enumerate(order):
        receiver.receive(build_rtp(0, i, 160 * i, 7, payloads[i]), PEER, n * 0.02)
    receiver.receive(build_rtp(0, 5, 160 * 5, 7, payloads[5]), PEER, 0.9)  # after its hole was given up on
    receiver.close()
    audio = placed(drain(receiver))
    expected = decode_ulaw(b"".join(payloads)).copy()
    expected[800:960] = 0  # the lost packet is silence, and everything after it stays in place
    assert np.array_equal(audio, expected)
    stats = receiver.stats
    assert (stats.received, stats.lost, stats.duplicates, stats.late) == (41, 1, 1, 1)


def test_rtcp_foreign_payload_types_and_garbage_are_not_media() -> None:
    receiver = RtpReceiver(PCMU, DTMF)
    assert not receiver.receive(bytes([0x80, 200]) + bytes(26), PEER, 0.0)  # RTCP SR on the RTP port
    assert not receiver.receive(build_rtp(8, 1, 0, 7, b"\xd5" * 160), PEER, 0.0)  # PCMA was not agreed
    assert not receiver.receive(b"\x01\x02garbage", PEER, 0.0)
    assert receiver.receive(build_rtp(0, 2, 0, 7, b"\xff" * 160), PEER, 0.0)
    assert (receiver.stats.received, receiver.stats.dropped) == (1, 2), "RTCP is skipped, not counted as dropped"


def test_new_ssrc_flushes_the_old_sender_and_is_placed_on_the_arrival_clock() -> None:
    first, second = tone(10, seed=1), tone(10, seed=2)
    receiver = RtpReceiver(PCMU)
    for i, payload in enumerate(first):
        receiver.receive(build_rtp(0, 100 + i, 160 * i, 111, payload), PEER, i * 0.02)
    for i, payload in enumerate(second):  # another sender 1 s later, unrelated sequence and timestamps
        receiver.receive(build_rtp(0, 9000 + i, 777777 + 160 * i, 222, payload), PEER, 1.0 + i * 0.02)
    receiver.close()
    audio = placed(drain(receiver))
    assert np.array_equal(audio[:1600], decode_ulaw(b"".join(first)))
    assert not audio[1600:8000].any(), "the pause between senders is silence"
    assert np.array_equal(audio[8000:9600], decode_ulaw(b"".join(second)))
    assert receiver.stats.reanchors == 1 and receiver.stats.lost == 0


def test_telephone_event_becomes_one_key_press_at_its_time() -> None:
    receiver = RtpReceiver(PCMU, DTMF)
    for i in range(10):
        receiver.receive(build_rtp(0, i, 160 * i, 7, b"\xff" * 160), PEER, 5.0 + i * 0.02)
    for k in range(1, 7):
        end = k >= 4
        body = bytes([11, (0x80 if end else 0) | 10]) + (min(k, 4) * 160).to_bytes(2, "big")
        receiver.receive(build_rtp(101, 9 + k, 1600, 7, body), PEER, 5.2 + k * 0.02)
    receiver.receive(build_rtp(101, 16, 1600, 7, b"\x0b"), PEER, 5.4)  # too short: dropped, counted
    receiver.close()
    (press,) = [e for e in drain(receiver) if isinstance(e, KeyPressed)]
    assert press == KeyPressed("#", pytest.approx(5.2), pytest.approx(0.08))
    assert receiver.stats.dropped == 1


def test_srtp_is_unprotected_and_forgeries_dropped() -> None:
    key = bytes(range(30))
    sender = pylibsrtp.Session(
        policy=pylibsrtp.Policy(key=key, ssrc_type=pylibsrtp.Policy.SSRC_ANY_OUTBOUND,
                                srtp_profile=pylibsrtp.Policy.SRTP_PROFILE_AES128_CM_SHA1_80)
    )  # fmt: skip
    line = f"1 AES_CM_128_HMAC_SHA1_80 inline:{base64.b64encode(key).decode()}"
    receiver = RtpReceiver(PCMU, srtp=SrtpReceiver(line))
    payloads = tone(5)
    for i, payload in enumerate(payloads):
        protected = sender.protect(build_rtp(0, i, 160 * i, 9, payload))
        assert receiver.receive(protected, PEER, i * 0.02)
    forged = bytearray(sender.protect(build_rtp(0, 5, 800, 9, payloads[0])))
    forged[-1] ^= 1
    assert not receiver.receive(bytes(forged), PEER, 0.1)
    receiver.close()
    assert np.array_equal(placed(drain(receiver)), decode_ulaw(b"".join(payloads)))
    assert (receiver.stats.srtp_failed, receiver.stats.dropped) == (1, 0), "SRTP failures are counted apart"


def test_codec_change_that_would_change_the_sample_rate_is_refused() -> None:
    receiver = RtpReceiver(PCMU)
    for i in range(30):
        receiver.receive(build_rtp(0, i, 160 * i, 7, b"\xff" * 160), PEER, i * 0.02)
    assert receiver.set_codecs(PCMA, DTMF), "same rate: taken"
    assert receiver.receive(build_rtp(8, 30, 4800, 7, b"\xd5" * 160), PEER, 0.6)
    assert not receiver.set_codecs(G722, None), "G.722 is 16 kHz: the recording is 8 kHz"
    assert receiver.codec == PCMA and receiver.sample_rate == 8000


def test_jitter_estimate_follows_arrival_variation() -> None:
    steady, jittery = RtpReceiver(PCMU), RtpReceiver(PCMU)
    rng = np.random.default_rng(3)
    for i in range(200):
        steady.receive(build_rtp(0, i, 160 * i, 7, b"\xff" * 160), PEER, i * 0.02)
        jittery.receive(build_rtp(0, i, 160 * i, 7, b"\xff" * 160), PEER, i * 0.02 + rng.uniform(0, 0.01))
    assert steady.stats.jitter_s < 1e-6 < 0.001 < jittery.stats.jitter_s < 0.01


def test_nothing_is_taken_after_close() -> None:
    receiver = RtpReceiver(PCMU)
    receiver.close()
    assert not receiver.receive(build_rtp(0, 1, 0, 7, b"\xff" * 160), PEER, 0.0)
    assert receiver.next_event() is None


class ModelReorder:
    """The reorder buffer's rules written out the slow way (no fast path)."""

    def __init__(self, depth: int) -> None:
        self.depth, self.next, self.held, self.lost, self.late, self.duplicates = depth, None, {}, 0, 0, 0

    def push(self, seq: int) -> list[int]:
        if self.next is None:
            self.next = seq
        delta = seq_delta(seq, self.next)
        if delta < 0:
            self.late += 1
            return []
        if seq in self.held:
            self.duplicates += 1
            return []
        if delta > 1 << 14:
            out = self.flush()
            self.next = seq
            self.held[seq] = seq
            return out + self.release()
        self.held[seq] = seq
        out = self.release()
        while len(self.held) > self.depth:
            self.skip()
            out += self.release()
        return out

    def release(self) -> list[int]:
        out = []
        while self.next in self.held:
            out.append(self.held.pop(self.next))
            self.next = (self.next + 1) % 65536
        return out

    def skip(self) -> None:
        first = min(self.held, key=lambda s: seq_delta(s, self.next))
        self.lost += seq_delta(first, self.next)
        self.next = first

    def flush(self) -> list[int]:
        out = []
        while self.held:
            self.skip()
            out += self.release()
        return out


@given(st.integers(0, 65535), st.lists(st.integers(-12, 40), max_size=120), st.integers(1, 10))
def test_reorder_buffer_matches_its_rules(start: int, steps: list[int], depth: int) -> None:
    buffer: ReorderBuffer[int] = ReorderBuffer(depth)
    model = ModelReorder(depth)
    seq = start
    for step in steps:
        seq = (seq + step) % 65536
        assert buffer.push(seq, seq) == model.push(seq)
    assert buffer.flush() == model.flush()
    assert (buffer.lost, buffer.late, buffer.duplicates) == (model.lost, model.late, model.duplicates)


# -- held-up packets: a stall of the sender or of this process, against a sender that paused ------


def feed(receiver: RtpReceiver, payloads: list[bytes], arrivals: list[float], *, ts_from: int = 0) -> None:
    for i, (payload, at) in enumerate(zip(payloads, arrivals, strict=True)):
        receiver.receive(build_rtp(0, i, ts_from + 160 * i, 7, payload), PEER, at)


def test_packets_held_up_by_a_stall_keep_their_timestamps() -> None:
    """1.5 s of packets wait in the socket while the process is stalled (or the sender
    sends its backlog late), then come at once: they stay where their timestamps put them."""
    payloads = tone(200)
    arrivals = [i * 0.02 for i in range(50)] + [2.5 + i * 0.0001 for i in range(75)]
    arrivals += [arrivals[-1] + (i + 1) * 0.02 for i in range(75)]
    receiver = RtpReceiver(PCMU)
    feed(receiver, payloads, arrivals)
    receiver.close()
    assert np.array_equal(placed(drain(receiver)), decode_ulaw(b"".join(payloads)))
    assert receiver.stats.reanchors == 0


def test_a_stall_just_before_the_end_keeps_the_last_packets_in_place() -> None:
    """The backlog is read at close (the BYE came first): still a burst, kept in place."""
    payloads = tone(80)
    arrivals = [i * 0.02 for i in range(60)] + [3.0 + i * 0.0001 for i in range(20)]
    receiver = RtpReceiver(PCMU)
    feed(receiver, payloads, arrivals)
    receiver.close()
    assert np.array_equal(placed(drain(receiver)), decode_ulaw(b"".join(payloads)))


def test_a_sender_that_paused_its_clock_is_placed_on_the_arrival_clock() -> None:
    """Hold without advancing the timestamps: 3 s of silence, then the normal pace again."""
    payloads = tone(100)
    arrivals = [i * 0.02 for i in range(50)] + [4.0 + i * 0.02 for i in range(50)]
    receiver = RtpReceiver(PCMU)
    feed(receiver, payloads, arrivals)
    receiver.close()
    audio = placed(drain(receiver))
    coded = decode_ulaw(b"".join(payloads))
    assert np.array_equal(audio[:8000], coded[:8000])
    assert not audio[8000:32000].any(), "the pause is silence"
    assert np.array_equal(audio[32000:40000], coded[8000:])
    assert receiver.stats.reanchors == 1


def test_a_held_key_press_neither_repeats_nor_moves_the_audio() -> None:
    """RFC 4733 packets carry the key-down timestamp, behind the audio for as long as the key is held."""
    receiver = RtpReceiver(PCMU, DTMF)
    seq = 0
    for i in range(150):  # 3 s of audio; the key goes down at 1 s and is held 1.5 s
        receiver.receive(build_rtp(0, seq, 160 * i, 7, b"\xff" * 160), PEER, i * 0.02)
        seq += 1
        if 50 <= i < 125 and i % 5 == 0:
            end = i >= 120
            body = bytes([5, (0x80 if end else 0) | 10]) + ((i - 50) * 160 + 160).to_bytes(2, "big")
            receiver.receive(build_rtp(101, seq, 8000, 7, body), PEER, i * 0.02 + 0.001)
            seq += 1
    receiver.close()
    events = drain(receiver)
    (press,) = [e for e in events if isinstance(e, KeyPressed)]
    assert press.digit == "5" and press.at == pytest.approx(1.0) and press.duration_s == pytest.approx(1.42)
    assert receiver.stats.reanchors == 0 and len(placed(events)) == 150 * 160


def test_a_codec_change_of_clock_rate_goes_on_where_the_stream_is() -> None:
    opus = Codec(111, "OPUS", 48000, 2)
    receiver = RtpReceiver(G722)
    for i in range(50):
        receiver.receive(build_rtp(9, i, 160 * i, 7, bytes(160)), PEER, i * 0.02)
    assert receiver.set_codecs(opus, None), "both decode at 16 kHz"
    receiver.receive(build_rtp(111, 50, 123456, 7, bytes([0xF8, 0xFF, 0xFE])), PEER, 1.0)
    receiver.close()
    audio = [e for e in drain(receiver) if isinstance(e, AudioReceived)]
    assert audio[-1].position == 16000, "1 s into the stream, not back at 0"


def test_batch_size_can_change_on_the_fly() -> None:
    receiver = RtpReceiver(PCMU, batch_packets=25)
    for i in range(3):
        receiver.receive(build_rtp(0, i, 160 * i, 7, b"\xff" * 160), PEER, i * 0.02)
    assert receiver.next_event() is None
    receiver.batch_packets = 1  # someone listens live: what waits is decoded at once
    assert [e.position for e in drain(receiver) if isinstance(e, AudioReceived)] == [0]
    assert receiver.batch_packets == 1


def test_random_timestamps_from_the_sender_never_place_audio_far_from_its_arrival() -> None:
    """Garbage timestamps look like a held-up burst; trusting them would leave gaps of hours."""
    rng = np.random.default_rng(5)
    receiver = RtpReceiver(PCMU)
    feed(receiver, tone(50), [i * 0.02 for i in range(50)])
    for i in range(500):
        ts = int(rng.integers(0, 1 << 32))
        receiver.receive(build_rtp(0, 50 + i, ts, 7, b"\xff" * 160), PEER, 1.0 + i * 0.002)
    audio = placed([*drain(receiver), *(receiver.close() or drain(receiver))])
    assert len(audio) < 3 * 8000, len(audio) / 8000
