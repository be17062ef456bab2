"""The ``vcon-capture`` command.

Exit codes: 0 success; 1 ``validate`` found an invalid vCon; 2 bad usage or configuration
(the message names the setting); 3 the service could not start (port in use, login refused).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import ssl
import sys
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from capture import __version__, logs
from capture.adapter import Adapter, installed_adapters, installed_commands
from capture.atomic import write_atomic
from capture.config import CoreSettings, load, read_toml
from capture.errors import AdapterError, ConfigError, VerificationError
from capture.eventloop import run_loop
from capture.service import serve
from capture.settings import add_flags
from capture.signing import decrypt, verify
from capture.vcon.content import b64url, hash_matches
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
        add_flags(p, CoreSettings, skip=frozenset({"adapters"}))
        add_flags(p, cls.settings_class)

    validate = sub.add_parser("validate", help="check vCon files; exit 1 if any is invalid")
    validate.add_argument("files", nargs="+", type=Path, metavar="FILE")
    validate.add_argument("--media-dir", type=Path, help="where referenced files live (default: beside each vCon)")
    validate.add_argument(
        "--fetch", action="store_true", help="download referenced media not found locally and check its content_hash"
    )
    validate.add_argument("--ca-file", type=Path, help="PEM CA bundle to trust when fetching (default: the system's)")
    verify_cmd = sub.add_parser("verify", help="check a signed vCon's signatures, chain and referenced files")
    verify_cmd.add_argument("files", nargs="+", type=Path, metavar="FILE")
    verify_cmd.add_argument("--ca", type=Path, required=True, help="PEM file of trusted CA certificates")
    verify_cmd.add_argument("--media-dir", type=Path, help="where referenced files live (default: beside each vCon)")
    decrypt_cmd = sub.add_parser("decrypt", help="decrypt an encrypted vCon into its signed form")
    decrypt_cmd.add_argument("file", type=Path, metavar="FILE")
    decrypt_cmd.add_argument("--key", type=Path, required=True, help="PEM private key of the recipient")
    decrypt_cmd.add_argument("-o", "--output", type=Path, help="write here instead of standard output")
    for name, command in sorted(commands.items()):
        p = sub.add_parser(name, help=getattr(command, "summary", name), add_help=False)
        p.add_argument("args", nargs=argparse.REMAINDER)
    return parser


def _read_json(path: Path) -> tuple[Any, str | None]:
    """(document, None) or (None, a one-line reason)."""
    try:
        return json.loads(path.read_bytes()), None
    except OSError as exc:
        return None, f"cannot read: {exc.strerror}"
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        return None, f"not JSON: {exc}"


def _fetch_hash_problem(url: str, expected: Any, ca_file: Path | None) -> str | None:
    """Why the object at ``url`` does not match ``expected`` (None if it does), read in chunks."""
    context = ssl.create_default_context(cafile=str(ca_file) if ca_file else None)
    digest = hashlib.sha512()
    try:
        with urllib.request.urlopen(url, timeout=30, context=context) as resp:  # noqa: S310 (https only, checked)
            while chunk := resp.read(1 << 20):
                digest.update(chunk)
    except (OSError, ValueError) as exc:
        return f"cannot fetch it: {exc}"
    got = "sha512-" + b64url(digest.digest())
    values = [expected] if isinstance(expected, str) else expected
    return None if got in values else "does not match the fetched object"


def _problems(doc: Any, path: Path, media_dir: Path | None, fetch: bool = False, ca: Path | None = None) -> list[str]:
    """Validator problems plus content_hash mismatches of referenced files found locally (or fetched)."""
    found = problems(doc)
    if form_of(doc) == "unsigned":
        for where, url, expected in referenced_content(doc):
            local = (media_dir or path.parent) / url.split("?", 1)[0].rsplit("/", 1)[-1]
            if expected is None:
                continue
            if local.is_file():
                if not hash_matches(expected, local.read_bytes()):
                    found.append(f"{where}.content_hash: does not match {local}")
            elif fetch and url.startswith("https://"):
                if (why := _fetch_hash_problem(url, expected, ca)) is not None:
                    found.append(f"{where}.content_hash: {why}")
    return found


def _report(path: Path, found: list[str], ok: str) -> int:
    for problem in found:
        print(f"{path}: {problem}")
    if not found:
        print(f"{path}: {ok}")
    return EXIT_INVALID if found else EXIT_OK


def _validate(files: list[Path], media_dir: Path | None, fetch: bool = False, ca: Path | None = None) -> int:
    status = EXIT_OK
    for path in files:
        doc, error = _read_json(path)
        found = [error] if error else _problems(doc, path, media_dir, fetch, ca)
        status = max(status, _report(path, found, "valid"))
    return status


def _verify(files: list[Path], ca: Path, media_dir: Path | None) -> int:
    status = EXIT_OK
    for path in files:
        doc, error = _read_json(path)
        if error:
            found = [error]
        elif form_of(doc) != "signed":
            found = [f"$: not a signed vCon ({form_of(doc)} form)"]
        else:
            try:
                found = _problems(verify(doc, ca), path, media_dir)
            except (VerificationError, ConfigError) as exc:
                found = [f"$: {exc}"]
        status = max(status, _report(path, found, "signature valid, payload valid"))
    return status


def _decrypt(path: Path, key: Path, output: Path | None) -> int:
    doc, error = _read_json(path)
    if error is None and form_of(doc) != "encrypted":
        error = f"not an encrypted vCon ({form_of(doc)} form)"
    if error is None:
        try:
            text = json.dumps(decrypt(doc, key), indent=2)
        except (VerificationError, ConfigError) as exc:
            error = str(exc)
    if error is not None:
        print(f"{path}: {error}", file=sys.stderr)
        return EXIT_INVALID
    if output is None:
        print(text)
    else:
        write_atomic(output, text.encode())
    return EXIT_OK


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    adapters, broken = installed_adapters()
    commands, _ = installed_commands()
    if argv and argv[0] in commands:
        return int(commands[argv[0]](argv[1:]) or 0)
    args = _parser(adapters, commands).parse_args(argv)
    if args.command == "validate":
        return _validate(args.files, args.media_dir, args.fetch, args.ca_file)
    if args.command == "verify":
        return _verify(args.files, args.ca, args.media_dir)
    if args.command == "decrypt":
        return _decrypt(args.file, args.key, args.output)
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
        return run_loop(serve(config, adapters), config.core.event_loop)
    except ConfigError as exc:
        print(f"vcon-capture: bad configuration: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    except AdapterError as exc:
        print(f"vcon-capture: cannot start: {exc}", file=sys.stderr)
        return EXIT_STARTUP
    except KeyboardInterrupt:
        return EXIT_OK
