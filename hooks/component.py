"""The ``plugins`` component: loads the plugins at start and runs the hook dispatchers.

Config (top-level key ``plugins``)::

    plugins:
      customer: acme            # /etc/fieldgate/customers/acme/hooks/ (see hooks.loader)
      on_error: refuse          # a broken plugin stops the start; skip: start without it
      timeout: 10               # seconds per hook call
      acme:                     # settings of one plugin, by its name
        may_write: ["pv*.power_limit_w"]
        energy_increments: true

A site without plugins (nothing in :func:`hooks.loader.plugin_sources`: no customer folder,
no ``modules``, no installed entry point) runs the component without the plugin manager:
pluggy, the dispatchers and the plugin records are not imported, the commands answer with
no plugins, and the loop watch and the ``hooks`` outbox cursor run as on any site. The
manager is created when the first plugin comes: at start, on :meth:`PluginsComponent.add_plugin`,
or with the config of a reload (a new component).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import ConfigDict, Field, ValidationError

from gateway.components import (
    Component,
    ComponentContext,
    ComponentSpec,
    TaskFactory,
    register_component,
)
from gateway.config.base import PositiveSeconds, StrictModel
from gateway.config.site import register_preparer
from hooks.errors import PluginLoadError
from hooks.loader import LoadReport, Source, load_sources, plugin_sources
from hooks.loopwatch import LoopWatch
from hooks.recent import MIGRATIONS, RecentEvents

if TYPE_CHECKING:  # the plugin manager and the dispatchers: imported with the first plugin
    from hooks.db import HooksDB
    from hooks.dispatcher import PluginFeed
    from hooks.energy import EnergyFan
    from hooks.manager import FieldgatePluginManager, HookRunner

log = logging.getLogger(__name__)


class PluginSettings(StrictModel):
    """``plugins.<name>``: the settings of one plugin (its registration name)."""

    may_write: list[str] = Field(
        [], description="Device points this plugin may write with db.write, as "
        "`device.point` patterns (`*` and `?` match; `pv*.power_limit_w`). Any other write "
        "is refused.")
    energy_increments: bool = Field(
        False, description="on_energy_data_received gets, for energy points, the increment "
        "since the previous counter reading of the same device and point instead of the "
        "reading.")
    energy_points: list[str] = Field(
        ["energy*"], description="Point name patterns that are energy counters (for "
        "energy_increments).")


class PluginsSection(StrictModel):
    """Besides the keys below, any key is a plugin's name with its :class:`PluginSettings`."""

    model_config = ConfigDict(extra="allow", frozen=True, populate_by_name=True)
    __pydantic_extra__: dict[str, PluginSettings] = Field(init=False)

    customer: str | None = Field(
        None, pattern=r"^[A-Za-z_][A-Za-z0-9_]*$",
        description="Customer plugin folder to load: "
        "<customer_dir>/<customer>/hooks/__init__.py or <customer_dir>/<customer>/__init__.py, "
        "which exports `hooks`.")
    customer_dir: Path | None = Field(
        None, description="Where customer folders live (default: /etc/fieldgate/customers, "
        "then <state_dir>/customers, then the examples shipped with fieldgate).")
    modules: list[str] = Field([], description="Importable plugin modules to load.")
    entry_points: bool = Field(
        True, description="Load installed plugins (entry point group fieldgate.plugins).")
    disable: list[str] = Field([], description="Plugin names not to load.")
    on_error: Literal["refuse", "skip"] = Field(
        "refuse", description="A plugin that fails to load: refuse to start, or skip it.")
    timeout: PositiveSeconds = Field(10.0, description="Seconds allowed per hook call.")
    energy_queue_samples: Annotated[int, Field(ge=1, le=10_000_000)] = Field(
        200_000, description="Committed samples waiting for on_energy_data_received; "
        "beyond this, batches are dropped (counted) rather than slowing ingest.")
    energy_batch_timeout: PositiveSeconds = Field(
        5.0, description="Seconds a plugin may take for one batch of samples.")
    threads: Annotated[int, Field(ge=1, le=64)] = Field(
        4, description="Worker threads per plugin for hooks written as plain (non-async) "
        "functions.")
    loop_stall_warn: PositiveSeconds = Field(
        0.25, description="Log what was running when the event loop did not run for this "
        "long (a blocking call in an async hook or elsewhere).")

    def settings(self, plugin: str) -> PluginSettings:
        extra = self.model_extra or {}
        found = extra.get(plugin)
        return found if isinstance(found, PluginSettings) else _DEFAULT_SETTINGS


