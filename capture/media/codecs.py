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


STATIC: dict[int, tuple[str, int, int]] = {
    0: ("PCMU", 8000, 1), 3: ("GSM", 8000, 1), 4: ("G723", 8000, 1), 8: ("PCMA", 8000, 1),
    9: ("G722", 8000, 1), 13: ("CN", 8000, 1), 18: ("G729", 8000, 1),
}  # fmt: skip
"Static payload types (RFC 3551) an offer may list without an rtpmap: (name, clock rate, channels)."
SUPPORTED = ("OPUS", "G722", "PCMA", "PCMU", "G729", "G729A", "G729B", "G723", "GSM", "ILBC", "G726-16", "G726-24",
             "G726-32", "G726-40", "AAL2-G726-16", "AAL2-G726-24", "AAL2-G726-32", "AAL2-G726-40")  # fmt: skip
"""Codecs there is a decoder for (:func:`capture.media.decoders.decoder_for`). The offer's
order decides between them: a recorder takes what the SRC lists first (a CUBE offering G.729
is recorded in G.729, not refused or transcoded upstream)."""
TELEPHONE_EVENT = "TELEPHONE-EVENT"
"RFC 4733 DTMF, carried beside the audio codec."
SDP_NAMES = {"OPUS": "opus", "ILBC": "iLBC", TELEPHONE_EVENT: "telephone-event"}
"Encoding names written back in an answer where the registered spelling is not upper case."
