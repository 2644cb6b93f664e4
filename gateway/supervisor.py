"""Supervised tasks: a task that crashes is logged and restarted after a capped, jittered
backoff; the others go on. Cancellation (shutdown) is never treated as a crash."""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from gateway.clock import Clock, SystemClock

log = logging.getLogger(__name__)

TaskFactory = Callable[[], Awaitable[None]]


def backoff_delay(attempt: int, initial: float, cap: float, factor: float = 2.0) -> float:
    """The delay before retry number ``attempt`` (1-based): exponential, capped, with jitter
    over the upper half so that many clients retrying at once spread out."""
    ceiling = min(cap, initial * factor ** (attempt - 1))
    return random.uniform(ceiling / 2, ceiling)


@dataclass
class Backoff:
    """Exponential backoff with full jitter, capped; ``reset()`` after a healthy run."""

    initial: float = 0.5
    cap: float = 30.0
    factor: float = 2.0
    _attempt: int = field(default=0, init=False)

    def next_delay(self) -> float:
        self._attempt += 1
        return backoff_delay(self._attempt, self.initial, self.cap, self.factor)

    def reset(self) -> None:
        self._attempt = 0


@dataclass
class TaskStats:
    restarts: int = 0
    last_error: str | None = None


class Supervisor:
    """Runs named task factories inside one TaskGroup, restarting them on failure."""

    #: A run that lasted this long counts as healthy and resets the backoff.
    healthy_after = 60.0

    def __init__(self, group: asyncio.TaskGroup, backoff_cap: float = 30.0,
                 clock: Clock | None = None) -> None:
        self._group = group
        self._backoff_cap = backoff_cap
        #: Times runs and waits out the restart backoff (a FakeClock in tests).
        self.clock: Clock = clock or SystemClock()
        self.tasks: dict[str, asyncio.Task[None]] = {}
        self.stats: dict[str, TaskStats] = {}

    def start(self, name: str, factory: TaskFactory) -> asyncio.Task[None]:
        if name in self.tasks and not self.tasks[name].done():
            raise ValueError(f"a task named {name!r} is already running")
        self.stats.setdefault(name, TaskStats())
        task = self._group.create_task(self._run(name, factory), name=name)
        self.tasks[name] = task
        return task

    async def _run(self, name: str, factory: TaskFactory) -> None:
        backoff = Backoff(cap=self._backoff_cap)
        clock = self.clock
        while True:
            started = clock.monotonic()
            try:
                await factory()
            except asyncio.CancelledError:
                raise
            except Exception as err:
                stats = self.stats.setdefault(name, TaskStats())
                stats.restarts += 1
                stats.last_error = f"{type(err).__name__}: {err}"
                if clock.monotonic() - started > self.healthy_after:
                    backoff.reset()
                delay = backoff.next_delay()
                log.error(
                    "task %s crashed (%s); restarting in %.1f s (restart #%d)",
                    name, stats.last_error, delay, stats.restarts, exc_info=err,
                )
                await clock.sleep(delay)
                continue
            log.info("task %s finished", name)
            return

    async def cancel(self, names: list[str] | None = None, timeout: float = 5.0) -> None:
        """Cancel the named tasks (all by default) and wait for them, at most ``timeout``."""
        targets = [t for n, t in self.tasks.items() if names is None or n in names]
        for task in targets:
            task.cancel()
        if targets:
            _, pending = await asyncio.wait(targets, timeout=timeout)
            for task in pending:
                log.warning("task %s did not stop within %.1f s", task.get_name(), timeout)
