"""One logging style (capture/logs.py): an event name as the message, data only in ``extra``."""

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LEVELS = {"debug", "info", "warning", "error", "exception", "critical"}
EVENT_NAME = re.compile(r"^[a-z][a-z0-9_]*(\.[a-z0-9_]+)+$")
ALLOWED_KWARGS = {"extra", "exc_info", "stack_info"}


def log_calls(path: Path):
    tree = ast.parse(path.read_text(), str(path))
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr in LEVELS
            and isinstance(node.func.value, ast.Name)
            and node.func.value.id in ("log", "logger")
        ):
            yield node


def sources() -> list[Path]:
    return sorted([*(ROOT / "capture").rglob("*.py"), *(ROOT / "adapters").rglob("*.py")])


@pytest.mark.parametrize("path", sources(), ids=lambda p: str(p.relative_to(ROOT)))
def test_every_log_line_is_an_event_name_with_structured_fields(path):
    for call in log_calls(path):
        where = f"{path.relative_to(ROOT)}:{call.lineno}"
        assert call.args, f"{where}: no message"
        first = call.args[0]
        assert isinstance(first, ast.Constant) and isinstance(first.value, str), f"{where}: message is not a literal"
        assert EVENT_NAME.match(first.value), f"{where}: {first.value!r} is not an event name like 'sip.call_ended'"
        assert len(call.args) == 1, f"{where}: data belongs in extra=, not in %-arguments"
        assert {k.arg for k in call.keywords} <= ALLOWED_KWARGS, f"{where}: unexpected keywords"


@pytest.mark.parametrize("path", sources(), ids=lambda p: str(p.relative_to(ROOT)))
def test_loggers_are_named_after_their_module(path):
    if path == ROOT / "capture" / "logs.py":
        return  # the one place that configures the root logger and quietens noisy libraries
    text = path.read_text()
    for match in re.finditer(r"logging\.getLogger\(([^)]*)\)", text):
        assert match.group(1) in ("__name__", ""), f"{path.relative_to(ROOT)}: getLogger({match.group(1)})"
