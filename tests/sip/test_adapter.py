"""The asyncio shell in-process: transports, allow-list, capacity and shutdown.

The pipeline is replaced by a small recording Capture (events kept in a list) so each
check is direct; the end-to-end path through the real CLI is covered by the other files.
"""

from __future__ import annotations

import asyncio
import socket
from datetime import UTC, datetime
from pathlib import Path

import pytest
from fakecapture import FakeCapture

from adapters.sip.adapter import SipAdapter
from adapters.sip.message import parse_message
from adapters.sip.settings import SipSettings
from capture.errors import ConfigError, StartupError
from capture.events import CallEnded, CallStarted, CaptureNoted, Disposition, PartyJoined


def request(method: str, call_id: str, port: int, *, body: str = "", extra: str = "", transport: str = "UDP") -> bytes:
    return (
        f"{method} sip:rec@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/{transport} 127.0.0.1:{port};branch=z9hG4bK{call_id}\r\n"
        f"From: <sip:alice@127.0.0.1>;tag=a\r\nTo: <sip:rec@127.0.0.1>\r\nCall-ID: {call_id}\r\n"
        f"CSeq: 1 {method}\r\nContact: <sip:alice@127.0.0.1:{port}>\r\n{extra}"
        f"{'Content-Type: application/sdp' + chr(13) + chr(10) if body else ''}"
        f"Content-Length: {len(body)}\r\n\r\n{body}"
    ).encode()


SDP = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\n"


async def exchange(sock: socket.socket, data: bytes, port: int, until: int = 200) -> list[bytes]:
    """Send over UDP, collect responses up to a final one (or nothing within 0.5 s)."""
    loop = asyncio.get_running_loop()
    sock.sendto(data, ("127.0.0.1", port))
    out: list[bytes] = []
    while True:
        try:
            reply = await asyncio.wait_for(loop.sock_recv(sock, 65536), 0.5)
        except TimeoutError:
            return out
        out.append(reply)
        if (parse_message(reply).status or 0) >= until:
            return out


@pytest.fixture
def udp() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.setblocking(False)
    yield sock
    sock.close()


async def start(tmp_path: Path, **settings: object) -> tuple[SipAdapter, FakeCapture]:
    capture = FakeCapture(tmp_path)
    adapter = SipAdapter(SipSettings(listen="127.0.0.1:0", **settings), capture)  # type: ignore[arg-type]
    await adapter.start()
    return adapter, capture


async def test_capacity_gives_503_with_retry_after_and_an_incomplete_call(tmp_path: Path, udp: socket.socket) -> None:
    adapter, capture = await start(tmp_path, max_calls=1, retry_after_s=9)
    me = udp.getsockname()[1]
    try:
        first = await exchange(udp, request("INVITE", "c1", me, body=SDP), adapter.port)
        assert parse_message(first[-1]).status == 200
        second = parse_message((await exchange(udp, request("INVITE", "c2", me, body=SDP), adapter.port))[-1])
        assert second.status == 503 and second.get("Retry-After") == "9"
        ended = [e for e in capture.events if isinstance(e, CallEnded) and e.call_id == "c2"]
        assert ended and ended[0].disposition is Disposition.CONGESTION
    finally:
        await adapter.stop()
        await adapter.close()
    ends = [e for e in capture.events if isinstance(e, CallEnded)]
    assert {e.call_id for e in ends} == {"c1", "c2"}, "stop() ends every active call"


async def test_admission_follows_the_capture_and_ends_at_stop(tmp_path: Path, udp: socket.socket) -> None:
    adapter, capture = await start(tmp_path, retry_after_s=4)
    me = udp.getsockname()[1]

    async def status(call_id: str) -> tuple[int | None, str | None]:
        reply = parse_message((await exchange(udp, request("INVITE", call_id, me, body=SDP), adapter.port))[-1])
        return reply.status, reply.get("Retry-After")

    try:
        capture.accepting = capture.can_record = False  # the disk fell below its free-space floor
        assert await status("d1") == (503, "4")
        capture.accepting = capture.can_record = True  # space again
        assert (await status("d2"))[0] == 200
        await adapter.stop()
        assert await status("d3") == (503, "4"), "after stop() no new call, whatever the capture says"
    finally:
        await adapter.stop()
        await adapter.close()
    ended = {e.call_id: e.disposition for e in capture.events if isinstance(e, CallEnded)}
    assert ended == {"d2": None, "d3": Disposition.CONGESTION}, "below the disk floor a refusal records nothing"


