"""A reference receiver written from docs/wire-format.md alone: it keeps the highest sequence
number per (gw, store_id), takes the samples above it, and records the gaps; the events that
announce gaps (buffer_overflow, seq_gap, chunk_quarantined, store_recovered) are collected
with their ranges, so a test can check that every gap was announced.

It also checks what the format promises and a receiver relies on: a repeated number carries
the same sample as before (a number reused for other data would be silently dropped here).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

Key = tuple[str, str]  # (gw, store_id)

_RANGE_EVENTS = ("buffer_overflow", "seq_gap", "chunk_quarantined")


@dataclass
class ReferenceReceiver:
    high: dict[Key, int] = field(default_factory=lambda: defaultdict(int))
    samples: dict[Key, dict[int, list[Any]]] = field(default_factory=lambda: defaultdict(dict))
    gaps: dict[Key, list[tuple[int, int]]] = field(default_factory=lambda: defaultdict(list))
    announced: dict[Key, list[tuple[int, float]]] = field(
        default_factory=lambda: defaultdict(list))
    events: dict[str, dict[str, Any]] = field(default_factory=dict)  # by id
    repeats: int = 0
    repeat_seqs: list[int] = field(default_factory=list)
    reused: list[tuple[Key, int]] = field(default_factory=list)  # same number, other sample

    def telemetry(self, msg: dict[str, Any]) -> None:
        key = (msg["gw"], msg["store_id"])
        high = self.high[key]
        for i, row in enumerate(msg["samples"]):
            seq = msg["seq_first"] + i
            if seq <= high:
                self.repeats += 1
                self.repeat_seqs.append(seq)
                if self.samples[key].get(seq, row) != row:
                    self.reused.append((key, seq))
                continue
            if seq > high + 1:
                self.gaps[key].append((high + 1, seq - 1))
            self.samples[key][seq] = row
            high = seq
        self.high[key] = high

    def event(self, msg: dict[str, Any]) -> None:
        if msg["id"] in self.events:
            return  # a repeat, by id
        self.events[msg["id"]] = msg
        body = msg["body"]
        if msg["type"] in _RANGE_EVENTS:
            last = body["seq_last"]
            self.announced[(msg["gw"], body["store_id"])].append(
                (body["seq_first"], float("inf") if last is None else last))
        elif msg["type"] == "store_recovered" and body.get("old_store_id"):
            for first, last in body["lost"]:
                self.announced[(msg["gw"], body["old_store_id"])].append((first, last))

    def unannounced_gaps(self) -> list[tuple[Key, int, int]]:
        """Gaps with a number that no event covers."""
        out = []
        for key, gaps in self.gaps.items():
            ranges = sorted(self.announced.get(key, []))
            for first, last in gaps:
                pos = first
                for a, b in ranges:
                    if a <= pos <= b:
                        pos = int(min(b, last)) + 1
                if pos <= last:
                    out.append((key, first, last))
        return out

    def all_samples(self) -> list[list[Any]]:
        return [row for rows in self.samples.values() for row in rows.values()]

    def of_type(self, kind: str) -> list[dict[str, Any]]:
        return [m for m in self.events.values() if m["type"] == kind]
