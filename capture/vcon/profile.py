"""What the operator decides about every vCon the recorder emits (pure settings, no I/O)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cached_property
from typing import Literal, get_args

LawfulBasisName = Literal[
    "consent", "contract", "legal_obligation", "vital_interests", "public_task", "legitimate_interests"
]
"The bases of draft-howe-vcon-lawful-basis (GDPR art. 6(1))."
LAWFUL_BASES: tuple[str, ...] = get_args(LawfulBasisName)


@dataclass(frozen=True)
class LawfulBasis:
    """The operator's lawful basis for recording, put in a ``lawful_basis`` attachment of every vCon."""

    basis: str
    "One of :data:`LAWFUL_BASES`."
    purpose: str
    "What the recording is for (e.g. ``quality-assurance``)."
    expiry_days: float | None = None
    "The grant expires this long after the call; None = no expiry stated."


@dataclass(frozen=True)
class Profile:
    """Numbers, domain and lawful basis: the same for every call."""

    extension_pattern: str | None = None
    "Regex (full match) of internal extensions, besides numbers shorter than five characters."
    default_domain: str = "localhost"
    "SIP domain for extensions when the adapter does not say which PBX the call is on."
    lawful_basis: LawfulBasis | None = None

    @cached_property
    def extension_re(self) -> re.Pattern[str] | None:
        return re.compile(self.extension_pattern) if self.extension_pattern else None
