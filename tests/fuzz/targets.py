"""Every parser that takes bytes from the network, as a fuzz target: bytes in, and nothing but the
parser's documented refusal (RemoteProtocolError) may come out. Anything else is a finding.

Used by tests/fuzz/run.py (atheris, coverage-guided, libFuzzer underneath) and by the suite's
short runs (tests/fuzz/test_fuzz.py); bench/fuzz.py runs them longer.
"""

from __future__ import annotations

from collections.abc import Callable

from capture.errors import RemoteProtocolError

MODULES = {
    "sip": ["adapters.sip.message"],
    "sip_tcp": ["adapters.sip.framing", "adapters.sip.message"],
    "sdp": ["adapters.sip.sdp"],
    "multipart": ["adapters.sip.siprec"],
    "metadata": ["adapters.sip.siprec", "adapters.sip.metadata", "adapters.sip.xmlsafe"],
    "ami": ["adapters.ami.protocol", "adapters.ami.actions"],
    "whip_offer": ["adapters.webrtc.offer"],
    "rtp": ["capture.media.rtp", "capture.media.dtmf"],
}
"Modules each target exercises: instrumented for coverage."


def sip(data: bytes) -> None:
    from adapters.sip.message import parse_message, parse_name_addr

    try:
        msg = parse_message(data, datagram=True)
    except RemoteProtocolError:
        return
    for header in ("From", "To", "Contact", "P-Asserted-Identity"):
        for value in msg.get_all(header):
            try:
                parse_name_addr(value)
            except RemoteProtocolError:
                pass
    msg.to_bytes()


def sip_tcp(data: bytes) -> None:
    from adapters.sip.framing import TcpFramer

    framer = TcpFramer()
    cut = data[0] % 64 if data else 0
    try:
        for piece in (data[1 : 1 + cut], data[1 + cut :]):
            framer.feed(piece)
    except RemoteProtocolError:
        return


def sdp(data: bytes) -> None:
    from adapters.sip.sdp import choose_codecs, parse_sdp

    try:
        session = parse_sdp(data)
    except RemoteProtocolError:
        return
    for m in session.media:
        choose_codecs(m)


def multipart(data: bytes) -> None:
    from adapters.sip.siprec import body_parts

    boundary, _, body = data.partition(b"\n")
    content_type = "multipart/mixed;boundary=" + boundary.decode("latin-1").strip()
    try:
        body_parts(content_type, body)
    except RemoteProtocolError:
        return


def metadata(data: bytes) -> None:
    from adapters.sip.siprec import parse_metadata

    try:
        parse_metadata(data)
    except RemoteProtocolError:
        return


def ami(data: bytes) -> None:
    from adapters.ami.actions import Correlator
    from adapters.ami.protocol import AmiParser, Message

    parser = AmiParser(max_message=4096)
    correlator = Correlator()
    cut = data[0] % 97 if data else 0
    try:
        for piece in (data[1 : 1 + cut], data[1 + cut :]):
            for item in parser.feed(piece):
                if isinstance(item, Message):
                    correlator.handle(item)
    except RemoteProtocolError:
        return


def whip_offer(data: bytes) -> None:
    from adapters.webrtc.offer import check_offer

    try:
        check_offer(data, 64 * 1024)
    except RemoteProtocolError:
        return


def rtp(data: bytes) -> None:
    from capture.media.dtmf import DtmfTracker
    from capture.media.rtp import is_rtcp, parse_rtp

    is_rtcp(data)
    try:
        packet = parse_rtp(data)
    except RemoteProtocolError:
        return
    try:
        DtmfTracker().feed(packet.timestamp, packet.payload)
    except RemoteProtocolError:
        return


TARGETS: dict[str, Callable[[bytes], None]] = {
    "sip": sip,
    "sip_tcp": sip_tcp,
    "sdp": sdp,
    "multipart": multipart,
    "metadata": metadata,
    "ami": ami,
    "whip_offer": whip_offer,
    "rtp": rtp,
}
