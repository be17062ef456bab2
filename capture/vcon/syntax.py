"""Which revision of the vCon core draft we emit: the one place its version-dependent names live."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Syntax:
    """Version-dependent spellings of the vCon format."""

    version: str
    "Value of the top-level ``vcon`` key."
    amended_key: str
    "Name of the pointer to the vCon this one amends."
    redacted_key: str
    "Name of the pointer to the vCon this one redacts."


CORE_03 = Syntax(version="0.4.0", amended_key="amended", redacted_key="redacted")
CORE_04 = Syntax(version="0.5.0", amended_key="amended_from", redacted_key="redacted_from")

SYNTAXES = {"core-03": CORE_03, "core-04": CORE_04}
DEFAULT = CORE_03

LEGACY_KEYS = frozenset({"mimetype", "alg", "signature", "group", "appended", "must_support"})
"Keys of earlier drafts that a producer must never emit."
