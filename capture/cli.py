"""The ``vcon-capture`` command.

Exit codes: 0 success; 1 ``validate`` found an invalid vCon; 2 bad usage or configuration
(the message names the setting); 3 the service could not start (port in use, login refused).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from capture import __version__, logs
from capture.adapter import Adapter, installed_adapters, installed_commands
from capture.config import CoreSettings, load, read_toml
from capture.errors import AdapterError, ConfigError
from capture.service import serve
from capture.settings import add_flags
from capture.vcon.content import hash_matches
from capture.vcon.validate import form_of, problems, referenced_content

EXIT_OK, EXIT_INVALID, EXIT_CONFIG, EXIT_STARTUP = 0, 1, 2, 3


def _parser(adapters: dict[str, type[Adapter]], commands: dict[str, Any]) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="vcon-capture", description="Record live calls (SIP/SIPREC, WebRTC, Asterisk AMI) into IETF vCons."
    )
    parser.add_argument("--version", action="version", version=f"vcon-capture {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = sub.add_parser("run", help="run the enabled adapters as a service (default: sip and webrtc on localhost)")
    run.add_argument("--config", type=Path, help="TOML config file")
    add_flags(run, CoreSettings)

    for name, cls in sorted(adapters.items()):
        p = sub.add_parser(name, help=cls.summary)
        p.add_argument("--config", type=Path, help="TOML config file")
        add_flags(p, CoreSettings)
        add_flags(p, cls.settings_class)

    validate = sub.add_parser("validate", help="check vCon files; exit 1 if any is invalid")
    validate.add_argument("files", nargs="+", type=Path, metavar="FILE")
    validate.add_argument(
        "--media-dir", type=Path, help="where referenced files live (default: beside each vCon)"
    )
    for name, command in sorted(commands.items()):
        p = sub.add_parser(name, help=getattr(command, "summary", name), add_help=False)
        p.add_argument("args", nargs=argparse.REMAINDER)
    return parser


def _validate(files: list[Path], media_dir: Path | None) -> int:
    status = EXIT_OK
    for path in files:
        try:
            doc = json.loads(path.read_bytes())
        except OSError as exc:
            print(f"{path}: cannot read: {exc.strerror}")
            status = EXIT_INVALID
            continue
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            print(f"{path}: not JSON: {exc}")
            status = EXIT_INVALID
            continue
        found = problems(doc)
        if form_of(doc) == "unsigned":
            for where, url, expected in referenced_content(doc):
                local = (media_dir or path.parent) / url.rsplit("/", 1)[-1]
                if expected is None or not local.is_file():
                    continue
                if not hash_matches(expected, local.read_bytes()):
                    found.append(f"{where}.content_hash: does not match {local}")
        for problem in found:
            print(f"{path}: {problem}")
        if found:
            status = EXIT_INVALID
        else:
            print(f"{path}: valid")
    return status


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    adapters, broken = installed_adapters()
    commands, _ = installed_commands()
    args = _parser(adapters, commands).parse_args(argv)
    if args.command == "validate":
        return _validate(args.files, args.media_dir)
    if args.command in commands:
        return int(commands[args.command](args.args) or 0)
    try:
        doc = read_toml(args.config)
        flags = {k: v for k, v in vars(args).items() if k not in ("command", "config")}
        only = None if args.command == "run" else args.command
        config = load(doc, adapters, flags=flags, only=only, broken=broken)
    except ConfigError as exc:
        print(f"vcon-capture: bad configuration: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    logs.configure(config.core.log_level, config.core.log_format)
    try:
        return asyncio.run(serve(config, adapters))
    except ConfigError as exc:
        print(f"vcon-capture: bad configuration: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    except AdapterError as exc:
        print(f"vcon-capture: cannot start: {exc}", file=sys.stderr)
        return EXIT_STARTUP
    except KeyboardInterrupt:
        return EXIT_OK
