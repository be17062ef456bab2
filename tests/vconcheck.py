"""Every vCon a test sees is checked twice: by the project's validator and by the WG's JSON schema."""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema

from capture.vcon.validate import problems

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
SCHEMA_PATH = SHARED / "vcon-spec" / "vcon_json_schema.json"
EXAMPLES = SHARED / "vcon-spec" / "examples"


@cache
def _schema_validator() -> jsonschema.Draft7Validator:
    schema = json.loads(SCHEMA_PATH.read_text())
    return jsonschema.Draft7Validator(schema, format_checker=jsonschema.Draft7Validator.FORMAT_CHECKER)


def schema_errors(doc: dict[str, Any]) -> list[str]:
    return [f"{e.json_path}: {e.message}" for e in _schema_validator().iter_errors(doc)]


def assert_valid(doc: dict[str, Any]) -> dict[str, Any]:
    """Fails the test with every problem found by either validator."""
    found = problems(doc) + [f"schema {e}" for e in schema_errors(doc)]
    assert not found, "\n".join(found)
    return doc


def load_vcons(directory: Path) -> list[dict[str, Any]]:
    """Every DIR/*.vcon, parsed and validated."""
    return [assert_valid(json.loads(p.read_bytes())) for p in sorted(directory.glob("*.vcon"))]