async def test_unusable_offers_are_refused_with_a_vcon(tmp_path: Path, udp: socket.socket) -> None:
    adapter, capture = await start(tmp_path)
    me = udp.getsockname()[1]
    try:
        amr = SDP.replace("RTP/AVP 0", "RTP/AVP 96") + "a=rtpmap:96 AMR/8000\r\n"
        assert (
            parse_message((await exchange(udp, request("INVITE", "u1", me, body=amr), adapter.port))[-1]).status == 488
        )
        bad = parse_message((await exchange(udp, request("INVITE", "u2", me, body="x=y"), adapter.port))[-1])
        assert bad.status == 400
        required = request("INVITE", "u3", me, body=SDP, extra="Require: 100rel\r\n")
        assert parse_message((await exchange(udp, required, adapter.port))[-1]).status == 420
    finally:
        await adapter.stop()
        await adapter.close()
    started = {e.call_id for e in capture.events if isinstance(e, CallStarted)}
    failed = {e.call_id for e in capture.events if isinstance(e, CallEnded) and e.disposition is Disposition.FAILED}
    assert started == failed == {"u1", "u2"}


async def test_allow_list_drops_other_sources(tmp_path: Path, udp: socket.socket) -> None:
    adapter, capture = await start(tmp_path, allow=("10.0.0.0/8",))
    try:
        assert await exchange(udp, request("OPTIONS", "o1", udp.getsockname()[1]), adapter.port) == []
        assert adapter.refused == 1 and capture.events == []
    finally:
        await adapter.stop()
        await adapter.close()


async def test_tcp_options_and_garbage(tmp_path: Path) -> None:
    adapter, _ = await start(tmp_path)
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", adapter.port)
        writer.write(request("OPTIONS", "t1", 1, transport="TCP"))
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
        reply = parse_message(head)
        assert reply.status == 200 and "INVITE" in (reply.get("Allow") or "")
        writer.write(b"NOT SIP\r\n\r\n")
        assert await asyncio.wait_for(reader.read(), 5) == b""  # the stream is unusable: closed
        writer.close()
        assert adapter.malformed == 1
    finally:
        await adapter.stop()
        await adapter.close()


async def test_port_in_use_is_a_startup_error(tmp_path: Path) -> None:
    adapter, _ = await start(tmp_path)
    try:
        other = SipAdapter(SipSettings(listen=f"127.0.0.1:{adapter.port}"), FakeCapture(tmp_path))  # type: ignore[arg-type]
        with pytest.raises(StartupError):
            await other.start()
    finally:
        await adapter.stop()
        await adapter.close()


def test_settings_are_checked() -> None:
    with pytest.raises(ConfigError, match="sip.allow"):
        SipSettings(allow=("not-a-network",))
    with pytest.raises(ConfigError, match="rtp_port_min"):
        SipSettings(rtp_port_min=30000, rtp_port_max=20000)


