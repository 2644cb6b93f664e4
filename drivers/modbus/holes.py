"""Learned holes: addresses a device refuses to read, found by bisecting a refused block.

Many devices answer exception 2 (illegal address) for a whole request when one register inside
it is not implemented, so a merged block that spans such a hole would blind its good points for
good. When a block is refused, :func:`bisect` reads it in halves until every address is either
read or refused alone. The refused addresses become the device's learned holes: they are
stored in the device's KV (so they survive restarts), the planner plans around them like
configured ``unreadable`` ranges, and each is read again every ``hole_reprobe`` seconds in case
the firmware changed.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from drivers.base import KeyValue
from drivers.modbus.bus import ExceptionReply
from drivers.modbus.datatypes import Function

#: Exception codes that can mean "not implemented here": illegal address, illegal value and
#: server failure (several inverters answer 4 for unimplemented registers). Busy (6) and
#: acknowledge (5) are transient and never learned.
HOLE_CODES = frozenset({2, 3, 4})

Reader = Callable[[int, int], Awaitable[list[int] | list[bool]]]


async def bisect(read: Reader, lo: int, hi: int) -> tuple[dict[int, Any], list[int]]:
    """Read the inclusive range ``[lo, hi]`` (already refused as a whole) in halves.

    Returns the value of every address that could be read and the sorted addresses refused
    even alone. Costs about two requests per refused address per halving (log2 of the block).
    Only exception replies are handled here: a timeout or a lost bus propagates to the caller.
    """
    values: dict[int, Any] = {}
    refused: list[int] = []
    todo = [(lo, hi)]
    while todo:
        a, b = todo.pop()
        if a == b:
            refused.append(a)
            continue
        mid = (a + b) // 2
        for x, y in ((a, mid), (mid + 1, b)):
            try:
                data = await read(x, y - x + 1)
            except ExceptionReply:
                todo.append((x, y))
                continue
            values.update(zip(range(x, y + 1), data, strict=True))
    return values, sorted(refused)


def runs(addresses: Iterable[int]) -> list[tuple[int, int]]:
    """Contiguous inclusive runs of addresses: [1, 2, 3, 7] -> [(1, 3), (7, 7)]."""
    out: list[tuple[int, int]] = []
    for a in sorted(set(addresses)):
        if out and out[-1][1] == a - 1:
            out[-1] = (out[-1][0], a)
        else:
            out.append((a, a))
    return out


def describe(function: Function, addresses: Iterable[int]) -> str:
    """``holding 12, 40-41`` for a log line."""
    parts = [f"{a}" if a == b else f"{a}-{b}" for a, b in runs(addresses)]
    return f"{function.value} {', '.join(parts)}"


@dataclass
class Holes:
    """One device's learned holes: (table, address) -> wall time (s) it was last refused."""

    device: str
    reprobe: float
    refused_at: dict[tuple[Function, int], float] = field(default_factory=dict)

    KV_NAMESPACE = "modbus"

    @property
    def key(self) -> str:
        return f"holes/{self.device}"

    def __bool__(self) -> bool:
        return bool(self.refused_at)

    def ranges(self, function: Function) -> list[tuple[int, int]]:
        """Inclusive ranges in the planner's ``unreadable`` form."""
        return runs(a for f, a in self.refused_at if f is function)

    def learn(self, function: Function, addresses: Iterable[int], now: float) -> list[int]:
        """Record refused addresses; returns those that were not known yet."""
        new = []
        for a in addresses:
            if (function, a) not in self.refused_at:
                new.append(a)
            self.refused_at[(function, a)] = now
        return new

    def forget(self, function: Function, addresses: Iterable[int]) -> None:
        for a in addresses:
            self.refused_at.pop((function, a), None)

    def due(self, now: float) -> list[tuple[Function, int, int]]:
        """Runs with an address not probed for ``reprobe`` seconds (one read re-probes a run)."""
        out = []
        for function in Function:
            for lo, hi in self.ranges(function):
                oldest = min(self.refused_at[(function, a)] for a in range(lo, hi + 1))
                if now - oldest >= self.reprobe:
                    out.append((function, lo, hi))
        return out

    async def load(self, kv: KeyValue) -> None:
        stored = await kv.get(self.key, {})
        self.refused_at = {
            (Function(table), int(addr)): float(ts)
            for table, pairs in stored.items() if table in Function._value2member_map_
            for addr, ts in pairs
        }

    async def save(self, kv: KeyValue) -> None:
        if not self.refused_at:
            await kv.delete(self.key)
            return
        stored: dict[str, list[list[float]]] = {}
        for (function, addr), ts in sorted(self.refused_at.items(), key=lambda i: (i[0][0].value,
                                                                                   i[0][1])):
            stored.setdefault(function.value, []).append([addr, ts])
        await kv.put(self.key, stored)
