"""Typed settings: one frozen dataclass per config section, filled from TOML, env and flags.

A section is a frozen dataclass whose fields are declared with :func:`setting`. The same
declaration gives the TOML key (``[section] key``), the environment variable
(``VCON_CAPTURE_<SECTION>__<KEY>``) and the command-line flag (``--key``), in rising
priority. Secrets are only ever read from files or the environment (``*_file`` settings
point at the file); :func:`redacted` masks them for display.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import types
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypeVar

from capture.errors import ConfigError

ENV_PREFIX = "VCON_CAPTURE_"
T = TypeVar("T")


def setting(default: Any, help: str, *, flag: bool = True, secret: bool = False) -> Any:
    """Declare a field of a settings section."""
    meta = {"help": help, "flag": flag, "secret": secret}
    if isinstance(default, (list, dict)):
        return dataclasses.field(default_factory=lambda: type(default)(default), metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


def split_hostport(value: str, where: str) -> tuple[str, int]:
    """``HOST:PORT`` (IPv6 as ``[::1]:5060``) -> (host, port); ConfigError names ``where``."""
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ConfigError(where, f"expected HOST:PORT, got {value!r}")
    return host.strip("[]"), int(port)


def env_name(section: str, key: str) -> str:
    """The environment variable of a setting; the core's own (section "") have no section part."""
    if not section:
        return f"{ENV_PREFIX}{key.upper()}"
    return f"{ENV_PREFIX}{section.upper()}__{key.upper()}"


def _field_types(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _base_type(tp: Any) -> tuple[Any, bool]:
    """(the type without Optional, whether None is allowed)."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        return args[0], len(args) < len(typing.get_args(tp))
    return tp, False


def _coerce(value: Any, tp: Any, where: str) -> Any:
    base, optional = _base_type(tp)
    if value is None:
        if optional:
            return None
        raise ConfigError(where, "must be set")
    origin = typing.get_origin(base)
    try:
        if base is bool:
            if isinstance(value, bool):
                return value
            text = str(value).strip().lower()
            if text in ("1", "true", "yes", "on"):
                return True
            if text in ("0", "false", "no", "off"):
                return False
            raise ValueError(f"not a boolean: {value!r}")
        if base is int:
            if isinstance(value, bool):
                raise ValueError(f"not an integer: {value!r}")
            return int(value)
        if base is float:
            if isinstance(value, bool) or not math.isfinite(number := float(value)):
                raise ValueError(f"not a finite number: {value!r}")
            return number
        if base is str:
            if not isinstance(value, (str, int, float)) or isinstance(value, bool):
                raise ValueError(f"not a string: {value!r}")
            return str(value)
        if base is Path:
            if not isinstance(value, (str, Path)):
                raise ValueError(f"not a path: {value!r}")
            return Path(value)
        if origin is tuple:
            (item_tp, _) = typing.get_args(base)
            items = [v.strip() for v in value.split(",") if v.strip()] if isinstance(value, str) else value
            if not isinstance(items, (list, tuple)):
                raise ValueError(f"not a list: {value!r}")
            return tuple(_coerce(v, item_tp, where) for v in items)
        if typing.get_origin(base) is typing.Literal:
            choices = typing.get_args(base)
            if value not in choices:
                raise ValueError(f"{value!r} is not one of {', '.join(map(str, choices))}")
            return value
    except (ValueError, TypeError) as exc:
        raise ConfigError(where, str(exc)) from None
    raise ConfigError(where, f"unsupported setting type {base!r}")


def build(
    cls: type[T],
    section: str,
    table: Mapping[str, Any] | None = None,
    env: Mapping[str, str] | None = None,
    flags: Mapping[str, Any] | None = None,
) -> T:
    """Fill ``cls`` from a TOML table, then the environment, then flags (None = not given)."""
    table = dict(table or {})
    env = env or {}
    flags = flags or {}
    hints = _field_types(cls)
    names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(table) - names)
    if unknown:
        raise ConfigError(_where(section, unknown[0]), "unknown setting")
    values: dict[str, Any] = {}
    for f in dataclasses.fields(cls):  # type: ignore[arg-type]
        where = _where(section, f.name)
        raw: Any = dataclasses.MISSING
        if f.name in table:
            raw = table[f.name]
        if (name := env_name(section, f.name)) in env:
            raw, where = env[name], name
        if flags.get(f.name) is not None:
            raw, where = flags[f.name], "--" + f.name.replace("_", "-")
        if raw is not dataclasses.MISSING:
            values[f.name] = _coerce(raw, hints[f.name], where)
    try:
        return cls(**values)
    except ConfigError:
        raise
    except (TypeError, ValueError) as exc:
        raise ConfigError(section, str(exc)) from None


def _where(section: str, key: str) -> str:
    return f"{section}.{key}" if section else key


def _show(value: Any) -> str:
    if value is None or value == "":
        return "unset"
    if isinstance(value, tuple):
        return ",".join(map(str, value)) or "none"
    return str(value)


def add_flags(parser: argparse.ArgumentParser, cls: type, skip: frozenset[str] = frozenset()) -> None:
    """Add a ``--key`` flag for every flag-enabled, non-secret field of ``cls`` not in ``skip``."""
    hints = _field_types(cls)
    for f in dataclasses.fields(cls):
        if f.name in skip or not f.metadata.get("flag", True) or f.metadata.get("secret"):
            continue
        base, _ = _base_type(hints[f.name])
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()  # type: ignore[operator]
        help_text = f"{f.metadata.get('help', '')} (default: {_show(default)})"
        flag = "--" + f.name.replace("_", "-")
        if base is bool:
            parser.add_argument(flag, dest=f.name, action=argparse.BooleanOptionalAction, default=None, help=help_text)
        elif typing.get_origin(base) is typing.Literal:
            parser.add_argument(flag, dest=f.name, default=None, choices=typing.get_args(base), help=help_text)
        else:
            parser.add_argument(flag, dest=f.name, default=None, metavar=f.name.upper(), help=help_text)


def redacted(obj: Any) -> dict[str, Any]:
    """The section as a dict, secrets masked."""
    out: dict[str, Any] = {}
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        if f.metadata.get("secret") and value:
            value = "***"
        elif isinstance(value, Path):
            value = str(value)
        elif isinstance(value, tuple):
            value = list(value)
        out[f.name] = value
    return out


def read_secret(path: Path | None, env_var: str, env: Mapping[str, str], setting_name: str) -> str | None:
    """A secret from its file (first line, stripped) or from an environment variable."""
    if path is not None:
        try:
            return path.read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise ConfigError(setting_name, f"cannot read {path}: {exc.strerror}") from None
    return env.get(env_var) or None