def siprec_body(labels: list[str], participants: list[tuple[str, str, str]]) -> str:
    media = "".join(
        f"m=audio {4000 + 2 * i} RTP/AVP 8\r\na=label:{label}\r\na=sendonly\r\n" for i, label in enumerate(labels)
    )
    xml = '<recording xmlns="urn:ietf:params:xml:ns:recording:1">'
    for pid, name, label in participants:
        name_id = f'<nameID aor="sip:{pid}@example.com"><name>{name}</name></nameID>'
        xml += f'<participant participant_id="{pid}">{name_id}</participant>'
        xml += f'<stream stream_id="s{pid}" session_id="x"><label>{label}</label></stream>'
        xml += f'<participantstreamassoc participant_id="{pid}"><send>s{pid}</send></participantstreamassoc>'
    xml += "</recording>"
    return (
        f"--b\r\nContent-Type: application/sdp\r\n\r\n{SDP.split('m=')[0]}{media}\r\n"
        "--b\r\nContent-Type: application/rs-metadata+xml\r\nContent-Disposition: recording-session\r\n\r\n"
        f"{xml}\r\n--b--\r\n"
    )


async def test_siprec_metadata_update_dtmf_info_and_bye(tmp_path: Path, udp: socket.socket) -> None:
    adapter, capture = await start(tmp_path)
    me = udp.getsockname()[1]
    a, b = ("pA", "Agent", "1"), ("pB", "Customer", "2")
    try:
        invite = request("INVITE", "s1", me, body=siprec_body(["1", "2"], [a, b]), extra="Require: siprec\r\n")
        invite = invite.replace(b"application/sdp", b"multipart/mixed;boundary=b", 1)
        ok = parse_message((await exchange(udp, invite, adapter.port))[-1])
        answer = ok.body.decode()
        assert ok.status == 200 and "siprec" in ok.tokens("Supported")
        assert answer.count("a=recvonly") == 2 and "a=label:1" in answer and "a=label:2" in answer
        tag = f";tag={ok.get('To').rsplit('tag=', 1)[1]}"  # type: ignore[union-attr]

        def in_dialog(method: str, cseq: int, body: str = "", ctype: str = "") -> bytes:
            data = request(method, "s1", me, body=body).replace(
                b"<sip:rec@127.0.0.1>", f"<sip:rec@127.0.0.1>{tag}".encode()
            )
            data = data.replace(f"1 {method}".encode(), f"{cseq} {method}".encode())
            data = data.replace(b"branch=z9hG4bKs1", f"branch=z9hG4bKs1-{cseq}".encode())
            return data.replace(b"application/sdp", ctype.encode(), 1) if ctype else data

        udp.sendto(in_dialog("ACK", 1), ("127.0.0.1", adapter.port))
        update = siprec_body(["1", "2", "3"], [a, b, ("pC", "Supervisor", "3")])
        reinvite = in_dialog("INVITE", 2, update, "multipart/mixed;boundary=b")
        ok2 = parse_message((await exchange(udp, reinvite, adapter.port))[-1])
        assert ok2.status == 200 and ok2.body.decode().count("a=recvonly") == 3
        udp.sendto(in_dialog("ACK", 2), ("127.0.0.1", adapter.port))
        info = in_dialog("INFO", 3, "Signal=7\r\nDuration=250\r\n", "application/dtmf-relay")
        assert parse_message((await exchange(udp, info, adapter.port))[-1]).status == 200
        assert parse_message((await exchange(udp, in_dialog("BYE", 4), adapter.port))[-1]).status == 200
    finally:
        await adapter.stop()
        await adapter.close()
    joined = [e.name for e in capture.events if type(e).__name__ == "PartyJoined"]
    assert joined == ["Agent", "Customer", "Supervisor"]
    (dtmf,) = [e for e in capture.events if type(e).__name__ == "DtmfReceived"]
    assert dtmf.digit == "7" and dtmf.duration_s == 0.25
    (ended,) = [e for e in capture.events if isinstance(e, CallEnded)]
    assert ended.disposition is None and ended.ended_by is None
    kinds = [e.mediatype for e in capture.events if type(e).__name__ == "AttachmentAdded"]
    assert kinds == ["message/sip", "application/rs-metadata+xml", "application/rs-metadata+xml", "application/json"]
    unavailable = [e.stream_id for e in capture.events if type(e).__name__ == "MediaUnavailable"]
    assert len(unavailable) == 3, "streams that never got RTP are reported, not silently dropped"


