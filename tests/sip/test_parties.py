"""Who the parties of a plain SIP call are: From, Remote-Party-ID, P-Asserted-Identity, Identity."""

from __future__ import annotations

from adapters.sip.message import parse_message
from adapters.sip.parties import callee_fields, caller_fields

PASSPORT = "eyJhbGciOiJFUzI1NiJ9.eyJvcmlnIjp7InRuIjoiMTIxNTU1NTEyMTIifX0.c2lnbmF0dXJl"


def test_asserted_identity_wins_and_stir_is_kept() -> None:
    invite = parse_message(
        (
            "INVITE sip:rec@10.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.2;branch=z9hG4bK1\r\n"
            'From: "Anonymous" <sip:anonymous@anonymous.invalid>;tag=1\r\n'
            "To: <sip:+18005550100@pbx.example;user=phone>\r\nCall-ID: x\r\nCSeq: 1 INVITE\r\n"
            'Remote-Party-ID: "Front Desk" <sip:2000@pbx.example>;party=calling\r\n'
            'P-Asserted-Identity: "Jane Roe" <sip:+12155551212@pbx.example>, <tel:+12155551212>\r\n'
            f"Identity: {PASSPORT};info=<https://cert.example/cert.pem>;alg=ES256;ppt=shaken\r\n"
            "Content-Length: 0\r\n\r\n"
        ).encode()
    )
    caller = caller_fields(invite)
    assert caller == {"name": "Jane Roe", "sip": "sip:+12155551212@pbx.example", "tel": "+12155551212",
                      "stir": PASSPORT}  # fmt: skip
    assert callee_fields(invite) == {"sip": "sip:+18005550100@pbx.example", "tel": "+18005550100"}