_DEFAULT_SETTINGS = PluginSettings()


class PluginsComponent(Component):
    name = "plugins"

    def __init__(self, ctx: ComponentContext[PluginsSection]) -> None:
        self.ctx = ctx
        self.section = ctx.config
        self.report = LoadReport()
        self.recent = RecentEvents(ctx)
        self.feeds: dict[str, PluginFeed] = {}
        self.watch = LoopWatch(None, self.section.loop_stall_warn)
        self._pm: FieldgatePluginManager | None = None
        self._runner: HookRunner | None = None
        self._energy: EnergyFan | None = None
        self._remove_energy: Callable[[], None] | None = None
        self.converters: dict[str, Callable[..., Any]] = {}
        self.converters_wired = False

    # -- the plugin manager, created with the first plugin -------------------------------

    def _manager(self) -> tuple[FieldgatePluginManager, HookRunner, EnergyFan]:
        if self._pm is None or self._runner is None or self._energy is None:
            from hooks.energy import EnergyFan
            from hooks.manager import FieldgatePluginManager, HookRunner

            self._pm = FieldgatePluginManager()
            self._runner = HookRunner(self._pm, self.section.timeout, self.section.threads)
            self._energy = EnergyFan()
            self.watch.runner = self._runner
        return self._pm, self._runner, self._energy

    @property
    def pm(self) -> FieldgatePluginManager:
        """The plugin manager (created on first use)."""
        return self._manager()[0]

    @property
    def runner(self) -> HookRunner:
        """What calls the hooks (created on first use)."""
        return self._manager()[1]

    @property
    def energy(self) -> EnergyFan:
        """The per-sample hook's feeds (created on first use)."""
        return self._manager()[2]

    @property
    def hook_runner(self) -> HookRunner | None:
        """The runner, or None while no plugin was ever loaded (nothing to call)."""
        return self._runner

    @property
    def energy_fan(self) -> EnergyFan | None:
        """The energy feeds, or None while no plugin was ever loaded."""
        return self._energy

    # -- lifecycle -----------------------------------------------------------------------

    async def start(self) -> None:
        s = self.section
        sources = plugin_sources(
            customer=s.customer, customer_dir=s.customer_dir, state_dir=self.ctx.state_dir,
            modules=tuple(s.modules), entry_points=s.entry_points, disable=tuple(s.disable))
        if sources:
            self.report = load_sources(self.pm, sources, s.on_error)
            for name in list(self.report.loaded):
                self._apply_registrations(name)
        self.report.check()
        from hooks import commands

        commands.register(self.ctx, self)
        await self.recent.open()
        self.watch.start()
        if self._runner is not None:
            self._update_feeds()
        for feed in self.feeds.values():
            await feed.open()

    def tasks(self) -> Iterable[tuple[str, TaskFactory]]:
        yield "hooks-recent", self.recent.run
        for name, feed in self.feeds.items():
            yield f"hooks[{name}]", feed.run
        if self._energy is not None:
            for name, efeed in self._energy.feeds.items():
                yield f"hooks-energy[{name}]", efeed.run

    async def stop(self) -> None:
        if self._remove_energy is not None:
            self._remove_energy()
            self._remove_energy = None
        self.watch.stop()
        if self._runner is not None:
            self._runner.close()

    # -- plugins at runtime --------------------------------------------------------------

    def add_plugin(self, plugin: Any, name: str) -> None:
        """Register one more plugin on the running gateway (tests, embedding)."""
        self.pm.register_checked(plugin, name)
        self.report.loaded[name] = "runtime"
        self._apply_registrations(name)
        for task, factory in self._update_feeds():
            self.ctx.start_task(task, factory)

    def db_for(self, plugin: str, event_id: str = "") -> HooksDB:
        """The ``db`` handed to ``plugin`` (bound to the event being delivered)."""
        from hooks.db import HooksDB

        return HooksDB(self.ctx, plugin, event_id, self.section.settings(plugin).may_write)

    async def deliver(self, event: Any) -> None:
        """Deliver one event to every plugin now, as their tasks would (tests: redelivery)."""
        for feed in list(self.feeds.values()):
            await feed.deliver(event)

    async def backlog(self, feed: PluginFeed) -> int:
        """Events in the outbox this plugin has not had yet."""
        row = await self.ctx.store.query_one(
            "SELECT COUNT(*) FROM events WHERE rowid > "
            "(SELECT last_rowid FROM event_cursors WHERE consumer = ?)", (feed.consumer,))
        return int(row[0]) if row else 0

    def loop_stats(self) -> dict[str, Any]:
        return self.watch.stats()

    def _update_feeds(self) -> list[tuple[str, TaskFactory]]:
        """Give each plugin with event hooks its own outbox feed and each plugin with the
        per-sample hook its own energy feed; observe the pipeline only if one does.
        Returns the tasks of the feeds created just now."""
        from hooks.dispatcher import ROUTES, PluginFeed
        from hooks.energy import ENERGY_HOOK, EnergyFeed, Increments

        _, runner, energy = self._manager()
        new: list[tuple[str, TaskFactory]] = []
        event_hooks = {hook for hook, _ in ROUTES.values()}
        names = {impl.plugin_name for hook in event_hooks
                 for impl in runner.implementations(hook)}
        for name in sorted(names - set(self.feeds)):
            feed = self.feeds[name] = PluginFeed(self.ctx, runner, name, self.db_for)
            new.append((f"hooks[{name}]", feed.run))
        s = self.section
        for impl in runner.implementations(ENERGY_HOOK):
            name = impl.plugin_name
            if name in energy.feeds:
                continue
            settings = s.settings(name)
            inc = Increments(settings.energy_points) if settings.energy_increments else None
            efeed = energy.feeds[name] = EnergyFeed(
                self.ctx, runner, impl, self.db_for(name), s.energy_queue_samples,
                s.energy_batch_timeout, inc)
            new.append((f"hooks-energy[{name}]", efeed.run))
        if energy.feeds and self._remove_energy is None:
            self._remove_energy = self.ctx.add_observer(energy.observe)
        return new

    def _apply_registrations(self, name: str) -> None:
        plugin = self.pm.get_plugin(name)
        try:
            for hook in ("register_drivers", "register_channels", "register_commands",
                         "register_converters"):
                for impl in self.runner.implementations(hook):
                    if impl.plugin is plugin:
                        self._register(hook, impl.function())
        except PluginLoadError as err:
            self.pm.unregister(plugin)
            self.report.loaded.pop(name, None)
            self.report.fail(err, self.section.on_error)
        except Exception as err:
            self.pm.unregister(plugin)
            self.report.loaded.pop(name, None)
            self.report.fail(PluginLoadError(name, f"registration failed: "
                                             f"{type(err).__name__}: {err}"),
                             self.section.on_error)

    def _register(self, hook: str, result: Any) -> None:
        if hook == "register_converters":
            self.converters.update(dict(result or {}))
            self._wire_converters()
            return
        for item in result or ():
            if hook == "register_drivers":
                _register_driver(item)
            elif hook == "register_channels":
                _register_channel(item)
            else:
                self.ctx.commands.register(item)

    def _wire_converters(self) -> None:
        """Hand plugin converters to the rules engine's registry."""
        from gateway.rules.converters import register_converter as register

        for name, fn in self.converters.items():
            register(name, fn)
        self.converters_wired = True


