"""Which numbers go into a party's ``tel``, and what becomes of internal extensions.

A ``tel`` is for a number a consumer can dial: E.164 (``+33123456789``) or another number of
at least five characters. The reference conserver (vcon-server) refuses any ``tel`` that does
not match ``^[+\\d(][\\d\\s\\-().+xX#*]{4,}$`` (so ``1001`` and ``201`` are refused with 422), and a
short internal extension is not dialable from outside anyway. Such a number (shorter than five
characters, or matching the operator's ``extension_pattern``) becomes a SIP identity on the
PBX's domain, ``sip:1001@pbx.example.com``, unless the party already has a ``sip``; the raw
number is kept in the CDR.
"""

from __future__ import annotations

import re

CONSUMER_TEL = re.compile(r"^[+\d(][\d\s\-().+xX#*]{4,}$")
"vcon-server's tel pattern (api/api.py, _TEL_RE)."


def is_extension(tel: str, extension_pattern: re.Pattern[str] | None) -> bool:
    """True for an internal extension: not E.164 and short, or matching the operator's pattern."""
    if tel.startswith("+"):
        return False
    if not CONSUMER_TEL.match(tel):
        return True
    return extension_pattern is not None and extension_pattern.fullmatch(tel) is not None


def party_identity(
    fields: dict[str, str], domain: str, extension_pattern: re.Pattern[str] | None
) -> tuple[dict[str, str], str | None]:
    """The party's fields as a consumer accepts them, and the raw extension if ``tel`` was one."""
    tel = fields.get("tel")
    if tel is None or not is_extension(tel, extension_pattern):
        return fields, None
    out = {k: v for k, v in fields.items() if k != "tel"}
    if "sip" not in out and re.fullmatch(r"[0-9*#]+", tel):
        out["sip"] = f"sip:{tel}@{domain}"
    elif "sip" not in out and "name" not in out:
        out["name"] = tel
    return out, tel
