"""Commands of the plugins component (MQTT ``cmd/<name>`` and ``fieldgate cmd``).

``plugins.list``, ``plugins.stats`` and ``kpis`` (plugins' custom KPIs; with the siteops
component running, its ``kpis`` command merges them with the built-in ones instead). The
operator side of work orders, inspections and reports moved to :mod:`gateway.siteops`.

They answer on every site. Until a plugin is loaded (:attr:`PluginsComponent.hook_runner` is
None) they answer from the component alone, without the plugin manager: no plugins, no
hooks, no KPIs.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict

from gateway.commands import Command, NoArgs

if TYPE_CHECKING:
    from gateway.components import ComponentContext
    from hooks.component import PluginsComponent, PluginsSection

OPERATOR = "operator"


class _Args(BaseModel):
    model_config = ConfigDict(extra="forbid")


class KpiArgs(_Args):
    period: Literal["today", "month", "year"] = "today"


def register(app: ComponentContext[PluginsSection], comp: PluginsComponent) -> None:
    async def plugins_list(_: NoArgs) -> dict[str, Any]:
        """Loaded plugins, the hooks each implements, and the ones that failed to load."""
        hooks: dict[str, list[str]] = {}
        runner = comp.hook_runner
        if runner is not None:
            from hooks.spec import ALL_HOOKS

            for hook in ALL_HOOKS:
                for impl in runner.implementations(hook):
                    hooks.setdefault(impl.plugin_name, []).append(hook)
        return {"loaded": [{"name": n, "source": src, "hooks": hooks.get(n, [])}
                           for n, src in comp.report.loaded.items()],
                "failed": comp.report.failed,
                "converters": {"names": sorted(comp.converters),
                               "wired": comp.converters_wired}}

    async def plugins_stats(_: NoArgs) -> dict[str, Any]:
        """Per plugin: its delivery (events delivered, backlog), what is wrong with it now
        (`hung` lists those with a problem), its threads; calls, errors, timeouts and time
        per hook; energy queue figures per plugin; event-loop stalls."""
        plugins: dict[str, Any] = {}
        runner = comp.hook_runner
        threads = runner.threads if runner is not None else {}
        names = sorted(set(comp.report.loaded) | set(comp.feeds) | set(threads))
        for name in names:
            feed = comp.feeds.get(name)
            row: dict[str, Any] = {"problems": runner.health(name) if runner is not None else [],
                                   "loop_stalls": comp.watch.by_plugin.get(name, 0)}
            if feed is not None:
                row["events_delivered"] = feed.delivered
                row["events_behind"] = await comp.backlog(feed)
            pool = threads.get(name)
            if pool is not None:
                row["threads"] = pool.snapshot()
            plugins[name] = row
        energy = comp.energy_fan
        return {"plugins": plugins,
                "hung": [n for n, row in plugins.items() if row["problems"]],
                "hooks": runner.snapshot() if runner is not None else {},
                "energy": energy.stats() if energy is not None and energy.feeds else None,
                "events_delivered": sum(f.delivered for f in comp.feeds.values()),
                "loop": comp.loop_stats()}

    async def custom_kpis(period: str) -> dict[str, Any]:
        runner = comp.hook_runner
        if runner is None:  # no plugin, no custom KPI
            return {"period": period, "kpis": {}, "conflicts": {}, "failed": []}
        from hooks.db import HooksDB
        from hooks.manager import PerPlugin, merge_kpis

        results = await runner.call_each(
            "calculate_custom_kpis",
            {"period": period, "db": PerPlugin(lambda p: HooksDB(app, p))},
            context=f" (period {period})")
        values, conflicts, bad = merge_kpis(results)
        return {"period": period, "kpis": values, "conflicts": conflicts,
                "failed": [r.plugin for r in results if not r.ok] + bad}

    async def kpis(args: KpiArgs) -> dict[str, Any]:
        """Custom KPIs of every plugin for a period (today, month, year), merged."""
        return await custom_kpis(args.period)

    # With the siteops component running, its `kpis` merges these with the site's own.
    siteops = app.get_component("siteops")
    if siteops is not None:
        siteops.kpi_providers.append(custom_kpis)  # type: ignore[attr-defined]

    for cmd in (
        Command("plugins.list", NoArgs, plugins_list, plugins_list.__doc__ or "", read_only=True),
        Command("plugins.stats", NoArgs, plugins_stats, plugins_stats.__doc__ or "",
                read_only=True),
    ):
        app.commands.register(cmd)
    if siteops is None:
        app.commands.register(Command("kpis", KpiArgs, kpis, kpis.__doc__ or "",
                                      timeout=comp.section.timeout + 5, read_only=True))

