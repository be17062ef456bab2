"""SDES-SRTP: the key from a=crypto decrypts what a libsrtp sender protected with it."""

from __future__ import annotations

import base64

import pylibsrtp
import pytest

from capture.errors import RemoteProtocolError
from capture.media.rtp import build_rtp
from capture.media.srtp import SrtpReceiver, pick_crypto

KEY = bytes(range(30))
LINE = f"1 AES_CM_128_HMAC_SHA1_80 inline:{base64.b64encode(KEY).decode()}"


def test_receiver_decrypts_a_libsrtp_sender_and_refuses_forgeries() -> None:
    sender = pylibsrtp.Session(
        policy=pylibsrtp.Policy(
            key=KEY,
            ssrc_type=pylibsrtp.Policy.SSRC_ANY_OUTBOUND,
            srtp_profile=pylibsrtp.Policy.SRTP_PROFILE_AES128_CM_SHA1_80,
        )
    )
    receiver = SrtpReceiver(LINE)
    plain = build_rtp(0, 7, 1120, 42, b"\x55" * 160)
    protected = sender.protect(plain)
    assert protected != plain and receiver.unprotect(protected, rtcp=False) == plain
    with pytest.raises(pylibsrtp.Error):
        receiver.unprotect(protected[:-1] + bytes([protected[-1] ^ 1]), rtcp=False)
    tag, suite, key = receiver.answer_line().split()
    assert (tag, suite) == ("1", "AES_CM_128_HMAC_SHA1_80") and len(base64.b64decode(key[7:])) == 30


def test_crypto_offers() -> None:
    assert pick_crypto(["1 F8_128_HMAC_SHA1_80 inline:xx", LINE]) == LINE
    assert pick_crypto(["1 AES_CM_128_HMAC_SHA1_80 inline:c2hvcnQ="]) is None
    with pytest.raises(RemoteProtocolError):
        SrtpReceiver("1 AES_CM_128_HMAC_SHA1_80 inline:!!!")
