"""The live-value cache keeps a whole good poll (a PollBatch) as its columns, and every
reader sees exactly what it would see had the same samples come one by one: the newest
value of each point wins, whatever mix of columns, re-planned layouts and single samples
(a poll with a bad value) brought them."""

from __future__ import annotations

import json
import random
import tracemalloc
from typing import Any

from gateway.http import views
from gateway.http.encode import PointsJson, dumps
from gateway.http.live import LatestValues
from gateway.model import Committed, PollBatch, Quality, Sample


def poll(device: str, names: tuple[str, ...], ts: int, values: list[Any]) -> PollBatch:
    """What the Modbus driver emits for a poll whose every value is good."""
    return PollBatch(device, ts, names, values)


def same(text: bytes, reference: Any) -> bool:
    return dumps(json.loads(text)) == dumps(reference)


def test_a_good_poll_is_kept_as_its_columns_not_as_samples() -> None:
    latest = LatestValues()
    names = tuple(f"p{i}" for i in range(5))
    first = poll("m", names, 1000, [1.5, 2, 3.25, 4.0, 5.5])
    latest(Committed.of([first]), 1)
    dev = latest.values["m"]
    assert dev.columns == {id(names): (names, first.values, 1000)}
    assert dev.columns[id(names)][1] is first.values  # the driver's list, not a copy
    assert dev.loose == {}
    assert latest.samples("m") == {s.point: s for s in first}
    assert latest.count("m") == 5 and latest.last_seen("m") == 1000
    # The next poll of the same layout replaces the column: still no per-point entry.
    second = poll("m", names, 2000, [9.0, 8, 7.0, 6.0, 5.0])
    latest(Committed.of([second]), 6)
    assert dev.columns == {id(names): (names, second.values, 2000)}
    assert latest.samples("m") == {s.point: s for s in second}
    assert latest.generation["m"] == 2 and latest.stats.samples == 10


def test_a_single_sample_overrides_the_column_until_the_next_poll() -> None:
    latest = LatestValues()
    names = ("a", "b", "c")
    latest(Committed.of([poll("m", names, 1000, [1.0, 2.0, 3.0])]), 1)
    bad = Sample("m", "b", 2000, None, Quality.BAD)
    latest(Committed.of([[Sample("m", "a", 2000, 1.5), bad]]), 4)  # a poll with a bad value
    assert latest.samples("m") == {"a": Sample("m", "a", 2000, 1.5), "b": bad,
                                   "c": Sample("m", "c", 1000, 3.0)}
    assert latest.count("m") == 3 and latest.last_seen("m") == 2000
    text, seen = PointsJson(latest).points("m")
    assert same(text, views.points_of(latest, "m")) and seen == 2000
    assert json.loads(text)["b"] == {"value": None, "quality": "bad", "ts": 2000}
    latest(Committed.of([poll("m", names, 3000, [1.0, 2.25, 3.0])]), 6)  # good again
    assert latest.values["m"].loose == {}
    assert latest.samples("m")["b"] == Sample("m", "b", 3000, 2.25)
    # What orjson refuses (an integer beyond 64 bits) in a column: the fallback writes it.
    latest(Committed.of([poll("m", names, 3500, [2**70, 2.5, 3.0])]), 8)
    text, seen = PointsJson(latest).points("m")
    assert b", " in text and same(text, views.points_of(latest, "m")) and seen == 3500
    assert json.loads(text)["a"]["value"] == 2**70
    # A plain list (not a Committed, as tests and other callers send) is read as one part.
    latest([Sample("m", "c", 4000, 7)], 9)
    assert latest.samples("m")["c"] == Sample("m", "c", 4000, 7)


def test_a_new_layout_takes_its_points_over_and_the_old_ones_other_points_stay() -> None:
    latest = LatestValues()
    old = ("a", "b", "c")
    latest(Committed.of([poll("m", old, 1000, [1.0, 2.0, 3.0])]), 1)
    replanned = ("b", "c", "d")  # a learned hole re-planned the group
    latest(Committed.of([poll("m", replanned, 2000, [20.0, 30.0, 40.0])]), 4)
    assert latest.samples("m") == {"a": Sample("m", "a", 1000, 1.0),
                                   "b": Sample("m", "b", 2000, 20.0),
                                   "c": Sample("m", "c", 2000, 30.0),
                                   "d": Sample("m", "d", 2000, 40.0)}
    assert list(latest.values["m"].columns) == [id(replanned)]
    # An equal tuple built again (not the same object) replaces its twin.
    again = tuple(list(replanned))
    latest(Committed.of([poll("m", again, 3000, [21.0, 31.0, 41.0])]), 7)
    assert list(latest.values["m"].columns) == [id(again)]
    assert latest.count("m") == 4 and latest.samples("m")["d"].ts_ms == 3000


