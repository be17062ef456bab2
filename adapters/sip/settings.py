"""The ``[sip]`` settings section."""

from __future__ import annotations

import ipaddress
import ssl
from dataclasses import dataclass
from pathlib import Path

from capture.errors import ConfigError
from capture.settings import setting, split_hostport

PRIVATE_RANGES = ("127.0.0.0/8", "::1/128", "10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "fc00::/7")


@dataclass(frozen=True)
class SipSettings:
    listen: str = setting("127.0.0.1:5060", "SIP address, UDP and TCP on the same port (HOST:PORT)")
    advertise: str | None = setting(None, "address put in Contact and SDP (default: the listen host)")
    rtp_port_min: int = setting(20000, "lowest RTP port (one even port per received stream)")
    rtp_port_max: int = setting(30000, "highest RTP port")
    max_calls: int = setting(100, "concurrent calls; beyond it INVITEs get 503 with Retry-After")
    retry_after_s: int = setting(5, "Retry-After seconds sent with 503")
    media_timeout_s: float = setting(30.0, "end an answered call whose RTP stopped this long (not while on hold)")
    allow: tuple[str, ...] = setting(PRIVATE_RANGES, "source networks (CIDR, comma-separated) allowed to send SIP")
    tls_listen: str | None = setting(None, "SIP over TLS address (HOST:PORT); needs tls_cert_file and tls_key_file")
    tls_cert_file: Path | None = setting(None, "PEM certificate chain for SIP over TLS")
    tls_key_file: Path | None = setting(None, "PEM private key for SIP over TLS")
    answer_delay_s: float = setting(0.0, "ring (180) this long before answering (0: answer at once)")
    reorder_depth: int = setting(8, "RTP packets held waiting for a missing one before it counts as lost")
    rtp_source: str = setting(
        "strict",
        "RTP source check: strict (only the SDP's host; latch when its address cannot be the source, "
        "e.g. NAT), latch (the first source that sends), any (no check)",
    )
    rtp_relatch_s: float = setting(
        0.5, "another source of the peer may take a stream once its sender was quiet this long (media server switch)"
    )
    refused_vcons_per_s: float = setting(
        5.0, "refused INVITEs (503) recorded as incomplete vCons per second, bursts of 10x; past it only counted"
    )

    def __post_init__(self) -> None:
        split_hostport(self.listen, "sip.listen")
        if self.tls_listen is not None:
            split_hostport(self.tls_listen, "sip.tls_listen")
            if self.tls_cert_file is None or self.tls_key_file is None:
                raise ConfigError("sip.tls_listen", "needs tls_cert_file and tls_key_file")
        if not 1024 <= self.rtp_port_min <= self.rtp_port_max <= 65535:
            raise ConfigError("sip.rtp_port_min", "need 1024 <= rtp_port_min <= rtp_port_max <= 65535")
        for name in ("max_calls", "reorder_depth"):
            if getattr(self, name) < 1:
                raise ConfigError(f"sip.{name}", "must be at least 1")
        if self.media_timeout_s <= 0:
            raise ConfigError("sip.media_timeout_s", "must be positive")
        self.networks()

    def tls_context(self) -> ssl.SSLContext | None:
        """Server context for SIP over TLS, or None when it is off."""
        if self.tls_listen is None:
            return None
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        try:
            context.load_cert_chain(str(self.tls_cert_file), str(self.tls_key_file))
        except (OSError, ssl.SSLError) as exc:
            raise ConfigError("sip.tls_cert_file", f"cannot load certificate and key: {exc}") from None
        return context

    def networks(self) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
        try:
            return tuple(ipaddress.ip_network(n, strict=False) for n in self.allow)
        except ValueError as exc:
            raise ConfigError("sip.allow", str(exc)) from None
