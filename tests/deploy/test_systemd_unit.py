"""deploy/systemd/vcon-capture.service passes `systemd-analyze verify` and keeps its hardening.

systemd is not running here (and need not be): `systemd-analyze --root` checks the unit
against a throwaway root holding the unit, systemd's own units and an executable where
the README installs the program.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from capture.config import CoreSettings

UNIT = Path(__file__).resolve().parents[2] / "deploy" / "systemd" / "vcon-capture.service"
SYSTEM_UNITS = Path("/usr/lib/systemd/system")


def service_section() -> dict[str, list[str]]:
    """[Service] key -> its values (systemd keys repeat, so configparser will not do)."""
    values: dict[str, list[str]] = {}
    section = ""
    for line in UNIT.read_text().splitlines():
        line = line.strip()
        if line.startswith("["):
            section = line.strip("[]")
        elif section == "Service" and "=" in line and not line.startswith("#"):
            key, _, value = line.partition("=")
            values.setdefault(key, []).append(value)
    return values


@pytest.fixture
def root(tmp_path: Path) -> Path:
    if shutil.which("systemd-analyze") is None:
        pytest.fail("systemd-analyze is missing: apt-get install systemd (Debian 12)")
    (tmp_path / "etc/systemd/system").mkdir(parents=True)
    shutil.copy(UNIT, tmp_path / "etc/systemd/system" / UNIT.name)
    shutil.copytree(SYSTEM_UNITS, tmp_path / "usr/lib/systemd/system", symlinks=True)
    exec_start = service_section()["ExecStart"][0].split()[0]
    program = tmp_path / exec_start.lstrip("/")
    program.parent.mkdir(parents=True)
    program.write_text("#!/bin/sh\n")
    program.chmod(0o755)
    return tmp_path


def test_unit_verifies_cleanly(root: Path) -> None:
    result = subprocess.run(
        ["systemd-analyze", "verify", f"--root={root}", UNIT.name], capture_output=True, text=True, timeout=60
    )
    # verify exits 0 even for unknown or unparsable keys; it only prints them.
    assert result.returncode == 0 and not (result.stdout + result.stderr).strip(), result.stdout + result.stderr


def test_unit_exposure_is_low(root: Path) -> None:
    result = subprocess.run(
        ["systemd-analyze", "security", "--offline=yes", f"--root={root}", "--threshold=20", "--no-pager", UNIT.name],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr


def test_unit_hardening_and_stop_timeout() -> None:
    service = service_section()
    first = {key: values[0] for key, values in service.items()}
    assert first["User"] == "vcon-capture" and first["NoNewPrivileges"] == "yes"
    assert first["ProtectSystem"] == "strict" and first["StateDirectory"] == "vcon-capture"
    assert "--config /etc/vcon-capture/config.toml" in first["ExecStart"]
    assert not any(key.startswith("ReadWrite") for key in service), "state only under StateDirectory"
    assert first["CapabilityBoundingSet"] == ""
    grace = CoreSettings().shutdown_grace_s
    assert float(first["TimeoutStopSec"]) > grace, "systemd would SIGKILL before the graceful shutdown ends"
