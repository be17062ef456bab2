"""The codecs recording clients offer (CUBE and Oracle SBCs often G.729 only), decoded by the
recorder as a perfect receiver would: encoded by real codec libraries (libbcg729, libgsm,
FFmpeg's encoders), decoded by the recorder's decoders, compared window by window."""

from __future__ import annotations

import os

import numpy as np
import pytest
from audiocheck import voice_like, window_ncc

from adapters.sip.sdp import AnsweredStream, build_answer, choose_codecs, parse_sdp
from capture.media.codecs import STATIC, Codec
from capture.media.decoders import decoder_for

from .corpus.encoders import encode

PCM = np.asarray(voice_like(3.0, 8000, 1) * 32767, dtype=np.int16)
SIGNALLED = {"PCMU": (0, 8000), "PCMA": (8, 8000), "G722": (9, 8000), "G723": (4, 8000), "G726-32": (112, 8000),
             "G729": (18, 8000), "GSM": (3, 8000)}  # fmt: skip


def _decode(codec: Codec, payloads: list[bytes], ticks: int) -> np.ndarray:
    decoder = decoder_for(codec)
    runs = decoder.decode([(i * ticks, p) for i, p in enumerate(payloads)])
    out = np.zeros(int(len(payloads) * ticks * decoder.samples_per_tick) + 2000)
    for position, pcm in runs:
        out[position : position + len(pcm)] = pcm[: max(len(out) - position, 0)]
    assert decoder.undecodable == 0
    if decoder.sample_rate != 8000:
        out = np.interp(np.arange(len(out) * 8000 // decoder.sample_rate) * decoder.sample_rate / 8000,
                        np.arange(len(out)), out)  # fmt: skip
    return out / 32768


@pytest.mark.parametrize("name", list(SIGNALLED))
def test_decoded_as_sent(name: str) -> None:
    encoded = encode(name, PCM)
    if encoded is None:
        pytest.skip(f"no {name} encoder on this machine (scripts/install --test installs libbcg729-0 and libgsm1)")
    pt, rate = SIGNALLED[name]
    recorded = _decode(Codec(pt, name, rate), encoded.payloads, encoded.ticks)
    scores = window_ncc(encoded.reference, recorded, 8000)
    assert len(scores) >= 2 and min(scores) >= 0.9, scores


def test_g729_annex_b_silence_frames() -> None:
    encoded = encode("G729", PCM)
    if encoded is None:
        pytest.skip("no G.729 encoder on this machine (libbcg729-0)")
    sid = b"\x12\x34"
    payloads = [p + sid if i % 5 == 4 else p for i, p in enumerate(encoded.payloads)] + [sid]
    decoder = decoder_for(Codec(18, "G729", 8000))
    runs = decoder.decode([(i * 160, p) for i, p in enumerate(payloads)])
    assert decoder.undecodable == 0
    assert [pos for pos, pcm in runs if len(pcm) == 80 and not pcm.any()][:2] == [4 * 160 + 160, 9 * 160 + 160]


@pytest.mark.parametrize("block, samples", [(38, 160), (50, 240)])
def test_ilbc_mode_from_the_payload(block: int, samples: int) -> None:
    decoder = decoder_for(Codec(97, "ILBC", 8000))
    runs = decoder.decode([(0, os.urandom(block)), (samples, os.urandom(2 * block)), (3 * samples, b"x" * 7)])
    assert [(pos, len(pcm)) for pos, pcm in runs] == [(0, samples), (samples, samples), (2 * samples, samples)]
    assert decoder.undecodable == 1


OFFER = b"""v=0\r
o=CiscoSystemsSIP-GW-UserAgent 1 1 IN IP4 10.0.0.1\r
s=SIP Call\r
c=IN IP4 10.0.0.1\r
t=0 0\r
m=audio 4000 RTP/AVP 18 0 8 101\r
a=fmtp:18 annexb=no\r
a=rtpmap:101 telephone-event/8000\r
a=sendonly\r
a=label:1\r
m=audio 4002 RTP/AVP 97 0\r
a=rtpmap:97 iLBC/8000\r
a=fmtp:97 mode=20\r
a=sendonly\r
a=label:2\r
"""


def test_the_codec_the_src_lists_first_is_taken() -> None:
    sdp = parse_sdp(OFFER)
    (g729, event), (ilbc, _) = choose_codecs(sdp.media[0]), choose_codecs(sdp.media[1])
    assert g729 == Codec(18, *STATIC[18]) and ilbc is not None and ilbc.name == "ILBC"
    answer = build_answer(sdp, [AnsweredStream(20000, g729, event), AnsweredStream(20002, ilbc)],
                          address="127.0.0.1", session_id=1, version=1).decode()  # fmt: skip
    assert "m=audio 20000 RTP/AVP 18 101" in answer and "a=rtpmap:18 G729/8000" in answer
    assert "a=fmtp:18 annexb=no" in answer and "a=rtpmap:97 iLBC/8000" in answer and "a=fmtp:97 mode=20" in answer
