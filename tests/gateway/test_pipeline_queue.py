"""The pipeline's queue is bounded in samples, not only in batches: with a batch per device
per cycle, 256 batches held as many cycles as the site had devices to fill them, so the
samples waiting for a commit grew with the device count (issue 15)."""

from __future__ import annotations

import asyncio
from pathlib import Path

from gateway.clock import SystemClock
from gateway.model import Sample
from gateway.pipeline import Pipeline
from gateway.store import Store
from tests.support.wait import let_tasks_run, stays, wait_until


def batch(n: int, device: str = "m") -> list[Sample]:
    return [Sample(device, f"p{i}", 1_000 + i, float(i)) for i in range(n)]


async def test_a_full_queue_of_samples_makes_the_driver_wait(tmp_path: Path) -> None:
    store = Store(tmp_path / "q.db")
    await store.open()
    try:
        pipeline = Pipeline(store, SystemClock(), queue_batches=100, queue_samples=10)
        await pipeline.put(batch(4))
        await pipeline.put(batch(4))
        blocked = asyncio.create_task(pipeline.put(batch(4)))  # 12 > 10
        await stays(lambda: not blocked.done(), 0.2, what="the driver waits for room")
        assert pipeline.queued_samples == 8
        assert await pipeline.commit_once() == 8
        await asyncio.wait_for(blocked, 5)
        assert pipeline.queued_samples == 4
        # A batch larger than the bound is taken alone, once the queue is empty.
        big = asyncio.create_task(pipeline.put(batch(25)))
        await stays(lambda: not big.done(), 0.2, what="the big batch waits for an empty queue")
        assert await pipeline.commit_once() == 4
        await asyncio.wait_for(big, 5)
        assert await pipeline.commit_once() == 25
        assert pipeline.queued_samples == 0
        assert (await store.stats()).samples == 37
    finally:
        await store.close()


async def test_many_devices_queue_no_more_than_the_bound(tmp_path: Path) -> None:
    """200 devices emit a 125-sample batch each, all at once, while the pipeline commits:
    the queue never holds more than ``queue_samples``, and nothing is lost."""
    store = Store(tmp_path / "many.db")
    await store.open()
    try:
        pipeline = Pipeline(store, SystemClock(), queue_samples=2_000)
        most = 0
        real_put = pipeline.queue.put

        async def watched_put(items: list[Sample]) -> None:
            nonlocal most
            await real_put(items)
            most = max(most, pipeline.queued_samples)

        pipeline.queue.put = watched_put  # type: ignore[method-assign]
        runner = asyncio.create_task(pipeline.run())
        drivers = [asyncio.create_task(pipeline.put(batch(125, f"m{i:03d}")))
                   for i in range(200)]
        await asyncio.wait_for(asyncio.gather(*drivers), 60)
        await wait_until(lambda: pipeline.stats.samples == 25_000, 60,
                         what="all 25,000 samples committed")
        pipeline.close()
        await asyncio.wait_for(runner, 10)
        await let_tasks_run()
        assert most <= 2_000, f"{most} samples were queued at once"
        # Without the bound the 200 batches (under queue_batches=256) all queue at once.
        assert (await store.stats()).samples == 25_000
    finally:
        await store.close()


def test_the_site_config_sets_the_bound(tmp_path: Path) -> None:
    """``pipeline.queue_samples`` in the site file is the bound the App's pipeline uses."""
    from gateway.config.loader import load_config
    from gateway.pipeline import QUEUE_SAMPLES
    from gateway.runtime import App

    path = tmp_path / "site.yaml"
    path.write_text(f"gateway: {{id: q, state_dir: {tmp_path / 'state'}}}\n"
                    "pipeline: {queue_samples: 1234}\n")
    assert App(load_config(path), path).pipeline.queue_samples == 1234
    path.write_text(f"gateway: {{id: q, state_dir: {tmp_path / 'state'}}}\n")
    assert App(load_config(path), path).pipeline.queue_samples == QUEUE_SAMPLES
