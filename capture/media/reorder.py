"""A small RTP reorder buffer: packets in any order, out in sequence order, losses counted.

Unlike a jitter buffer it never drops a packet to keep a playout deadline: it holds at
most ``depth`` packets waiting for a missing sequence number, then gives up on the hole
and moves on. What comes out is what came in (loss in = loss out); time gaps are the
recorder's business, from the RTP timestamps.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Generic, TypeVar

T = TypeVar("T")

SEQ_MOD = 1 << 16
HALF = SEQ_MOD // 2


def seq_delta(a: int, b: int) -> int:
    """Signed distance from sequence number ``b`` to ``a`` with 16-bit wrap-around."""
    return (a - b + HALF) % SEQ_MOD - HALF


class ReorderBuffer(Generic[T]):
    """Reorders items keyed by 16-bit RTP sequence numbers."""

    def __init__(self, depth: int = 8) -> None:
        if depth < 1:
            raise ValueError("depth must be at least 1")
        self.depth = depth
        self._next: int | None = None
        self._held: dict[int, T] = {}
        self.received = 0
        self.lost = 0
        "Sequence numbers given up on."
        self.duplicates = 0
        self.late = 0
        "Packets that arrived after their hole was given up on (dropped)."

    def push(self, seq: int, item: T) -> list[T]:
        """Add a packet; returns the packets that can now be released, in order."""
        seq &= 0xFFFF
        if self._next is None:
            self._next = seq
        if seq == self._next and not self._held:
            # In order with nothing waiting (nearly every packet): released at once.
            self.received += 1
            self._next = (seq + 1) % SEQ_MOD
            return [item]
        delta = seq_delta(seq, self._next)
        if delta < 0:
            self.late += 1
            return []
        if seq in self._held:
            self.duplicates += 1
            return []
        if delta > HALF // 2:
            # A jump this large is a restarted sender, not reordering: resynchronise.
            out = self.flush()
            self._next = seq
            self._held[seq] = item
            self.received += 1
            return out + list(self._release())
        self.received += 1
        self._held[seq] = item
        out = list(self._release())
        while len(self._held) > self.depth:
            self._skip_hole()
            out.extend(self._release())
        return out

    def flush(self) -> list[T]:
        """Release everything held, in order (at the end of the stream)."""
        out: list[T] = []
        while self._held:
            self._skip_hole()
            out.extend(self._release())
        return out

    def _release(self) -> Iterator[T]:
        assert self._next is not None
        while self._next in self._held:
            yield self._held.pop(self._next)
            self._next = (self._next + 1) % SEQ_MOD

    def _skip_hole(self) -> None:
        assert self._next is not None
        first = min(self._held, key=lambda s: seq_delta(s, self._next))  # type: ignore[arg-type]
        self.lost += seq_delta(first, self._next)
        self._next = first
