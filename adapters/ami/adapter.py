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
from collections.abc import Coroutine
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from adapters.ami.client import AmiClient
from adapters.ami.commands import FinishCall, InspectChannel, Output, StartMixMonitor
from adapters.ami.protocol import Message
from adapters.ami.recordings import ALIGNED, collect
from adapters.ami.settings import SECRET_ENV, AmiSettings
from adapters.ami.tracker import CallTracker
from capture.adapter import Adapter, Capture
from capture.errors import AuthenticationError, ConfigError, RemoteProtocolError
from capture.events import CallStarted, CaptureEvent, CaptureNoted, MediaRecorded, MediaUnavailable
from capture.logs import call_scope
from capture.settings import read_secret, split_hostport

log = logging.getLogger(__name__)

DELETE_WAIT_S = 3600.0
"How long ``delete_recordings`` waits for a call's vCon before it leaves the files alone."


class AmiAdapter(Adapter):
    name = "ami"
    summary = "follow every call of an Asterisk PBX over AMI (MixMonitor recording, CDR)"
    settings_class = AmiSettings
    resumes_calls = True
    "After a restart the PBX says which calls still go on: they continue in the same vCon."

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
            dialplan_options=settings.dialplan_options,
            cdr_wait_s=settings.cdr_wait_s,
            domain=settings.sip_domain or host,
            recorder_endpoints=settings.recorder_endpoints,
            vcon_uuid=capture.vcon_uuid,
        )
        self.client = AmiClient(
            host,
            port,
            settings.username,
            secret,
            on_event=self._on_event,
            on_login=self._resync,
            on_lost=self._on_lost,
            monotonic=capture.monotonic,
            ping_interval_s=settings.ping_interval_s,
            action_timeout_s=settings.action_timeout_s,
            reconnect_min_s=settings.reconnect_min_s,
            reconnect_max_s=settings.reconnect_max_s,
            retry_auth=settings.on_auth_failure == "retry",
            max_message=settings.max_message_bytes,
        )
        self._tasks: set[asyncio.Task[Any]] = set()
        self._runner: asyncio.Task[None] | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._armed_for: datetime | None = None

    def describe(self) -> str:
        return f"ami {self.settings.connect} (user {self.settings.username}, MixMonitor by {self.settings.mixmonitor})"

    async def start(self) -> None:
        resumed = self.capture.resumed_calls(self.name)
        self.tracker.resume(resumed)
        for call in resumed:
            with call_scope(call.vcon_uuid):
                log.info("ami.call_resumed", extra={"call_id": call.call_id})
        try:
            await self.client.connect()
        except AuthenticationError:
            if self.settings.on_auth_failure == "exit":
                raise
            log.error("ami.login_refused", extra={"user": self.settings.username, "then": "retrying"})
        except (OSError, TimeoutError, ConnectionError, RemoteProtocolError) as exc:
            log.warning(
                "ami.connect_failed", extra={"connect": self.settings.connect, "error": str(exc), "then": "retrying"}
            )
        self._runner = asyncio.create_task(self._run())

    async def stop(self) -> None:
        if self._runner is not None:
            self._runner.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._runner
        await self.client.close()
        self._apply(self.tracker.stop(self.capture.now()))
        self._disarm()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _run(self) -> None:
        try:
            await self.client.run()
        except AuthenticationError as exc:
            log.error("ami.login_refused", extra={"error": str(exc)})

    # -- the tracker's timer ----------------------------------------------------------

    def _arm(self) -> None:
        """(Re)arm the one timer at the tracker's next deadline, if that moved."""
        deadline = self.tracker.next_deadline()
        if deadline == self._armed_for:
            return
        self._disarm()
        if deadline is None:
            return
        self._armed_for = deadline
        delay = max(0.0, (deadline - self.capture.now()).total_seconds())
        self._timer = asyncio.get_running_loop().call_at(self.capture.monotonic() + delay, self._on_timer)

    def _disarm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timer = self._armed_for = None

    def _on_timer(self) -> None:
        self._timer = self._armed_for = None
        self._apply(self.tracker.tick(self.capture.now()))

    # -- from the PBX -------------------------------------------------------------------

    def _on_event(self, message: Message) -> None:
        self._apply(self.tracker.handle(message, self.capture.now()))

    def _on_lost(self, silent_s: float) -> None:
        """The connection dropped (it had been silent ``silent_s`` before we noticed)."""
        self.tracker.connection_lost(self.capture.now() - timedelta(seconds=silent_s))

    async def _resync(self) -> None:
        """After every login: take in the channels that are up now (calls we missed or half saw)."""
        known = self.tracker.known_channels()
        try:
            reply = await self.client.action("CoreShowChannels")
        except (TimeoutError, ConnectionError) as exc:
            log.warning("ami.resync_failed", extra={"error": str(exc) or type(exc).__name__})
            return
        listing = [m for m in reply.events if m.event == "CoreShowChannel"]
        log.info("ami.resync", extra={"channels": len(listing)})
        self._apply(self.tracker.resync(listing, self.capture.now(), known))

    def _apply(self, outputs: list[Output]) -> None:
        """Carry out the tracker's outputs, then re-arm its timer."""
        for item in outputs:
            if isinstance(item, StartMixMonitor):
                self._spawn(item.call_id, self._start_mixmonitor(item))
            elif isinstance(item, FinishCall):
                self._spawn(item.call_id, self._finish(item))
            elif isinstance(item, InspectChannel):
                self._spawn(item.call_id, self._inspect(item))
            else:
                self.capture.emit(item)
                if isinstance(item, CallStarted):
                    with call_scope(self.capture.vcon_uuid(item.call_id)):
                        log.info("ami.call_started", extra={"call_id": item.call_id})
        self._arm()

    def _spawn(self, call_id: str, coro: Coroutine[Any, Any, None]) -> None:
        """Run a command as a task that logs inside the call's scope."""
        with call_scope(self.capture.vcon_uuid(call_id)):
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
                "ami.mixmonitor_refused",
                extra={"call_id": cmd.call_id, "channel": cmd.channel, "reason": reply.message},
            )
            self.tracker.mixmonitor_failed(cmd.call_id, cmd.stream_id, reply.message or "error")

    async def pause_media(self, call_id: str, paused: bool) -> None:
        """The API paused (or resumed) one of our calls: mute (or unmute) its MixMonitors, so the
        files Asterisk writes hold silence for the paused stretch. A mute that fails is noted in
        the vCon (the PBX's file may then hold what was said)."""
        for channel in self.tracker.pause(call_id, paused):
            fields = {"Channel": channel, "Direction": "both", "State": "1" if paused else "0"}
            try:
                reply = await self.client.action("MixMonitorMute", fields)
                failure = None if reply.ok else reply.message or "error"
            except (TimeoutError, ConnectionError) as exc:
                failure = str(exc) or type(exc).__name__
            if failure is not None:
                what = "mute" if paused else "unmute"
                extra = {"call_id": call_id, "channel": channel, "state": fields["State"], "reason": failure}
                log.warning("ami.mixmonitor_mute_failed", extra=extra)
                note = f"MixMonitorMute ({what}) on {channel} failed: {failure}"
                self.capture.emit(CaptureNoted(call_id=call_id, at=self.capture.now(), key="ami_pause", value=note))

    async def _inspect(self, cmd: InspectChannel) -> None:
        values: dict[str, str] = {}
        for variable in cmd.variables:
            try:
                reply = await self.client.action("Getvar", {"Channel": cmd.channel, "Variable": variable})
            except (TimeoutError, ConnectionError) as exc:
                log.warning("ami.getvar_failed", extra={"call_id": cmd.call_id, "error": str(exc) or "timeout"})
                break
            if reply.ok and reply.response.get("Value"):
                values[variable] = reply.response.get("Value") or ""
        self._apply(self.tracker.inspected(cmd.call_id, cmd.uniqueid, values, self.capture.now()))

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
                directory, wait_s = self.settings.recordings_dir, self.settings.file_wait_s
                events.append(await collect(spec, directory, cmd.call_id, wait_s, self.capture.monotonic))
        for event in events:
            self.capture.emit(event)
        self.capture.emit(cmd.ended)
        files = [Path(e.path) for e in events if isinstance(e, MediaRecorded)]
        files += [p.with_name(p.name.removesuffix(ALIGNED) + ".wav") for p in files if p.name.endswith(ALIGNED)]
        if self.settings.delete_recordings and files:
            await self._delete_when_delivered(cmd.call_id, files)

    async def _delete_when_delivered(self, call_id: str, files: list[Path]) -> None:
        """``delete_recordings``: remove the monitor files once the call's vCon is built and on disk
        (spool or out directory, :meth:`Capture.finished_vcon`); until then the pipeline may still
        read them. No notice comes when that happens, so this looks, less and less often."""
        uuid = self.capture.vcon_uuid(call_id)
        delay, deadline = 0.2, self.capture.monotonic() + DELETE_WAIT_S
        while uuid is not None and self.capture.finished_vcon(uuid) is None:
            if self.capture.monotonic() > deadline:
                log.warning("ami.recordings_kept", extra={"call_id": call_id, "why": "vCon not finished in time"})
                return
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)
        for path in files:
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
        log.info("ami.recordings_deleted", extra={"call_id": call_id, "files": len(files)})
