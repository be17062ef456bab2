"""WebRTC adapter: WHIP ingest on aiortc; every room becomes one vCon."""

from __future__ import annotations

import logging
import os
from typing import ClassVar

from aiohttp import web

from adapters.webrtc import aiortc_compat as compat
from adapters.webrtc import ice
from adapters.webrtc.endpoint import WhipEndpoint
from adapters.webrtc.identity import TokenCheck, parse_tokens
from adapters.webrtc.settings import WebrtcSettings
from capture.adapter import Adapter, Capture
from capture.errors import ConfigError, StartupError
from capture.settings import read_secret, split_hostport

log = logging.getLogger(__name__)

SHUTDOWN_TIMEOUT_S = 2.0


class WebrtcAdapter(Adapter):
    name: ClassVar[str] = "webrtc"
    summary: ClassVar[str] = "WebRTC: WHIP (RFC 9725) ingest on aiortc and a browser page; each room is one vCon"
    settings_class: ClassVar[type] = WebrtcSettings

    def __init__(self, settings: WebrtcSettings, capture: Capture) -> None:
        super().__init__(settings, capture)
        self.settings: WebrtcSettings = settings
        self.endpoint: WhipEndpoint | None = None
        self._runner: web.AppRunner | None = None
        self._address = settings.listen

    def _tokens(self) -> TokenCheck:
        path = self.settings.token_file
        if path is None:
            return TokenCheck(None)
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise ConfigError("webrtc.token_file", f"cannot read {path}: {exc.strerror}") from None
        return TokenCheck(parse_tokens(text, "webrtc.token_file"))

    async def start(self) -> None:
        s = self.settings
        missing = compat.check()
        if missing:
            lacks = ", ".join(missing)
            raise StartupError(f"webrtc: aiortc lacks what recording needs ({lacks}); tested: {compat.TESTED_WITH}")
        credential = read_secret(
            s.turn_credential_file, "VCON_CAPTURE_WEBRTC_TURN_CREDENTIAL", os.environ, "webrtc.turn_credential_file"
        )
        configuration = ice.rtc_configuration(s.ice_servers, s.turn_username, credential)
        if s.host_addresses:
            ice.pin_host_addresses(s.host_addresses)
        self.endpoint = WhipEndpoint(s, self.capture, self._tokens(), configuration)
        host, port = split_hostport(s.listen, "webrtc.listen")
        self._runner = web.AppRunner(self.endpoint.app(), access_log=None, shutdown_timeout=SHUTDOWN_TIMEOUT_S)
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, port)
        try:
            await site.start()
        except OSError as exc:
            await self._runner.cleanup()
            raise StartupError(f"webrtc: cannot listen on {s.listen}: {exc.strerror}") from None
        bound = self._runner.addresses[0]
        self._address = f"{host}:{bound[1]}"
        log.info("webrtc.listening", extra={"url": f"http://{self._address}/", "whip": "/whip/{room}"})

    async def stop(self) -> None:
        if self.endpoint is not None:
            self.endpoint.stopping = True
            await self.endpoint.rooms.close_all("shutdown")

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    def describe(self) -> str:
        return f"webrtc http://{self._address}/"
