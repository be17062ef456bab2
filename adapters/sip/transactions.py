"""The transaction layer's memory for the recorder's UAS, sans-IO (RFC 3261 section 17).

Two things outlive the message that caused them:

- the last response to each request, kept for ``TIMEOUT`` (64*T1) so a retransmitted
  request gets the same answer again (17.2.1, 17.2.2) without reaching the dialog layer;
- what we send over UDP until the other side confirms it: our 2xx to an INVITE until
  the ACK (13.3.1.4, T1 doubling to T2, giving up after 64*T1: the dialog then ends),
  and our BYE until its final response (17.1.2.2).

Time comes in as ``now``; :meth:`Transactions.next_deadline` says when :meth:`due` or
:meth:`sweep` next has work.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from adapters.sip.dialogs import Dialog
from adapters.sip.message import SipMessage

T1, T2 = 0.5, 4.0
TIMEOUT = 64 * T1
SWEEP_SLACK_S = 1.0
"Old responses are forgotten up to this late, so sweeps come at most about once a second."
REASONS = {
    100: "Trying", 180: "Ringing", 200: "OK", 400: "Bad Request", 403: "Forbidden", 405: "Method Not Allowed",
    415: "Unsupported Media Type", 420: "Bad Extension", 480: "Temporarily Unavailable",
    481: "Call/Transaction Does Not Exist", 487: "Request Terminated", 488: "Not Acceptable Here",
    491: "Request Pending", 500: "Server Internal Error", 501: "Not Implemented", 503: "Service Unavailable",
    513: "Message Too Large", 603: "Decline",
}  # fmt: skip

TransactionKey = tuple[str, str, str]
"(Call-ID, Via branch, method)."


@dataclass(frozen=True)
class Send:
    """Bytes for the shell to send."""

    data: bytes
    conn: Any
    "The transport the shell gave with the message being answered (UDP endpoint or TCP connection)."
    addr: tuple[str, int]


@dataclass
class _Retransmit:
    data: bytes
    conn: Any
    addr: tuple[str, int]
    next_at: float
    interval: float
    give_up_at: float
    dialog: Dialog | None = None
    is_2xx: bool = False


class Transactions:
    """Cached responses and pending UDP retransmissions."""

    def __init__(self) -> None:
        self._responses: dict[TransactionKey, tuple[bytes, float]] = {}
        "-> (last response, forget time); in the order they are to be forgotten."
        self._retransmits: dict[str, _Retransmit] = {}
        "Keyed by branch (our BYEs) or 2xx:<call-id>:<cseq> (our 2xx to INVITE)."

    def cached(self, key: TransactionKey) -> bytes | None:
        """The response already sent to this request, if it is still remembered."""
        entry = self._responses.get(key)
        return entry[0] if entry is not None else None

    def remember(self, request: SipMessage, data: bytes, now: float) -> None:
        """Keep the response ``data`` to ``request`` for its retransmissions."""
        assert request.method is not None
        key = (request.call_id, request.branch, request.method)
        self._responses.pop(key, None)  # re-inserted at the end: the dict stays in forget order
        self._responses[key] = (data, now + TIMEOUT)

    def retransmit(self, key: str, send: Send, now: float, dialog: Dialog, *, is_2xx: bool = False) -> None:
        """Send ``send`` again at T1, 2*T1... (capped at T2) until :meth:`answered` or 64*T1."""
        self._retransmits[key] = _Retransmit(send.data, send.conn, send.addr, now + T1, T1, now + TIMEOUT, dialog,
                                             is_2xx)  # fmt: skip

    def answered(self, branch: str) -> None:
        """A final response to one of our requests arrived: stop retransmitting it."""
        self._retransmits.pop(branch, None)

    def drop_2xx(self, dialog: Dialog) -> None:
        """The ACK arrived (or the dialog ended): stop retransmitting its 2xx."""
        for key, r in list(self._retransmits.items()):
            if r.is_2xx and r.dialog is dialog:
                del self._retransmits[key]

    def due(self, now: float) -> tuple[list[Send], list[Dialog]]:
        """Retransmissions due at ``now``, and the dialogs whose 2xx was never acknowledged."""
        sends: list[Send] = []
        unacked: list[Dialog] = []
        for key, r in list(self._retransmits.items()):
            if now >= r.give_up_at:
                del self._retransmits[key]
                if r.is_2xx and r.dialog is not None:
                    unacked.append(r.dialog)
            elif now >= r.next_at:
                sends.append(Send(r.data, r.conn, r.addr))
                r.interval = min(r.interval * 2, T2)
                r.next_at = now + r.interval
        return sends, unacked

    def sweep(self, now: float) -> bool:
        """Forget responses older than 64*T1; True if some were."""
        responses = self._responses
        swept = False
        while responses:
            key = next(iter(responses))
            if responses[key][1] > now:
                break
            del responses[key]
            swept = True
        return swept

    def next_deadline(self) -> float | None:
        """When :meth:`due` or :meth:`sweep` next has something to do."""
        times = [min(r.next_at, r.give_up_at) for r in self._retransmits.values()]
        if self._responses:
            times.append(next(iter(self._responses.values()))[1] + SWEEP_SLACK_S)
        return min(times) if times else None
