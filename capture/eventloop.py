"""Which asyncio event loop runs the service (``event_loop``), like uvicorn's ``--loop``.

uvloop (libuv, in C) reads a datagram and calls the protocol without the selector, handle and
transport layers the standard library runs in Python per packet: delivering a datagram costs
about a quarter of the CPU (measured: 15 -> 4 µs on 600-800 UDP sockets at 15-20k packets/s).
``auto`` takes it when installed (it is a dependency on Linux) and otherwise the standard
library's loop, which behaves the same.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

from capture.errors import ConfigError

T = TypeVar("T")


def loop_factory(kind: str) -> Callable[[], asyncio.AbstractEventLoop] | None:
    """The factory for ``kind`` (None: the standard library's loop)."""
    if kind == "asyncio":
        return None
    try:
        import uvloop
    except ImportError:
        if kind == "uvloop":
            raise ConfigError("event_loop", "uvloop is not installed (pip install uvloop)") from None
        return None
    factory: Callable[[], asyncio.AbstractEventLoop] = uvloop.new_event_loop
    return factory


def run_loop(main: Coroutine[Any, Any, T], kind: str) -> T:
    """Run ``main`` to completion on the event loop ``kind`` names."""
    try:
        factory = loop_factory(kind)
    except ConfigError:
        main.close()
        raise
    with asyncio.Runner(loop_factory=factory) as runner:
        return runner.run(main)


def loop_name() -> str:
    """The running loop's implementation, for the startup log line."""
    return "uvloop" if type(asyncio.get_running_loop()).__module__.startswith("uvloop") else "asyncio"
