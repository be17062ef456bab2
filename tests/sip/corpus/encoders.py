"""Encoders the test SRC sends with, one per codec the field offers, and what a perfect receiver
decodes from each (the reference the recorded channel is compared with).

G.711 through the project's tables; G.722, G.723.1 and G.726 through PyAV (FFmpeg encodes
them); G.729 through libbcg729 and GSM through libgsm (Debian's libbcg729-0 and libgsm1),
loaded with ctypes since FFmpeg has no encoder for either. ``encoder_for`` is None when this
machine lacks the library.
"""

from __future__ import annotations

import ctypes
import ctypes.util
from collections.abc import Callable
from dataclasses import dataclass

import av
import numpy as np

from capture.media.g711 import decode_alaw, decode_ulaw, encode_alaw, encode_ulaw


@dataclass(frozen=True)
class Encoded:
    payloads: list[bytes]
    "One RTP payload per packet."
    ticks: int
    "RTP timestamp increment per packet."
    reference: np.ndarray
    "What a perfect receiver decodes, float at 8 kHz."


def _g711(
    encode: Callable[[np.ndarray], bytes], decode: Callable[[bytes], np.ndarray]
) -> Callable[[np.ndarray], Encoded]:
    def run(pcm: np.ndarray) -> Encoded:
        coded = encode(pcm)
        return Encoded([coded[i : i + 160] for i in range(0, len(coded) - 159, 160)], 160,
                       decode(coded).astype(float) / 32768)  # fmt: skip

    return run


