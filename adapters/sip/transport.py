"""The sockets of the SIP shell: SIP over UDP, TCP and TLS, and one UDP port per RTP stream.

Nothing here parses SIP beyond framing a TCP byte stream into messages: every message goes
to :meth:`Shell.on_message` with the transport it came on.
"""

from __future__ import annotations

import asyncio
import random
import socket
from typing import Any, Protocol, cast

from adapters.sip.framing import TcpFramer
from capture.errors import RemoteProtocolError

RTP_RCVBUF = 1 << 20
"Per stream socket: absorbs event-loop stalls (a vCon being finalised) of seconds without loss."


class Shell(Protocol):
    def admit(self, host: str) -> bool: ...

    def on_message(self, data: bytes, conn: Any, addr: tuple[str, int], transport: str) -> None: ...

    def on_bad_stream(self, host: str, error: RemoteProtocolError) -> None: ...


class UdpProtocol(asyncio.DatagramProtocol):
    """SIP over UDP: one message per datagram."""

    def __init__(self, shell: Shell) -> None:
        self.shell = shell
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.shell.on_message(data, self.transport, addr[:2], "udp")


class TcpProtocol(asyncio.Protocol):
    """One TCP or TLS connection: a byte stream framed into messages."""

    def __init__(self, shell: Shell, transport: str) -> None:
        self.shell = shell
        self.kind = transport
        self.framer = TcpFramer()
        self.transport: asyncio.Transport | None = None
        self.peer: tuple[str, int] = ("", 0)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        self.peer = transport.get_extra_info("peername")[:2]
        if not self.shell.admit(self.peer[0]):
            transport.close()

    def data_received(self, data: bytes) -> None:
        assert self.transport is not None
        try:
            messages = self.framer.feed(data)
        except RemoteProtocolError as exc:
            self.shell.on_bad_stream(self.peer[0], exc)
            self.transport.close()
            return
        for message in messages:
            self.shell.on_message(message, self.transport, self.peer, self.kind)


def bind_rtp_socket(host: str, port_min: int, port_max: int) -> tuple[socket.socket, int]:
    """A non-blocking UDP socket on a free even port of the range (from a random start)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    ports = range(port_min + (port_min & 1), port_max + 1, 2)
    first = random.randrange(len(ports))
    for i in range(len(ports)):
        port = ports[(first + i) % len(ports)]
        sock = socket.socket(family, socket.SOCK_DGRAM)
        try:
            sock.bind((host, port))
        except OSError:
            sock.close()
            continue
        sock.setblocking(False)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RTP_RCVBUF)
        return sock, port
    raise RemoteProtocolError("no free RTP port", status_hint=503)


def reachable_address(host: str) -> str:
    """The listen host, or for a wildcard listen the address of the default route (for Contact and SDP)."""
    if host not in ("0.0.0.0", "::", ""):
        return host
    family = socket.AF_INET6 if host == "::" else socket.AF_INET
    with socket.socket(family, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(("2001:db8::1" if family == socket.AF_INET6 else "192.0.2.1", 9))
            return str(probe.getsockname()[0])
        except OSError:
            return "::1" if family == socket.AF_INET6 else "127.0.0.1"
