"""POSTs each vCon to any HTTPS endpoint: a queue bridge, a CRM, a data-lake loader.

Each request carries:

* ``X-Vcon-Signature-256: sha256=<hex>``: HMAC-SHA256 of the exact body with the shared secret
  (the receiver recomputes it over the bytes it got, and compares in constant time);
* ``Idempotency-Key: <vCon uuid>``: the same on every retry and after a restart, so a receiver
  keeps each vCon once (a 409 "already have it" counts as delivered);
* ``Content-Type: application/vcon+json``.

Retries, backoff and dead letters are the other sinks' (:mod:`capture.sinks.http`).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import ssl
from pathlib import Path

from capture.errors import ConfigError, TransientDeliveryError
from capture.sinks.http import HttpPoster

SIGNATURE_HEADER = "X-Vcon-Signature-256"
IDEMPOTENCY_HEADER = "Idempotency-Key"
CONTENT_TYPE = "application/vcon+json"
ALREADY_HAVE_IT = frozenset({409})


def signature(secret: str, body: bytes) -> str:
    """The signature header's value for ``body``."""
    return "sha256=" + hmac.new(secret.encode("utf-8"), body, hashlib.sha256).hexdigest()


def file_signature(secret: str, path: Path) -> str:
    """:func:`signature` of a file's bytes, read in chunks."""
    mac = hmac.new(secret.encode("utf-8"), digestmod=hashlib.sha256)
    with path.open("rb") as f:
        while data := f.read(1024 * 1024):
            mac.update(data)
    return "sha256=" + mac.hexdigest()


def _ssl_context(ca_file: Path | None) -> ssl.SSLContext | None:
    if ca_file is None:
        return None
    try:
        return ssl.create_default_context(cafile=str(ca_file))
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError("webhook_ca_file", f"cannot load {ca_file}: {exc}") from None


class WebhookSink:
    def __init__(self, url: str, *, secret: str, timeout_s: float, ca_file: Path | None = None) -> None:
        self.name = "webhook"
        self._secret = secret
        self._http = HttpPoster(self.name, url, timeout_s=timeout_s, ssl_context=_ssl_context(ca_file))

    async def deliver(self, vcon_uuid: str, path: Path) -> None:
        try:
            mac = await asyncio.to_thread(file_signature, self._secret, path)
        except OSError as exc:
            raise TransientDeliveryError(
                self.name, vcon_uuid, f"cannot read the spooled vCon: {exc.strerror}"
            ) from None
        headers = {"Content-Type": CONTENT_TYPE, SIGNATURE_HEADER: mac, IDEMPOTENCY_HEADER: vcon_uuid}
        await self._http.post(vcon_uuid, path, headers, also_delivered=ALREADY_HAVE_IT)

    async def aclose(self) -> None:
        await self._http.aclose()
