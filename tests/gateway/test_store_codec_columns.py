"""The store's chunks from columns: a PollBatch's rows are written from its columns (one
orjson call over text pieces kept per names tuple), and the bytes are exactly those the rows
would give; anything unusual takes the rows' path, so the chunk is still the same. Chunks are
compressed by ISA-L where it is installed: the same zlib stream format, read by zlib."""

from __future__ import annotations

import math
import zlib
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.model import Committed, PollBatch, Quality, Sample
from gateway.store import Store, codec
from gateway.store.codec import (
    decode_chunk,
    encode_chunk,
    encode_chunk_checked,
    inflate,
    ts_range,
)
from gateway.uplink.wire import ChunkText


def poll(device: str, names: tuple[str, ...], ts: int, values: list[Any]) -> PollBatch:
    """What the Modbus driver emits for a poll whose every value is good."""
    return PollBatch(device, ts, names, values)


def site_chunk(devices: int = 20, registers: int = 125, t: int = 7) -> Committed:
    names = tuple(f"r{i:03d}" for i in range(registers))
    return Committed.of([
        poll(f"m{d:03d}", names, 1_764_600_000_000 + t * 1000 + d,
             [round(2300 * (1 + 0.05 * math.sin(t / 7.0 + i + d))) * 0.1 for i in range(registers)])
        for d in range(devices)])


