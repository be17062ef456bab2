"""A small client of Janus's HTTP API (aiohttp), enough to record one WebRTC stream per session.

One :class:`JanusRecording` is one Janus session with the Record&Play plugin attached:
``offer(sdp) -> answer`` sends ``{"request": "record"}`` with the client's SDP offer as JSEP
and long-polls the session until the plugin's event carries the answer; ``stop()`` asks the
plugin to stop (the .mjr file is closed) and destroys the session. Janus's own API, as its
documentation describes it: create, attach, message + jsep, events by long poll, destroy.
"""

from __future__ import annotations

import itertools
import secrets
from typing import Any

from aiohttp import ClientSession, ClientTimeout

PLUGIN = "janus.plugin.recordplay"
_transactions = itertools.count(1)


class JanusError(Exception):
    pass


class JanusRecording:
    def __init__(self, http: ClientSession, base: str) -> None:
        self.http = http
        self.base = base.rstrip("/")
        self.session_id: int | None = None
        self.handle_id: int | None = None
        self.recording_id: int | None = None

    async def _post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        body = {**body, "transaction": f"t{next(_transactions)}"}
        async with self.http.post(self.base + path, json=body) as response:
            reply: dict[str, Any] = await response.json(content_type=None)
        if reply.get("janus") == "error":
            raise JanusError(f"{body['janus']}: {reply['error']}")
        return reply

    async def open(self) -> None:
        self.session_id = (await self._post("", {"janus": "create"}))["data"]["id"]
        reply = await self._post(f"/{self.session_id}", {"janus": "attach", "plugin": PLUGIN})
        self.handle_id = reply["data"]["id"]

    async def offer(self, sdp: str, name: str, filename: str, timeout_s: float = 30.0) -> str:
        """Start recording: the answer SDP (Janus gathers its candidates first: no trickle)."""
        self.recording_id = secrets.randbelow(2**52) + 1
        body = {"request": "record", "id": self.recording_id, "name": name, "filename": filename}
        jsep = {"type": "offer", "sdp": sdp, "trickle": False}
        reply = await self._post(
            f"/{self.session_id}/{self.handle_id}", {"janus": "message", "body": body, "jsep": jsep}
        )
        if reply.get("janus") != "ack":
            raise JanusError(f"record: {reply}")
        async for event in self.events(timeout_s):
            data = event.get("plugindata", {}).get("data", {})
            if "error" in data:
                raise JanusError(f"record: {data['error']}")
            if "jsep" in event:
                return str(event["jsep"]["sdp"])
        raise JanusError(f"no answer within {timeout_s} s")

    async def events(self, timeout_s: float) -> Any:
        """The session's events, by long poll, until ``timeout_s`` passes without one."""
        while True:
            url = f"{self.base}/{self.session_id}?maxev=10&rid={secrets.randbelow(2**31)}"
            async with self.http.get(url, timeout=ClientTimeout(total=timeout_s + 35)) as response:
                reply = await response.json(content_type=None)
            events = reply if isinstance(reply, list) else [reply]
            if all(e.get("janus") == "keepalive" for e in events):
                return
            for event in events:
                yield event

    async def stop(self) -> None:
        """Stop recording (Janus closes the .mjr) and destroy the session."""
        if self.session_id is None:
            return
        if self.handle_id is not None:
            await self._post(f"/{self.session_id}/{self.handle_id}", {"janus": "message", "body": {"request": "stop"}})
        await self._post(f"/{self.session_id}", {"janus": "destroy"})
        self.session_id = None
