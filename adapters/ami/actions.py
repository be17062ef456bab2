"""Sans-IO ActionID correlation: which reply (and which list of events) answers which action.

Every action gets a unique ActionID; a ``Response`` carrying it answers that action. A
response with ``EventList: start`` (or the legacy ``Message: ... will follow``) opens a list:
the events that carry the same ActionID belong to the reply, up to the one whose name ends
in ``Complete``. Everything else is an ordinary event of the live stream.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

from adapters.ami.protocol import Message, encode_action


@dataclass(slots=True)
class Reply:
    """The answer to one action: its response and, for a list action, the listed events."""

    action_id: str
    response: Message
    events: list[Message] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return (self.response.response or "").lower() in ("success", "follows", "goodbye")

    @property
    def message(self) -> str:
        return self.response.get("Message") or ""


class Correlator:
    """Mint ActionIDs for outgoing actions and sort incoming messages into replies and events."""

    def __init__(self, prefix: str = "vc") -> None:
        self._prefix = prefix
        self._counter = itertools.count(1)
        self._pending: set[str] = set()
        self._lists: dict[str, Reply] = {}

    def action(self, name: str, fields: dict[str, str] | None = None) -> tuple[str, bytes]:
        """A fresh ActionID and the action's wire bytes."""
        action_id = f"{self._prefix}-{next(self._counter)}"
        self._pending.add(action_id)
        return action_id, encode_action(name, [*(fields or {}).items(), ("ActionID", action_id)])

    def forget(self, action_id: str) -> None:
        """Stop waiting for an action (timed out or the connection was lost)."""
        self._pending.discard(action_id)
        self._lists.pop(action_id, None)

    def reset(self) -> None:
        """The connection is gone: nothing pending survives it."""
        self._pending.clear()
        self._lists.clear()

    @property
    def pending(self) -> int:
        return len(self._pending)

    def handle(self, message: Message) -> Reply | Message | None:
        """A finished :class:`Reply`, a live event (the message itself), or None (held for a list).

        A response nobody waits for comes back as a message, like an event.
        """
        action_id = message.action_id
        if action_id is None or action_id not in self._pending:
            return message
        listing = self._lists.get(action_id)
        if listing is not None:
            if message.event is None:
                return message
            if message.event.endswith("Complete"):
                self.forget(action_id)
                listing.events.append(message)
                return listing
            listing.events.append(message)
            return None
        if message.response is None:
            return message  # an event quoting our ActionID outside any list
        reply = Reply(action_id, message)
        if _opens_list(message):
            self._lists[action_id] = reply
            return None
        self._pending.discard(action_id)
        return reply


def _opens_list(response: Message) -> bool:
    if (response.get("EventList") or "").lower() == "start":
        return True
    return response.response == "Success" and "will follow" in (response.get("Message") or "")
