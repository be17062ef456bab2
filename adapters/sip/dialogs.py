"""SIP dialogs (RFC 3261 section 12) as the recorder's UAS keeps them, and the events the
core reports about them to its shell."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from adapters.sip.message import SipMessage

DialogKey = tuple[str, str]
"(Call-ID, our tag): how a dialog is found, by the core and by the shell."


@dataclass(eq=False)
class Dialog:
    """One dialog created by an INVITE to the recorder."""

    call_id: str
    local_tag: str
    remote_tag: str
    invite: SipMessage
    conn: Any
    "The shell's transport the INVITE came on (UDP endpoint or TCP/TLS connection); opaque to the core."
    addr: tuple[str, int]
    transport: str
    "udp, tcp or tls."
    remote_uri: str
    local_uri: str
    remote_target: str
    route_set: list[str]
    remote_cseq: int
    local_cseq: int = 0
    state: str = "early"
    "early (INVITE not answered), confirmed (2xx sent), terminated."
    acked: bool = False
    final_status: int | None = None
    pending: SipMessage | None = None
    "The INVITE/UPDATE awaiting our response."
    counted: bool = False
    "Counts against ``max_calls``: an accepted INVITE whose dialog is not over."
    media_at: float | None = None
    "When media was last reported (or the call answered): the media timeout runs from here."
    held: bool = False
    "On hold: no media is expected, the media timeout is off."

    @property
    def key(self) -> DialogKey:
        return (self.call_id, self.local_tag)


@dataclass(frozen=True)
class DialogEvent:
    dialog: Dialog
    request: SipMessage | None = None


class NewInvite(DialogEvent):
    """An initial INVITE the core admitted: the shell must ``respond`` to it."""


@dataclass(frozen=True)
class InviteRefused(DialogEvent):
    """An initial INVITE the core refused (over capacity or shutting down); it already sent ``status``."""

    status: int = 503
    reason: str = ""


class Reoffer(DialogEvent):
    """A re-INVITE or UPDATE inside a dialog: the shell must ``respond`` to it."""


class Confirmed(DialogEvent):
    """The ACK for our 2xx arrived."""


class RemoteBye(DialogEvent):
    """The peer hung up (we already answered 200)."""


class Cancelled(DialogEvent):
    """The peer cancelled before we answered (we already sent 487)."""


class InfoReceived(DialogEvent):
    """An INFO inside a dialog (we already answered 200)."""


class AckTimeout(DialogEvent):
    """Our 2xx was never ACKed; the core sent a BYE."""


class MediaTimeout(DialogEvent):
    """No media was reported for ``media_timeout_s`` on an answered call not on hold; the core sent a BYE."""


def bye_for(dialog: Dialog, *, via: str, branch: str, user_agent: str, reason: str | None) -> SipMessage:
    """Our BYE inside ``dialog`` (RFC 3261 section 12.2.1.1), with the next local CSeq."""
    dialog.local_cseq += 1
    bye = SipMessage(method="BYE", uri=dialog.remote_target)
    bye.add("Via", f"SIP/2.0/{dialog.transport.upper()} {via};branch={branch};rport")
    bye.add("Max-Forwards", "70")
    for route in reversed(dialog.route_set):
        bye.add("Route", route)
    bye.add("From", dialog.local_uri)
    bye.add("To", dialog.remote_uri)
    bye.add("Call-ID", dialog.call_id)
    bye.add("CSeq", f"{dialog.local_cseq} BYE")
    bye.add("User-Agent", user_agent)
    if reason:
        bye.add("Reason", reason)
    return bye
