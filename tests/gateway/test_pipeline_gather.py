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


async def run_burst(tmp_path: Path, gather: float) -> int:
    """The commits a burst of 20 batches took, after a first batch."""
    store = Store(tmp_path / f"g{gather}.db")
    await store.open()
    try:
        pipeline = Pipeline(store, SystemClock(), commit_gather=gather)
        runner = asyncio.create_task(pipeline.run())
        await pipeline.put(batch(10, "first"))  # the first batch after a start: at once
        await wait_until(lambda: pipeline.stats.samples == 10, 10, what="the first batch")
        await let_tasks_run()  # the pipeline is idle, waiting for a batch
        first = pipeline.stats.commits
        await burst(pipeline, 20, 0)  # back to back: only yielding to the loop
        await wait_until(lambda: pipeline.stats.samples == 210, 10, what="the burst committed")
        pipeline.close()
        await asyncio.wait_for(runner, 10)
        assert (await store.stats()).samples == 210
        return pipeline.stats.commits - first
    finally:
        await store.close()


async def test_a_burst_is_one_commit_with_gather_and_several_without(tmp_path: Path) -> None:
    assert await run_burst(tmp_path, 2.0) == 1
    assert await run_burst(tmp_path, 0.0) > 1  # the first batch is committed as it comes


async def test_the_first_batch_after_a_start_is_committed_at_once(tmp_path: Path) -> None:
    """The first datapoint after a start is not delayed by the gather; the next ones are."""
    store = Store(tmp_path / "first.db")
    await store.open()
    try:
        pipeline = Pipeline(store, SystemClock(), commit_gather=5.0)
        gathers = 0
        gather = pipeline._gather

        async def counted() -> None:
            nonlocal gathers
            gathers += 1
            await gather()

        pipeline._gather = counted  # type: ignore[method-assign]
        runner = asyncio.create_task(pipeline.run())
        await let_tasks_run()
        await pipeline.put(batch(10, "first"))
        await wait_until(lambda: pipeline.stats.samples == 10, 3, what="the first batch")
        assert gathers == 0
        await let_tasks_run()
        await pipeline.put(batch(10, "second"))
        await wait_until(lambda: pipeline.stats.samples == 20, 3, what="the second batch")
        assert gathers == 1
        pipeline.close()
        await asyncio.wait_for(runner, 5)
    finally:
        await store.close()


async def test_a_lone_batch_waits_only_until_quiet(tmp_path: Path) -> None:
    store = Store(tmp_path / "lone.db")
    await store.open()
    try:
        pipeline = Pipeline(store, SystemClock(), commit_gather=5.0)
        runner = asyncio.create_task(pipeline.run())
        await pipeline.put(batch(10, "first"))  # committed at once (the first)
        await wait_until(lambda: pipeline.stats.samples == 10, 2, what="the first batch")
        await let_tasks_run()
        started = time.monotonic()
        await pipeline.put(batch(10, "m"))
        await wait_until(lambda: pipeline.stats.samples == 20, 2, what="the batch committed")
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
        await wait_until(lambda: pipeline.stats.commits >= 1, 3, what="the first commit")
        started = time.monotonic()
        await wait_until(lambda: pipeline.stats.commits >= 3, 3, what="two gathered commits")
        assert time.monotonic() - started < 3.0
        feeder.cancel()
        await asyncio.gather(feeder, return_exceptions=True)
        pipeline.close()
        await asyncio.wait_for(runner, 5)
    finally:
        await store.close()


def test_the_site_config_sets_the_gather(tmp_path: Path) -> None:
    from gateway.config.loader import load_config
    from gateway.runtime import App

    path = tmp_path / "site.yaml"
    path.write_text(f"gateway: {{id: q, state_dir: {tmp_path / 'state'}}}\n"
                    "pipeline: {commit_gather: 0.25}\n")
    assert App(load_config(path), path).pipeline.commit_gather == 0.25
    path.write_text(f"gateway: {{id: q, state_dir: {tmp_path / 'state'}}}\n")
    assert App(load_config(path), path).pipeline.commit_gather == 0  # off by default