@pytest.fixture(autouse=True)
def _orjson_for_every_chunk(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(codec, "ORJSON_FROM", 1)


def rows_payload(batch: list[Sample]) -> bytes:
    """The chunk of the same samples as a plain list (no parts: the rows' path)."""
    return encode_chunk(list(batch))


NUMBERS = st.one_of(st.integers(-2**63, 2**63 - 1), st.booleans(),
                    st.floats(allow_nan=False, allow_infinity=False),
                    st.floats(width=32, allow_nan=False, allow_infinity=False))
ODD = st.one_of(st.none(), st.floats(), st.integers(), st.text(max_size=4),
                st.sampled_from(["],[", "null", "\ud800"]))
NAMES = st.one_of(st.text(min_size=1, max_size=6), st.sampled_from(["null", 'q"t', "\u2028",
                                                                      "\ud800", "é"]))
DEVICES = st.sampled_from(["m000", "Wärme", 'a"b', "null", "x\\y", "\ud800"])


@st.composite
def parts(draw: st.DrawFn) -> list[Sample]:
    device = draw(DEVICES)
    ts = draw(st.integers(0, 2**45))
    if draw(st.booleans()):
        names = tuple(draw(st.lists(NAMES, min_size=0, max_size=6)))
        values = draw(st.lists(st.one_of(NUMBERS, ODD) if draw(st.booleans()) else NUMBERS,
                               min_size=len(names), max_size=len(names)))
        return poll(device, names, ts, values)
    return [Sample(device, draw(NAMES), ts, draw(st.one_of(NUMBERS, ODD)),
                   draw(st.sampled_from(list(Quality)))) for _ in range(draw(st.integers(1, 4)))]


@settings(deadline=None, max_examples=300)
@given(st.lists(parts(), min_size=1, max_size=5).filter(lambda ps: any(map(len, ps))))
def test_a_chunk_from_columns_is_byte_for_byte_the_chunk_from_rows(ps: list[list[Sample]]
                                                                   ) -> None:
    batch = Committed.of(ps)
    try:
        want = rows_payload(batch)
    except TypeError:  # a value JSON cannot hold: refused the same way from columns
        with pytest.raises(TypeError):
            encode_chunk(batch)
        return
    assert encode_chunk(batch) == want
    assert decode_chunk(want) == decode_chunk(encode_chunk(batch))


def test_a_plain_poll_is_written_from_its_columns(monkeypatch: pytest.MonkeyPatch) -> None:
    batch = site_chunk()
    want = rows_payload(batch)

    def no_rows(_: Any) -> bytes:
        raise AssertionError("the rows' path was taken")

    monkeypatch.setattr(codec, "_rows_text", no_rows)
    assert encode_chunk(batch) == want
    # a plain list part (a poll with a bad value) among the polls: columns still
    mixed = Committed.of([*batch.parts[:3], [Sample("m900", "a", 5, None, Quality.BAD),
                                             Sample("m900", "b", 5, 1.5)], *batch.parts[3:]])
    monkeypatch.undo()
    monkeypatch.setattr(codec, "ORJSON_FROM", 1)
    want_mixed = rows_payload(mixed)
    monkeypatch.setattr(codec, "_rows_text", no_rows)
    assert encode_chunk(mixed) == want_mixed
    assert json_rows(want_mixed)[3 * 125] == ["m900", "a", 5, None, "bad"]


@pytest.mark.parametrize("value", [math.nan, math.inf, None, "text", 2**70])
def test_a_poll_with_an_unusual_value_takes_the_rows_path(value: Any) -> None:
    names = ("a", "b", "c")
    batch = Committed.of([poll("m", names, 1, [1.5, value, 2])])
    assert codec._columns_text(batch) is None
    assert encode_chunk(batch) == rows_payload(batch)


def test_the_text_pieces_follow_the_names_tuple_not_its_contents() -> None:
    """Kept per names tuple and device: another tuple (a re-planned map) or another device
    gets its own pieces, so a changed map is never written with the old names."""
    first = ("a", "b")
    batch = Committed.of([poll("m1", first, 1, [1, 2]), poll("m2", first, 1, [3, 4])])
    assert encode_chunk(batch) == rows_payload(batch)
    second = tuple(["a", "c"])
    batch = Committed.of([poll("m1", second, 2, [1, 2])])
    assert json_rows(encode_chunk(batch)) == [["m1", "a", 2, 1, "good"], ["m1", "c", 2, 2, "good"]]


def test_a_kept_poll_template_gives_each_poll_its_own_values() -> None:
    """A poll's list is copied from the template kept per device and names tuple: polls of
    one device in one chunk and in the next chunks each carry their own timestamp and values,
    and the template keeps none of them."""
    names = ("a", "b", "c")
    for t in range(3):
        batch = Committed.of([poll("m1", names, 10 * t + k, [t, k + 0.5, -t * 1.5])
                              for k in range(2)] + [poll("m2", names, 99, [t, t, t])])
        assert encode_chunk(batch) == rows_payload(batch)
    template, _plain = codec._template("m1", names) or ([], False)
    assert template[2::4] == [None] * 3 and template[3::4] == [None] * 3


def test_ts_range_of_polls_and_plain_parts() -> None:
    plain = [Sample("n", "b", 7, 1), Sample("n", "c", 90, 2)]
    batch = Committed.of([poll("m", ("a",), 50, [1]), plain, poll("m", ("a",), 60, [2])])
    assert ts_range(batch) == (7, 90) == ts_range(list(batch))


def test_chunks_are_zlib_streams_no_larger_than_zlib_level_1() -> None:
    batch = site_chunk(devices=100)
    payload = encode_chunk(batch)
    text = zlib.decompress(payload)  # any zlib reads it
    assert text == inflate(payload) == codec._rows_text(list(batch))
    assert len(payload) <= len(zlib.compress(text, 1))
    chunk = ChunkText(1, len(batch), payload)
    assert chunk.take(1, 10, 10**6, True).rows == 10  # type: ignore[union-attr]


def test_a_damaged_big_chunk_is_a_zlib_error() -> None:
    payload = encode_chunk(site_chunk(devices=100))
    assert len(payload) >= codec.ISAL_FROM
    damaged = payload[:-1] + bytes([payload[-1] ^ 1])  # the Adler-32
    with pytest.raises(zlib.error):
        inflate(damaged)
    with pytest.raises(zlib.error):
        ChunkText(1, 12_500, damaged)
    with pytest.raises(zlib.error):
        inflate(payload[: len(payload) // 2])


def json_rows(payload: bytes) -> list[list[Any]]:
    return decode_chunk(payload)


def cuts(chunk: ChunkText, max_bytes: int) -> list[tuple[int, int, bytes]]:
    out, first = [], chunk.seq_first
    while first <= chunk.seq_last:
        part = chunk.take(first, 10**6, max_bytes, need_one=True)
        assert part is not None
        out.append((part.seq_first, part.seq_last, part.text))
        first = part.seq_last + 1
    return out


def test_a_chunk_from_plain_columns_is_known_plain_and_cuts_the_same() -> None:
    batch = site_chunk(devices=30)
    payload, plain = encode_chunk_checked(batch)
    assert plain and payload == rows_payload(batch)
    for max_bytes in (50, 4_096, 128 * 1024):
        assert cuts(ChunkText(1, len(batch), payload, plain=True), max_bytes) == cuts(
            ChunkText(1, len(batch), payload), max_bytes)
    # not known plain: a plain part (its strings were not looked at), a name holding "],["
    mixed = Committed.of([*batch.parts[:2], [Sample("m", "a", 1, 2.5)]])
    assert encode_chunk_checked(mixed)[1] is False
    odd = Committed.of([poll("m", ("a", "x],[y"), 1, [1.5, 2.5])])
    payload, plain = encode_chunk_checked(odd)
    assert not plain and payload == rows_payload(odd)
    assert [t for _, _, t in cuts(ChunkText(1, 2, payload), 10)] == [
        b'["m","a",1,1.5,"good"]', b'["m","x],[y",1,2.5,"good"]']


async def test_the_store_says_which_chunks_are_plain_until_acknowledged(tmp_path: Path
                                                                        ) -> None:
    store = Store(tmp_path / "b.db")
    await store.open()
    try:
        polls = site_chunk(devices=2, registers=10)
        assert await store.append_samples(polls) == (1, 20)
        assert await store.append_samples(list(polls)) == (21, 40)  # rows: not known
        # a transaction that fails after appending a plain chunk: the next chunk takes its
        # numbers, and its own flag
        with pytest.raises(RuntimeError):
            async with store.transaction() as tx:
                await store.append_samples(polls, tx)
                raise RuntimeError("rolled back")
        assert await store.append_samples(list(polls)) == (41, 60)
        assert await store.append_samples(polls) == (61, 80)
        raw = await store.read_telemetry_raw(0, 1_000)
        assert [(c.seq_first, c.plain) for c in raw] == [(1, True), (21, False), (41, False),
                                                         (61, True)]
        await store.ack_telemetry(40)
        assert list(store._plain_chunks) == [61]
    finally:
        await store.close()
