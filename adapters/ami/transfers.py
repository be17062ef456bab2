"""Transfers: who handed whom to whom (RFC 5589 roles: transferor, transferee, target).

``BlindTransfer`` names the transferor and the transferee; the target is whoever joins the
call next (the extension dialled, if nobody does before the call ends). ``AttendedTransfer``
names the transferors of both legs; the transferee and the target are the other members of
the two bridges it joined.
"""

from __future__ import annotations

import logging
from datetime import datetime

from adapters.ami.channels import ChannelBook
from adapters.ami.commands import Output
from adapters.ami.fields import NUMBER
from adapters.ami.protocol import Message
from adapters.ami.state import BlindTransfer, Call, Channel
from capture.events import PartyJoined, Transferred

log = logging.getLogger(__name__)


class Transfers:
    def __init__(self, book: ChannelBook) -> None:
        self.book = book
        book.on_new_party = self.party_joined

    def blind(self, msg: Message, at: datetime, out: list[Output]) -> None:
        if (msg.get("Result") or "Success") != "Success":
            return
        book = self.book
        transferor = book.find(msg.get("TransfererUniqueid"), msg.get("TransfererChannel"))
        transferee = book.find(msg.get("TransfereeUniqueid"), msg.get("TransfereeChannel"))
        if transferor is None or transferee is None or transferor.party is None or transferee.party is None:
            call_id = transferee.linkedid if transferee else msg.get("TransfererLinkedid") or ""
            with book.scope(call_id):
                log.warning(
                    "ami.transfer_unresolved",
                    extra={"kind": "blind", "call_id": call_id, "channel": msg.get("TransfererChannel")},
                )
            return
        call = book.calls[transferee.linkedid]
        book.ensure_party(call, transferor, at, out)
        book.ensure_party(call, transferee, at, out)
        exten, context = msg.get("Extension") or "", msg.get("Context") or ""
        call.blind_pending.append(BlindTransfer(at, transferor.party, transferee.party, exten, context))

    def party_joined(self, call: Call, party: str, out: list[Output]) -> None:
        """A party new to the call after a blind transfer is where the transferee went."""
        for pending in call.blind_pending:
            if party not in (pending.transferor, pending.transferee):
                call.blind_pending.remove(pending)
                out.append(
                    Transferred(
                        call_id=call.call_id,
                        at=pending.at,
                        transferee=pending.transferee,
                        transferor=pending.transferor,
                        target=party,
                    )
                )
                return

    def unanswered(self, call: Call, out: list[Output]) -> None:
        """The call ends with blind transfers nobody new answered (voicemail, an IVR, a failed
        dial): their target is the extension they went to."""
        for pending in call.blind_pending:
            exten, context = pending.exten, pending.context
            key = f"exten:{exten}@{context}" if context else f"exten:{exten}"
            tel = exten if NUMBER.match(exten) else None
            out.append(
                PartyJoined(call_id=call.call_id, at=pending.at, party=key, tel=tel, name=None if tel else exten)
            )
            out.append(
                Transferred(
                    call_id=call.call_id,
                    at=pending.at,
                    transferee=pending.transferee,
                    transferor=pending.transferor,
                    target=key,
                )
            )
        call.blind_pending.clear()

    def attended(self, msg: Message, at: datetime, out: list[Output]) -> None:
        """Roles from the event and the bridges around it; a Local channel in a role (the
        target an Atxfer or a feature code dials is a ``Local/...;1``) stands for the parties
        at its far end. Both legs may share one Linkedid, so Linkedids tell nothing here."""
        if (msg.get("Result") or "Success") != "Success":
            return
        book = self.book
        transferor = book.find(msg.get("OrigTransfererUniqueid"), msg.get("OrigTransfererChannel"))
        second = book.find(msg.get("SecondTransfererUniqueid"), msg.get("SecondTransfererChannel"))
        if transferor is None or transferor.party is None:
            call_id = msg.get("OrigTransfererLinkedid") or ""
            with book.scope(call_id):
                log.warning(
                    "ami.transfer_unresolved",
                    extra={"kind": "attended", "call_id": call_id, "channel": msg.get("OrigTransfererChannel")},
                )
            return
        call = book.calls[transferor.linkedid]
        transferors = {transferor.uniqueid, second.uniqueid if second else ""}
        transferee = self._role(
            book.find(msg.get("TransfereeUniqueid"), msg.get("TransfereeChannel")),
            [msg.get("OrigBridgeUniqueid"), msg.get("DestBridgeUniqueid")],
            transferors,
            at,
        )
        target = self._role(
            book.find(msg.get("TransferTargetUniqueid"), msg.get("TransferTargetChannel")),
            [msg.get("SecondBridgeUniqueid"), msg.get("DestBridgeUniqueid")],
            transferors | ({transferee.uniqueid} if transferee else set()),
            at,
        )
        if transferee is None or target is None or transferee.party is None or target.party is None:
            with book.scope(call.call_id):
                log.warning("ami.transfer_unresolved", extra={"kind": "attended", "call_id": call.call_id})
            return
        for chan in (transferor, transferee, target):
            book.ensure_party(call, chan, at, out)
        out.append(
            Transferred(
                call_id=call.call_id,
                at=at,
                transferee=transferee.party,
                transferor=transferor.party,
                target=target.party,
                attended=True,
            )
        )

    def _role(self, named: Channel | None, bridges: list[str | None], skip: set[str], at: datetime) -> Channel | None:
        """The party channel for a role: the one the event names (through Local wires), else
        the first other member of the bridges it names, around the time of the transfer."""
        candidates = [named] if named is not None else []
        for bridge in bridges:
            candidates += [c for c in self.book.bridges.near(bridge or "", at) if c.uniqueid not in skip]
        for chan in candidates:
            if chan.party is not None:
                return chan
            for party in self.book.bridges.behind(chan, at, at):
                found = self._party_channel(party, skip)
                if found is not None:
                    return found
        return None

    def _party_channel(self, party: str, skip: set[str]) -> Channel | None:
        for chan in reversed(list(self.book.channels.values())):
            if chan.party == party and chan.uniqueid not in skip:
                return chan
        return None
