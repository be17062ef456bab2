"""Who is heard on which SIPREC m-line: SDP ``a=label`` -> metadata ``<stream>`` (by label) ->
stream id -> the participants that send it (``participantstreamassoc/send`` or the
participant's own ``<send>``). Never by position when the metadata says otherwise.

A stream several participants send (BroadWorks and Metaswitch mixed mode) is heard as all
of them. When the metadata does not say (no associations, empty ones while on hold, a label
that is not in the metadata), the remaining m-lines are paired in order with the remaining
participants, and the result says so (``guessed``) so the vCon can record it.
"""

from __future__ import annotations

from dataclasses import dataclass

from adapters.sip.metadata import RecordingMetadata, Stream


@dataclass(frozen=True)
class Attribution:
    """The participants heard on one offered m-line."""

    participants: tuple[str, ...]
    "Participant ids, in metadata order (empty: nobody known)."
    stream_id: str | None = None
    guessed: str | None = None
    "Why this is a guess (None: the metadata says so)."


def attribute(meta: RecordingMetadata, labels: list[str | None]) -> list[Attribution]:
    """One attribution per m-line (``labels`` are the offer's ``a=label`` values in order)."""
    streams: list[Stream | None] = []
    for label in labels:
        found = meta.streams_labelled(label)
        streams.append(found[0] if found else None)
    out: list[Attribution | None] = []
    for stream in streams:
        senders = meta.senders(stream.stream_id) if stream is not None else []
        out.append(Attribution(tuple(p.participant_id for p in senders), stream.stream_id) if stream and senders
                   else None)  # fmt: skip

    # A label the metadata lacks takes a metadata stream no m-line has, in order.
    used = {s.stream_id for s in streams if s is not None}
    spare = [s for s in meta.streams.values() if s.stream_id not in used]
    for i, label in enumerate(labels):
        if streams[i] is None and spare:
            stream = spare.pop(0)
            streams[i] = stream
            senders = meta.senders(stream.stream_id)
            if senders:
                out[i] = Attribution(
                    tuple(p.participant_id for p in senders),
                    stream.stream_id,
                    f"label {label!r} is not in the metadata; took stream {stream.label!r}, which has no m-line",
                )

    # What is left: pair in metadata stream order (else offer order) with the participants
    # that send nothing, in document order.
    sending = {pid for a in out if a is not None for pid in a.participants}
    idle = [p for p in meta.participants.values() if not p.sends and p.participant_id not in sending]
    idle.sort(key=lambda p: p.left)
    order = list(meta.streams)
    pending = sorted(
        (i for i, a in enumerate(out) if a is None),
        key=lambda i: (order.index(streams[i].stream_id) if streams[i] is not None else len(order), i),  # type: ignore[union-attr]
    )
    for i in pending:
        stream = streams[i]
        label = labels[i]
        if idle:
            p = idle.pop(0)
            why = "no association" if stream is not None else "no metadata stream"
            out[i] = Attribution((p.participant_id,), stream.stream_id if stream else None,
                                 f"{why} for label {label!r}; paired by order with participant "
                                 f"{p.participant_id!r}")  # fmt: skip
        else:
            out[i] = Attribution((), stream.stream_id if stream else None, f"no participant for label {label!r}")
    return [a for a in out if a is not None]
