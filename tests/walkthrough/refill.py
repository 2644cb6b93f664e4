"""The ``refill`` component: when a tank reads below ``refill.below_pct``, refill it (a write
through its driver), remember the request in its own table and emit ``refill_requested``."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from typing import Any

from pydantic import Field

from gateway.commands import Command, NoArgs
from gateway.components import (
    Component,
    ComponentContext,
    ComponentSpec,
    TaskFactory,
    register_component,
)
from gateway.config.base import StrictModel
from gateway.model import Batch, DeviceStatus, Event, Sample

MIGRATIONS = [
    "CREATE TABLE refill_requests (device TEXT NOT NULL, level REAL NOT NULL, ts_ms INTEGER);",
]


class RefillSection(StrictModel):
    enabled: bool = Field(False, description="Refill tanks that run low.")
    below_pct: float = Field(20.0, gt=0, lt=100, description="Refill below this level.")


class Refill(Component):
    name = "refill"

    def __init__(self, ctx: ComponentContext[RefillSection]) -> None:
        self.ctx = ctx
        self.low: asyncio.Queue[Sample] = asyncio.Queue()
        self.refilled_at: dict[str, int] = {}
        self.requested = 0
        self.remove_observer = lambda: None

    async def start(self) -> None:
        self.remove_observer = self.ctx.add_observer(self.observe)
        self.ctx.commands.register(Command("refill.list", NoArgs, self.list_requests))

    def observe(self, batch: Batch, seq_first: int) -> None:
        for sample in batch:  # an observer must not block: hand the work to our task
            if sample.point == "level_pct" and sample.value < self.ctx.config.below_pct:
                self.low.put_nowait(sample)

    def tasks(self) -> Iterable[tuple[str, TaskFactory]]:
        yield "refill", self.run  # supervised: restarted with backoff if it raises

    async def run(self) -> None:
        while True:
            sample = await self.low.get()
            if sample.ts_ms <= self.refilled_at.get(sample.device, -1):
                continue  # read before the last refill
            if self.ctx.status.current(sample.device) is DeviceStatus.MAINTENANCE:
                continue  # nobody refills a tank under maintenance
            self.refilled_at[sample.device] = self.ctx.clock.now_ms()
            await self.ctx.write(sample.device, "level_pct", 100.0)
            async with self.ctx.store.transaction() as tx:
                await tx.execute("INSERT INTO refill_requests VALUES (?, ?, ?)",
                                 (sample.device, sample.value, sample.ts_ms))
            await self.ctx.emit_event(Event("refill_requested", {"level": sample.value},
                                            device=sample.device))
            self.requested += 1

    async def list_requests(self, _: NoArgs) -> list[dict[str, Any]]:
        """Refills requested so far."""
        rows = await self.ctx.store.query("SELECT device, level FROM refill_requests")
        return [{"device": device, "level": level} for device, level in rows]

    async def stop(self) -> None:
        self.remove_observer()


def factory(ctx: ComponentContext[RefillSection]) -> Refill | None:
    return Refill(ctx) if ctx.config.enabled else None


register_component(ComponentSpec("refill", factory, section=RefillSection,
                                 after=("rules",), migrations=MIGRATIONS))
