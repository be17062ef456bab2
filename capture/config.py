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

import importlib.util
import os
import re
import socket
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from capture.errors import ConfigError
from capture.mediastore import S3Config
from capture.settings import ENV_PREFIX, build, read_secret, setting, split_hostport
from capture.vcon.profile import LawfulBasis, LawfulBasisName, Profile

REMOVED = {
    "syntax": 'removed: vCons follow draft core-04 ("vcon": "0.4.0", also valid core-03); delete this setting',
}
"Settings of earlier releases, refused with what to do instead."


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
    s3_bucket: str | None = setting(None, "S3 bucket for referenced audio (S3-compatible object storage); unset = none")
    s3_endpoint: str | None = setting(None, "https URL of an S3-compatible server (MinIO, Ceph RGW...); unset = AWS")
    s3_region: str | None = setting(None, "S3 region")
    s3_prefix: str = setting("", "key prefix; keys are PREFIX/yyyy/mm/dd/<vcon uuid>/<file>")
    s3_access_key_file: Path | None = setting(
        None, "file holding the access key id (or env AWS_ACCESS_KEY_ID / the AWS chain)"
    )
    s3_secret_key_file: Path | None = setting(None, "file holding the secret access key (or the AWS chain)")
    s3_sse: Literal["AES256", "aws:kms"] | None = setting(None, "server-side encryption of uploaded audio")
    s3_kms_key_id: str | None = setting(None, "KMS key for s3_sse = aws:kms")
    s3_public_base_url: str | None = setting(
        None, "https URL the bucket is served under; unset = presigned URLs in the vCon"
    )
    s3_presign_s: int = setting(604800, "lifetime of presigned URLs (s; SigV4 allows at most 7 days)")
    s3_ca_file: Path | None = setting(None, "PEM CA bundle to trust for s3_endpoint (default: the system's)")
    inline_max_mb: float | None = setting(
        None,
        "with media_url_base: audio up to this size stays inline, larger goes by reference (unset: all referenced)",
    )
    min_free_mb: float = setting(
        64.0, "below this free space under state_dir/out, new calls are refused (503) and /readyz is 503"
    )
    pbx_domain: str | None = setting(
        None, "SIP domain for parties known only by an internal extension, when the adapter has none (default: domain)"
    )
    extension_pattern: str | None = setting(
        None, "regex of internal extensions (besides numbers under 5 characters): they become sip:EXT@domain, not tel"
    )
    lawful_basis: LawfulBasisName | None = setting(
        None, "lawful basis for recording, put in every vCon (lawful_basis attachment); unset = none stated"
    )
    lawful_basis_purpose: str | None = setting(None, "what the recordings are for (e.g. quality-assurance)")
    lawful_basis_expiry_days: float | None = setting(None, "the lawful basis expires this many days after the call")
    conserver_url: str | None = setting(None, "conserver base URL; vCons are POSTed to {url}/api/vcon")
    conserver_token_file: Path | None = setting(
        None, "file holding the x-conserver-api-token (or env VCON_CAPTURE_CONSERVER_TOKEN)"
    )
    webhook_url: str | None = setting(None, "https URL each vCon is POSTed to (HMAC-signed, Idempotency-Key = uuid)")
    webhook_secret_file: Path | None = setting(
        None, "file holding the webhook's HMAC-SHA256 secret (or env VCON_CAPTURE_WEBHOOK_SECRET)"
    )
    webhook_ca_file: Path | None = setting(None, "PEM CA bundle to trust for webhook_url (default: the system's)")
    ingress_lists: tuple[str, ...] = setting((), "conserver ingress lists (comma-separated)")
    delivery_timeout_s: float = setting(10.0, "timeout of one delivery attempt")
    retry_max_s: float = setting(60.0, "cap of the exponential retry backoff")
    signing_key_file: Path | None = setting(None, "PEM private key (RSA -> RS256, P-256 -> ES256): emit signed vCons")
    signing_cert_file: Path | None = setting(None, "PEM certificate chain of the signing key, leaf first (goes in x5c)")
    encrypt_cert_file: Path | None = setting(None, "PEM certificate of the reader: emit encrypted (JWE) signed vCons")
    shutdown_grace_s: float = setting(30.0, "on SIGTERM, time allowed to finish active calls and flush the spool")
    metrics_listen: str | None = setting(None, "HOST:PORT serving /metrics (Prometheus), /healthz and /readyz")
    api_listen: str | None = setting(
        None, "HOST:PORT of the recorder's API (calls, pause/resume, live audio); off when unset"
    )
    api_token_file: Path | None = setting(
        None, "file holding the API's bearer token (or env VCON_CAPTURE_API_TOKEN); required off loopback"
    )
    console_ca_file: Path | None = setting(
        None, "PEM CA bundle the console verifies signed vCons against (unset: shown as not verified)"
    )
    live_push_url: str | None = setting(None, "wss:// URL each call's live audio and events are pushed to")
    live_push_token_file: Path | None = setting(
        None, "file holding the bearer token sent to live_push_url (or env VCON_CAPTURE_LIVE_PUSH_TOKEN)"
    )
    live_push_ca_file: Path | None = setting(None, "PEM CA bundle to trust for live_push_url (default: the system's)")
    log_level: Literal["debug", "info", "warning", "error"] = setting("info", "log level")
    log_format: Literal["text", "json"] = setting("text", "text for people, json for one object per line")
    event_loop: Literal["auto", "asyncio", "uvloop"] = setting(
        "auto",
        "asyncio's event loop implementation: uvloop (in C; a quarter of the CPU per datagram) when "
        "installed with auto, or the standard library's",
    )

    def __post_init__(self) -> None:
        if self.s3_bucket is not None:
            if self.media_url_base is not None:
                raise ConfigError("s3_bucket", "audio goes either to object storage or to media_url_base, not both")
            for name in ("s3_endpoint", "s3_public_base_url"):
                value = getattr(self, name)
                if value is not None and not value.startswith("https://"):
                    raise ConfigError(name, "must be an https:// URL (a vCon references media over HTTPS)")
            if not 1 <= self.s3_presign_s <= 604800:
                raise ConfigError("s3_presign_s", "must be between 1 s and 7 days")
            if importlib.util.find_spec("boto3") is None:
                raise ConfigError("s3_bucket", "object storage needs boto3: pip install 'vcon-capture[s3]'")
        if self.media_url_base is not None and not self.media_url_base.startswith("https://"):
            raise ConfigError("media_url_base", "must be an https:// URL (vCon core requires HTTPS)")
        if self.inline_max_mb is not None and self.inline_max_mb <= 0:
            raise ConfigError("inline_max_mb", "must be positive")
        if self.min_free_mb < 0:
            raise ConfigError("min_free_mb", "cannot be negative")
        for name in ("delivery_timeout_s", "retry_max_s", "shutdown_grace_s"):
            if getattr(self, name) <= 0:
                raise ConfigError(name, "must be positive")
        if (self.signing_key_file is None) != (self.signing_cert_file is None):
            raise ConfigError("signing_key_file", "signing needs both signing_key_file and signing_cert_file")
        if self.encrypt_cert_file is not None and self.signing_key_file is None:
            raise ConfigError("encrypt_cert_file", "the draft encrypts the signed form: set signing_key_file too")
        if self.signing_key_file is not None and self.conserver_url is not None:
            raise ConfigError("signing_key_file", "a conserver's /api/vcon takes unsigned vCons only: sign or deliver")
        if self.api_listen is not None:
            split_hostport(self.api_listen, "api_listen")
        if self.live_push_url is not None and not (
            self.live_push_url.startswith("wss://") or _loopback_url(self.live_push_url)
        ):
            raise ConfigError("live_push_url", "must be a wss:// URL (ws:// only to a loopback address)")
        if self.webhook_url is not None and not self.webhook_url.startswith("https://"):
            raise ConfigError("webhook_url", "must be an https:// URL")
        if self.extension_pattern is not None:
            try:
                re.compile(self.extension_pattern)
            except re.error as exc:
                raise ConfigError("extension_pattern", f"not a regular expression: {exc}") from None
        if (self.lawful_basis is None) != (self.lawful_basis_purpose is None):
            raise ConfigError("lawful_basis", "lawful_basis and lawful_basis_purpose go together")
        if self.lawful_basis_expiry_days is not None and self.lawful_basis_expiry_days <= 0:
            raise ConfigError("lawful_basis_expiry_days", "must be positive")

    def profile(self) -> Profile:
        """What goes into every vCon from these settings."""
        basis = None
        if self.lawful_basis is not None and self.lawful_basis_purpose is not None:
            basis = LawfulBasis(self.lawful_basis, self.lawful_basis_purpose, self.lawful_basis_expiry_days)
        return Profile(
            extension_pattern=self.extension_pattern,
            default_domain=self.pbx_domain or self.uuid_domain,
            lawful_basis=basis,
        )

    @property
    def uuid_domain(self) -> str:
        return self.domain or socket.getfqdn() or "localhost"


