"""The vCon syntax we emit: draft-ietf-vcon-vcon-core-04, the one place its version-dependent names live.

Draft -04 (published 7 Sep 2026) keeps ``"vcon": "0.4.0"`` (§4.1.1) and the pointer names
``redacted`` / ``amended`` (§4.1.8-9), so a vCon we emit is valid under both -03 and -04: there
is nothing to choose between them.
"""

from __future__ import annotations

VERSION = "0.4.0"
"Value of the top-level ``vcon`` key (§4.1.1)."
KNOWN_VERSIONS = frozenset({VERSION})
"Versions the validator accepts."
AMENDED_KEY = "amended"
REDACTED_KEY = "redacted"

LEGACY_KEYS = frozenset({"mimetype", "alg", "signature", "group", "appended", "must_support"})
"Keys of earlier drafts that a producer must never emit."

SIP_SIGNALING = "sip-signaling"
"Extension token of draft-howe-vcon-sip-signaling (compatible: never listed in ``critical``)."
LAWFUL_BASIS = "lawful_basis"
"Extension token of draft-howe-vcon-lawful-basis."