#: The registrations that fill process-wide registries: run when the config is loaded, so
#: every part built from it sees them (a device ``type``, a channel ``type``, the converters
#: the rules engine copies when it is built). ``register_commands`` fills the registry of one
#: run and is called when the component starts.
CONFIG_TIME_HOOKS = ("register_drivers", "register_channels", "register_converters")


def preregister(raw: Mapping[str, Any], config_path: Path) -> None:
    """Run the plugins' registration hooks before the config is validated (a config
    preparer), so that nothing is built before the plugins registered their parts.

    Loads the same plugins as the component will (entry points, ``plugins.modules``, the
    customer folder; imports are cached, so they run once per process) into a throwaway
    manager and calls each of :data:`CONFIG_TIME_HOOKS`. A failure follows
    ``plugins.on_error``: ``refuse`` raises :class:`PluginLoadError` (the CLI exits 78
    naming the plugin), ``skip`` logs it and the device types it would have provided fail
    validation. Paths in the section are taken as given (``config_path`` is not used to
    resolve them). A site with no plugin to load creates no manager (and imports no
    pluggy)."""
    section_raw = raw.get("plugins", {})
    try:
        s = PluginsSection.model_validate(section_raw if section_raw is not None else {})
    except ValidationError:
        return  # the site model reports it, with line numbers
    sources = plugin_sources(customer=s.customer, customer_dir=s.customer_dir,
                             state_dir=_state_dir(raw), modules=tuple(s.modules),
                             entry_points=s.entry_points, disable=tuple(s.disable))
    report = _preregister(sources, s.on_error) if sources else LoadReport()
    report.check()  # every refused plugin in one error, imports and registrations alike
    unknown = sorted(set(s.model_extra or {}) - set(report.loaded) - set(report.failed)
                     - set(s.disable))
    if unknown:
        log.warning("plugins: settings for %s, but no plugin of that name was loaded from "
                    "the config (loaded: %s); check the name (a plugin added at runtime "
                    "uses them too)", ", ".join(unknown), ", ".join(report.loaded) or "none")


