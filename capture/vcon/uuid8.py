"""vCon uuids: UUIDv8 laid out like UUIDv7 (draft core-03 §2.5).

48 bits of Unix milliseconds, 12 bits of sub-millisecond time (``rand_a``), then 62 bits
taken from SHA-1 of the producer's domain name (``custom_c``), so two producers never
collide and the domain can be recognised.
"""

from __future__ import annotations

import hashlib
import uuid
from datetime import datetime


def uuid8_for(domain: str, at: datetime, sequence: int = 0) -> str:
    """The vCon uuid for a conversation created at ``at`` by ``domain``.

    ``sequence`` separates uuids minted in the same sub-millisecond tick.
    """
    nanos = int(at.timestamp() * 1_000_000) * 1000
    millis, sub = divmod(nanos, 1_000_000)
    rand_a = (sub * 4096 // 1_000_000 + sequence) & 0xFFF
    custom_c = domain_bits(domain)
    value = (millis & ((1 << 48) - 1)) << 80
    value |= 0x8 << 76
    value |= rand_a << 64
    value |= 0b10 << 62
    value |= custom_c
    return str(uuid.UUID(int=value))


def uuid8_domain_bits(value: str) -> int:
    """The 62 domain bits of a vCon uuid (to check which producer minted it)."""
    return uuid.UUID(value).int & ((1 << 62) - 1)


def domain_bits(domain: str) -> int:
    """The 62 bits a domain contributes to every uuid it mints."""
    return int.from_bytes(hashlib.sha1(domain.encode("utf-8")).digest()[:8], "big") & ((1 << 62) - 1)
