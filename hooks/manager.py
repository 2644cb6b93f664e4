"""The plugin manager: load plugins three ways, validate them, call each one in isolation.

pluggy calls hook implementations synchronously and in one go; one raising stops the rest,
and coroutines are returned unawaited. So we use pluggy for what it is good at (discovery,
registration, validating argument names against the specs) and call every implementation
ourselves (``get_hookimpls()``), each under its own timeout, concurrently with the others,
like Datasette's ``await_me_maybe`` plus a timeout. A failure is logged with the plugin's
name and counted; it never reaches the caller.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import pluggy

from hooks.base import CustomerHooks, overridden_hooks, unknown_hook_methods
from hooks.errors import PluginLoadError as PluginLoadError  # re-exported
from hooks.errors import PluginLoadErrors as PluginLoadErrors  # re-exported
from hooks.spec import PROJECT, BusinessHooks, RegistrationHooks
from hooks.threads import CallNotStarted, CallTimedOut, PluginThreads, ThreadsHeld

log = logging.getLogger(__name__)


class FieldgatePluginManager(pluggy.PluginManager):
    """pluggy's manager with the fieldgate specs, which also accepts ``CustomerHooks``
    instances: only the methods their class overrides count as implementations."""

    def __init__(self) -> None:
        super().__init__(PROJECT)
        self.add_hookspecs(BusinessHooks)
        self.add_hookspecs(RegistrationHooks)

    def parse_hookimpl_opts(self, plugin: Any, name: str) -> pluggy.HookimplOpts | None:
        if isinstance(plugin, CustomerHooks):
            if name in overridden_hooks(plugin):
                return pluggy.HookimplOpts(wrapper=False, hookwrapper=False, optionalhook=False,
                                           tryfirst=False, trylast=False, specname=None)
            return None
        return super().parse_hookimpl_opts(plugin, name)

    def register_checked(self, plugin: Any, name: str) -> None:
        """Register ``plugin`` or raise :class:`PluginLoadError` naming it: wrong argument
        names (pluggy), hook-like methods that match no hook (typos), an unknown hook."""
        if isinstance(plugin, type):
            plugin = plugin()
        if isinstance(plugin, CustomerHooks):
            typos = unknown_hook_methods(plugin)
            if typos:
                raise PluginLoadError(name, f"{', '.join(typos)} is not a fieldgate hook "
                                      "(see docs/plugins.md for the hook names)")
        try:
            self.register(plugin, name=name)
        except pluggy.PluginValidationError as err:
            raise PluginLoadError(name, f"wrong hook signature: {err}") from err
        except ValueError as err:
            raise PluginLoadError(name, str(err)) from err
        unknown = [c.name for c in self.get_hookcallers(plugin) or [] if not c.has_spec()]
        if unknown:
            self.unregister(plugin)
            raise PluginLoadError(name, f"implements unknown hook(s) {', '.join(unknown)} "
                                  "(see docs/plugins.md for the hook names)")


class PerPlugin:
    """An argument resolved per implementation (``db`` is bound to the plugin's name)."""

    def __init__(self, bind: Callable[[str], Any]) -> None:
        self.bind = bind


@dataclass
class HookStats:
    calls: int = 0
    errors: int = 0
    timeouts: int = 0
    not_started: int = 0  # timed out while waiting for a thread: never ran
    refused: int = 0  # all the plugin's threads held: not called
    total_ms: float = 0.0
    max_ms: float = 0.0
    last_error: str | None = None


@dataclass(frozen=True)
class CallResult:
    plugin: str
    ok: bool
    value: Any = None


@dataclass(frozen=True, eq=False)
class ActiveCall:
    """A hook call in progress: what ``plugins.stats`` and the loop monitor report."""

    plugin: str
    hook: str
    context: str
    since: float  # time.monotonic()
    task: asyncio.Task[Any] | None


class HookRunner:
    """Calls implementations in isolation and keeps per-plugin, per-hook statistics."""

    def __init__(self, pm: FieldgatePluginManager, timeout: float, threads: int = 4) -> None:
        self.pm = pm
        self.timeout = timeout
        self.threads_per_plugin = threads
        self.stats: dict[tuple[str, str], HookStats] = {}
        self.threads: dict[str, PluginThreads] = {}
        self.active: set[ActiveCall] = set()
        #: plugin -> (hook, outcome) of its last finished call: ok, error, timeout, ...
        self.last_outcome: dict[str, tuple[str, str]] = {}

    def implementations(self, hook: str) -> list[pluggy.HookImpl]:
        """In pluggy's call order (last registered first, tryfirst/trylast honoured)."""
        caller = getattr(self.pm.hook, hook)
        return list(reversed(caller.get_hookimpls()))

    def stat(self, plugin: str, hook: str) -> HookStats:
        key = (plugin, hook)
        st = self.stats.get(key)
        if st is None:
            st = self.stats[key] = HookStats()
        return st

    def threads_of(self, plugin: str) -> PluginThreads:
        pool = self.threads.get(plugin)
        if pool is None:
            pool = self.threads[plugin] = PluginThreads(plugin, self.threads_per_plugin)
        return pool

    def running(self, plugin: str, hook: str, context: str = "") -> ActiveCall:
        """Mark a call as in progress (remove it from :attr:`active` when it ends)."""
        try:
            task = asyncio.current_task()
        except RuntimeError:
            task = None
        call = ActiveCall(plugin, hook, context, time.monotonic(), task)
        self.active.add(call)
        return call

    def call_of(self, task: asyncio.Task[Any] | None) -> ActiveCall | None:
        """The hook call running in ``task`` (the loop monitor asks, from its thread)."""
        for call in list(self.active):
            if call.task is task:
                return call
        return None

    async def call_each(self, hook: str, kwargs: Mapping[str, Any], *,
                        context: str = "", timeout: float | None = None) -> list[CallResult]:
        """Call every implementation of ``hook`` on its own, concurrently; never raises."""
        impls = self.implementations(hook)
        if not impls:
            return []
        return list(await asyncio.gather(
            *(self.call_one(impl, hook, kwargs, context=context, timeout=timeout)
              for impl in impls)))

    async def call_one(self, impl: pluggy.HookImpl, hook: str, kwargs: Mapping[str, Any], *,
                       context: str = "", timeout: float | None = None) -> CallResult:
        name = impl.plugin_name
        st = self.stat(name, hook)
        args = [_resolve(kwargs[a], name) for a in impl.argnames]
        limit = self.timeout if timeout is None else timeout
        t0 = time.perf_counter()
        st.calls += 1
        active = self.running(name, hook, context)
        try:
            value = await self.invoke(impl.function, args, limit, name, hook)
        except (TimeoutError, CallTimedOut):
            st.timeouts += 1
            st.last_error = f"timeout after {limit:g} s"
            self.last_outcome[name] = (hook, "timeout")
            log.warning("plugin %s: %s did not finish within %.1f s%s and was abandoned; "
                        "make it faster or raise plugins.timeout", name, hook, limit, context)
            return CallResult(name, False)
        except CallNotStarted as err:
            st.not_started += 1
            st.last_error = str(err)
            self.last_outcome[name] = (hook, "not started")
            log.warning("plugin %s: %s was not called%s: %s (its earlier plain-def calls "
                        "still run); raise plugins.threads or make the hook async",
                        name, hook, context, err)
            return CallResult(name, False)
        except ThreadsHeld:
            st.refused += 1  # logged once by the pool
            self.last_outcome[name] = (hook, "refused")
            return CallResult(name, False)
        except Exception as err:
            st.errors += 1
            st.last_error = f"{type(err).__name__}: {err}"
            self.last_outcome[name] = (hook, "error")
            log.error("plugin %s: %s raised %s%s; the other plugins ran, fix this plugin",
                      name, hook, st.last_error, context, exc_info=err)
            return CallResult(name, False)
        finally:
            self.active.discard(active)
            elapsed = (time.perf_counter() - t0) * 1000
            st.total_ms += elapsed
            st.max_ms = max(st.max_ms, elapsed)
        self.last_outcome[name] = (hook, "ok")
        return CallResult(name, True, value)

    async def invoke(self, fn: Callable[..., Any], args: Sequence[Any], limit: float,
                     plugin: str, hook: str) -> Any:
        """``await_me_maybe`` for one implementation under ``limit`` seconds: coroutine
        functions run on the loop, plain functions in one of the plugin's own threads (so
        they cannot stall the loop); an awaitable result is awaited on the loop."""
        if inspect.iscoroutinefunction(fn):
            async with asyncio.timeout(limit):
                return await fn(*args)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + limit
        value = await self.threads_of(plugin).call(functools.partial(fn, *args), limit, hook)
        if inspect.isawaitable(value):
            async with asyncio.timeout_at(deadline):
                value = await value
        return value

    def health(self, plugin: str) -> list[str]:
        """What is wrong with ``plugin`` now (empty: nothing): held threads, a call running
        for longer than half the timeout, a last call that timed out or was refused."""
        problems = []
        pool = self.threads.get(plugin)
        if pool is not None and pool.held:
            problems.append(f"{pool.held} threads held by plugin {plugin} (of {pool.size}): "
                            "plain-def calls that overran their timeout and still run")
        now = time.monotonic()
        for call in list(self.active):
            if call.plugin == plugin and now - call.since > self.timeout / 2:
                problems.append(f"{call.hook} running for {now - call.since:.1f} s"
                                f"{call.context}")
        hook, outcome = self.last_outcome.get(plugin, ("", "ok"))
        if outcome in ("timeout", "not started", "refused"):
            problems.append(f"last call of {hook}: {outcome}")
        return problems

    def snapshot(self) -> dict[str, dict[str, dict[str, Any]]]:
        out: dict[str, dict[str, dict[str, Any]]] = {}
        for (plugin, hook), st in sorted(self.stats.items()):
            row = asdict(st)
            row["total_ms"] = round(st.total_ms, 3)
            row["max_ms"] = round(st.max_ms, 3)
            out.setdefault(plugin, {})[hook] = row
        return out

    def close(self) -> None:
        for pool in self.threads.values():
            pool.close()


def _resolve(value: Any, plugin: str) -> Any:
    return value.bind(plugin) if isinstance(value, PerPlugin) else value


def merge_kpis(results: Sequence[CallResult]) -> tuple[dict[str, Any], dict[str, list[str]],
                                                       list[str]]:
    """Merge ``calculate_custom_kpis`` results in call order: (kpis, conflicts, bad)."""
    kpis: dict[str, Any] = {}
    owner: dict[str, str] = {}
    conflicts: dict[str, list[str]] = {}
    bad: list[str] = []
    for res in results:
        if not res.ok:
            continue
        if res.value is None:
            continue
        if not isinstance(res.value, Mapping):
            bad.append(res.plugin)
            log.error("plugin %s: calculate_custom_kpis returned %s, not a dict; ignored",
                      res.plugin, type(res.value).__name__)
            continue
        for key, value in res.value.items():
            if key in owner:
                conflicts.setdefault(key, [owner[key]]).append(res.plugin)
                continue
            owner[key] = res.plugin
            kpis[key] = value
    for key, plugins in conflicts.items():
        log.warning("KPI %r is computed by several plugins (%s); the value of %s is used. "
                    "Rename the KPI in one of them", key, ", ".join(plugins), plugins[0])
    return kpis, conflicts, bad
