"""The one exception tree of vcon-capture.

::

    CaptureError
    ├── ConfigError              a bad or missing setting; names it; CLI exit 2
    ├── ProtocolError            never raised directly
    │   ├── LocalProtocolError     we asked for something illegal (a bug or API misuse)
    │   └── RemoteProtocolError    the peer sent garbage (SIP, SDP, rs-metadata, AMI, WHIP)
    ├── AdapterError
    │   ├── StartupError           a port is in use, a directory is unusable; CLI exit 3
    │   └── AuthenticationError    credentials rejected (AMI login); CLI exit 3
    ├── MediaError               recorder failure, missing file, unsupported codec
    │   └── TransientMediaError    the media store is unreachable or refused: retried later
    ├── InvalidVcon              a vCon failed validation; .problems lists each with its JSON path
    ├── VerificationError        a signed or encrypted vCon does not verify or decrypt
    └── DeliveryError            .sink, .vcon_uuid
        ├── TransientDeliveryError   timeout, connection refused, 5xx, 408, 429: retried
        └── PermanentDeliveryError   any other 4xx: dead-lettered, never retried unchanged
"""

from __future__ import annotations


class CaptureError(Exception):
    """Base of every error vcon-capture raises on purpose."""


class ConfigError(CaptureError):
    """A setting is missing, malformed or contradictory."""

    def __init__(self, setting: str, reason: str) -> None:
        super().__init__(f"{setting}: {reason}")
        self.setting = setting
        self.reason = reason


class ProtocolError(CaptureError):
    """A protocol rule was broken; use one of the two subclasses."""

    def __init__(self, message: str, *, status_hint: int = 400, excerpt: bytes = b"") -> None:
        if type(self) is ProtocolError:
            raise TypeError("raise LocalProtocolError or RemoteProtocolError")
        super().__init__(message)
        self.status_hint = status_hint
        self.excerpt = excerpt[:200]


class LocalProtocolError(ProtocolError):
    """We tried to send or build something the protocol forbids."""


class RemoteProtocolError(ProtocolError):
    """The peer sent something the protocol forbids or we cannot parse."""


class AdapterError(CaptureError):
    """An adapter could not do its job."""


class StartupError(AdapterError):
    """The service could not start (port in use, unusable directory...)."""


class AuthenticationError(AdapterError):
    """The PBX rejected our credentials."""


class MediaError(CaptureError):
    """Recording or reading media failed."""


class TransientMediaError(MediaError):
    """Media could not be stored now (object storage down, refused, incomplete): try again later."""


class InvalidVcon(CaptureError):
    """A vCon failed validation."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


class VerificationError(CaptureError):
    """A signed or encrypted vCon did not verify or decrypt."""


class DeliveryError(CaptureError):
    """A sink could not take a vCon."""

    def __init__(self, sink: str, vcon_uuid: str, reason: str) -> None:
        super().__init__(f"{sink}: {vcon_uuid}: {reason}")
        self.sink = sink
        self.vcon_uuid = vcon_uuid
        self.reason = reason


class TransientDeliveryError(DeliveryError):
    """Worth retrying later: the sink is down, slow or overloaded."""


class PermanentDeliveryError(DeliveryError):
    """The sink refused this vCon; retrying it unchanged will not help."""
