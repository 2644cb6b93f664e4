"""The ``rules`` component: builds the engine, hooks it into the pipeline, runs its tick.

It depends on nothing; the plugins (``db.open_alarms``) and the uplink start after it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable
from typing import Any

from gateway.components import (
    Component,
    ComponentContext,
    ComponentSpec,
    TaskFactory,
    register_component,
)
from gateway.rules.alarms import MIGRATIONS
from gateway.rules.commands import commands
from gateway.rules.config import SEVERITY_RANK, RulesSection
from gateway.rules.engine import RuleEngine
from gateway.rules.quotas import QuotaState

log = logging.getLogger(__name__)

LIMIT_COMMAND = "ocpp.limit"


class RulesComponent(Component):
    name = "rules"

    def __init__(self, ctx: ComponentContext[RulesSection]) -> None:
        self.ctx = ctx
        self.section = ctx.config
        self.engine: RuleEngine | None = None
        self._remove_processor: Callable[[], None] | None = None
        self._actions: asyncio.Queue[tuple[QuotaState, float]] = asyncio.Queue(1000)
        self._warned_no_limit = False

    async def start(self) -> None:
        ctx = self.ctx
        # The runtime loaded the status service before any component started.
        engine = RuleEngine(self.section, ctx.site.devices, ctx.status, ctx.clock,
                            ctx.site.gateway.timezone)
        await engine.load(ctx.store)
        await self._resolve_orphans(engine)
        self.engine = engine
        self._remove_processor = ctx.add_processor(engine)
        for command in commands(self):
            ctx.commands.register(command)
        log.info("rules: %d alarm rules, %d quotas, %d open alarms",
                 len(self.section.alarms), len(engine.quotas.states), len(engine.book.open))

    async def _resolve_orphans(self, engine: RuleEngine) -> None:
        """Alarms of rules that are no longer configured would stay open forever."""
        known = {r.name for r in self.section.alarms if r.enabled} | set(engine.converters)
        orphans = [a for a in engine.book.open.values() if a.rule not in known]
        if not orphans:
            return
        now = self.ctx.clock.now_ms()
        for alarm in orphans:
            engine.book.resolve(alarm, now, "rule removed from the config")
        async with self.ctx.store.transaction() as tx:
            await engine.flush(tx)
        log.warning("rules: resolved %d open alarm(s) of rules no longer in the config",
                    len(orphans))

    def open_alarms(self, device: str | None = None, rule: str | None = None,
                    min_severity: str | None = None) -> list[dict[str, Any]]:
        """Open alarms as ``alarm.list`` returns them (oldest first): the public read API for
        other components (the plugins' ``db.open_alarms``). [] before the engine started."""
        if min_severity is not None and min_severity not in SEVERITY_RANK:
            raise ValueError(f"unknown severity {min_severity!r}; use one of "
                             f"{', '.join(SEVERITY_RANK)}")
        if self.engine is None:
            return []
        rank = SEVERITY_RANK[min_severity] if min_severity else 0
        out = [a.as_dict() for a in self.engine.book.open.values()
               if (device is None or a.device == device)
               and (rule is None or a.rule == rule)
               and SEVERITY_RANK[a.severity] >= rank]
        return sorted(out, key=lambda a: (a["started_ts"], a["alarm_id"]))

    def tasks(self) -> Iterable[tuple[str, TaskFactory]]:
        yield "rules-tick", self._tick
        yield "rules-actions", self._run_actions

    async def _tick(self) -> None:
        engine = self.engine
        assert engine is not None
        clock = self.ctx.clock
        while True:
            await clock.sleep(self.section.tick_interval)
            await self.tick_once()

    async def tick_once(self) -> None:
        """Evaluate the time-driven rules now and commit what changed."""
        engine = self.engine
        assert engine is not None
        engine.tick(self.ctx.clock.now_ms())
        if engine.pending:
            async with self.ctx.store.transaction() as tx:
                await engine.flush(tx)
        actions, engine.quotas.actions = engine.quotas.actions, []
        for action in actions:
            try:
                self._actions.put_nowait(action)
            except asyncio.QueueFull:
                log.warning("rules: quota action for %s dropped, the action queue is full "
                            "(is %s hanging?)", action[0].name, LIMIT_COMMAND)

    async def _run_actions(self) -> None:
        while True:
            quota, power_w = await self._actions.get()
            await self.limit_charging(quota, power_w)

    async def limit_charging(self, quota: QuotaState, power_w: float) -> None:
        commands_ = self.ctx.commands
        if commands_.get(LIMIT_COMMAND) is None:
            if not self._warned_no_limit:
                self._warned_no_limit = True
                log.warning("quota %s wants to limit charging but no %s command is registered "
                            "(no OCPP driver configured); the quota_exceeded event is sent, "
                            "no limit applied", quota.name, LIMIT_COMMAND)
            return
        action = quota.cfg.action
        assert action is not None and action.limit_charging is not None
        targets = action.limit_charging.chargers
        calls = (
            [(c, {"scope": "charger", "charger": c, "limit_w": power_w}) for c in targets]
            if targets else [("the site", {"scope": "site", "limit_w": power_w})]
        )
        for target, args in calls:
            reply = await commands_.execute(LIMIT_COMMAND, args)
            if not reply.get("ok"):
                log.warning("quota %s: %s for %s failed: %s; check the charger",
                            quota.name, LIMIT_COMMAND, target, reply.get("error"))
            else:
                log.info("quota %s: charging of %s limited to %g W", quota.name, target,
                         power_w)

    async def drain(self) -> None:
        if self.engine is not None:
            await self.tick_once()
            async with self.ctx.store.transaction() as tx:
                await self.engine.flush(tx, force_checkpoint=True)

    async def stop(self) -> None:
        if self._remove_processor is not None:
            self._remove_processor()
            self._remove_processor = None


def _factory(ctx: ComponentContext[RulesSection]) -> RulesComponent | None:
    if not ctx.config.enabled:
        return None
    return RulesComponent(ctx)


register_component(ComponentSpec("rules", _factory, section=RulesSection,
                                 migrations=MIGRATIONS))
