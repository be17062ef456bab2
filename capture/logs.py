"""Logging: readable text or one JSON object a line, each carrying the conversation uuid.

One style everywhere: the message is a stable event name, ``<area>.<what_happened>`` in
lower case (``sip.call_answered``, ``ami.transfer_unresolved``, ``delivery.retry``), and the
data go in ``extra`` as structured fields, never into the text::

    log.info("sip.call_ended", extra={"call_id": call.call_id, "cause": cause})

(``tests/test_logging_style.py`` holds every call to this.) The text format prints
``event key=value ...``; the JSON format one object with ``message`` = the event name and
each field as a key. Field names must not be LogRecord attributes (``name``, ``msg``,
``args``, ``module``, ``filename``, ``lineno``, ``process``...).

Every line about a call carries its ``vcon_uuid``: it comes from a ContextVar set with
:func:`call_scope`; tasks created inside the scope inherit it, so an adapter's per-call
work logs with the uuid without passing it around. A record may also carry ``vcon_uuid``
in ``extra``.
"""

from __future__ import annotations

import contextlib
import contextvars
import json
import logging
import sys
from collections.abc import Iterator
from datetime import UTC, datetime

current_call: contextvars.ContextVar[str | None] = contextvars.ContextVar("vcon_uuid", default=None)

_STANDARD = set(logging.makeLogRecord({}).__dict__) | {"message", "asctime", "vcon_uuid"}


@contextlib.contextmanager
def call_scope(vcon_uuid: str | None) -> Iterator[None]:
    """Log lines (and tasks started) inside carry this conversation's uuid (None: leave it as is)."""
    if vcon_uuid is None:
        yield
        return
    token = current_call.set(vcon_uuid)
    try:
        yield
    finally:
        current_call.reset(token)


class CallFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if not getattr(record, "vcon_uuid", None):
            record.vcon_uuid = current_call.get()
        return True


def _extras(record: logging.LogRecord) -> dict[str, object]:
    return {k: v for k, v in record.__dict__.items() if k not in _STANDARD and not k.startswith("_")}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.vcon_uuid:  # type: ignore[attr-defined]
            entry["vcon_uuid"] = record.vcon_uuid  # type: ignore[attr-defined]
        entry.update(_extras(record))
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str, ensure_ascii=False)


class TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        stamp = datetime.fromtimestamp(record.created).strftime("%H:%M:%S.%f")[:-3]
        call = f" [{record.vcon_uuid}]" if record.vcon_uuid else ""  # type: ignore[attr-defined]
        extras = " ".join(f"{k}={v}" for k, v in _extras(record).items())
        line = f"{stamp} {record.levelname:<7} {record.name}{call}: {record.getMessage()}"
        if extras:
            line += " " + extras
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line


def configure(level: str = "info", fmt: str = "text") -> None:
    """Route all logging (ours, aiortc's, aiohttp's) to stderr in the chosen format."""
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(CallFilter())
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for noisy in ("aioice", "aiortc", "aiohttp.access"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))
