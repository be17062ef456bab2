"""deploy/config.toml documents every setting the code declares, and loads as it is."""

from __future__ import annotations

import dataclasses
import importlib.util
import re
import tomllib
from pathlib import Path

from capture.adapter import installed_adapters
from capture.config import CoreSettings, load

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
SAMPLE = DEPLOY / "config.toml"
KEY_LINE = re.compile(r"^(?:# )?([a-z_][a-z0-9_]*) = ")


def keys_by_table() -> dict[str, list[str]]:
    """Every `key = ...` line, set or commented out, per TOML table ("" = top level)."""
    found: dict[str, list[str]] = {"": []}
    table = ""
    for line in SAMPLE.read_text().splitlines():
        if line.startswith("["):
            table = line.strip("[]")
            found[table] = []
        elif match := KEY_LINE.match(line):
            found[table].append(match.group(1))
    return found


def declared() -> dict[str, list[str]]:
    adapters, broken = installed_adapters()
    assert not broken, broken
    sections = {"": CoreSettings, **{name: cls.settings_class for name, cls in adapters.items()}}
    return {name: [f.name for f in dataclasses.fields(cls)] for name, cls in sections.items()}


def test_every_declared_setting_is_in_the_sample_once() -> None:
    found = keys_by_table()
    for section, names in declared().items():
        assert section in found, f"config.toml has no [{section}] table"
        for name in names:
            times = found[section].count(name)
            assert times == 1, f"[{section or 'top level'}] {name}: in config.toml {times} times"
        assert not set(found[section]) - set(names), f"[{section}] documents settings the code lacks"


def test_sample_is_the_generator_output() -> None:
    spec = importlib.util.spec_from_file_location("sample_config", DEPLOY / "sample_config.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert SAMPLE.read_text() == module.render(), "regenerate: python deploy/sample_config.py > deploy/config.toml"


def test_sample_loads_as_the_service_reads_it() -> None:
    adapters, _ = installed_adapters()
    config = load(tomllib.loads(SAMPLE.read_text()), adapters, env={})
    assert str(config.core.state_dir).startswith("/var/lib/vcon-capture/")
    assert str(config.core.out).startswith("/var/lib/vcon-capture/")
