"""``pipeline.commit_gather``: an idle pipeline woken by a batch waits for the rest of the
cycle's burst, so a cycle of many devices is one commit instead of several (issue 15: each
commit has a fixed cost). It waits no longer than the setting, stops as soon as no batch came
for ``GATHER_QUIET_S`` or a commit's worth is queued."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from gateway.clock import SystemClock
from gateway.model import Sample
from gateway.pipeline import GATHER_QUIET_S, Pipeline
from gateway.store import Store
from tests.support.wait import let_tasks_run, wait_until


def batch(n: int, device: str) -> list[Sample]:
    return [Sample(device, f"p{i}", 1_000 + i, float(i)) for i in range(n)]


async def burst(pipeline: Pipeline, devices: int, gap: float) -> None:
    for i in range(devices):
        await pipeline.put(batch(10, f"m{i:02d}"))
        await asyncio.sleep(gap)


async def run_burst(tmp_path: Path, gather: float) -> Pipeline:
    store = Store(tmp_path / f"g{gather}.db")
    await store.open()
    try:
        pipeline = Pipeline(store, SystemClock(), commit_gather=gather)
        runner = asyncio.create_task(pipeline.run())
        await let_tasks_run()  # the pipeline is idle, waiting for a batch
        await burst(pipeline, 20, 0)  # back to back: only yielding to the loop
        await wait_until(lambda: pipeline.stats.samples == 200, 10, what="the burst committed")
        pipeline.close()
        await asyncio.wait_for(runner, 10)
        assert (await store.stats()).samples == 200
        return pipeline
    finally:
        await store.close()


async def test_a_burst_is_one_commit_with_gather_and_several_without(tmp_path: Path) -> None:
    gathered = await run_burst(tmp_path, 2.0)
    assert gathered.stats.commits == 1
    at_once = await run_burst(tmp_path, 0.0)
    assert at_once.stats.commits > 1  # the first batch is committed as soon as it comes


async def test_a_lone_batch_waits_only_until_quiet(tmp_path: Path) -> None:
    store = Store(tmp_path / "lone.db")
    await store.open()
    try:
        pipeline = Pipeline(store, SystemClock(), commit_gather=5.0)
        runner = asyncio.create_task(pipeline.run())
        started = time.monotonic()
        await pipeline.put(batch(10, "m"))
        await wait_until(lambda: pipeline.stats.samples == 10, 2, what="the batch committed")
        assert time.monotonic() - started < 2.0  # not the 5 s bound
        pipeline.close()
        await asyncio.wait_for(runner, 2)
    finally:
        await store.close()


async def test_a_commits_worth_ends_the_wait_while_batches_keep_coming(tmp_path: Path) -> None:
    store = Store(tmp_path / "worth.db")
    await store.open()
    try:
        pipeline = Pipeline(store, SystemClock(), commit_gather=5.0, max_commit_samples=50)
        runner = asyncio.create_task(pipeline.run())
        # Never quiet for GATHER_QUIET_S: only the commit's worth (50) can end the wait.
        feeder = asyncio.create_task(burst(pipeline, 1_000, GATHER_QUIET_S / 4))
        started = time.monotonic()
        await wait_until(lambda: pipeline.stats.commits >= 1, 3, what="a first commit")
        assert time.monotonic() - started < 3.0
        feeder.cancel()
        pipeline.close()
        await asyncio.wait_for(runner, 5)
    finally:
        await store.close()


def test_the_site_config_sets_the_gather(tmp_path: Path) -> None:
    from gateway.config.loader import load_config
    from gateway.runtime import App

    path = tmp_path / "site.yaml"
    path.write_text(f"gateway: {{id: q, state_dir: {tmp_path / 'state'}}}\n"
                    "pipeline: {commit_gather: 0}\n")
    assert App(load_config(path), path).pipeline.commit_gather == 0
    path.write_text(f"gateway: {{id: q, state_dir: {tmp_path / 'state'}}}\n")
    assert App(load_config(path), path).pipeline.commit_gather == 0.25
