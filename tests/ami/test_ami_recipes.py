"""The Asterisk recipes in deploy/asterisk/ (issue 12: a fork recipe whose extensions sat in no context)."""

from __future__ import annotations

import re
from pathlib import Path

DEPLOY = Path(__file__).resolve().parents[2] / "deploy" / "asterisk"


def contexts(path: Path) -> dict[str, list[str]]:
    """Context -> its exten/same lines; lines before the first context land under ""."""
    found: dict[str, list[str]] = {}
    current = ""
    for line in path.read_text().splitlines():
        line = line.split(";", 1)[0].strip()
        if m := re.fullmatch(r"\[([^\]]+)\]", line):
            current = m.group(1)
        elif line.startswith(("exten", "same")):
            found.setdefault(current, []).append(line)
    return found


def test_every_extension_of_the_recipes_is_in_a_context() -> None:
    for name in ("extensions.conf", "extensions-fork.conf"):
        assert "" not in contexts(DEPLOY / name), f"{name}: extensions before any [context]"


def test_the_fork_names_the_callee_for_the_sip_recorder() -> None:
    fork = contexts(DEPLOY / "extensions-fork.conf")
    assert {"vcon-fork", "vcon-recorder-none", "internal-recorded"} <= set(fork)
    lines = "\n".join(fork["vcon-fork"])
    for header in ("X-Vcon-Callee-Num", "X-Vcon-Callee-Name", "X-Vcon-Callee-Channel", "X-Vcon-Linkedid"):
        assert f"PJSIP_HEADER(add,{header})" in lines
    # the callee's identity is read from its channel, never passed through (injectable) arguments
    assert (
        "IMPORT(${ARG3},CALLERID(num))" in lines
        and "b(vcon-fork^leg^1(${ARG1}^${CHANNEL(linkedid)}^${CHANNEL}))" in lines
    )
    assert "U(vcon-fork^${CHANNEL}^${EXTEN})" in "\n".join(fork["internal-recorded"])


def test_the_dialplan_mixmonitor_names_its_file_as_the_adapter_finds_it() -> None:
    (record,) = [x for x in contexts(DEPLOY / "extensions.conf")["vcon-record"] if "MixMonitor" in x]
    assert "MixMonitor(vcon-${CHANNEL(linkedid)}-${UNIQUEID}.wav,b)" in record
