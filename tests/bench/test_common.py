"""bench/common.py: the conditions note is computed from the load average, and every bench
writes the one layout."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench import common


def test_the_note_says_busy_when_the_load_was_high(monkeypatch: pytest.MonkeyPatch) -> None:
    loads = iter([7.5, 8.25])
    monkeypatch.setattr(common, "load_average", lambda: next(loads))
    with common.Conditions() as cond:
        cond.cores = 2
    assert cond.busy
    assert cond.note().startswith("busy machine: 1-minute load average 7.5 before the runs "
                                  "and 8.25 after, on 2 cores")


def test_the_note_says_quiet_when_the_load_was_low(monkeypatch: pytest.MonkeyPatch) -> None:
    loads = iter([0.25, 0.5])
    monkeypatch.setattr(common, "load_average", lambda: next(loads))
    with common.Conditions() as cond:
        cond.cores = 2
    assert not cond.busy
    assert cond.note() == ("quiet machine: 1-minute load average 0.25 before the runs and 0.5 "
                           "after, on 2 cores")


def test_write_result_writes_the_one_layout(tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(common.RESULTS_ENV, str(tmp_path))
    with common.Conditions() as cond:
        pass
    path = common.write_result("demo", what="a test", params={"runs": 2},
                               summary={"x_per_s": 3.0}, runs=[{"x_per_s": 2.0},
                                                               {"x_per_s": 4.0}],
                               conditions=cond)
    assert path == tmp_path / "demo.json"
    data = json.loads(path.read_text())
    assert data["summary"] == {"x_per_s": 3.0} and len(data["runs"]) == 2
    assert data["conditions"]["note"] == cond.note()
    assert data["machine"]["cores"] == cond.cores


async def test_the_counting_context_counts_good_and_bad() -> None:
    from gateway.model import Quality, Sample

    ctx = common.CountingContext()
    await ctx.emit([Sample("d", "p", 1, 1.0), Sample("d", "q", 1, None, Quality.BAD),
                    Sample("d", "r", 1, 2.0, Quality.UNCERTAIN)])
    assert (ctx.samples, ctx.batches, ctx.good, ctx.bad) == (3, 1, 1, 1)
