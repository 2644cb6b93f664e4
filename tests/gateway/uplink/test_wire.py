"""The telemetry message is spliced from stored chunk text; it must equal what parsing and
re-encoding would give, whatever the values hold."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.model import Quality, Sample
from gateway.store.codec import encode_chunk
from gateway.uplink.wire import ChunkText, _row_texts, telemetry_message
from tests.gateway.uplink.wirecheck import load_validators

VALIDATORS = load_validators()

values = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**53), 2**53),
    st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=12),
    st.sampled_from(["],[", "a],[b", "[[", "]]", '"],["']),
)
rows = st.lists(
    st.tuples(st.sampled_from(["m-1", "pv"]), st.sampled_from(["p", "],[", "x y"]),
              st.integers(0, 2**41), values, st.sampled_from(list(Quality))),
    min_size=1, max_size=40,
)


@settings(max_examples=100, deadline=None)
@given(rows, st.integers(1, 50), st.integers(1, 2_000), st.integers(0, 39))
def test_slices_equal_the_rows_they_name(batch: list[tuple], max_rows: int, max_bytes: int,
                                         skip: int) -> None:
    samples = [Sample(*r) for r in batch]
    seq_first = 100
    chunk = ChunkText(seq_first, seq_first + len(samples) - 1, encode_chunk(samples))
    expected = json.loads(json.dumps([list(s) for s in samples]))
    pos = seq_first + min(skip, len(samples) - 1)
    validator = VALIDATORS["telemetry"]
    while pos <= chunk.seq_last:
        part = chunk.take(pos, max_rows, max_bytes, need_one=True)
        assert part is not None and part.seq_first == pos
        assert part.rows <= max_rows
        assert part.nbytes <= max_bytes or part.rows == 1
        body = json.loads(telemetry_message("gw", 3, [part], "s1"))
        assert not list(validator.iter_errors(body))
        assert body["seq_first"] == pos and body["seq_last"] == part.seq_last
        assert body["samples"] == expected[pos - seq_first: part.seq_last - seq_first + 1]
        pos = part.seq_last + 1


def test_without_need_one_a_row_too_big_is_left_for_the_next_message() -> None:
    samples = [Sample("m", "p", 1, "x" * 100)] * 3
    chunk = ChunkText(1, 3, encode_chunk(samples))
    assert chunk.take(1, 10, 50, need_one=False) is None
    assert chunk.take(1, 10, 50, need_one=True) is not None


@pytest.mark.parametrize("n", [1, 2, 7])
def test_a_whole_chunk_is_spliced_without_being_cut(n: int) -> None:
    samples = [Sample("m", f"p{i}", i, i * 1.5) for i in range(n)]
    chunk = ChunkText(10, 9 + n, encode_chunk(samples))
    part = chunk.take(10, n, 10**6, need_one=True)
    assert part is not None and part.text == chunk.inner and chunk._parts is None


def _reference_take(chunk: ChunkText, first: int, max_rows: int, max_bytes: int,
                    need_one: bool) -> tuple[int, bytes] | None:
    """The cut as the parsed rows' own text gives it: (last seq, text) or None. Each row's text
    is where the JSON decoder found it (the store's encoder writes UTF-8 and its own float
    spelling, so re-encoding with the standard library would change the sizes)."""
    parts = _row_texts(chunk.inner)
    start = first - chunk.seq_first
    end = min(len(parts), start + max_rows)
    size = 0
    for i in range(start, end):
        size += len(parts[i]) + 1
        if size > max_bytes + 1 and (i > start or not need_one):
            end = i
            break
    if end <= start:
        return None
    return chunk.seq_first + end - 1, b",".join(parts[start:end])


@settings(max_examples=150, deadline=None)
@given(rows, st.lists(st.tuples(st.integers(0, 45), st.integers(1, 50), st.integers(1, 600),
                                st.booleans()), min_size=1, max_size=12))
def test_cutting_by_offsets_equals_cutting_the_parsed_rows(
        batch: list[tuple], takes: list[tuple[int, int, int, bool]]) -> None:
    """Any sequence of takes (in order, repeated or jumping back, as a resend does) cuts where
    cutting the re-encoded rows would, with the same bytes."""
    samples = [Sample(*r) for r in batch]
    chunk = ChunkText(1, len(samples), encode_chunk(samples))
    for skip, max_rows, max_bytes, need_one in takes:
        first = 1 + skip % len(samples)
        part = chunk.take(first, max_rows, max_bytes, need_one)
        want = _reference_take(chunk, first, max_rows, max_bytes, need_one)
        got = None if part is None else (part.seq_last, part.text)
        assert got == want


def test_a_big_chunk_is_cut_without_a_copy_per_row() -> None:
    """Cutting a 20,000-row chunk into messages holds its text and the slice, not a bytes
    object per row (what the uplink kept for every chunk it cut)."""
    import tracemalloc

    samples = [Sample(f"m{i % 200:03d}", f"r{i % 125:03d}", 1_700_000_000_000, 230.1 + i)
               for i in range(20_000)]
    chunk = ChunkText(1, 20_000, encode_chunk(samples))
    tracemalloc.start()
    try:
        pos = 1
        while pos <= chunk.seq_last:
            part = chunk.take(pos, 10_000, 64_000, need_one=True)
            assert part is not None
            pos = part.seq_last + 1
            del part
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert pos == 20_001
    assert peak < 3 * 64_000, f"cutting held {peak:,} bytes (text {len(chunk.inner):,})"
