"""Read planning: merge a device's points into the fewest Modbus requests.

Each request reads one contiguous block of one table. A block may bridge at most ``max_gap``
addresses no point needs, may not exceed the protocol limit (125 registers, 2000 bits), and
never covers an address the device marks unreadable (such a read would fail as a whole).

Greedy is optimal here: sort the points by address and grow a block while the next point fits.
Feasibility of a block is inherited by every contiguous sub-run of its points (a shorter extent
has fewer gaps, fewer unreadable addresses and a smaller length), and for such "hereditary"
constraints taking the longest feasible prefix each time gives the fewest segments. The test
suite checks this against a brute-force optimum on random maps.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

P = TypeVar("P")


@dataclass(frozen=True, slots=True)
class Span(Generic[P]):
    """Something to read: ``count`` addresses from ``address``; ``item`` is the caller's point."""

    address: int
    count: int
    item: P

    @property
    def end(self) -> int:
        """Exclusive end address."""
        return self.address + self.count


@dataclass(frozen=True, slots=True)
class Block(Generic[P]):
    address: int
    count: int
    spans: tuple[Span[P], ...]

    @property
    def end(self) -> int:
        """Exclusive end address."""
        return self.address + self.count


def blocked(start: int, end: int, unreadable: Sequence[tuple[int, int]]) -> bool:
    """True when [start, end) touches an unreadable inclusive range."""
    return any(lo < end and start <= hi for lo, hi in unreadable)


def plan(
    spans: Iterable[Span[P]],
    *,
    max_count: int,
    max_gap: int,
    unreadable: Sequence[tuple[int, int]] = (),
) -> list[Block[P]]:
    """Merge spans of ONE table into blocks (see the module docstring for the rules)."""
    ordered = sorted(spans, key=lambda s: (s.address, -s.count))
    blocks: list[Block[P]] = []
    current: list[Span[P]] = []
    start = end = 0
    for span in ordered:
        if span.count > max_count:
            raise ValueError(f"a span of {span.count} exceeds the read limit {max_count}")
        if current:
            new_end = max(end, span.end)
            gap = span.address - end
            if (
                gap <= max_gap
                and new_end - start <= max_count
                and not blocked(start, new_end, unreadable)
            ):
                current.append(span)
                end = new_end
                continue
            blocks.append(Block(start, end - start, tuple(current)))
        current, start, end = [span], span.address, span.end
    if current:
        blocks.append(Block(start, end - start, tuple(current)))
    return blocks
