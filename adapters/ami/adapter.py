"""The Asterisk AMI adapter: every call on the PBX becomes a vCon, with its CDR and MixMonitor recording.

Wiring only: :class:`~adapters.ami.client.AmiClient` brings messages, the sans-IO
:class:`~adapters.ami.tracker.CallTracker` turns them into capture events and commands, and
this class carries the commands out (send ``MixMonitor``, pick up the finished files).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from typing import Any

from adapters.ami.client import AmiClient
from adapters.ami.protocol import Message
from adapters.ami.recordings import collect
from adapters.ami.settings import SECRET_ENV, AmiSettings
from adapters.ami.tracker import CallTracker, FinishCall, Output, StartMixMonitor
from capture.adapter import Adapter, Capture
from capture.errors import AuthenticationError, ConfigError, RemoteProtocolError
from capture.events import CaptureEvent, MediaUnavailable
from capture.settings import read_secret, split_hostport

log = logging.getLogger(__name__)

TICK_S = 0.1


class AmiAdapter(Adapter):
    name = "ami"
    summary = "follow every call of an Asterisk PBX over AMI (MixMonitor recording, CDR)"
    settings_class = AmiSettings

    def __init__(self, settings: AmiSettings, capture: Capture, env: dict[str, str] | None = None) -> None:
        super().__init__(settings, capture)
        secret = read_secret(settings.secret_file, SECRET_ENV, os.environ if env is None else env, "ami.secret_file")
        if not secret:
            raise ConfigError("ami.secret_file", f"no AMI secret: set secret_file or {SECRET_ENV}")
        host, port = split_hostport(settings.connect, "ami.connect")
        self.tracker = CallTracker(
            mixmonitor=settings.mixmonitor,
            mixmonitor_options=settings.mixmonitor_options,
            split_directions=settings.split_directions,
            cdr_wait_s=settings.cdr_wait_s,
        )
        self.client = AmiClient(
            host,
            port,
            settings.username,
            secret,
            on_event=self._on_event,
            on_login=self._resync,
            ping_interval_s=settings.ping_interval_s,
            action_timeout_s=settings.action_timeout_s,
            reconnect_min_s=settings.reconnect_min_s,
            reconnect_max_s=settings.reconnect_max_s,
            retry_auth=settings.on_auth_failure == "retry",
            max_message=settings.max_message_bytes,
        )
        self._tasks: set[asyncio.Task[Any]] = set()
        self._runner: asyncio.Task[None] | None = None
        self._ticker: asyncio.Task[None] | None = None

    def describe(self) -> str:
        return f"ami {self.settings.connect} (user {self.settings.username}, MixMonitor by {self.settings.mixmonitor})"

    async def start(self) -> None:
        try:
            await self.client.connect()
        except AuthenticationError:
            if self.settings.on_auth_failure == "exit":
                raise
            log.error("ami.login_refused user=%s retrying", self.settings.username)
        except (OSError, TimeoutError, ConnectionError, RemoteProtocolError) as exc:
            log.warning("ami.connect_failed connect=%s error=%s retrying", self.settings.connect, exc)
        self._runner = asyncio.create_task(self._run())
        self._ticker = asyncio.create_task(self._tick())

    async def stop(self) -> None:
        for task in (self._runner, self._ticker):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        await self.client.close()
        self._apply(self.tracker.stop(self.capture.now()))
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _run(self) -> None:
        try:
            await self.client.run()
        except AuthenticationError as exc:
            log.error("ami.login_refused error=%s", exc)

    async def _tick(self) -> None:
        while True:
            await asyncio.sleep(TICK_S)
            self._apply(self.tracker.tick(self.capture.now()))

    # -- from the PBX -------------------------------------------------------------------

    def _on_event(self, message: Message) -> None:
        self._apply(self.tracker.handle(message, self.capture.now()))

    async def _resync(self) -> None:
        """After every login: take in the channels that are up now (calls we missed or half saw)."""
        try:
            reply = await self.client.action("CoreShowChannels")
        except (TimeoutError, ConnectionError) as exc:
            log.warning("ami.resync_failed error=%s", exc)
            return
        listing = [m for m in reply.events if m.event == "CoreShowChannel"]
        log.info("ami.resync channels=%d", len(listing))
        self._apply(self.tracker.resync(listing, self.capture.now()))

    def _apply(self, outputs: list[Output]) -> None:
        for item in outputs:
            if isinstance(item, StartMixMonitor):
                self._spawn(self._start_mixmonitor(item))
            elif isinstance(item, FinishCall):
                self._spawn(self._finish(item))
            else:
                self.capture.emit(item)

    def _spawn(self, coro: Any) -> None:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # -- commands -----------------------------------------------------------------------

    async def _start_mixmonitor(self, cmd: StartMixMonitor) -> None:
        fields = {"Channel": cmd.channel, "File": cmd.file, "Options": cmd.options}
        try:
            reply = await self.client.action("MixMonitor", fields)
        except (TimeoutError, ConnectionError) as exc:
            self.tracker.mixmonitor_failed(cmd.call_id, cmd.stream_id, str(exc) or type(exc).__name__)
            return
        if not reply.ok:
            log.warning(
                "ami.mixmonitor_refused call_id=%s channel=%s reason=%s", cmd.call_id, cmd.channel, reply.message
            )
            self.tracker.mixmonitor_failed(cmd.call_id, cmd.stream_id, reply.message or "error")

    async def _finish(self, cmd: FinishCall) -> None:
        events: list[CaptureEvent] = []
        for spec in cmd.recordings:
            if cmd.interrupted and spec.failure is None:
                events.append(
                    MediaUnavailable(
                        call_id=cmd.call_id,
                        at=spec.started_at,
                        stream_id=spec.stream_id,
                        reason="capture stopped while the call was still up",
                    )
                )
            else:
                events.append(await collect(spec, self.settings.recordings_dir, cmd.call_id, self.settings.file_wait_s))
        for event in events:
            self.capture.emit(event)
        self.capture.emit(cmd.ended)
