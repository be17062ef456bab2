"""Audio codecs an RTP receiver understands: what signalling (SDP ``a=rtpmap``, or a static
payload type) says a payload type carries. Pure data; the decoders are in
:mod:`capture.media.decoders`.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Codec:
    """One payload type as signalled."""

    payload_type: int
    name: str
    "Upper case encoding name: PCMU, PCMA, G722, OPUS, TELEPHONE-EVENT."
    clock_rate: int
    channels: int = 1


STATIC: dict[int, tuple[str, int, int]] = {0: ("PCMU", 8000, 1), 8: ("PCMA", 8000, 1), 9: ("G722", 8000, 1)}
"Static payload types (RFC 3551) a receiver understands without an rtpmap: (name, clock rate, channels)."
SUPPORTED = ("OPUS", "G722", "PCMA", "PCMU")
"Codecs there is a decoder for (:func:`capture.media.decoders.decoder_for`), in order of preference."
TELEPHONE_EVENT = "TELEPHONE-EVENT"
"RFC 4733 DTMF, carried beside the audio codec."
