"""ICE setup: only the configured STUN/TURN servers, optionally pinned host addresses.

aiortc falls back to a public Google STUN server when given no configuration, so the
configuration is always explicit. aioice never offers 127.0.0.1 as a host candidate,
which leaves a loopback-only host (a container with ``--network none``) without any;
pinning replaces aioice's address discovery for the whole process.
"""

from __future__ import annotations

from aiortc import RTCConfiguration, RTCIceServer

from adapters.webrtc import aiortc_compat as compat


def rtc_configuration(urls: tuple[str, ...], username: str | None, credential: str | None) -> RTCConfiguration:
    servers = [
        RTCIceServer(urls=url, username=username, credential=credential)
        if url.startswith("turn")
        else RTCIceServer(urls=url)
        for url in urls
    ]
    return RTCConfiguration(iceServers=servers)


def pin_host_addresses(addresses: tuple[str, ...]) -> None:
    """Make every ICE agent in this process gather host candidates on exactly these addresses."""

    def host_addresses(use_ipv4: bool, use_ipv6: bool) -> list[str]:
        return [a for a in addresses if (use_ipv6 if ":" in a else use_ipv4)]

    compat.pin_host_addresses(host_addresses)


def link_headers(urls: tuple[str, ...]) -> list[str]:
    """RFC 9725 ``Link: <stun:...>; rel="ice-server"`` for the STUN servers (TURN secrets stay here)."""
    return [f'<{url}>; rel="ice-server"' for url in urls if url.startswith("stun:")]
