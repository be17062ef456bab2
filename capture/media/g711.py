"""G.711 mu-law and A-law (ITU-T G.711) with numpy lookup tables.

Decoding a packet is one fancy-index: ``TABLE[np.frombuffer(payload, np.uint8)]``.
The encoders exist for senders and test fixtures.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt


def _ulaw_table() -> npt.NDArray[np.int16]:
    u = ~np.arange(256, dtype=np.int32) & 0xFF
    exponent = (u >> 4) & 0x07
    mantissa = u & 0x0F
    magnitude = ((mantissa << 3) + 0x84) << exponent
    return np.where(u & 0x80, 0x84 - magnitude, magnitude - 0x84).astype(np.int16)


def _alaw_table() -> npt.NDArray[np.int16]:
    a = np.arange(256, dtype=np.int32) ^ 0x55
    exponent = (a >> 4) & 0x07
    mantissa = a & 0x0F
    magnitude = np.where(exponent == 0, (mantissa << 4) + 8, ((mantissa << 4) + 0x108) << np.maximum(exponent - 1, 0))
    return np.where(a & 0x80, magnitude, -magnitude).astype(np.int16)


ULAW = _ulaw_table()
ALAW = _alaw_table()


def decode_ulaw(payload: bytes) -> npt.NDArray[np.int16]:
    return ULAW[np.frombuffer(payload, dtype=np.uint8)]


def decode_alaw(payload: bytes) -> npt.NDArray[np.int16]:
    return ALAW[np.frombuffer(payload, dtype=np.uint8)]


def _encoder(table: npt.NDArray[np.int16]) -> npt.NDArray[np.uint8]:
    """int16 (as uint16 index) -> the code whose decoded value is nearest."""
    order = np.argsort(table, kind="stable")
    values = table[order].astype(np.int32)
    grid = np.arange(-32768, 32768, dtype=np.int32)
    idx = np.clip(np.searchsorted(values, grid), 1, 255)
    nearer_low = (grid - values[idx - 1]) <= (values[idx] - grid)
    codes = order[np.where(nearer_low, idx - 1, idx)].astype(np.uint8)
    return np.roll(codes, -32768)


_ULAW_ENC = _encoder(ULAW)
_ALAW_ENC = _encoder(ALAW)


def encode_ulaw(pcm: npt.ArrayLike) -> bytes:
    return _ULAW_ENC[np.asarray(pcm, dtype=np.int16).view(np.uint16)].tobytes()


def encode_alaw(pcm: npt.ArrayLike) -> bytes:
    return _ALAW_ENC[np.asarray(pcm, dtype=np.int16).view(np.uint16)].tobytes()