def _loopback_url(url: str) -> bool:
    host = url.split("://", 1)[-1].split("/", 1)[0].rsplit(":", 1)[0].strip("[]")
    return url.startswith("ws://") and host in ("127.0.0.1", "::1", "localhost")


def is_loopback(listen: str) -> bool:
    host, _ = split_hostport(listen, "api_listen")
    return host in ("127.0.0.1", "::1", "localhost") or host.startswith("127.")


@dataclass(frozen=True)
class Config:
    core: CoreSettings
    adapters: Mapping[str, Any]
    "Settings object per adapter name, for the adapters to start."
    conserver_token: str | None = None
    webhook_secret: str | None = None
    api_token: str | None = None
    live_push_token: str | None = None
    s3: S3Config | None = None


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
    adapter_classes: Mapping[str, Any],
    *,
    env: Mapping[str, str] | None = None,
    flags: Mapping[str, Any] | None = None,
    only: str | None = None,
    broken: Mapping[str, str] | None = None,
) -> Config:
    """Build the config; ``only`` runs one adapter (the ``sip``/``webrtc``/``ami`` commands)."""
    env = os.environ if env is None else env
    flags = flags or {}
    for name, why in REMOVED.items():
        if name in doc or f"{ENV_PREFIX}{name.upper()}" in env or flags.get(name) is not None:
            raise ConfigError(name, why)
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
    webhook_secret = read_secret(core.webhook_secret_file, "VCON_CAPTURE_WEBHOOK_SECRET", env, "webhook_secret_file")
    if core.webhook_url is not None and not webhook_secret:
        raise ConfigError("webhook_secret_file", "webhook_url needs an HMAC secret (or VCON_CAPTURE_WEBHOOK_SECRET)")
    api_token = read_secret(core.api_token_file, "VCON_CAPTURE_API_TOKEN", env, "api_token_file")
    if core.api_listen is not None and not api_token and not is_loopback(core.api_listen):
        raise ConfigError("api_token_file", "an API off loopback needs a token (or VCON_CAPTURE_API_TOKEN)")
    push_token = read_secret(core.live_push_token_file, "VCON_CAPTURE_LIVE_PUSH_TOKEN", env, "live_push_token_file")
    s3 = None
    if core.s3_bucket is not None:
        s3 = S3Config(
            bucket=core.s3_bucket,
            endpoint=core.s3_endpoint,
            region=core.s3_region,
            prefix=core.s3_prefix,
            access_key=read_secret(core.s3_access_key_file, "AWS_ACCESS_KEY_ID", env, "s3_access_key_file"),
            secret_key=read_secret(core.s3_secret_key_file, "AWS_SECRET_ACCESS_KEY", env, "s3_secret_key_file"),
            sse=core.s3_sse,
            kms_key_id=core.s3_kms_key_id,
            public_base_url=core.s3_public_base_url,
            presign_s=core.s3_presign_s,
            ca_file=str(core.s3_ca_file) if core.s3_ca_file else None,
        )
    return Config(
        core=core,
        adapters=adapters,
        conserver_token=token,
        webhook_secret=webhook_secret,
        api_token=api_token,
        live_push_token=push_token,
        s3=s3,
    )
