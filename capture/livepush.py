"""Pushes each call, live, to a configured WebSocket URL (``live_push_url``).

For every call that starts, the recorder opens one WebSocket to the URL (query parameters
``vcon_uuid`` and ``call_id``; ``Authorization: Bearer`` when a token is configured) and sends
the call's events and audio in the framing of :mod:`capture.live` until the call ends, then
closes it. A consumer that is down, refuses, or falls behind loses that call's live feed (the
hub drops it, counted in ``vcon_capture_live_listeners_dropped``); the recording never waits.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from pathlib import Path
from typing import Any

import aiohttp

from capture.errors import ConfigError
from capture.live import LiveHub
from capture.logs import call_scope

log = logging.getLogger(__name__)

CONNECT_TIMEOUT_S = 5.0


class LivePusher:
    def __init__(self, hub: LiveHub, url: str, *, token: str | None, ca_file: Path | None = None) -> None:
        self.hub = hub
        self.url = url
        self._headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._ssl: ssl.SSLContext | None = None
        if ca_file is not None:
            try:
                self._ssl = ssl.create_default_context(cafile=str(ca_file))
            except (OSError, ssl.SSLError) as exc:
                raise ConfigError("live_push_ca_file", f"cannot load {ca_file}: {exc}") from None
        self._session: aiohttp.ClientSession | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        hub.on_call_started.append(self._call_started)

    def _call_started(self, vcon_uuid: str, snapshot: dict[str, Any]) -> None:
        listener = self.hub.listen(vcon_uuid)
        with call_scope(vcon_uuid):
            task = asyncio.get_running_loop().create_task(self._push(vcon_uuid, str(snapshot.get("call_id")), listener))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _push(self, vcon_uuid: str, call_id: str, listener: Any) -> None:
        if self._session is None:
            connector = aiohttp.TCPConnector(ssl=self._ssl) if self._ssl is not None else None
            self._session = aiohttp.ClientSession(connector=connector)
        params = {"vcon_uuid": vcon_uuid, "call_id": call_id}
        try:
            async with self._session.ws_connect(
                self.url, params=params, headers=self._headers, timeout=aiohttp.ClientWSTimeout(ws_close=5.0),
                heartbeat=20.0,
            ) as ws:  # fmt: skip
                while (message := await listener.get()) is not None:
                    if isinstance(message, bytes):
                        await ws.send_bytes(message)
                    else:
                        await ws.send_str(message)
                        if message.startswith('{"type": "call_ended"'):
                            break
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            log.warning("live.push_failed", extra={"url": self.url, "error": f"{type(exc).__name__}: {exc}"})
        finally:
            self.hub.forget(listener)

    async def aclose(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._session is not None:
            await self._session.close()
