"""Where plugins come from, in load order:

1. ``DEFAULT_PLUGINS``: plugins that ship with fieldgate, loaded like anyone else's
   (Datasette's DEFAULT_PLUGINS). None today: the built-in channels register themselves
   (gateway/channels/builtin.py), as the built-in drivers do.
2. Installed packages exposing the entry point group ``fieldgate.plugins``.
3. ``plugins.modules``: importable module paths.
4. The customer folder: ``plugins.customer: acme`` loads ``<customer_dir>/acme/__init__.py``
   (default ``customer_dir``: ``hooks/customers``), whose ``hooks`` is a ``CustomerHooks``
   instance (or subclass), or any object with ``@hookimpl`` methods.

A plugin that fails to import or validate is reported by name; ``plugins.on_error`` decides
whether the gateway refuses to start (``refuse``) or goes on without it (``skip``).
"""

from __future__ import annotations

import functools
import hashlib
import importlib
import importlib.metadata
import importlib.util
import logging
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hooks.manager import FieldgatePluginManager, PluginLoadError

log = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "fieldgate.plugins"
DEFAULT_PLUGINS: tuple[str, ...] = ()
DEFAULT_CUSTOMER_DIR = Path(__file__).parent / "customers"


@dataclass
class LoadReport:
    loaded: dict[str, str] = field(default_factory=dict)  # name -> source
    failed: dict[str, str] = field(default_factory=dict)  # name -> error

    def fail(self, err: PluginLoadError, on_error: str) -> None:
        self.failed[err.plugin] = err.message
        if on_error == "refuse":
            # Not logged here: the error (a StartupError) is reported once, by whoever
            # stops the start (the CLI prints it with its hint and exits 78).
            raise err
        log.error("plugin %s failed to load and is skipped (plugins.on_error: skip): %s",
                  err.plugin, err.message)


def _import_module(dotted: str, name: str) -> Any:
    try:
        return importlib.import_module(dotted)
    except Exception as err:
        raise PluginLoadError(name, f"import of {dotted} failed: "
                              f"{type(err).__name__}: {err}") from err


def load_customer(customer: str, directory: Path | None) -> Any:
    """Import ``<directory>/<customer>/__init__.py`` and return what it exports."""
    base = directory or DEFAULT_CUSTOMER_DIR
    init = base / customer / "__init__.py"
    if not init.is_file():
        raise PluginLoadError(customer, f"no {init}; create it and export `hooks`, or fix "
                              "plugins.customer / plugins.customer_dir")
    if directory is None:
        module = _import_module(f"hooks.customers.{customer}", customer)
    else:
        # One import per folder per process: a reload re-registers the same objects (so
        # drivers and channels it registers do not clash); new plugin code needs a restart.
        digest = hashlib.sha1(str(init.resolve()).encode()).hexdigest()[:10]
        mod_name = f"fieldgate_customer_{customer}_{digest}"
        if mod_name in sys.modules:
            return getattr(sys.modules[mod_name], "hooks", sys.modules[mod_name])
        spec = importlib.util.spec_from_file_location(
            mod_name, init, submodule_search_locations=[str(init.parent)])
        if spec is None or spec.loader is None:
            raise PluginLoadError(customer, f"cannot import {init}")
        module = importlib.util.module_from_spec(spec)
        sys.modules[mod_name] = module
        try:
            spec.loader.exec_module(module)
        except Exception as err:
            sys.modules.pop(mod_name, None)
            raise PluginLoadError(customer, f"import of {init} failed: "
                                  f"{type(err).__name__}: {err}") from err
    return getattr(module, "hooks", module)


def _entry_points(disabled: set[str]) -> Iterator[tuple[str, Callable[[], Any]]]:
    for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        if ep.name in disabled:
            log.info("plugin %s (entry point %s) is disabled by plugins.disable", ep.name, ep.value)
            continue

        def load(ep: importlib.metadata.EntryPoint = ep) -> Any:
            try:
                return ep.load()
            except Exception as err:
                raise PluginLoadError(ep.name, f"entry point {ep.value} failed to load: "
                                      f"{type(err).__name__}: {err}") from err

        yield ep.name, load


def load_plugins(
    pm: FieldgatePluginManager,
    *,
    customer: str | None = None,
    customer_dir: Path | None = None,
    modules: tuple[str, ...] = (),
    entry_points: bool = True,
    disable: tuple[str, ...] = (),
    on_error: str = "refuse",
    extra: tuple[tuple[str, Any], ...] = (),
) -> LoadReport:
    """Load and register every configured plugin; see the module docstring."""
    report = LoadReport()
    disabled = set(disable)
    sources: list[tuple[str, str, Callable[[], Any]]] = []
    for dotted in DEFAULT_PLUGINS:
        sources.append((dotted, "builtin", functools.partial(_import_module, dotted, dotted)))
    if entry_points:
        for name, load in _entry_points(disabled):
            sources.append((name, "entry point", load))
    for dotted in modules:
        if dotted not in disabled:
            sources.append((dotted, "module", functools.partial(_import_module, dotted, dotted)))
    if customer and customer not in disabled:
        sources.append((customer, "customer folder",
                        functools.partial(load_customer, customer, customer_dir)))
    for name, obj in extra:
        sources.append((name, "object", functools.partial(lambda o: o, obj)))
    for name, source, load in sources:
        try:
            pm.register_checked(load(), name)
        except PluginLoadError as err:
            if source == "builtin":
                raise  # a bug in fieldgate itself, not a plugin to skip
            report.fail(err, on_error)
            continue
        report.loaded[name] = source
        log.info("plugin %s loaded (%s)", name, source)
    return report
