"""The ``[webrtc]`` settings section."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from capture.errors import ConfigError
from capture.settings import setting, split_hostport


@dataclass(frozen=True)
class WebrtcSettings:
    listen: str = setting("127.0.0.1:8080", "HTTP address of the WHIP endpoint and the page (HOST:PORT)")
    token_file: Path | None = setting(
        None, "bearer tokens, one a line: TOKEN [name=...; tel=...; mailto=...] (unset: no auth)"
    )
    ice_servers: tuple[str, ...] = setting(
        (), "STUN/TURN URLs (comma-separated); never a public default. turn: uses turn_username/turn_credential_file"
    )
    turn_username: str | None = setting(None, "username for the turn: ICE server")
    turn_credential_file: Path | None = setting(None, "file holding the TURN credential")
    host_addresses: tuple[str, ...] = setting(
        (), "pin ICE host candidates to these addresses, e.g. 127.0.0.1 on loopback-only hosts (unset: all NICs)"
    )
    linger_s: float = setting(3.0, "a room ends this long after its last participant left")
    setup_timeout_s: float = setting(10.0, "close a session that sent no audio this long after the answer")
    media_timeout_s: float = setting(5.0, "close a session whose audio stopped for this long")
    max_offer_bytes: int = setting(65536, "largest SDP offer accepted (413 above)")
    max_sessions: int = setting(
        30, "concurrent participants in this process (503 above; each costs about 2 percent of a core)"
    )
    max_participants: int = setting(16, "participants in one room (403 above)")
    reorder_depth: int = setting(3, "RTP packets held waiting for a missing one before it counts as lost")
    cors_origin: str = setting("*", "Access-Control-Allow-Origin for browser WHIP clients")

    def __post_init__(self) -> None:
        split_hostport(self.listen, "webrtc.listen")
        for name in ("linger_s", "setup_timeout_s", "media_timeout_s"):
            if getattr(self, name) < 0:
                raise ConfigError(f"webrtc.{name}", "must not be negative")
        for name in ("max_offer_bytes", "max_sessions", "max_participants", "reorder_depth"):
            if getattr(self, name) < 1:
                raise ConfigError(f"webrtc.{name}", "must be at least 1")
        for url in self.ice_servers:
            if not url.startswith(("stun:", "turn:", "turns:")):
                raise ConfigError("webrtc.ice_servers", f"not a stun:/turn: URL: {url!r}")
