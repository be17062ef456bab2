"""Every vCon a test sees is checked four ways: the project's validator, both WG JSON schemas
(draft core-03 and core-04) and the reference conserver's ingest rules (tests/conserver.py)."""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
from conserver import conserver_rejects

from capture.vcon.validate import problems

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
SCHEMA_PATH = SHARED / "vcon-spec" / "vcon_json_schema.json"
SCHEMA_04_PATH = SHARED / "vcon-spec" / "core-04" / "vcon_json_schema.json"
EXAMPLES = SHARED / "vcon-spec" / "examples"
SCHEMAS = {"core-03": SCHEMA_PATH, "core-04": SCHEMA_04_PATH}


@cache
def _schema_validator(which: str = "core-03") -> jsonschema.Draft7Validator:
    schema = json.loads(SCHEMAS[which].read_text())
    return jsonschema.Draft7Validator(schema, format_checker=jsonschema.Draft7Validator.FORMAT_CHECKER)


def schema_errors(doc: dict[str, Any], which: str = "core-03") -> list[str]:
    return [f"{e.json_path}: {e.message}" for e in _schema_validator(which).iter_errors(doc)]


def assert_valid(doc: dict[str, Any]) -> dict[str, Any]:
    """Fails the test with every problem found by any of the four checks."""
    found = problems(doc)
    for which in SCHEMAS:
        found += [f"schema {which} {e}" for e in schema_errors(doc, which)]
    refused = conserver_rejects(doc)
    if refused:
        found.append(f"conserver would refuse (422): {refused}")
    assert not found, "\n".join(found)
    return doc


def load_vcons(directory: Path) -> list[dict[str, Any]]:
    """Every DIR/*.vcon, parsed and validated."""
    return [assert_valid(json.loads(p.read_bytes())) for p in sorted(directory.glob("*.vcon"))]