def _av(name: str, rate: int, frame_ms: int, clock: int, **options: str) -> Callable[[np.ndarray], Encoded]:
    def run(pcm: np.ndarray) -> Encoded:
        samples = pcm if rate == 8000 else np.interp(np.arange(len(pcm) * rate // 8000) * 8000 / rate,
                                                      np.arange(len(pcm)), pcm).astype(np.int16)  # fmt: skip
        enc = av.CodecContext.create(name, "w")
        enc.sample_rate, enc.layout, enc.format = rate, "mono", "s16"
        for key, value in options.items():
            setattr(enc, key, int(value)) if value.isdigit() else enc.options.update({key: value})
        step = rate * frame_ms // 1000
        payloads = []
        for i in range(0, len(samples) - step + 1, step):
            frame = av.AudioFrame.from_ndarray(samples[i : i + step].reshape(1, -1), format="s16", layout="mono")
            frame.sample_rate = rate
            payloads += [bytes(p) for p in enc.encode(frame)]
        dec = av.CodecContext.create(name, "r")
        dec.sample_rate, dec.layout = rate, "mono"
        for key, value in options.items():
            if value.isdigit():
                setattr(dec, key, int(value))
        out = [f.to_ndarray().reshape(-1) for p in payloads for f in dec.decode(av.Packet(p))]
        ref = np.concatenate(out).astype(float)
        ref = ref / 32768 if np.abs(ref).max() > 2 else ref
        if rate != 8000:
            ref = np.interp(np.arange(len(ref) * 8000 // rate) * rate / 8000, np.arange(len(ref)), ref)
        return Encoded(payloads, clock * frame_ms // 1000, ref)

    return run


def _g726(pcm: np.ndarray) -> Encoded:
    """G.726-32 as RFC 3551 packs it (little-endian codewords): a continuous 4-bit stream cut in 20 ms."""
    enc = av.CodecContext.create("adpcm_g726le", "w")
    enc.sample_rate, enc.layout, enc.format, enc.bit_rate = 8000, "mono", "s16", 32000
    step = enc.frame_size if enc.frame_size else 2048
    stream = b""
    for i in range(0, len(pcm) - step + 1, step):
        frame = av.AudioFrame.from_ndarray(pcm[i : i + step].reshape(1, -1), format="s16", layout="mono")
        frame.sample_rate = 8000
        stream += b"".join(bytes(p) for p in enc.encode(frame))
    payloads = [stream[i : i + 80] for i in range(0, len(stream) - 79, 80)]
    dec = av.CodecContext.create("adpcm_g726le", "r")
    dec.sample_rate, dec.layout, dec.options = 8000, "mono", {"bits_per_coded_sample": "4"}
    out = [f.to_ndarray().reshape(-1) for p in payloads for f in dec.decode(av.Packet(p))]
    return Encoded(payloads, 160, np.concatenate(out).astype(float) / 32768)


def _library(name: str) -> ctypes.CDLL | None:
    path = ctypes.util.find_library(name)
    for candidate in ([path] if path else []) + [f"lib{name}.so.0", f"lib{name}.so.1"]:
        try:
            return ctypes.CDLL(candidate)
        except OSError:
            continue
    return None


def _g729(pcm: np.ndarray) -> Encoded | None:
    lib = _library("bcg729")
    if lib is None:
        return None
    lib.initBcg729EncoderChannel.restype = ctypes.c_void_p
    lib.initBcg729DecoderChannel.restype = ctypes.c_void_p
    lib.bcg729Encoder.argtypes = [ctypes.c_void_p, ctypes.POINTER(ctypes.c_int16), ctypes.POINTER(ctypes.c_uint8),
                                  ctypes.POINTER(ctypes.c_uint8)]  # fmt: skip
    lib.bcg729Decoder.argtypes = [ctypes.c_void_p, ctypes.POINTER(ctypes.c_uint8), ctypes.c_uint8, ctypes.c_uint8,
                                  ctypes.c_uint8, ctypes.c_uint8, ctypes.POINTER(ctypes.c_int16)]  # fmt: skip
    enc, dec = lib.initBcg729EncoderChannel(0), lib.initBcg729DecoderChannel()
    frames, decoded = [], []
    for i in range(0, len(pcm) - 79, 80):
        out, length = (ctypes.c_uint8 * 10)(), ctypes.c_uint8()
        lib.bcg729Encoder(enc, (ctypes.c_int16 * 80)(*pcm[i : i + 80]), out, ctypes.byref(length))
        frames.append(bytes(out)[: length.value])
        back = (ctypes.c_int16 * 80)()
        lib.bcg729Decoder(dec, (ctypes.c_uint8 * 10)(*frames[-1]), len(frames[-1]), 0, 0, 0, back)
        decoded.append(np.array(back[:], dtype=float) / 32768)
    payloads = [frames[i] + frames[i + 1] for i in range(0, len(frames) - 1, 2)]
    return Encoded(payloads, 160, np.concatenate(decoded))


def _gsm(pcm: np.ndarray) -> Encoded | None:
    lib = _library("gsm")
    if lib is None:
        return None
    lib.gsm_create.restype = ctypes.c_void_p
    lib.gsm_encode.argtypes = [ctypes.c_void_p, ctypes.POINTER(ctypes.c_int16), ctypes.POINTER(ctypes.c_uint8)]
    lib.gsm_decode.argtypes = [ctypes.c_void_p, ctypes.POINTER(ctypes.c_uint8), ctypes.POINTER(ctypes.c_int16)]
    enc, dec = lib.gsm_create(), lib.gsm_create()
    payloads, decoded = [], []
    for i in range(0, len(pcm) - 159, 160):
        out = (ctypes.c_uint8 * 33)()
        lib.gsm_encode(enc, (ctypes.c_int16 * 160)(*pcm[i : i + 160]), out)
        payloads.append(bytes(out))
        back = (ctypes.c_int16 * 160)()
        lib.gsm_decode(dec, (ctypes.c_uint8 * 33)(*payloads[-1]), back)
        decoded.append(np.array(back[:], dtype=float) / 32768)
    return Encoded(payloads, 160, np.concatenate(decoded))


ENCODERS: dict[str, Callable[[np.ndarray], Encoded | None]] = {
    "PCMU": _g711(encode_ulaw, decode_ulaw),
    "PCMA": _g711(encode_alaw, decode_alaw),
    "G722": _av("g722", 16000, 20, 8000),
    "G723": _av("g723_1", 8000, 30, 8000, bit_rate="6300"),
    "G726-32": _g726,
    "G729": _g729,
    "GSM": _gsm,
}


def encode(codec: str, pcm: np.ndarray) -> Encoded | None:
    """``pcm``: int16 at 8 kHz. None when this machine cannot encode ``codec``."""
    encoder = ENCODERS.get(codec.upper())
    return encoder(pcm) if encoder else None