def _preregister(sources: list[Source], on_error: str) -> LoadReport:
    """Load ``sources`` into a throwaway manager and call each of :data:`CONFIG_TIME_HOOKS`
    (see :func:`preregister`)."""
    from gateway.rules.converters import register_converter
    from hooks.manager import FieldgatePluginManager

    pm = FieldgatePluginManager()
    report = load_sources(pm, sources, on_error)

    def drivers(result: Any) -> None:
        for spec in result or ():
            _register_driver(spec)

    def channels(result: Any) -> None:
        for cls in result or ():
            _register_channel(cls)

    def converters(result: Any) -> None:
        for event_type, fn in dict(result or {}).items():
            register_converter(event_type, fn)

    handlers = {"register_drivers": drivers, "register_channels": channels,
                "register_converters": converters}
    for hook in CONFIG_TIME_HOOKS:
        for impl in reversed(getattr(pm.hook, hook).get_hookimpls()):
            name = impl.plugin_name
            if name not in report.loaded:
                continue
            try:
                handlers[hook](impl.function())
            except Exception as err:
                report.loaded.pop(name, None)
                report.fail(PluginLoadError(name, f"{hook} failed: "
                                            f"{type(err).__name__}: {err}"), on_error)
    return report


def _register_driver(spec: Any) -> None:
    from drivers.base import register_driver, registry

    old = registry().get(spec.name)
    if old is None or not _stale(old.factory, spec.factory, f"driver type {spec.name}"):
        register_driver(spec)


def _register_channel(cls: Any) -> None:
    from gateway.channels.base import channel_types, register_channel_class

    old = channel_types().get(getattr(cls, "channel_type", ""))
    if old is None or not _stale(old, cls, f"channel type {cls.channel_type}"):
        register_channel_class(cls)


def _stale(old: Any, new: Any, what: str) -> bool:
    """True (and a warning) when ``new`` is the re-imported version of ``old``, from a
    plugin whose code changed: drivers and channel types are process-wide and stay as
    first registered until a restart."""
    if old is new or getattr(old, "__module__", None) != getattr(new, "__module__", None):
        return False
    if getattr(old, "__qualname__", None) != getattr(new, "__qualname__", None):
        return False
    log.warning("%s comes from plugin code that changed since it was registered; the "
                "running gateway keeps the first version. Restart fieldgate to use the new "
                "one (reload re-imports hooks, not drivers or channel types)", what)
    return True


def _state_dir(raw: Mapping[str, Any]) -> Path:
    from gateway.config.models import GatewaySection

    gateway = raw.get("gateway") or {}
    value = gateway.get("state_dir") if isinstance(gateway, Mapping) else None
    return Path(value) if value else Path(GatewaySection.model_fields["state_dir"].default)


register_preparer(preregister)


# After the rules: ``db.open_alarms`` reads them. The tables keep their first name, "hooks".
register_component(ComponentSpec("plugins", PluginsComponent, section=PluginsSection,
                                 after=("rules", "siteops"), migrations=MIGRATIONS,
                                 schema_name="hooks"))
