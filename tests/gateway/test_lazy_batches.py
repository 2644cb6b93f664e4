"""A good poll's batch (PollBatch) and a commit's (Committed) are read-only sequences of
samples that make their Sample tuples only when someone reads them: every way of reading
them gives what the plain list of the same samples gives, and on the real gateway path
(Modbus poll -> pipeline -> store, rules, live values, history) nobody makes them."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from drivers.modbus.config import ModbusDeviceConfig
from drivers.modbus.simulator import ModbusSimulator, SimUnit
from gateway.clock import SystemClock
from gateway.model import Batch, Committed, PollBatch, Quality, Sample
from gateway.pipeline import Pipeline
from gateway.store import Store
from gateway.store.held import CommitFailed
from tests.support.app import running_app
from tests.support.mosquitto import free_port
from tests.support.wait import wait_until

NAMES = ("a", "b", "c", "d")


def poll(device: str = "m", ts: int = 7, values: list[Any] | None = None) -> PollBatch:
    return PollBatch(device, ts, NAMES, values if values is not None else [1.5, 2, True, -3.0])


def plain_of(batch: PollBatch) -> list[Sample]:
    """The samples, built here on their own from the columns."""
    return [Sample(batch.device, n, batch.ts_ms, v, Quality.GOOD)
            for n, v in zip(batch.names, batch.values, strict=True)]


INDEXES = [0, 1, -1, -4, 3]
SLICES = [slice(None), slice(1, None), slice(None, -1), slice(None, None, -1),
          slice(1, 3), slice(0, 4, 2), slice(5, 9), slice(-2, None)]


def assert_reads_as(seq: Batch, want: list[Sample]) -> None:
    assert len(seq) == len(want) and bool(seq) == bool(want)
    assert list(seq) == want and list(iter(seq)) == want
    for i in INDEXES:
        if -len(want) <= i < len(want):
            assert seq[i] == want[i] and type(seq[i]) is Sample
        else:
            with pytest.raises(IndexError):
                seq[i]
    for s in SLICES:
        got = seq[s]
        assert got == want[s] and type(got) is list
    assert seq == want and want == seq and seq == tuple(want)
    assert not seq != want  # noqa: SIM202 (the != operator itself)
    if want:
        assert seq != want[:-1] and seq != [*want, want[0]]
        assert seq != [want[-1], *want[:-1]] or len(set(want)) == 1
        assert want[0] in seq and seq.index(want[-1]) == want.index(want[-1])
        assert seq.count(want[0]) == want.count(want[0])
    assert list(reversed(seq)) == want[::-1]
    assert seq != "abc" and seq != 5 and seq != {"a": 1}
    assert json.dumps(list(seq)) == json.dumps(want)


def test_a_poll_batch_reads_as_its_plain_list_and_makes_its_samples_once() -> None:
    batch = poll()
    assert not isinstance(batch, list)
    assert len(batch) == 4 and not batch.made  # the length comes from the columns
    want = plain_of(batch)
    assert_reads_as(batch, want)
    assert batch.made
    first = batch[0]
    assert batch[0] is first and next(iter(batch)) is first  # made once, kept
    assert batch == PollBatch("m", 7, NAMES, [1.5, 2, True, -3.0])
    assert batch != PollBatch("m", 8, NAMES, [1.5, 2, True, -3.0])
    assert batch != poll("n")
    with pytest.raises(TypeError):
        hash(batch)
    assert repr(batch) == ("PollBatch(device='m', ts_ms=7, names=('a', 'b', 'c', 'd'), "
                           "values=[1.5, 2, True, -3.0])")
    with pytest.raises(AttributeError):
        batch.other = 1  # type: ignore[attr-defined]


def test_a_commit_reads_as_its_parts_concatenated() -> None:
    bad = [Sample("n", "x", 8, None, Quality.BAD), Sample("n", "y", 8, 4.0)]
    one, two = poll("m", 7), poll("p", 9, [0, 0.25, False, 1e300])
    commit = Committed.of([one, bad, two, []])
    assert len(commit) == 10 and not one.made and not two.made  # the length up front
    want = [*plain_of(one), *bad, *plain_of(two)]
    assert_reads_as(commit, want)
    assert commit.parts == [one, bad, two, []]
    # A held commit retried with new batches: its parts, not itself, so columns stay.
    again = Committed.of([commit, [Sample("q", "z", 10, 1)]])
    assert again.parts[:4] == [one, bad, two, []] and again.parts[0] is one
    assert list(again) == [*want, Sample("q", "z", 10, 1)]
    empty = Committed.of([])
    assert_reads_as(empty, [])
    assert "10 samples in 4 parts" in repr(commit)


async def test_a_pipeline_observer_that_iterates_sees_every_sample(tmp_path: Path) -> None:
    """A plugin-style observer (iterates, indexes, slices, lists) sees what was put, and the
    poll's samples are made for it then, not before."""
    store = Store(tmp_path / "p.db")
    await store.open()
    try:
        pipeline = Pipeline(store, SystemClock(), queue_batches=1000)
        seen: list[tuple[list[Sample], Sample, list[Sample], int]] = []
        made_before: list[bool] = []

        def observer(batch: Batch, seq: int) -> None:
            made_before.append(any(getattr(p, "made", False)
                                   for p in getattr(batch, "parts", [])))
            seen.append(([s for s in batch], batch[-1], batch[1:3], len(batch)))

        pipeline.add_observer(observer)
        big = [poll(f"m{i}", 5, [float(i), 2.0, 3.0, 4.0]) for i in range(300)]
        plain = [Sample("n", "a", 6, None, Quality.BAD)]
        for b in big:
            await pipeline.put(b)
        await pipeline.put(plain)
        assert await pipeline.commit_once() == 1201
        [(items, last, window, n)] = seen
        want = [s for b in big for s in plain_of(b)] + plain
        assert items == want and last == plain[0] and window == want[1:3] and n == 1201
        assert made_before == [False]  # a chunk of 1,000+ is stored from the columns
    finally:
        await store.close()


