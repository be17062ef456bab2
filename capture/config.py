"""The service's configuration: the core's settings plus one section per adapter.

TOML layout: the core's settings are top-level keys, each adapter has its table::

    out = "/var/lib/vcon-capture/vcons"
    adapters = ["sip", "webrtc"]
    [sip]
    listen = "0.0.0.0:5060"

Environment variables override the file (``VCON_CAPTURE_OUT``,
``VCON_CAPTURE_SIP__LISTEN``), and command-line flags override both.
"""

from __future__ import annotations

import os
import socket
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from capture.errors import ConfigError
from capture.settings import build, read_secret, setting


@dataclass(frozen=True)
class CoreSettings:
    """Settings of the pipeline, sinks and logging."""

    out: Path = setting(Path("vcons"), "directory where each finished vCon lands as <uuid>.vcon")
    state_dir: Path = setting(Path(".vcon-capture"), "spool and in-flight call state (recordings, journals)")
    adapters: tuple[str, ...] = setting(("sip", "webrtc"), "adapters started by `run` (comma-separated)")
    domain: str = setting("", "domain name whose SHA-1 goes into every vCon uuid; unset = this host's FQDN")
    layout: Literal["channels", "files"] = setting(
        "channels", "audio layout: one WAV with a channel per party, or one file per party in a recording-set"
    )
    media_url_base: str | None = setting(None, "https URL under which media_dir is served; unset = inline audio")
    media_dir: Path | None = setting(None, "where referenced audio files are written (default: out)")
    syntax: Literal["core-03", "core-04"] = setting("core-03", "vCon draft revision to emit (core-03 = 0.4.0)")
    conserver_url: str | None = setting(None, "conserver base URL; vCons are POSTed to {url}/api/vcon")
    conserver_token_file: Path | None = setting(
        None, "file holding the x-conserver-api-token (or env VCON_CAPTURE_CONSERVER_TOKEN)"
    )
    ingress_lists: tuple[str, ...] = setting((), "conserver ingress lists (comma-separated)")
    delivery_timeout_s: float = setting(10.0, "timeout of one delivery attempt")
    retry_max_s: float = setting(60.0, "cap of the exponential retry backoff")
    signing_key_file: Path | None = setting(None, "PEM private key (RSA -> RS256, P-256 -> ES256): emit signed vCons")
    signing_cert_file: Path | None = setting(None, "PEM certificate chain of the signing key, leaf first (goes in x5c)")
    encrypt_cert_file: Path | None = setting(None, "PEM certificate of the reader: emit encrypted (JWE) signed vCons")
    shutdown_grace_s: float = setting(30.0, "on SIGTERM, time allowed to finish active calls and flush the spool")
    metrics_listen: str | None = setting(None, "HOST:PORT serving /metrics (Prometheus), /healthz and /readyz")
    log_level: Literal["debug", "info", "warning", "error"] = setting("info", "log level")
    log_format: Literal["text", "json"] = setting("text", "text for people, json for one object per line")

    def __post_init__(self) -> None:
        if self.media_url_base is not None and not self.media_url_base.startswith("https://"):
            raise ConfigError("media_url_base", "must be an https:// URL (vCon core requires HTTPS)")
        for name in ("delivery_timeout_s", "retry_max_s", "shutdown_grace_s"):
            if getattr(self, name) <= 0:
                raise ConfigError(name, "must be positive")
        if (self.signing_key_file is None) != (self.signing_cert_file is None):
            raise ConfigError("signing_key_file", "signing needs both signing_key_file and signing_cert_file")
        if self.encrypt_cert_file is not None and self.signing_key_file is None:
            raise ConfigError("encrypt_cert_file", "the draft encrypts the signed form: set signing_key_file too")
        if self.signing_key_file is not None and self.conserver_url is not None:
            raise ConfigError("signing_key_file", "a conserver's /api/vcon takes unsigned vCons only: sign or deliver")

    @property
    def uuid_domain(self) -> str:
        return self.domain or socket.getfqdn() or "localhost"


@dataclass(frozen=True)
class Config:
    core: CoreSettings
    adapters: Mapping[str, Any]
    "Settings object per adapter name, for the adapters to start."
    conserver_token: str | None = None


def read_toml(path: Path | None) -> dict[str, Any]:
    """The parsed config file ({} for None); ConfigError names the file and the problem."""
    if path is None:
        return {}
    try:
        with path.open("rb") as f:
            return tomllib.load(f)
    except OSError as exc:
        raise ConfigError(str(path), f"cannot read config file: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(str(path), f"not valid TOML: {exc}") from None


def load(
    doc: Mapping[str, Any],
    adapter_classes: Mapping[str, type],
    *,
    env: Mapping[str, str] | None = None,
    flags: Mapping[str, Any] | None = None,
    only: str | None = None,
    broken: Mapping[str, str] | None = None,
) -> Config:
    """Build the config; ``only`` runs one adapter (the ``sip``/``webrtc``/``ami`` commands)."""
    env = os.environ if env is None else env
    flags = flags or {}
    core_table = {k: v for k, v in doc.items() if not isinstance(v, dict)}
    known = set(adapter_classes) | set(broken or ())
    unknown_tables = sorted(k for k, v in doc.items() if isinstance(v, dict) and k not in known)
    if unknown_tables:
        raise ConfigError(unknown_tables[0], f"unknown section (known: {', '.join(sorted(adapter_classes))})")
    core = build(CoreSettings, "", core_table, env, flags)
    names = (only,) if only else core.adapters
    for name in names:
        if broken and name in broken:
            raise ConfigError("adapters", f"adapter {name!r} failed to load: {broken[name]}")
    missing = [n for n in names if n not in adapter_classes]
    if missing:
        raise ConfigError("adapters", f"no adapter named {missing[0]!r} is installed")
    adapters = {
        name: build(adapter_classes[name].settings_class, name, doc.get(name), env, flags if only else None)
        for name in names
    }
    token = read_secret(core.conserver_token_file, "VCON_CAPTURE_CONSERVER_TOKEN", env, "conserver_token_file")
    return Config(core=core, adapters=adapters, conserver_token=token)
