"""The read planner is minimal: compare it with a brute-force optimum on random maps."""

from __future__ import annotations

import itertools
import random

import pytest

from drivers.modbus.planner import Span, plan


def feasible(lo: int, hi: int, spans: list[Span[int]], max_count: int, max_gap: int,
             unreadable: list[tuple[int, int]]) -> bool:
    """Can one read cover [lo, hi)? Checked from first principles, address by address."""
    if hi - lo > max_count:
        return False
    if any(a <= b and lo <= b and a < hi for a, b in unreadable):
        return False
    covered = {a for s in spans for a in range(s.address, s.end)}
    run = 0
    for addr in range(lo, hi):
        run = 0 if addr in covered else run + 1
        if run > max_gap:
            return False
    return True


def brute_force(spans: list[Span[int]], max_count: int, max_gap: int,
                unreadable: list[tuple[int, int]]) -> int:
    """Fewest reads covering every span. Any optimal read can shrink to start at some span's
    start and end at some span's end, so those candidates suffice."""
    candidates = []
    for a in {s.address for s in spans}:
        for b in {s.end for s in spans}:
            if b > a and feasible(a, b, spans, max_count, max_gap, unreadable):
                inside = frozenset(i for i, s in enumerate(spans) if a <= s.address and s.end <= b)
                candidates.append(inside)
    everything = frozenset(range(len(spans)))
    for k in range(1, len(spans) + 1):
        for combo in itertools.combinations(set(candidates), k):
            if frozenset().union(*combo) == everything:
                return k
    raise AssertionError("no cover")


def random_case(rng: random.Random) -> tuple[list[Span[int]], int, int, list[tuple[int, int]]]:
    n = rng.randint(1, 7)
    spans = [Span(rng.randint(0, 60), rng.choice([1, 1, 2, 2, 4, 6]), i) for i in range(n)]
    max_count = rng.randint(6, 30)
    max_gap = rng.randint(0, 8)
    unreadable = []
    for _ in range(rng.randint(0, 2)):
        a = rng.randint(0, 70)
        rng_span = (a, a + rng.randint(0, 3))
        if not any(s.address <= rng_span[1] and rng_span[0] < s.end for s in spans):
            unreadable.append(rng_span)
    return spans, max_count, max_gap, unreadable


@pytest.mark.parametrize("seed", range(300))
def test_plan_is_minimal_and_valid(seed: int) -> None:
    rng = random.Random(seed)
    spans, max_count, max_gap, unreadable = random_case(rng)
    blocks = plan(spans, max_count=max_count, max_gap=max_gap, unreadable=unreadable)
    # valid: every span read exactly once, fully inside its block, every block feasible
    assert sorted(s.item for b in blocks for s in b.spans) == list(range(len(spans)))
    for b in blocks:
        assert all(b.address <= s.address and s.end <= b.address + b.count for s in b.spans)
        assert feasible(b.address, b.address + b.count, spans, max_count, max_gap, unreadable)
    assert len(blocks) == brute_force(spans, max_count, max_gap, unreadable)


def test_never_reads_across_unreadable() -> None:
    spans = [Span(0, 2, "a"), Span(4, 2, "b")]
    assert len(plan(spans, max_count=125, max_gap=10)) == 1
    assert len(plan(spans, max_count=125, max_gap=10, unreadable=[(2, 3)])) == 2


def test_register_limit_and_gap() -> None:
    spans = [Span(i * 2, 2, i) for i in range(100)]  # 200 contiguous registers
    blocks = plan(spans, max_count=125, max_gap=0)
    assert [b.count for b in blocks] == [124, 76]
    assert len(plan([Span(0, 1, 0), Span(12, 1, 1)], max_count=125, max_gap=10)) == 2
    assert len(plan([Span(0, 1, 0), Span(11, 1, 1)], max_count=125, max_gap=10)) == 1


def test_oversized_span_is_an_error() -> None:
    with pytest.raises(ValueError, match="exceeds"):
        plan([Span(0, 126, 0)], max_count=125, max_gap=0)
