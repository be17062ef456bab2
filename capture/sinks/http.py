"""What the HTTP sinks share: one client session, one timeout, one reading of status codes.

2xx is delivered; 408, 429, 5xx, timeouts and connection errors are transient (retried with
backoff); any other status is a permanent refusal, dead-lettered with the whole reply (a
conserver's 422 lists every refused field, and the second one matters as much as the first).
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator, Mapping, Sequence
from pathlib import Path

import aiohttp

from capture.errors import PermanentDeliveryError, TransientDeliveryError

RETRYABLE = frozenset({408, 429})
IN_MEMORY_BYTES = 16 * 1024 * 1024
"Bodies up to this size are read whole; larger ones are streamed from the file."
CHUNK = 1024 * 1024


async def _file_chunks(path: Path) -> AsyncIterator[bytes]:
    with path.open("rb") as f:
        while data := await asyncio.to_thread(f.read, CHUNK):
            yield data


async def body_of(path: Path) -> tuple[bytes | AsyncIterator[bytes], int]:
    """The request body for a vCon file: its bytes, or a stream of them for a large one; and its size."""
    size = (await asyncio.to_thread(path.stat)).st_size
    if size <= IN_MEMORY_BYTES:
        return await asyncio.to_thread(path.read_bytes), size
    return _file_chunks(path), size


class HttpPoster:
    """POSTs bytes to one URL and turns the outcome into delivered / TransientDeliveryError / Permanent."""

    def __init__(self, sink: str, url: str, *, timeout_s: float, ssl_context: ssl.SSLContext | None = None) -> None:
        self.sink = sink
        self.url = url
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._ssl = ssl_context
        self._session: aiohttp.ClientSession | None = None

    async def post(
        self,
        vcon_uuid: str,
        path: Path,
        headers: Mapping[str, str],
        params: Sequence[tuple[str, str]] = (),
        also_delivered: frozenset[int] = frozenset(),
    ) -> int:
        """POST the file at ``path``; returns the status when delivered (2xx or one of ``also_delivered``)."""
        try:
            data, size = await body_of(path)
        except OSError as exc:
            raise TransientDeliveryError(
                self.sink, vcon_uuid, f"cannot read the spooled vCon: {exc.strerror}"
            ) from None
        headers = {**headers, "Content-Length": str(size)}
        if self._session is None:
            connector = aiohttp.TCPConnector(ssl=self._ssl) if self._ssl is not None else None
            self._session = aiohttp.ClientSession(timeout=self._timeout, connector=connector)
        try:
            async with self._session.post(self.url, data=data, params=list(params), headers=dict(headers)) as resp:
                if 200 <= resp.status < 300 or resp.status in also_delivered:
                    return resp.status
                text = (await resp.text(errors="replace")).replace("\n", " ")
        except (TimeoutError, aiohttp.ClientError, OSError) as exc:
            raise TransientDeliveryError(self.sink, vcon_uuid, f"{type(exc).__name__}: {exc}") from None
        reason = f"HTTP {resp.status}: {text}"
        if resp.status >= 500 or resp.status in RETRYABLE:
            raise TransientDeliveryError(self.sink, vcon_uuid, reason)
        raise PermanentDeliveryError(self.sink, vcon_uuid, reason)

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None
