"""`vcon-capture demo` as a new user sees it (issue 16): the console's address before the call,
the vCon, then the recorder (and its console, showing that vCon) kept running until Ctrl-C."""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import re
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path

from vconcheck import assert_valid


def ctrl_c(pid: int) -> None:
    """Ctrl-C as the kernel may deliver it: a signal sent to a process lands on any of its threads
    that does not block it. pjsua2 leaves a thread behind in the demo; the SIGINT goes to that one
    (tgkill) when there is one: a main thread asleep in one long waitpid() would never see it."""
    others = [int(t) for t in os.listdir(f"/proc/{pid}/task") if int(t) != pid]
    tgkill = getattr(ctypes.CDLL(None, use_errno=True), "tgkill", None)
    if others and tgkill is not None:
        assert tgkill(pid, others[0], signal.SIGINT) == 0, os.strerror(ctypes.get_errno())
    else:
        os.kill(pid, signal.SIGINT)


def as_foreground_job() -> None:
    """A terminal's shell starts its foreground job with SIGINT at its default. A test run started
    in the background by a non-interactive shell (a CI runner may) inherits SIGINT ignored, and so
    would the demo: Python then installs no KeyboardInterrupt and Ctrl-C means nothing."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def test_demo_shows_the_console_first_and_keeps_the_recorder_until_ctrl_c(tmp_path: Path) -> None:
    out = tmp_path / "out"
    demo = subprocess.Popen(
        [sys.executable, "-c", "import sys; from adapters.sip.demo import main; sys.exit(main(sys.argv[1:]))",
         "--seconds", "2", "--out", str(out), "--wait"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, preexec_fn=as_foreground_job,
        start_new_session=True,  # its own process group: a failure takes the recorder down with it
    )  # fmt: skip
    lines: list[str] = []
    try:
        assert demo.stdout is not None
        for line in demo.stdout:
            lines.append(line)
            if "Ctrl-C" in line:
                break
        text = "".join(lines)
        console = re.search(r"operator console: (http://127\.0\.0\.1:[0-9]+/console/)", text)
        assert console, text
        assert text.index(console.group(1)) < text.index("calling the recorder"), "the address comes before the call"
        (path,) = out.glob("*.vcon")
        assert f"vCon written to {path}" in text
        uuid = assert_valid(json.loads(path.read_bytes()))["uuid"]
        base = console.group(1).removesuffix("/console/")
        # The vCon is done and the recorder still answers: its console and API show the call.
        with urllib.request.urlopen(console.group(1), timeout=10) as page:
            assert page.status == 200 and b"<html" in page.read().lower()
        with urllib.request.urlopen(f"{base}/api/calls", timeout=10) as calls:
            assert json.loads(calls.read()) == [], "the call is over"
        with urllib.request.urlopen(f"{base}/console/api/vcons/{uuid}", timeout=20) as detail:
            assert json.loads(detail.read())["uuid"] == uuid, "its detail page (waveform, timeline, player) is served"
        assert demo.poll() is None, "still running after the vCon"
        ctrl_c(demo.pid)
        rest, _ = demo.communicate(timeout=30)
    finally:
        if demo.poll() is None:
            demo.kill()
            demo.wait()
        with contextlib.suppress(ProcessLookupError):
            os.killpg(demo.pid, signal.SIGKILL)  # the recorder, if the demo could not stop it
    assert demo.returncode == 0, text + rest
    assert "stopping the recorder" in rest
    try:
        urllib.request.urlopen(f"{base}/api/calls", timeout=2)
        raise AssertionError("the recorder still answers after Ctrl-C")
    except OSError:
        pass
