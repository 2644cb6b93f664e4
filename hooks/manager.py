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
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from typing import Any

import pluggy

from gateway.errors import StartupError
from hooks.base import CustomerHooks, overridden_hooks, unknown_hook_methods
from hooks.spec import PROJECT, BusinessHooks, RegistrationHooks

log = logging.getLogger(__name__)


class PluginLoadError(StartupError):
    """A plugin could not be loaded or validated. ``plugin`` names it. A StartupError: with
    ``plugins.on_error: refuse`` the CLI prints it (no traceback) and exits 78."""

    def __init__(self, plugin: str, message: str) -> None:
        super().__init__(f"plugin {plugin!r}: {message}",
                         hint="fix or remove the plugin, or set plugins.on_error: skip to "
                         "start without it")
        self.plugin = plugin
        self.message = message


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
    total_ms: float = 0.0
    max_ms: float = 0.0
    last_error: str | None = None


@dataclass(frozen=True)
class CallResult:
    plugin: str
    ok: bool
    value: Any = None


class HookRunner:
    """Calls implementations in isolation and keeps per-plugin, per-hook statistics."""

    def __init__(self, pm: FieldgatePluginManager, timeout: float, threads: int = 4) -> None:
        self.pm = pm
        self.timeout = timeout
        self.stats: dict[tuple[str, str], HookStats] = {}
        self._executor = ThreadPoolExecutor(threads, thread_name_prefix="plugin")

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
        st = self.stat(impl.plugin_name, hook)
        args = [_resolve(kwargs[a], impl.plugin_name) for a in impl.argnames]
        limit = self.timeout if timeout is None else timeout
        t0 = time.perf_counter()
        st.calls += 1
        try:
            async with asyncio.timeout(limit):
                value = await self.invoke(impl.function, args)
        except TimeoutError:
            st.timeouts += 1
            st.last_error = f"timeout after {limit:g} s"
            log.warning("plugin %s: %s did not finish within %.1f s%s and was abandoned; "
                        "make it faster or raise plugins.timeout",
                        impl.plugin_name, hook, limit, context)
            return CallResult(impl.plugin_name, False)
        except Exception as err:
            st.errors += 1
            st.last_error = f"{type(err).__name__}: {err}"
            log.error("plugin %s: %s raised %s%s; the other plugins ran, fix this plugin",
                      impl.plugin_name, hook, st.last_error, context, exc_info=err)
            return CallResult(impl.plugin_name, False)
        finally:
            elapsed = (time.perf_counter() - t0) * 1000
            st.total_ms += elapsed
            st.max_ms = max(st.max_ms, elapsed)
        return CallResult(impl.plugin_name, True, value)

    async def invoke(self, fn: Callable[..., Any], args: Sequence[Any]) -> Any:
        """``await_me_maybe`` for one implementation: coroutine functions run on the loop,
        plain functions in a worker thread (so they cannot stall it); an awaitable result
        is awaited on the loop."""
        if inspect.iscoroutinefunction(fn):
            return await fn(*args)
        loop = asyncio.get_running_loop()
        value = await loop.run_in_executor(self._executor, functools.partial(fn, *args))
        if inspect.isawaitable(value):
            value = await value
        return value

    def run_in_thread(self, fn: Callable[[], Any]) -> asyncio.Future[Any]:
        return asyncio.get_running_loop().run_in_executor(self._executor, fn)

    def snapshot(self) -> dict[str, dict[str, dict[str, Any]]]:
        out: dict[str, dict[str, dict[str, Any]]] = {}
        for (plugin, hook), st in sorted(self.stats.items()):
            row = asdict(st)
            row["total_ms"] = round(st.total_ms, 3)
            row["max_ms"] = round(st.max_ms, 3)
            out.setdefault(plugin, {})[hook] = row
        return out

    def close(self) -> None:
        # Do not wait: a hung plain-function plugin must not hold up shutdown.
        self._executor.shutdown(wait=False, cancel_futures=True)


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
