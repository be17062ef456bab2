"""Runs adapters and the pipeline as a service, with uvicorn-style shutdown.

The first SIGTERM/SIGINT stops taking new calls, ends the active ones into vCons and
flushes the spool within ``shutdown_grace_s``; a second one exits at once, leaving the
call journals for recovery at the next start.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
from collections.abc import Callable, Mapping
from pathlib import Path

from aiohttp import web

from capture.adapter import Adapter
from capture.api import api_app
from capture.atomic import ensure_dir
from capture.config import Config, CoreSettings
from capture.errors import AdapterError, ConfigError, StartupError
from capture.eventloop import loop_name
from capture.finishing import Sealing
from capture.livepush import LivePusher
from capture.metrics import health_app
from capture.mixdown import MediaPolicy
from capture.pipeline import Pipeline
from capture.recovery import recover_calls
from capture.settings import split_hostport
from capture.sinks import Sink
from capture.sinks.conserver import ConserverSink
from capture.sinks.directory import DirectorySink
from capture.sinks.webhook import WebhookSink
from capture.spool import Spool

log = logging.getLogger(__name__)

FORCED_EXIT = 1
SHUTDOWN_CAUSE = "recorder shut down"


def _usable_dir(path: Path, setting: str) -> Path:
    try:
        ensure_dir(path)
    except OSError as exc:
        raise ConfigError(setting, f"cannot create directory {path}: {exc.strerror}") from None
    if not os.access(path, os.W_OK | os.X_OK):
        raise ConfigError(setting, f"directory {path} is not writable")
    return path


def _sealing(core: CoreSettings) -> Sealing | None:
    if core.signing_key_file is None or core.signing_cert_file is None:
        return None
    sealing = Sealing(core.signing_key_file, core.signing_cert_file, core.encrypt_cert_file)
    sealing.check()
    return sealing


def build_pipeline(config: Config) -> Pipeline:
    """The pipeline with its spool and sinks, directories checked."""
    core = config.core
    out = _usable_dir(core.out, "out")
    state = _usable_dir(core.state_dir, "state_dir")
    media_dir = _usable_dir(core.media_dir, "media_dir") if core.media_dir else out
    sinks: list[Sink] = [DirectorySink(out)]
    if core.conserver_url:
        sinks.append(
            ConserverSink(
                core.conserver_url,
                token=config.conserver_token,
                ingress_lists=core.ingress_lists,
                timeout_s=core.delivery_timeout_s,
            )
        )
    if core.webhook_url and config.webhook_secret:
        sinks.append(
            WebhookSink(
                core.webhook_url,
                secret=config.webhook_secret,
                timeout_s=core.delivery_timeout_s,
                ca_file=core.webhook_ca_file,
            )
        )
    return Pipeline(
        finished_dirs=(out,),
        sealing=_sealing(core),
        state_dir=state,
        domain=core.uuid_domain,
        profile=core.profile(),
        media=MediaPolicy(
            layout=core.layout,
            url_base=core.media_url_base,
            media_dir=media_dir,
            s3=config.s3,
            staging_dir=ensure_dir(state / "staging"),
            inline_max_bytes=int(core.inline_max_mb * 1e6) if core.inline_max_mb else None,
        ),
        min_free_bytes=int(core.min_free_mb * 1e6),
        spool=Spool(state / "spool"),
        sinks=sinks,
        retry_max_s=core.retry_max_s,
    )


async def _serve_app(app: web.Application, listen: str, setting: str) -> web.AppRunner:
    host, port = split_hostport(listen, setting)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    try:
        await web.TCPSite(runner, host, port).start()
    except OSError as exc:
        await runner.cleanup()
        raise StartupError(f"{setting} {listen}: {exc.strerror}") from None
    return runner


async def _start_health(pipeline: Pipeline, listen: str, ready: Callable[[], bool]) -> web.AppRunner:
    return await _serve_app(health_app(pipeline.metrics, ready), listen, "metrics_listen")


async def _start_servers(config: Config, pipeline: Pipeline, ready: Callable[[], bool]) -> list[web.AppRunner]:
    """The health/metrics endpoint and the API (with the operator console), as configured."""
    from capture.console import console_app

    core, servers = config.core, []
    try:
        if core.metrics_listen:
            servers.append(await _start_health(pipeline, core.metrics_listen, ready))
        if core.api_listen:
            console = console_app(
                pipeline,
                token=config.api_token,
                ready=ready,
                out_dirs=(core.out,),
                cache_dir=core.state_dir / "console",
                media_dirs=(core.media_dir,) if core.media_dir else (),
                ca_file=core.console_ca_file,
            )
            app = api_app(
                token=config.api_token,
                live=pipeline.live,
                calls=pipeline.calls_snapshot,
                pause=pipeline.request_pause,
                console=console,
            )
            servers.append(await _serve_app(app, core.api_listen, "api_listen"))
    except StartupError:
        for runner in servers:
            await runner.cleanup()
        raise
    return servers


async def serve(config: Config, adapter_classes: Mapping[str, type[Adapter]]) -> int:
    """Run until signalled; returns the process exit code."""
    os.umask(0o077)  # recordings, vCons and the spool: 0600 files in 0700 directories
    pipeline = build_pipeline(config)
    await pipeline.start()
    started: list[Adapter] = []
    try:
        servers = await _start_servers(
            config, pipeline, lambda: pipeline.accepting and len(started) == len(config.adapters)
        )
    except StartupError:
        await pipeline.aclose()
        raise
    pusher = None
    if config.core.live_push_url:
        pusher = LivePusher(
            pipeline.live,
            config.core.live_push_url,
            token=config.live_push_token,
            ca_file=config.core.live_push_ca_file,
        )
    resumable = {name for name in config.adapters if adapter_classes[name].resumes_calls}
    recovered = await recover_calls(pipeline, resumable)
    if recovered:
        log.info("service.recovered", extra={"calls": recovered})
    adapters = [adapter_classes[name](settings, pipeline) for name, settings in config.adapters.items()]

    async def shut(servers: list[web.AppRunner]) -> None:
        if pusher is not None:
            await pusher.aclose()
        pipeline.live.close()
        for runner in servers:
            await runner.cleanup()

    try:
        for adapter in adapters:
            await adapter.start()
            started.append(adapter)
            pipeline.pause_hooks[adapter.name] = adapter.pause_media
    except AdapterError:
        for adapter in started:
            await adapter.stop()
            await adapter.close()
        await shut(servers)
        await pipeline.aclose()
        raise

    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()

    def on_signal() -> None:
        if stopping.is_set():
            log.warning("service.forced_exit", extra={"why": "second signal; calls in flight are recovered at restart"})
            os._exit(FORCED_EXIT)
        stopping.set()

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, on_signal)
    log.info("service.ready", extra={"adapters": ", ".join(a.describe() for a in started), "out": str(config.core.out),
                                     "loop": loop_name()})  # fmt: skip
    await stopping.wait()
    log.info("service.stopping")
    pipeline.stop_accepting()
    await asyncio.gather(*(adapter.stop() for adapter in started))
    if left := pipeline.end_open_calls(SHUTDOWN_CAUSE):
        log.warning("service.calls_left_open", extra={"calls": left})
    if not await pipeline.drain(config.core.shutdown_grace_s):
        log.warning("service.grace_expired", extra={"undelivered": pipeline.spool.depth()})
    await asyncio.gather(*(adapter.close() for adapter in started))
    await shut(servers)
    await pipeline.aclose()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.remove_signal_handler(sig)
    return 0
