"""How a call ended: its disposition, its hangup cause, and its CDR.

The disposition of an unanswered call comes, best first, from the failed ``Dial``'s
``DialStatus``, from Asterisk's own ``Cdr`` events (cdr_manager), then from the Q.850 hangup
cause. The CDR attachment carries the adapter's own fields (start/answer/end/billsec,
disposition and cause as Asterisk names them) and every ``Cdr`` event, unchanged.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

from adapters.ami.channels import ChannelBook
from adapters.ami.fields import iso
from adapters.ami.protocol import Message
from adapters.ami.state import Call
from capture.events import CdrFields, Disposition

log = logging.getLogger(__name__)

SKIPPED_CDR_KEYS = frozenset({"event", "privilege", "sequencenumber", "file", "line", "func"})

DIAL_STATUS = {
    "BUSY": Disposition.BUSY,
    "NOANSWER": Disposition.NO_ANSWER,
    "CANCEL": Disposition.NO_ANSWER,
    "CONGESTION": Disposition.CONGESTION,
    "CHANUNAVAIL": Disposition.FAILED,
}
CDR_DISPOSITION = {
    "BUSY": Disposition.BUSY,
    "NO ANSWER": Disposition.NO_ANSWER,
    "CONGESTION": Disposition.CONGESTION,
    "FAILED": Disposition.FAILED,
}
CAUSE_DISPOSITION = {
    17: Disposition.BUSY,
    18: Disposition.NO_ANSWER,
    19: Disposition.NO_ANSWER,
    34: Disposition.CONGESTION,
    38: Disposition.CONGESTION,
    42: Disposition.CONGESTION,
}
ASTERISK_DISPOSITION: dict[Disposition | None, str] = {
    None: "ANSWERED",
    Disposition.BUSY: "BUSY",
    Disposition.NO_ANSWER: "NO ANSWER",
    Disposition.CONGESTION: "CONGESTION",
    Disposition.FAILED: "FAILED",
}


def file_cdr(book: ChannelBook, msg: Message) -> None:
    """File a ``Cdr`` event under its call (by LinkedID, else through its channel's Uniqueid)."""
    uniqueid = msg.get("UniqueID") or ""
    linkedid = msg.get("LinkedID")
    if linkedid is None:
        chan = book.channels.get(uniqueid)
        linkedid = chan.linkedid if chan else book.finished.get(uniqueid)
    call = book.calls.get(linkedid or "")
    if call is None:
        log.warning("ami.cdr_unmatched", extra={"uniqueid": uniqueid, "linkedid": linkedid})
        return
    call.cdrs.append({k: v for k, v in msg.fields if k.lower() not in SKIPPED_CDR_KEYS})


def cause(call: Call) -> tuple[int, str]:
    """The first real hangup cause: a party's channel with a nonzero cause wins."""
    ranked = sorted(call.hangups, key=lambda h: (h.channel.party is None, h.cause == 0))
    if not ranked:
        return 0, ""
    return ranked[0].cause, ranked[0].cause_txt


def disposition(call: Call) -> Disposition | None:
    """None for an answered call; else why it never became a conversation."""
    if call.answered_at is not None:
        return None
    if call.failed_dial in DIAL_STATUS:
        return DIAL_STATUS[call.failed_dial]
    for cdr in call.cdrs:
        found = CDR_DISPOSITION.get((cdr.get("Disposition") or "").upper())
        if found is not None:
            return found
    code, _ = cause(call)
    return CAUSE_DISPOSITION.get(code, Disposition.NO_ANSWER if code in (0, 16) else Disposition.FAILED)


def cdr_fields(call: Call, end: datetime, outcome: Disposition | None) -> CdrFields:
    """The call's CDR attachment."""
    code, text = cause(call)
    fields: dict[str, Any] = {
        "linkedid": call.call_id,
        "start": iso(call.started_at),
        "answer": iso(call.answered_at) if call.answered_at else None,
        "end": iso(end),
        "billsec": int((end - call.answered_at).total_seconds()) if call.answered_at else 0,
        "disposition": ASTERISK_DISPOSITION.get(outcome, "FAILED"),
        "hangup_cause": text,
        "hangup_cause_code": code,
    }
    if call.cdrs:
        fields["asterisk_cdr"] = call.cdrs
    return CdrFields(call_id=call.call_id, at=end, fields=fields)
