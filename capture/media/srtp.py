"""SDES-SRTP (RFC 4568 ``a=crypto``) for received RTP streams, through libsrtp (pylibsrtp).

The signalling (SDP) carries the key; any RTP adapter that negotiates SDES hands the
offered ``a=crypto`` value to :class:`SrtpReceiver` and gives it to the stream's
:class:`capture.media.receiver.RtpReceiver`.
"""

from __future__ import annotations

import base64
import os

import pylibsrtp

from capture.errors import RemoteProtocolError

SUITES = {
    "AES_CM_128_HMAC_SHA1_80": pylibsrtp.Policy.SRTP_PROFILE_AES128_CM_SHA1_80,
    "AES_CM_128_HMAC_SHA1_32": pylibsrtp.Policy.SRTP_PROFILE_AES128_CM_SHA1_32,
}
KEY_SALT_BYTES = 30
SrtpError = pylibsrtp.Error
"A forged, replayed or garbled SRTP packet."


class SrtpReceiver:
    """Decrypts one stream's SRTP and SRTCP with the key the offerer sent."""

    def __init__(self, crypto: str) -> None:
        tag, suite, key = _split(crypto)
        policy = pylibsrtp.Policy(key=key, ssrc_type=pylibsrtp.Policy.SSRC_ANY_INBOUND, srtp_profile=SUITES[suite])
        self._session = pylibsrtp.Session(policy=policy)
        self.tag = tag
        self.suite = suite

    def unprotect(self, data: bytes, rtcp: bool) -> bytes:
        """Plain packet; :data:`SrtpError` for a forged, replayed or garbled one."""
        return self._session.unprotect_rtcp(data) if rtcp else self._session.unprotect(data)

    def answer_line(self) -> str:
        """Our own ``a=crypto`` value (a fresh key; we never send with it, SDES just requires one)."""
        key = base64.b64encode(os.urandom(KEY_SALT_BYTES)).decode()
        return f"{self.tag} {self.suite} inline:{key}"


def pick_crypto(offers: list[str]) -> str | None:
    """The first offered ``a=crypto`` whose suite libsrtp can do here."""
    for line in offers:
        try:
            _split(line)
        except RemoteProtocolError:
            continue
        return line
    return None


def _split(crypto: str) -> tuple[str, str, bytes]:
    parts = crypto.split()
    if len(parts) < 3 or parts[1] not in SUITES or not parts[2].startswith("inline:"):
        raise RemoteProtocolError(f"unusable a=crypto {crypto[:60]!r}", status_hint=488)
    try:
        key = base64.b64decode(parts[2][7:].split("|", 1)[0], validate=True)
    except ValueError:
        raise RemoteProtocolError("a=crypto key is not base64", status_hint=488) from None
    if len(key) != KEY_SALT_BYTES:
        raise RemoteProtocolError("a=crypto key is not 30 bytes", status_hint=488)
    return parts[0], parts[1], key
