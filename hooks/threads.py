"""Worker threads for plain-``def`` hook implementations, one small pool per plugin.

A thread cannot be cancelled. A plain function that overruns its timeout keeps its thread
until it returns by itself, maybe never. So each plugin has its own pool (one plugin's hung
functions cannot starve another plugin's), the threads still running past their timeout are
counted as *held*, and while all of a plugin's threads are held, new plain-def calls to it
are refused at once instead of queueing behind them. A call that timed out while still
queued never ran: it is reported as *not started*, not as a timeout.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

log = logging.getLogger(__name__)

_QUEUED, _RUNNING, _DONE, _SKIPPED, _ABANDONED = range(5)


class CallNotStarted(Exception):
    """The call timed out before a thread picked it up: the function never ran."""


class ThreadsHeld(Exception):
    """Every thread of the plugin is held by a call that overran its timeout."""


class CallTimedOut(Exception):
    """The function started but did not return in time; its thread is now held."""


class _Call:
    __slots__ = ("pool", "state")

    def __init__(self, pool: PluginThreads) -> None:
        self.state = _QUEUED
        self.pool = pool

    def run(self, fn: Callable[[], Any]) -> Any:
        pool = self.pool
        with pool.lock:
            if self.state != _QUEUED:
                return None  # abandoned before a thread picked it up
            self.state = _RUNNING
        try:
            return fn()
        finally:
            with pool.lock:
                if self.state == _ABANDONED:
                    pool.held -= 1
                    pool.released += 1
                    if pool.held < pool.size:
                        pool.refusal_logged = False
                self.state = _DONE

    def abandon(self) -> bool:
        """Give up on the call; True when it is running (its thread is now held)."""
        with self.pool.lock:
            if self.state == _RUNNING:
                self.state = _ABANDONED
                self.pool.held += 1
                return True
            if self.state == _QUEUED:
                self.state = _SKIPPED
            return False


class PluginThreads:
    """A plugin's own worker threads and the count of those held by overrunning calls."""

    def __init__(self, plugin: str, size: int) -> None:
        self.plugin = plugin
        self.size = size
        self.lock = threading.Lock()
        self.held = 0
        self.released = 0  # held threads whose call returned after all
        self.refused = 0
        self.refusal_logged = False
        self._executor = ThreadPoolExecutor(size, thread_name_prefix=f"plugin[{plugin}]")

    def all_held(self) -> bool:
        with self.lock:
            return self.held >= self.size

    async def call(self, fn: Callable[[], Any], timeout: float, what: str) -> Any:
        """Run ``fn`` in one of the plugin's threads under ``timeout``.

        Raises :class:`ThreadsHeld` (refused, nothing ran), :class:`CallNotStarted` (timed
        out while queued, nothing ran) or :class:`CallTimedOut` (ran, did not return; the
        thread is held until it does)."""
        if self.all_held():
            self.refused += 1
            if not self.refusal_logged:
                self.refusal_logged = True
                log.error("plugin %s: all %d of its threads are held by plain-def hooks that "
                          "overran their timeout; new plain-def calls to it (first: %s) are "
                          "refused until one returns. Fix the blocking call in the plugin "
                          "(or make the hook async) and restart", self.plugin, self.size, what)
            raise ThreadsHeld(f"all {self.size} threads held")
        call = _Call(self)
        fut = asyncio.get_running_loop().run_in_executor(self._executor, call.run, fn)
        try:
            async with asyncio.timeout(timeout):
                return await fut
        except TimeoutError:
            if call.abandon():
                raise CallTimedOut(f"timeout after {timeout:g} s") from None
            raise CallNotStarted(f"not started within {timeout:g} s: all {self.size} "
                                 "threads busy") from None

    def snapshot(self) -> dict[str, int]:
        with self.lock:
            return {"size": self.size, "held": self.held, "released": self.released,
                    "refused": self.refused}

    def close(self) -> None:
        # Do not wait: a hung plain-function plugin must not hold up shutdown.
        self._executor.shutdown(wait=False, cancel_futures=True)
