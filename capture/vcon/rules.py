"""Draft core-04's per-dialog-type table (§4.3.1.6, Table 1), as data.

``M`` must, ``X`` must not; the SHOULD/OPTIONAL cells are not errors and are left out. Row
order follows the table; columns are the five dialog types. Footnote rules of the table
(mediatype MUST for inline content, encoding MUST with a non-empty body, content_hash MUST
with url) are checked by the validator's content checks.
"""

from __future__ import annotations

DIALOG_TYPES = ("recording", "recording-set", "text", "transfer", "incomplete")

TABLE: dict[str, tuple[str, str, str, str, str]] = {
    #                      rec   rset  text  xfer  inc
    "type": ("M", "M", "M", "M", "M"),
    "parties": ("", "", "", "X", ""),
    "originator": ("", "", "", "X", ""),
    "recordings": ("X", "M", "X", "X", "X"),
    "recording_set": ("", "X", "X", "X", "X"),
    "mediatype": ("", "X", "", "X", "X"),
    "filename": ("", "X", "", "X", "X"),
    "body": ("", "X", "", "X", "X"),
    "url": ("", "X", "", "X", "X"),
    "encoding": ("", "X", "", "X", "X"),
    "content_hash": ("", "X", "", "X", "X"),
    "disposition": ("", "", "", "", "M"),
    "session_id": ("", "", "", "X", ""),
    "party_history": ("", "", "", "X", ""),
    "transferee": ("X", "X", "X", "", "X"),
    "transferor": ("X", "X", "X", "", "X"),
    "original": ("X", "X", "X", "", "X"),
    "target_dialog": ("X", "X", "X", "", "X"),
    "transfer_target": ("X", "X", "X", "", "X"),
    "consultation": ("X", "X", "X", "", "X"),
    "message_id": ("", "X", "", "X", "X"),
}

TRANSFER_REFERENCES = {
    "original": ("recording", "recording-set", "text"),
    "consultation": ("recording", "recording-set", "text", "incomplete"),
    "target_dialog": ("recording", "recording-set", "text", "incomplete"),
}
"§4.3.14: which dialog types each transfer reference may point at (one dialog each)."


def table_problems(dialog: dict[str, object]) -> list[tuple[str, str]]:
    """(parameter, what is wrong) for every MUST / MUST NOT of Table 1 the dialog breaks."""
    kind = dialog.get("type")
    if kind not in DIALOG_TYPES:
        return []
    column = DIALOG_TYPES.index(str(kind))
    out = []
    for name, cells in TABLE.items():
        cell = cells[column]
        if cell == "M" and name not in dialog:
            out.append((name, f"required on a {kind} dialog (core-04 Table 1)"))
        elif cell == "X" and name in dialog:
            out.append((name, f"not allowed on a {kind} dialog (core-04 Table 1)"))
    return out