def self_signed(directory: Path) -> tuple[Path, Path]:
    """A throwaway certificate for 127.0.0.1 (cryptography ships with aiortc)."""
    from datetime import timedelta
    from ipaddress import ip_address

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(1).not_valid_before(now - timedelta(minutes=1)).not_valid_after(now + timedelta(hours=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ip_address("127.0.0.1"))]), critical=False)
        .sign(key, hashes.SHA256())
    )  # fmt: skip
    cert_file, key_file = directory / "cert.pem", directory / "key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return cert_file, key_file


async def test_sip_over_tls_call_is_recorded(tmp_path: Path) -> None:
    import ssl

    import numpy as np
    import soundfile

    from capture.media.g711 import decode_ulaw, encode_ulaw
    from capture.media.rtp import build_rtp

    cert, key = self_signed(tmp_path)
    adapter, capture = await start(tmp_path, tls_listen="127.0.0.1:0", tls_cert_file=cert, tls_key_file=key)
    client = ssl.create_default_context(cafile=str(cert))
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", adapter.core.tls_port, ssl=client)

        async def send(data: bytes) -> bytes:
            writer.write(data)
            while True:
                head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
                length = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
                msg = head + await reader.readexactly(length)
                if (parse_message(msg).status or 0) >= 200:
                    return msg

        ok = parse_message(await send(request("INVITE", "tls1", 5061, body=SDP, transport="TLS")))
        assert ok.status == 200 and "transport=tls" in (ok.get("Contact") or "")
        port = int(ok.body.decode().split("m=audio ")[1].split()[0])
        tone = (np.sin(np.arange(8000) * 2 * np.pi * 440 / 8000) * 8000).astype(np.int16)
        coded = encode_ulaw(tone)
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as rtp:
            for i in range(50):
                rtp.sendto(build_rtp(0, i, i * 160, 7, coded[i * 160 : (i + 1) * 160]), ("127.0.0.1", port))
                await asyncio.sleep(0.002)
        await asyncio.sleep(0.1)
        tag = ok.get("To").rsplit("tag=", 1)[1]  # type: ignore[union-attr]
        bye = request("BYE", "tls1", 5061, transport="TLS").replace(
            b"<sip:rec@127.0.0.1>", f"<sip:rec@127.0.0.1>;tag={tag}".encode()
        )
        assert parse_message(await send(bye.replace(b"1 BYE", b"2 BYE").replace(b"bKtls1", b"bKtls2"))).status == 200
        writer.close()
    finally:
        await adapter.stop()
        await adapter.close()
    (recorded,) = [e for e in capture.events if type(e).__name__ == "MediaRecorded"]
    audio, _ = soundfile.read(recorded.path, dtype="int16")
    assert recorded.duration_s == 1.0 and np.array_equal(audio, decode_ulaw(coded))


def test_tls_needs_certificate_and_key() -> None:
    with pytest.raises(ConfigError, match="tls_listen"):
        SipSettings(tls_listen="127.0.0.1:5061")


async def test_latin1_display_name_is_recorded_and_noted(tmp_path: Path, udp: socket.socket) -> None:
    """Older PBXs send ISO-8859-1 display names (RFC 3261 wants UTF-8): the call is recorded, the
    name read as Latin-1, and capture_notes says so; before, the INVITE was refused outright."""
    adapter, capture = await start(tmp_path)
    me = udp.getsockname()[1]
    invite = request("INVITE", "l1", me, body=SDP).replace(
        b"From: <sip:alice@", 'From: "Jos\u00e9 M\u00fcller" <sip:alice@'.encode("latin-1")
    )
    try:
        assert parse_message((await exchange(udp, invite, adapter.port))[-1]).status == 200
    finally:
        await adapter.stop()
        await adapter.close()
    names = [e.name for e in capture.events if isinstance(e, PartyJoined)]
    assert "Jos\u00e9 M\u00fcller" in names
    (note,) = [e for e in capture.events if isinstance(e, CaptureNoted) and e.key == "sip_message"]
    assert "not UTF-8" in note.value[0]