def _random_part(rng: random.Random, layouts: list[tuple[str, tuple[str, ...]]], ts: int
                 ) -> list[Sample]:
    device, names = rng.choice(layouts)
    if rng.random() < 0.6:
        return poll(device, names, ts, [rng.choice([rng.random(), rng.randrange(9)])
                                        for _ in names])
    points = rng.sample(names, rng.randrange(1, len(names) + 1)) + (
        [f"x{rng.randrange(3)}"] if rng.random() < 0.3 else [])  # points of other drivers
    return [Sample(device, p, ts, None, Quality.BAD) if rng.random() < 0.3
            else Sample(device, p, ts, rng.random()) for p in points]


def test_every_reader_sees_the_newest_value_of_each_point_in_any_mix() -> None:
    rng = random.Random(15)
    a1 = tuple(f"a{i}" for i in range(8))
    layouts = [("m", a1), ("m", tuple(f"b{i}" for i in range(4))),
               ("m", (*a1[4:], "c0")), ("m", tuple(list(a1))), ("n", ("a0", "a1")),
               ("n", a1)]  # a names tuple two devices share
    latest = LatestValues()
    points = PointsJson(latest)
    sub = latest.subscribe(None)
    reference: dict[str, dict[str, Sample]] = {}
    client: dict[tuple[str, str], Sample] = {}  # what the stream client was sent
    ts = 1000
    for step in range(400):
        parts = []
        for _ in range(rng.randrange(1, 4)):
            ts += rng.randrange(0, 3)  # equal timestamps too: order alone decides
            part = _random_part(rng, layouts, ts)
            parts.append(part)
            for s in part:
                reference.setdefault(s.device, {})[s.point] = s
        latest(Committed.of(parts), step)
        for device, want in reference.items():
            assert latest.samples(device) == want, step
            assert latest.count(device) == len(want)
            assert latest.last_seen(device) == max(s.ts_ms for s in want.values())
            text, seen = points.points(device)
            assert same(text, views.points_of(latest, device)), step
            assert json.loads(text) == {p: {"value": s.value, "quality": str(s.quality),
                                            "ts": s.ts_ms} for p, s in sorted(want.items())}
            assert seen == latest.last_seen(device)
        if rng.random() < 0.5:
            rows = sub.changed(latest.values)
            assert len({(s[0], s[1]) for s in rows}) == len(rows)  # no point twice
            for s in rows:
                assert reference[s[0]][s[1]] == s, step  # only newest values
                client[(s[0], s[1])] = Sample(*s)
            assert client == {(d, p): s for d, want in reference.items()
                              for p, s in want.items()}, step
            assert sub.changed(latest.values) == []  # nothing new since


def test_a_stream_is_sent_only_the_polls_since_its_last_send() -> None:
    latest = LatestValues()
    a, b = ("a0", "a1", "a2"), ("b0", "b1")
    latest(Committed.of([poll("m", a, 1000, [1.0, 2.0, 3.0]),
                         poll("m", b, 1000, [4.0, 5.0])]), 1)
    sub = latest.subscribe(frozenset({"m"}))
    sub.show("m", latest.values["m"])
    assert sub.queue.empty()
    latest(Committed.of([poll("m", b, 2000, [4.5, 5.5])]), 6)
    latest(Committed.of([poll("other", b, 2000, [0.0, 0.0])]), 8)  # not its device
    assert sub.queue.qsize() == 1 and sub.dirty == {"m"}  # one wake-up
    assert sub.changed(latest.values) == [Sample("m", "b0", 2000, 4.5),
                                          Sample("m", "b1", 2000, 5.5)]
    latest(Committed.of([[Sample("m", "a1", 3000, None, Quality.BAD)]]), 10)
    assert sub.changed(latest.values) == [Sample("m", "a1", 3000, None, Quality.BAD)]


def test_columns_keep_a_fraction_of_the_memory_of_samples() -> None:
    """100 devices x 125 points of good polls, after two cycles: the cache of columns holds
    the values list and a few small objects per device; one Sample and one dict entry per
    point held about 18 KB a device."""
    names = tuple(f"register_{i:03d}" for i in range(125))

    def cycle(latest: LatestValues, ts: int, columns: bool) -> None:
        parts: list[list[Sample]] = []
        for d in range(100):
            batch = poll(f"meter-{d:03d}", names, ts, [ts / 7 + i for i in range(125)])
            parts.append(batch if columns else list(batch))
        latest(Committed.of(parts), ts)

    kept = {}
    for columns in (True, False):
        latest = LatestValues()
        tracemalloc.start()
        try:
            cycle(latest, 1000, columns)
            cycle(latest, 2000, columns)  # the first cycle's objects are gone
            kept[columns] = tracemalloc.get_traced_memory()[0] / 100
        finally:
            tracemalloc.stop()
        assert latest.count("meter-099") == 125
    assert kept[True] < 5_000, kept  # bytes per device: 125 floats and their list
    assert kept[False] > 3 * kept[True], kept