async def test_a_good_poll_makes_no_sample_on_the_gateway_path(tmp_path: Path) -> None:
    """The real App (Modbus driver, pipeline, store, rules, live values, history): a device
    of 1,050 points (a chunk big enough for the store's column path) polled and committed;
    no PollBatch's samples were made by the time the history folded it (but the first one's,
    whose layout the history learns sample by sample)."""
    points = [{"name": f"r{i}", "function": "holding", "address": i, "type": "uint16"}
              for i in range(1050)]
    cfg = ModbusDeviceConfig.model_validate({"id": "big", "host": "127.0.0.1", "port": 1,
                                             "points": points})
    sim = ModbusSimulator([SimUnit(1, list(cfg.all_points().values()))])
    port = await sim.start()
    config = {
        "devices": [{"id": "big", "type": "modbus", "host": "127.0.0.1", "port": port,
                     "interval": 0.1, "timeout": 1.0, "points": points}],
        "rules": {"alarms": [{"name": "r7-high", "devices": ["big"], "point": "r7",
                              "condition": {"op": ">", "value": 70000}}]},
        "http": {"port": free_port()},
    }
    try:
        async with running_app(config, tmp_path) as app:
            polls: list[PollBatch] = []
            app.pipeline.add_observer(lambda batch, _seq: polls.extend(
                p for p in getattr(batch, "parts", ()) if type(p) is PollBatch))
            await wait_until(lambda: len(polls) >= 3, 15, what="three good polls committed")
            siteops = next(c for c in app.components if getattr(c, "history", None))
            history: Any = siteops.history
            last = app.pipeline.stats.samples
            await wait_until(lambda: history.stats.folded_seq >= last, 15,
                             what="the history folded them")
            assert [len(p) for p in polls[:3]] == [1050] * 3
            # The history learns a device's layout from the samples of its first poll (it
            # may be this observer's first); every poll after it is read by its columns only.
            assert [p.made for p in polls[1:]] == [False] * (len(polls) - 1)
            assert list(polls[0])[7] == Sample("big", "r7", polls[0].ts_ms, polls[0].values[7])
    finally:
        await sim.stop()


async def test_a_held_commit_keeps_its_columns_and_is_counted_when_given_up(
        tmp_path: Path) -> None:
    """A commit the store cannot write (a full disk) is held as a Committed: retried, its
    parts (the PollBatch columns) stay parts; given up at shutdown, its samples are counted."""
    store = Store(tmp_path / "h.db")
    await store.open()
    try:
        pipeline = Pipeline(store, SystemClock(), queue_batches=1000)
        await pipeline.put([Sample("m", "a", 1, 1.0)])
        await pipeline.commit_once()
        (pages,) = await store.query_one("PRAGMA page_count") or (0,)
        await store.conn.execute(f"PRAGMA max_page_count={pages}")  # the disk is full now
        polls = [PollBatch(f"m{i}", 5, NAMES, [float(i), 2.5, 3.25, i * 7.0])
                 for i in range(300)]
        for p in polls:
            await pipeline.put(p)
        for _ in range(2):
            with pytest.raises(CommitFailed):
                await pipeline.commit_once()
        held = pipeline._held.samples
        assert type(held) is Committed and held.parts == polls and held.parts[0] is polls[0]
        assert len(held) == 1200 and not any(p.made for p in polls)
        pipeline._held.give_up(store)
        assert pipeline._held.dropped == 1200
    finally:
        await store.close()
