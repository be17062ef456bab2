"""Asyncio AMI client: the thin I/O layer around :mod:`protocol` and :mod:`actions`.

It connects, reads the banner, logs in, hands every live event to ``on_event`` and answers
``action()`` calls by ActionID. A keepalive ``Ping`` is sent every ``ping_interval_s`` and its
reply awaited; a Ping left unanswered (a half-open TCP connection) or a lost connection
leads to a reconnect with exponential backoff, after which ``on_login`` runs again (the
adapter resynchronises its calls there).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

from adapters.ami.actions import Correlator, Reply
from adapters.ami.protocol import AmiParser, Banner, Message, Oversized
from capture.errors import AuthenticationError, RemoteProtocolError

log = logging.getLogger(__name__)

READ_SIZE = 1 << 16


class AmiClient:
    """One AMI connection that keeps itself up; see the module docstring."""

    def __init__(
        self,
        host: str,
        port: int,
        username: str,
        secret: str,
        *,
        on_event: Callable[[Message], None],
        on_login: Callable[[], Awaitable[None]] | None = None,
        on_lost: Callable[[float], None] | None = None,
        monotonic: Callable[[], float] | None = None,
        ping_interval_s: float = 20.0,
        action_timeout_s: float = 10.0,
        reconnect_min_s: float = 0.5,
        reconnect_max_s: float = 30.0,
        retry_auth: bool = False,
        max_message: int = 1 << 20,
    ) -> None:
        self.host, self.port = host, port
        self.username = username
        self._secret = secret
        self.on_event = on_event
        self.on_login = on_login
        self.on_lost = on_lost
        self._monotonic = monotonic
        self._heard_at = 0.0
        "When the server last sent anything (monotonic)."
        self.ping_interval_s = ping_interval_s
        self.action_timeout_s = action_timeout_s
        self.reconnect_min_s = reconnect_min_s
        self.reconnect_max_s = reconnect_max_s
        self.retry_auth = retry_auth
        self.max_message = max_message
        self.version: str | None = None
        self.logins = 0
        self._correlator = Correlator()
        self._waiting: dict[str, asyncio.Future[Reply]] = {}
        self._writer: asyncio.StreamWriter | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._lost = asyncio.Event()
        self._closing = False

    def _clock(self) -> float:
        return self._monotonic() if self._monotonic is not None else asyncio.get_running_loop().time()

    def _report_lost(self, silent_s: float) -> None:
        """Tell the adapter once per connection that it is gone, and how long it had been silent."""
        if self.on_lost is not None and not self._lost.is_set():
            self.on_lost(max(0.0, silent_s))

    @property
    def connected(self) -> bool:
        return self._writer is not None and not self._lost.is_set()

    # -- connection ---------------------------------------------------------------------

    async def connect(self) -> None:
        """Connect and log in once; AuthenticationError if the secret is refused, OSError if unreachable."""
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection(self.host, self.port), timeout=self.action_timeout_s
        )
        parser = AmiParser(max_message=self.max_message)
        self._lost = asyncio.Event()
        self._writer = writer
        self._correlator.reset()
        banner = asyncio.get_running_loop().create_future()
        self._tasks = [asyncio.create_task(self._read(reader, parser, banner))]
        try:
            self.version = await asyncio.wait_for(banner, timeout=self.action_timeout_s)
            reply = await self.action("Login", {"Username": self.username, "Secret": self._secret, "Events": "on"})
        except BaseException:
            await self._drop()
            raise
        if not reply.ok:
            await self._drop()
            reason = reply.message or "no reason given"
            raise AuthenticationError(
                f"AMI login refused for user {self.username!r} at {self.host}:{self.port}: {reason}"
            )
        self.logins += 1
        log.info("ami.logged_in", extra={"host": self.host, "port": self.port, "version": self.version})
        self._tasks.append(asyncio.create_task(self._keepalive()))
        if self.on_login is not None:
            await self.on_login()

    async def run(self) -> None:
        """Keep the connection up until :meth:`close`: wait for its loss, reconnect with backoff."""
        delay = self.reconnect_min_s
        while not self._closing:
            if self.connected:
                await self._lost.wait()
                await self._drop()
                delay = self.reconnect_min_s
                if self._closing:
                    return
                log.warning("ami.connection_lost", extra={"host": self.host, "port": self.port})
            try:
                await self.connect()
                continue
            except AuthenticationError as exc:
                if not self.retry_auth and self.logins == 0:
                    raise
                log.error("ami.login_refused", extra={"reason": str(exc), "retry_in_s": delay})
            except (OSError, TimeoutError, RemoteProtocolError, ConnectionError) as exc:
                log.warning(
                    "ami.connect_failed",
                    extra={"host": self.host, "port": self.port, "error": str(exc), "retry_in_s": delay},
                )
            await asyncio.sleep(delay)
            delay = min(delay * 2, self.reconnect_max_s)

    async def close(self) -> None:
        """Log off and stop reconnecting."""
        self._closing = True
        if self.connected:
            with contextlib.suppress(Exception):
                await self.action("Logoff", timeout_s=1.0)
        self._lost.set()
        await self._drop()

    async def _drop(self) -> None:
        self._lost.set()
        writer, self._writer = self._writer, None
        current = asyncio.current_task()
        tasks = [t for t in self._tasks if t is not current]
        self._tasks = []
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        if writer is not None:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()
        self._fail_waiting(ConnectionError("AMI connection lost"))

    def _fail_waiting(self, exc: Exception) -> None:
        for future in self._waiting.values():
            if not future.done():
                future.set_exception(exc)
        self._waiting.clear()
        self._correlator.reset()

    # -- actions ------------------------------------------------------------------------

    async def action(self, name: str, fields: dict[str, str] | None = None, *, timeout_s: float | None = None) -> Reply:
        """Send an action and wait for its reply (with the listed events for list actions)."""
        writer = self._writer
        if writer is None or self._lost.is_set():
            raise ConnectionError("AMI not connected")
        action_id, data = self._correlator.action(name, fields)
        # Field names only: a Login's Secret (or an Originate's variables) never reach the log.
        log.debug("ami.action", extra={"action": name, "action_id": action_id, "fields": ",".join(fields or ())})
        future: asyncio.Future[Reply] = asyncio.get_running_loop().create_future()
        self._waiting[action_id] = future
        try:
            writer.write(data)
            await writer.drain()
            return await asyncio.wait_for(future, timeout=timeout_s or self.action_timeout_s)
        finally:
            self._waiting.pop(action_id, None)
            self._correlator.forget(action_id)

    async def _keepalive(self) -> None:
        while True:
            await asyncio.sleep(self.ping_interval_s)
            try:
                await self.action("Ping", timeout_s=self.ping_interval_s)
            except (TimeoutError, ConnectionError, OSError):
                log.warning("ami.ping_unanswered", extra={"host": self.host, "port": self.port})
                self._report_lost(self._clock() - self._heard_at)
                self._lost.set()
                return

    async def _read(self, reader: asyncio.StreamReader, parser: AmiParser, banner: asyncio.Future[str]) -> None:
        try:
            while data := await reader.read(READ_SIZE):
                self._heard_at = self._clock()
                for item in parser.feed(data):
                    if isinstance(item, Message):
                        self._dispatch(item)
                    elif isinstance(item, Banner):
                        if not banner.done():
                            banner.set_result(item.version)
                    elif isinstance(item, Oversized):
                        log.warning("ami.message_skipped", extra={"size": item.size, "cap": item.cap})
        except RemoteProtocolError as exc:
            log.error("ami.protocol_error", extra={"error": str(exc)})
            if not banner.done():
                banner.set_exception(exc)
        except OSError as exc:
            log.warning("ami.read_failed", extra={"error": str(exc)})
        if not banner.done():
            banner.set_exception(ConnectionError("AMI server closed the connection before its banner"))
        if self._writer is not None and not self._closing:
            self._report_lost(0.0)  # the server closed or reset it: it went away now
        self._lost.set()
        self._fail_waiting(ConnectionError("AMI connection lost"))

    def _dispatch(self, message: Message) -> None:
        result = self._correlator.handle(message)
        if isinstance(result, Reply):
            future = self._waiting.get(result.action_id)
            if future is not None and not future.done():
                future.set_result(result)
        elif result is not None:
            try:
                self.on_event(result)
            except Exception:
                # One bad event must not stop the stream.
                log.exception("ami.event_handler_failed", extra={"event": result.event})
